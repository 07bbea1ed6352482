"""The Python client of the workflow engine API (docs/engine-api.md)::

    from coafi.client import WorkflowClient

    client = WorkflowClient.from_stack()            # the deployed stack's outputs
    run = client.start_workflow("content-generation", {...}, idempotency_key="order-42")
    client.get_workflow_status(run.executionId).status
    client.signal_workflow(run.executionId, "publish", {"channel": "web"})   # callback/signal steps: docs/waits.md
"""

from coafi.engine.client import StartOptions, StartResult, WatchUpdate, WorkflowClient
from coafi.engine.errors import (
    EngineError,
    ExecutionNotRunning,
    IdempotencyConflict,
    InputTooLarge,
    InvalidQuery,
    UnknownExecution,
    VersionNotRegistered,
    WorkflowNotRegistered,
)
from coafi.engine.registry import RegisteredVersion, RegisteredWorkflow, WorkflowRegistry
from coafi.engine.waits import ExecutionFinished, NotWaiting, SignalOutcome, TaskOutcome, TaskTokenNotActive, WaitError

__all__ = [
    "EngineError",
    "ExecutionFinished",
    "ExecutionNotRunning",
    "IdempotencyConflict",
    "InputTooLarge",
    "InvalidQuery",
    "NotWaiting",
    "RegisteredVersion",
    "RegisteredWorkflow",
    "SignalOutcome",
    "StartOptions",
    "StartResult",
    "TaskOutcome",
    "TaskTokenNotActive",
    "UnknownExecution",
    "VersionNotRegistered",
    "WaitError",
    "WatchUpdate",
    "WorkflowClient",
    "WorkflowNotRegistered",
    "WorkflowRegistry",
]
