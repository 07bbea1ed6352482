"""Core state function: records workflow start/finish, decisions, waits, compensations, schedule steps and
non-Lambda steps in DynamoDB."""

from __future__ import annotations

from typing import Any

from coafi.config import function_settings
from coafi.runtime.state_ops import apply, is_wait_operation, parse_operation
from coafi.saga import STATE_OPS as SAGA_OPS
from coafi.state.store import StateStore
from coafi.telemetry.logger import LazyLogger
from coafi.telemetry.operations import record_operation
from coafi.telemetry.tracing import traced

#: Powertools' Logger, made on the first invocation (cold start: BENCHMARKS.md).
logger = LazyLogger()


def _store() -> StateStore:
    settings = function_settings()
    return StateStore(settings.table_name, retention_days=settings.retention_days,
                      payload_bucket=settings.payload_bucket)


@logger.inject_lambda_context(correlation_id_path="executionId")
@traced
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # Callback/signal steps, compensations and schedule steps: their modules are imported on their first op, so
    # workflows without them never load them (cold start: BENCHMARKS.md).
    if is_wait_operation(event):  # a callback or signal step starts waiting (docs/waits.md)
        from coafi.runtime.wait_ops import handle_wait_operation

        return handle_wait_operation(event)
    if isinstance(event, dict) and event.get("op") in SAGA_OPS:  # compensation and schedule steps
        from coafi.saga import ops as saga_ops

        logger.append_keys(execution_id=event.get("executionId"), workflow_id=event.get("workflowId"),
                           op=event.get("op"), step_id=event.get("stepId"))
        return saga_ops.handle(event, _store())
    operation = parse_operation(event)
    logger.append_keys(execution_id=operation.executionId, workflow_id=operation.workflowId,
                       op=operation.op, step_id=getattr(operation, "stepId", None))
    result = apply(operation, _store())
    record_operation(operation, logger)
    return result
