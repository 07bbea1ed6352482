"""Engine API function: EventBridge commands on the app's bus (StartWorkflow, TerminateWorkflow, ...) and the
event triggers of workflow definitions (coafi.engine.commands, docs/engine-api.md)."""

from __future__ import annotations

from typing import Any

from coafi import naming
from coafi.engine.client import WorkflowClient
from coafi.engine.commands import event_publisher, handle
from coafi.telemetry.logger import LazyLogger
from coafi.telemetry.tracing import traced

logger = LazyLogger()  # Powertools' Logger, made on the first invocation (cold start: BENCHMARKS.md)
_client: WorkflowClient | None = None
#: workflow id -> state machine ARN, from COAFI_WORKFLOW_IDS and COAFI_STATE_MACHINE_ARN_PREFIX (coafi.naming)
_workflow_arns: dict[str, str] = naming.workflow_arns()


def client() -> WorkflowClient:
    global _client
    if _client is None:
        _client = WorkflowClient.from_env()
    return _client


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    engine = client()
    outcome = handle(event, engine, event_publisher(engine.event_bus_name), _workflow_arns)
    logger.info("handled", extra={"kind": outcome.kind, "ok": outcome.ok, "error": outcome.error})
    return outcome.model_dump(mode="json")
