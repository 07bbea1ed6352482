"""Metrics and log lines of the core state function's operations (``coafi.runtime.state_ops``).

Called by ``functions/state/handler.py`` after an operation was recorded, so a write that failed (and is retried
by Step Functions) is not counted:

- ``start``: ``WorkflowStarted`` (dimension workflow), log line ``workflow started``;
- ``finish``: ``WorkflowSucceeded`` or ``WorkflowFailed`` (workflow), ``workflow succeeded`` / ``workflow failed``
  (with the error type);
- ``step`` (steps that run no COAFI code: waits, sub-workflows, external Lambdas): ``StepStarted``,
  ``StepSucceeded`` or ``StepFailed`` (workflow, step), ``step started`` / ``step succeeded`` / ``step failed``;
- ``decide``: ``StepStarted`` and ``StepSucceeded`` of the decision (workflow, step), ``decision taken`` (branch).

Task steps count their own ``StepStarted``/``StepSucceeded``/``StepFailed``/``StepDuration``/``RetryAttempted``
in the ``@action`` wrapper (``coafi.runtime.action``); nothing here counts them twice. The execution id is EMF
metadata of every document and a field of every log line.
"""

from __future__ import annotations

from typing import Any

from coafi import telemetry

_WORKFLOW_METRIC = {"start": "WorkflowStarted", "SUCCEEDED": "WorkflowSucceeded", "FAILED": "WorkflowFailed"}
_STEP_METRIC = {"RUNNING": "StepStarted", "SUCCEEDED": "StepSucceeded", "FAILED": "StepFailed"}


def record_operation(operation: Any, logger: Any = None) -> None:
    """Count ``operation`` (a parsed state operation) and log one line about it with ``logger`` (a Powertools
    ``Logger``; the execution, workflow and step are already among its keys in the state function)."""
    op = operation.op
    step_id = getattr(operation, "stepId", None) if op in ("step", "decide") else None
    fields: dict[str, Any] = {}
    with telemetry.step_scope(workflow=operation.workflowId, execution_id=operation.executionId,
                              step=step_id), telemetry.batch():
        if op == "start":
            telemetry.increment_counter("WorkflowStarted")
            message = "workflow started"
        elif op == "finish":
            telemetry.increment_counter(_WORKFLOW_METRIC[operation.status])
            message = f"workflow {operation.status.lower()}"
            if operation.status == "FAILED" and operation.error:
                fields["error_type"] = str(operation.error.get("Error") or operation.error.get("type") or "")
        elif op == "decide":
            telemetry.increment_counter("StepStarted")
            telemetry.increment_counter("StepSucceeded")
            message = "decision taken"
            fields["branch"] = operation.branch
        elif op == "step":
            telemetry.increment_counter(_STEP_METRIC[operation.status])
            message = "step started" if operation.status == "RUNNING" else f"step {operation.status.lower()}"
            fields["step_type"] = operation.stepType
        else:
            return
    if logger is not None:
        logger.info(message, extra=fields)
