"""Task dispatcher: consumes the task queue and runs each task's action or workflow (coafi.tasks.runtime).

Environment (infra/constructs/tasks.py): COAFI_TABLE_NAME, COAFI_ACTIONS and COAFI_ACTION_FUNCTION_PREFIX (the action
functions), COAFI_WORKFLOW_IDS and COAFI_STATE_MACHINE_ARN_PREFIX (the state machines; coafi.naming),
COAFI_DISPATCH_CONCURRENCY, COAFI_TASK_INVOKE_TIMEOUT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coafi.telemetry.logger import LazyLogger
from coafi.telemetry.tracing import traced

if TYPE_CHECKING:
    from coafi.tasks.runtime import DispatcherRuntime

logger = LazyLogger()  # Powertools' Logger, made on the first invocation (cold start: BENCHMARKS.md)
_runtime: DispatcherRuntime | None = None


def runtime() -> DispatcherRuntime:
    """Built on the first invocation (not at import: a missing setting fails that invocation loudly). Its
    modules too (Powertools batch and idempotency, boto3, the task models: ~170 ms of a cold start, see
    BENCHMARKS.md): the first message pays them instead of the import."""
    global _runtime
    if _runtime is None:
        from coafi.tasks.runtime import DispatcherRuntime

        _runtime = DispatcherRuntime.from_env(logger=logger.logger)
    return _runtime


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime().handle(event, context)
