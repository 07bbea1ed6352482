"""Durable execution state in DynamoDB."""

from coafi.state.models import ExecutionRecord, StepRecord, StepStatus, WorkflowStatus
from coafi.state.store import StateStore

__all__ = ["ExecutionRecord", "StateStore", "StepRecord", "StepStatus", "WorkflowStatus"]
