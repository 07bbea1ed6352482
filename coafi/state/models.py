"""Typed views of what the state table holds (see docs/ARCHITECTURE.md, "DynamoDB state table")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StepStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "SKIPPED"]
WorkflowStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
WORKFLOW_STATUSES: tuple[WorkflowStatus, ...] = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
FINAL_STATUSES: frozenset[str] = frozenset(WORKFLOW_STATUSES) - {"RUNNING"}

#: Event types the runtime writes. The field is a plain string so that readers never reject events written by a
#: newer writer (the engine adds its own, e.g. signals).
EventType = Literal[
    "WORKFLOW_STARTED", "WORKFLOW_SUCCEEDED", "WORKFLOW_FAILED", "WORKFLOW_TIMED_OUT", "WORKFLOW_ABORTED",
    "STEP_STARTED", "STEP_SUCCEEDED", "STEP_FAILED", "STEP_SKIPPED",
    "STATE_UPDATED", "CHECKPOINT_CREATED",
]


class ErrorInfo(BaseModel):
    # defer_build (here and below): each model's validator is built on its first use, not at import. Every
    # function imports this module; most use few of these models or none (actions only write history): a few
    # ms of each cold start (BENCHMARKS.md).
    model_config = ConfigDict(extra="ignore", defer_build=True)

    type: str
    message: str = ""


class StepRecord(BaseModel):
    """The current state of one step, folded from its history events."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    executionId: str
    stepId: str
    stepName: str = ""
    stepType: str = "task"
    action: str = ""
    status: StepStatus
    startedAt: datetime | None = None
    endedAt: datetime | None = None
    durationMs: int | None = None
    attempts: int = 0
    output: Any = None
    error: ErrorInfo | None = None


class WorkflowState(BaseModel):
    """The design's WorkflowState: the execution record, plus what is derived from its history.

    ``version`` counts the writes of the record (1 after the first); every update is conditional on it.
    ``currentSteps`` (steps now RUNNING) and ``steps`` are derived from the step events when read
    (``get_state``, ``restore_from_checkpoint``) and never stored on the record.
    """

    model_config = ConfigDict(extra="ignore", defer_build=True)

    executionId: str = Field(min_length=1)
    workflowId: str = Field(min_length=1)
    workflowVersion: str = ""
    status: WorkflowStatus = "RUNNING"
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    currentSteps: list[str] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    startTime: datetime | None = None
    updateTime: datetime | None = None
    endTime: datetime | None = None
    version: int = Field(0, ge=0)
    expiresAt: int | None = Field(None, description="epoch seconds when DynamoDB's TTL may delete the record")
    steps: list[StepRecord] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def completed_outputs(self) -> dict[str, dict[str, Any]]:
        """``{stepId: {"output": ...}}`` of the steps that succeeded: the ``steps`` part of the state a
        restarted workflow resumes with (see "Checkpoints" in docs/ARCHITECTURE.md)."""
        return {s.stepId: {"output": s.output} for s in self.steps if s.status == "SUCCEEDED"}


#: The name the data-access layer used before the design's; same model.
ExecutionRecord = WorkflowState


class HistoryEvent(BaseModel):
    """One entry of an execution's append-only history."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    eventId: str = Field(description="unique and ordered within the execution: '<UTC time, µs>#<random>'")
    executionId: str
    type: str
    timestamp: datetime
    stepId: str | None = None
    stepName: str | None = None
    stepType: str | None = None
    action: str | None = None
    output: Any = None
    error: ErrorInfo | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ExecutionSummary(BaseModel):
    """What ``find_executions`` returns per execution (the attributes the indexes project)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    executionId: str
    workflowId: str
    workflowVersion: str = ""
    status: str
    startTime: datetime | None = None
    endTime: datetime | None = None


class ExecutionPage(BaseModel):
    model_config = ConfigDict(defer_build=True)

    executions: list[ExecutionSummary]
    next_token: str | None = Field(None, description="pass back to get the next page; None on the last page")


class CheckpointInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)

    checkpointId: str
    executionId: str
    createdAt: datetime
    version: int = Field(description="the execution record's version when the snapshot was taken")
