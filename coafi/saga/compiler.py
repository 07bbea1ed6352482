"""The states the ASL compiler adds for compensation and schedule steps (hooked into coafi.compiler.asl).

**Compensation.** Only a workflow with at least one ``compensate:`` gets these; its failure path becomes

    coafi.run --any error--> coafi.compensate -> coafi.compensate.run (Map, one at a time) -> coafi.failed -> coafi.fail

- ``coafi.compensate`` (state function, op ``compensations``) reads the execution's history and returns the
  plan: one item per step that SUCCEEDED and declares ``compensate``, latest completion first (parallel branches
  included: the order is the order their completions were recorded). ``$.error`` (the original error) is kept.
- ``coafi.compensate.run`` invokes each item's compensation action with a step event (``context.stepId`` =
  ``<stepId>.compensate``; its ``@action`` wrapper records STEP_STARTED / SUCCEEDED / FAILED in the history). A
  compensation that fails is caught and recorded (``coafi.compensate.failed``, op ``compensation-failed``) and
  the next one runs. If planning itself fails, the workflow still fails with its original error.
- ``coafi.failed`` and ``coafi.fail`` are unchanged: the execution ends FAILED with the original error.

**Schedule steps.** A ``type: schedule`` step is one Task state named by the step id that invokes the state
function (op ``schedule``): it schedules the task through ``coafi.tasks.TaskScheduler``, records the step and
returns ``{taskId, status, route, runAt, ...}`` as its output; the workflow goes on at once.
"""

from __future__ import annotations

import json
from typing import Any

from coafi.definitions.models import WorkflowStep
from coafi.saga.definitions import schedule_parameters

COMPENSATE = "coafi.compensate"
COMPENSATE_RUN = "coafi.compensate.run"
COMPENSATE_INVOKE = "coafi.compensate.invoke"
COMPENSATE_FAILED = "coafi.compensate.failed"
FAILED = "coafi.failed"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


def schedule_state(compiler: Any, step: WorkflowStep) -> dict[str, Any]:
    """The Task state of a ``type: schedule`` step."""
    params = schedule_parameters(step)
    payload: dict[str, Any] = {
        "op": "schedule",
        "executionId.$": "$$.Execution.Id",
        "workflowId": compiler.wf.id,
        "stepId": step.id,
        "stepName": step.name,
        "task": params.task,
        "priority": params.priority,
    }
    raw = step.parameters.get("payload")
    if raw is None:
        payload["payload.$"] = "$.input"
    elif isinstance(raw, str) and raw.startswith("$."):
        payload["payload.$"] = raw
    else:
        payload["payload"] = raw
    if params.delaySeconds is not None:
        payload["delaySeconds"] = params.delaySeconds
    if params.cron is not None:
        payload |= {"cron": params.cron, "timezone": params.timezone, "windowMinutes": params.windowMinutes}
    state: dict[str, Any] = compiler.state_call(payload, result_path=f"$.steps.{step.id}",
                                                result_selector={"output.$": "$.Payload"})
    state["Comment"] = step.name
    user = compiler.retry_and_timeout(step, service_errors=[])
    if user.get("Retry"):
        state["Retry"] = state["Retry"] + user["Retry"]
    if "TimeoutSeconds" in user:
        state["TimeoutSeconds"] = user["TimeoutSeconds"]
    return state


def _ancestors(deps: dict[str, list[str]], step_id: str) -> list[str]:
    seen: list[str] = []
    stack = list(deps.get(step_id, []))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.append(current)
            stack.extend(deps.get(current, []))
    return sorted(seen)


def add_compensation(compiler: Any, states: dict[str, dict[str, Any]]) -> None:
    """If any step declares ``compensate``, route coafi.run's failure through the compensation states."""
    from coafi.compiler.asl import ArnRef, placeholder_for_action

    steps = [s for s in compiler.wf.steps if s.compensate]
    if not steps:
        return
    table: dict[str, dict[str, Any]] = {}
    for step in steps:
        assert step.compensate is not None
        placeholder = placeholder_for_action(step.compensate)
        compiler.result.substitutions[placeholder] = ArnRef("action", step.compensate)
        compiler.result.actions.append(step.compensate)
        table[step.id] = {
            "action": step.compensate,
            "function": "${" + placeholder + "}",
            "stepName": step.name,
            "stepAction": step.action,
            "parameters": step.parameters,
            "dependencies": _ancestors(compiler.deps, step.id),
        }
    # As JSON text: the steps' parameters may hold JSONPaths ("x.$") that must not be evaluated here.
    states[COMPENSATE] = compiler.state_call(
        {
            "op": "compensations",
            "executionId.$": "$$.Execution.Id",
            "workflowId": compiler.wf.id,
            "workflowVersion": compiler.wf.version,
            "input.$": "$.input",
            "error.$": "$.error",
            "compensations": json.dumps(table, sort_keys=True, separators=(",", ":")),
        },
        result_path="$.compensation",
        result_selector={"plan.$": "$.Payload.plan"},
    ) | {
        "Comment": "Plan the compensations of the completed steps, latest completion first",
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.compensationError", "Next": FAILED}],
        "Next": COMPENSATE_RUN,
    }
    invoke: dict[str, Any] = {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName.$": "$.function", "Payload.$": "$.event"},
        "Retry": compiler.state_call({}, result_path=None)["Retry"],
        "ResultPath": None,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": COMPENSATE_FAILED}],
        "End": True,
    }
    failed = compiler.state_call(
        {
            "op": "compensation-failed",
            "executionId.$": "$$.Execution.Id",
            "workflowId": compiler.wf.id,
            "stepId.$": "$.event.context.stepId",
            "error.$": "$.failure",
        },
        result_path=None,
    ) | {"End": True}
    states[COMPENSATE_RUN] = {
        "Type": "Map",
        "Comment": "Run the compensations one at a time, in the planned order; a failing one is recorded and "
                   "the next one runs",
        "ItemsPath": "$.compensation.plan",
        "MaxConcurrency": 1,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": COMPENSATE_INVOKE,
            "States": {COMPENSATE_INVOKE: invoke, COMPENSATE_FAILED: failed},
        },
        "ResultPath": None,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.compensationError", "Next": FAILED}],
        "Next": FAILED,
    }
    _route_failures_through_compensation(states)


def _route_failures_through_compensation(states: dict[str, dict[str, Any]]) -> None:
    """Every transition into coafi.failed (coafi.run's Catch, and any state another feature put on the failure path
    before it) now enters coafi.compensate instead; the compensation states themselves go on to coafi.failed."""
    own = {COMPENSATE, COMPENSATE_RUN}
    for name, state in states.items():
        if name in own:
            continue
        if state.get("Next") == FAILED:
            state["Next"] = COMPENSATE
        if state.get("Default") == FAILED:
            state["Default"] = COMPENSATE
        for rule in [*state.get("Catch", []), *state.get("Choices", [])]:
            if rule.get("Next") == FAILED:
                rule["Next"] = COMPENSATE
