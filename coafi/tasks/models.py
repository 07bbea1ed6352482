"""What a task is, the record kept of it, the queue message that carries it, and workers.

A task runs one thing once, later or on a cron: an action (``type`` = the action's name, e.g.
``generate-content``) or a workflow (``type`` = ``workflow:<workflow id>``). ``payload`` is what it runs with.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from coafi.state.models import ErrorInfo

#: SQS ``DelaySeconds`` goes up to 15 minutes; longer delays become one-time Scheduler ``at()`` schedules.
MAX_QUEUE_DELAY_SECONDS = 900
WORKFLOW_PREFIX = "workflow:"
#: Usable as an EventBridge Scheduler schedule name (``task-<id>``, 64 characters at most) and as a Step
#: Functions execution name (with a cron occurrence appended, 80 at most).
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,58}$"
#: An action name (a folder under functions/actions/) or ``workflow:<workflow id>``; also any name a registered
#: worker declares as a capability.
TASK_TYPE_PATTERN = r"^(workflow:[a-z0-9][a-z0-9-]*|[A-Za-z0-9][A-Za-z0-9_.-]*)$"
#: A worker's capabilities may use ``*`` and ``?`` (fnmatch) on top of the task type characters.
CAPABILITY_PATTERN = r"^[A-Za-z0-9_.:*?-]+$"
MESSAGE_KIND = "coafi.task"


def new_task_id() -> str:
    return uuid.uuid4().hex


class TaskStatus(StrEnum):
    """Where a task is. One-time tasks go SCHEDULED (due now) or DELAYED (due later) -> DISPATCHED (claimed by
    the dispatcher; an action runs while the task is DISPATCHED) -> SUCCEEDED / FAILED, or RUNNING (a workflow
    started) -> SUCCEEDED / FAILED. CANCELLED only from SCHEDULED or DELAYED. A cron task stays SCHEDULED until
    cancelled; each run is recorded in ``lastRun*``."""

    SCHEDULED = "SCHEDULED"
    DELAYED = "DELAYED"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


PENDING_STATUSES = frozenset({TaskStatus.SCHEDULED, TaskStatus.DELAYED})
FINAL_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class Route(StrEnum):
    """How a task reaches the queue; chosen by the scheduler, invisible to the caller."""

    QUEUE = "queue"  # sent now, with SQS DelaySeconds <= 900
    AT = "at"  # a one-time EventBridge Scheduler at() schedule that deletes itself after running
    CRON = "cron"  # a recurring Scheduler schedule (cron() or rate())


class Task(BaseModel):
    """The design's Task: ``id`` (generated when absent), ``type``, ``payload``, ``priority``, ``metadata``.

    ``priority``: higher runs first among the tasks a dispatcher holds at once (one SQS batch, or one
    ``dispatch_tasks`` call); SQS itself has no priorities."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=new_task_id, pattern=TASK_ID_PATTERN)
    type: str = Field(pattern=TASK_TYPE_PATTERN, max_length=128)
    payload: Any = Field(default_factory=dict)
    priority: int = Field(0, ge=-1000, le=1000)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def workflow_id(self) -> str | None:
        """The workflow a ``workflow:<id>`` task starts, else None."""
        return self.type.removeprefix(WORKFLOW_PREFIX) if self.type.startswith(WORKFLOW_PREFIX) else None


#: A task's error has the shape of a step's error (``{"type", "message"}``).
TaskErrorInfo = ErrorInfo


class TaskRecord(BaseModel):
    """What ``get_task_status`` returns: the task and where it is (item ``TASK#<id>`` / ``TASK``)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: str
    payload: Any = None
    priority: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: TaskStatus
    route: Route
    runAt: datetime | None = Field(None, description="when a one-time task is due")
    cron: str | None = Field(None, description="the schedule expression of a cron task")
    timezone: str | None = None
    scheduleName: str | None = Field(None, description="the Scheduler schedule (at() and cron tasks)")
    createdAt: datetime
    updatedAt: datetime
    dispatchedAt: datetime | None = None
    endedAt: datetime | None = None
    attempts: int = Field(0, description="times the dispatcher claimed it (more than 1 after a crash)")
    target: str | None = Field(None, description="what ran it: an action name or workflow:<id>")
    worker: str | None = Field(None, description="the registered worker it was routed through, if any")
    executionArn: str | None = None
    output: Any = None
    error: TaskErrorInfo | None = None
    runCount: int = Field(0, description="cron: occurrences dispatched")
    lastOccurrence: str | None = None
    lastRunAt: datetime | None = None
    lastRunStatus: TaskStatus | None = None

    @property
    def task(self) -> Task:
        return Task(id=self.id, type=self.type, payload=self.payload, priority=self.priority,
                    metadata=self.metadata)


class TaskMessage(BaseModel):
    """Body of a task queue message (the contract between scheduler, Scheduler schedules and dispatcher).

    Messages sent to the queue carry the whole ``task`` (the dispatcher can run it even without a record, e.g.
    when a workflow step sends it straight to SQS); schedules carry only ``taskId`` (their record outlives them).
    ``occurrence``: a cron schedule's ``<aws.scheduler.scheduled-time>``, one run per occurrence."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal["coafi.task"]
    version: Literal[1] = 1
    taskId: str = Field(pattern=TASK_ID_PATTERN)
    task: Task | None = None
    occurrence: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _same_task(self) -> TaskMessage:
        if self.task is not None and self.task.id != self.taskId:
            raise ValueError(f"taskId {self.taskId!r} is not the id of the task it carries ({self.task.id!r})")
        return self


def task_message(task_id: str, task: Task | None = None, occurrence: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": MESSAGE_KIND, "version": 1, "taskId": task_id}
    if task is not None:
        body["task"] = task.model_dump(mode="json")
    if occurrence is not None:
        body["occurrence"] = occurrence
    return body


class Worker(BaseModel):
    """A registered worker: the task types (``capabilities``, fnmatch patterns) it runs and the ``target`` that
    runs them (an action name or ``workflow:<id>``; by default the worker id itself)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    capabilities: list[str] = Field(min_length=1)
    target: str = Field(pattern=TASK_TYPE_PATTERN, max_length=128)
    status: Literal["ACTIVE"] = "ACTIVE"
    registeredAt: datetime | None = None
    updatedAt: datetime | None = None
    dispatched: int = 0
    succeeded: int = 0
    failed: int = 0
    lastTaskId: str | None = None
    lastTaskAt: datetime | None = None

    @field_validator("capabilities")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if not re.match(CAPABILITY_PATTERN, c)]
        if bad:
            raise ValueError(f"capabilities {bad} are not task types or fnmatch patterns of them")
        return sorted(dict.fromkeys(value))

    def match(self, task_type: str) -> int | None:
        """How well this worker matches ``task_type``: 0 exact, 1 by pattern, None not at all."""
        if task_type in self.capabilities:
            return 0
        if any(fnmatch.fnmatchcase(task_type, c) for c in self.capabilities if any(ch in c for ch in "*?[")):
            return 1
        return None


DispatchOutcome = Literal["succeeded", "failed", "started", "dropped"]


class DispatchResult(BaseModel):
    """What dispatching one task did. ``dropped``: not run, ``reason`` says why (cancelled, already run...)."""

    taskId: str
    outcome: DispatchOutcome
    reason: str | None = None
    target: str | None = None
    worker: str | None = None
    executionArn: str | None = None
    occurrence: str | None = None
    error: TaskErrorInfo | None = None
