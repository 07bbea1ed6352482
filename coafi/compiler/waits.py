"""ASL of the waiting steps, ``callback`` and ``signal`` (docs/waits.md).

Each is a Task named by the step id that invokes the state function with ``.waitForTaskToken`` (op ``wait``):
the function records the step RUNNING, stores the task token against (execution, step), and then either
announces it (callback: a ``TaskTokenIssued`` event) or registers it as a waiter for the signal, delivering a
buffered signal at once. The Task ends when the token is completed (``SendTaskSuccess``: its output becomes the
step's output) or failed (``SendTaskFailure``: the step fails with that error and cause, so Retry and the
workflow's failure handling see it) or when ``timeoutSeconds`` passes (``States.Timeout``).
``<stepId>.finished`` then records the step SUCCEEDED with its output, like the other steps that run no COAFI
code; a failed step is recorded FAILED by the workflow's failure handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coafi.definitions.models import WorkflowStep

if TYPE_CHECKING:
    from coafi.compiler.asl import _Compiler, _Fragment

LAMBDA_INVOKE_WAIT = "arn:aws:states:::lambda:invoke.waitForTaskToken"
WAIT_OP = "wait"


def wait_payload(compiler: _Compiler, step: WorkflowStep) -> dict[str, Any]:
    """What the state function receives (``coafi.runtime.wait_ops.WaitOp``)."""
    payload: dict[str, Any] = {
        "op": WAIT_OP,
        "executionId.$": "$$.Execution.Id",
        "workflowId": compiler.wf.id,
        "workflowVersion": compiler.wf.version,
        "stepId": step.id,
        "stepName": step.name,
        "stepType": step.type,
        "taskToken.$": "$$.Task.Token",
        "attempt.$": "$$.State.RetryCount",
        "enteredAt.$": "$$.State.EnteredTime",
    }
    if step.type == "signal":
        payload["signal"] = step.signal.signal
    else:
        params = step.callback
        payload["notify"] = params.notify
        payload["details"] = params.details
    if step.timeoutSeconds is not None:
        payload["timeoutSeconds"] = step.timeoutSeconds
    return payload


def compile_wait_step(compiler: _Compiler, step: WorkflowStep) -> _Fragment:
    from coafi.compiler.asl import LAMBDA_SERVICE_ERRORS, STATE_FUNCTION, _Fragment

    state: dict[str, Any] = {
        "Type": "Task",
        "Comment": step.name,
        "Resource": LAMBDA_INVOKE_WAIT,
        "Parameters": {"FunctionName": "${" + STATE_FUNCTION + "}", "Payload": wait_payload(compiler, step)},
        # The task's output is what SendTaskSuccess sent: the callback's result or the signal's payload.
        "ResultSelector": {"output.$": "$"},
        "ResultPath": f"$.steps.{step.id}",
    }
    state.update(compiler.retry_and_timeout(step, service_errors=LAMBDA_SERVICE_ERRORS))
    if step.type == "callback" and step.callback.heartbeatSeconds is not None:
        state["HeartbeatSeconds"] = step.callback.heartbeatSeconds
    finished = f"{step.id}.finished"
    record = compiler.state_call(
        {
            "op": "step",
            "executionId.$": "$$.Execution.Id",
            "workflowId": compiler.wf.id,
            "stepId": step.id,
            "stepName": step.name,
            "stepType": step.type,
            "status": "SUCCEEDED",
            "output.$": f"$.steps.{step.id}.output",
        },
        result_path=None,
    )
    return _Fragment({step.id: state | {"Next": finished}, finished: record}, step.id, [finished])
