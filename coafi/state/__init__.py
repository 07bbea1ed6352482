"""Durable execution state in DynamoDB: the design's StateManager (see docs/ARCHITECTURE.md)."""

from coafi.state.errors import (
    CheckpointNotFound,
    ConcurrentUpdateError,
    ExecutionAlreadyExists,
    ExecutionNotFound,
    InvalidNextToken,
    InvalidStateUpdate,
    PayloadTooLarge,
    PayloadUnavailable,
    StateError,
)
from coafi.state.models import (
    CheckpointInfo,
    ErrorInfo,
    ExecutionPage,
    ExecutionRecord,
    ExecutionSummary,
    HistoryEvent,
    StepRecord,
    StepStatus,
    WorkflowState,
    WorkflowStatus,
)
from coafi.state.store import StateStore

#: The design's name for the state layer.
StateManager = StateStore

__all__ = [
    "CheckpointInfo",
    "CheckpointNotFound",
    "ConcurrentUpdateError",
    "ErrorInfo",
    "ExecutionAlreadyExists",
    "ExecutionNotFound",
    "ExecutionPage",
    "ExecutionRecord",
    "ExecutionSummary",
    "HistoryEvent",
    "InvalidNextToken",
    "InvalidStateUpdate",
    "PayloadTooLarge",
    "PayloadUnavailable",
    "StateError",
    "StateManager",
    "StateStore",
    "StepRecord",
    "StepStatus",
    "WorkflowState",
    "WorkflowStatus",
]
