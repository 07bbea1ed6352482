"""Core state function: records workflow start/finish, decisions and non-Lambda steps in DynamoDB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coafi.config import function_settings
from coafi.runtime.state_ops import apply, parse_operation
from coafi.state.store import StateStore

#: Powertools' Logger, made on the first invocation, as the actions' (coafi.runtime.action): importing Powertools
#: is ~30 ms of the cold start, which kept this function over the 150 ms goal (BENCHMARKS.md).
logger: Any = None
_logged: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None


def _record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    operation = parse_operation(event)
    logger.append_keys(execution_id=operation.executionId, workflow_id=operation.workflowId,
                       op=operation.op, step_id=getattr(operation, "stepId", None))
    settings = function_settings()
    store = StateStore(settings.table_name, retention_days=settings.retention_days,
                       payload_bucket=settings.payload_bucket)
    return apply(operation, store)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global logger, _logged
    if _logged is None:
        from aws_lambda_powertools import Logger

        logger = Logger()
        _logged = logger.inject_lambda_context(correlation_id_path="executionId")(_record)
    return _logged(event, context)
