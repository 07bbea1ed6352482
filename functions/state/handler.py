"""Core state function: records workflow start/finish, decisions, waits, compensations, schedule steps and
non-Lambda steps in DynamoDB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coafi.config import function_settings
from coafi.runtime.state_ops import apply, parse_operation
from coafi.runtime.wait_ops import handle_wait_operation, is_wait_operation
from coafi.saga import ops as saga_ops
from coafi.state.store import StateStore
from coafi.telemetry.operations import record_operation
from coafi.telemetry.tracing import traced

#: Powertools' Logger, made on the first invocation, as the actions' (coafi.runtime.action): importing Powertools
#: is ~30 ms of the cold start, which kept this function over the 150 ms goal (BENCHMARKS.md).
logger: Any = None
_logged: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None


def _store() -> StateStore:
    settings = function_settings()
    return StateStore(settings.table_name, retention_days=settings.retention_days,
                      payload_bucket=settings.payload_bucket)


def _record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_wait_operation(event):  # a callback or signal step starts waiting (docs/waits.md)
        return handle_wait_operation(event)
    if isinstance(event, dict) and event.get("op") in saga_ops.OPS:  # compensation and schedule steps
        logger.append_keys(execution_id=event.get("executionId"), workflow_id=event.get("workflowId"),
                           op=event.get("op"), step_id=event.get("stepId"))
        return saga_ops.handle(event, _store())
    operation = parse_operation(event)
    logger.append_keys(execution_id=operation.executionId, workflow_id=operation.workflowId,
                       op=operation.op, step_id=getattr(operation, "stepId", None))
    result = apply(operation, _store())
    record_operation(operation, logger)
    return result


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global logger, _logged
    if _logged is None:
        from aws_lambda_powertools import Logger

        logger = Logger()
        _logged = logger.inject_lambda_context(correlation_id_path="executionId")(traced(_record))
    return _logged(event, context)
