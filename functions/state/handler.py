"""Core state function: records workflow start/finish, decisions and non-Lambda steps in DynamoDB."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from coafi.config import function_settings
from coafi.runtime.state_ops import apply, parse_operation
from coafi.runtime.wait_ops import handle_wait_operation, is_wait_operation
from coafi.saga import ops as saga_ops
from coafi.state.store import StateStore
from coafi.telemetry.operations import record_operation
from coafi.telemetry.tracing import traced

logger = Logger()


@logger.inject_lambda_context(correlation_id_path="executionId")
@traced
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_wait_operation(event):  # a callback or signal step starts waiting (docs/waits.md)
        return handle_wait_operation(event)
    if isinstance(event, dict) and event.get("op") in saga_ops.OPS:  # compensation and schedule steps
        return _saga(event)
    operation = parse_operation(event)
    logger.append_keys(execution_id=operation.executionId, workflow_id=operation.workflowId,
                       op=operation.op, step_id=getattr(operation, "stepId", None))
    settings = function_settings()
    store = StateStore(settings.table_name, retention_days=settings.retention_days,
                       payload_bucket=settings.payload_bucket)
    result = apply(operation, store)
    record_operation(operation, logger)
    return result


def _saga(event: dict[str, Any]) -> dict[str, Any]:
    logger.append_keys(execution_id=event.get("executionId"), workflow_id=event.get("workflowId"),
                       op=event.get("op"), step_id=event.get("stepId"))
    settings = function_settings()
    store = StateStore(settings.table_name, retention_days=settings.retention_days,
                       payload_bucket=settings.payload_bucket)
    return saga_ops.handle(event, store)
