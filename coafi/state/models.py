"""Records kept in the state table (see docs/ARCHITECTURE.md for the keys)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

StepStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "SKIPPED"]
WorkflowStatus = Literal["RUNNING", "SUCCEEDED", "FAILED"]


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    message: str = ""


class StepRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

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


class ExecutionRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    executionId: str
    workflowId: str
    workflowVersion: str = ""
    status: WorkflowStatus
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    startTime: datetime | None = None
    endTime: datetime | None = None
    updateTime: datetime | None = None
