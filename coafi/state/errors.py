"""Errors of the state layer: each says what happened to which execution and what to do about it."""

from __future__ import annotations

from coafi.errors import CoafiError


class StateError(CoafiError):
    """Base of the state layer's errors."""


class ExecutionNotFound(StateError, LookupError):
    """No execution record with this id (never written, deleted, or expired by TTL)."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"no execution record for '{execution_id}' (never started, deleted or expired)")
        self.execution_id = execution_id


class ExecutionAlreadyExists(StateError):
    """``save_state`` of a new state (version 0) whose execution id is already recorded."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(
            f"execution '{execution_id}' is already recorded; to change it use update_state, or save_state "
            "with the version you read"
        )
        self.execution_id = execution_id


class ConcurrentUpdateError(StateError):
    """Someone else changed the execution record between our read and our conditional write.

    Raised at once when the caller pinned the version it expects (``expected_version=``, or ``save_state`` of a
    state it read), and after the bounded retries of a merge-able update. Nothing was overwritten.
    """

    def __init__(self, execution_id: str, expected: int, actual: int | None, *, attempts: int = 1) -> None:
        found = "the record is gone" if actual is None else f"it is at version {actual}"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(
            f"execution '{execution_id}' changed concurrently{tries}: expected version {expected}, {found}; "
            "read it again and re-apply the change"
        )
        self.execution_id = execution_id
        self.expected_version = expected
        self.actual_version = actual


class InvalidStateUpdate(StateError, ValueError):
    """An update the execution record cannot take (unknown field, derived field, leaving a final status)."""


class CheckpointNotFound(StateError, LookupError):
    def __init__(self, checkpoint_id: str) -> None:
        super().__init__(f"no checkpoint '{checkpoint_id}' (malformed id, deleted, or expired with its execution)")
        self.checkpoint_id = checkpoint_id


class PayloadTooLarge(StateError):
    """A payload does not fit in a DynamoDB item and no payload bucket is configured."""


class PayloadUnavailable(StateError):
    """A payload offloaded to S3 could not be read back (deleted, expired, or changed)."""


class InvalidNextToken(StateError, ValueError):
    """A ``next_token`` that this query did not produce."""
