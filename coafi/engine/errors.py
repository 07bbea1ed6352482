"""Errors of the engine API: each names the workflow, version, execution or field at fault and what to do."""

from __future__ import annotations

from coafi.errors import CoafiError


class EngineError(CoafiError):
    """Base of the engine API's errors. ``field``: the offending input field, when one is at fault."""

    field: str | None = None


class WorkflowNotRegistered(EngineError, LookupError):
    """No registered workflow with this id (never deployed, or unregistered)."""

    field = "workflowId"

    def __init__(self, workflow_id: str, registered: list[str]) -> None:
        known = ", ".join(sorted(registered)) or "none"
        super().__init__(
            f"workflow '{workflow_id}' is not registered (registered: {known}); deploy it (coafi deploy) or "
            "register it (coafi workflows register)"
        )
        self.workflow_id = workflow_id


class VersionNotRegistered(EngineError, LookupError):
    """The workflow is registered but not in this version, or has no live version."""

    field = "version"

    def __init__(self, workflow_id: str, version: str | None, registered: list[str]) -> None:
        known = ", ".join(registered) or "none"
        if version is None:
            message = f"workflow '{workflow_id}' has no live version (registered versions: {known}); name one"
        else:
            message = f"workflow '{workflow_id}' has no registered version '{version}' (registered: {known})"
        super().__init__(message)
        self.workflow_id = workflow_id
        self.version = version


class IdempotencyConflict(EngineError):
    """An idempotency key reused with a different input (or version): never a second execution."""

    field = "idempotencyKey"

    def __init__(self, workflow_id: str, key: str, execution: str, what: str) -> None:
        super().__init__(
            f"idempotency key '{key}' of workflow '{workflow_id}' already started {execution} with a different "
            f"{what}; use a new key for a new execution"
        )
        self.workflow_id = workflow_id
        self.key = key
        self.execution = execution


class ExecutionNotRunning(EngineError):
    """Terminate of an execution that has already ended."""

    field = "executionId"

    def __init__(self, execution_id: str, status: str) -> None:
        super().__init__(f"execution '{execution_id}' has already ended ({status}); there is nothing to terminate")
        self.execution_id = execution_id
        self.status = status


class UnknownExecution(EngineError, LookupError):
    """Neither Step Functions nor the state table knows this execution."""

    field = "executionId"

    def __init__(self, execution_id: str) -> None:
        super().__init__(
            f"no execution '{execution_id}' (pass the execution ARN that start printed; finished executions "
            "expire after the retention period)"
        )
        self.execution_id = execution_id


class InvalidQuery(EngineError, ValueError):
    """A query name ``queryWorkflow`` cannot answer."""

    field = "name"


class InputTooLarge(EngineError, ValueError):
    """A workflow input larger than Step Functions accepts."""

    field = "input"
