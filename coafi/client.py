"""The Python client of the workflow engine API (docs/engine-api.md)::

    from coafi.client import WorkflowClient

    client = WorkflowClient.from_stack()            # the deployed stack's outputs
    run = client.start_workflow("content-generation", {...}, idempotency_key="order-42")
    client.get_workflow_status(run.executionId).status
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

__all__ = [
    "EngineError",
    "ExecutionNotRunning",
    "IdempotencyConflict",
    "InputTooLarge",
    "InvalidQuery",
    "RegisteredVersion",
    "RegisteredWorkflow",
    "StartOptions",
    "StartResult",
    "UnknownExecution",
    "VersionNotRegistered",
    "WatchUpdate",
    "WorkflowClient",
    "WorkflowNotRegistered",
    "WorkflowRegistry",
]
