"""What a definition may say about compensation and scheduling, checked when a step is validated.

- ``compensate: <action>`` on a task or sub-workflow step: the action that undoes it (an action folder name;
  functions/actions/<name>/handler.py). Wait, decision and schedule steps have nothing to undo.
- ``type: schedule``: ``parameters`` are :class:`ScheduleParameters` - run an action or start a workflow
  (``task``) now, after ``delaySeconds`` or on a ``cron``, through the app's TaskScheduler; the step records
  the task and the workflow goes on at once.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from coafi.tasks.models import TASK_TYPE_PATTERN, WORKFLOW_PREFIX

if TYPE_CHECKING:
    from coafi.definitions.models import WorkflowStep

ACTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: A schedule step's delay goes up to one year (Scheduler at() beyond 15 minutes).
MAX_DELAY_SECONDS = 31_536_000
COMPENSABLE_TYPES = ("task", "subworkflow")


class ScheduleParameters(BaseModel):
    """``parameters`` of a ``type: schedule`` step.

    ``payload`` is what the task runs with; default: the workflow input. Keys ending in ``.$`` are JSONPaths
    Step Functions resolves when the step runs (``{"topic.$": "$.input.topic"}``)."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(pattern=TASK_TYPE_PATTERN, max_length=128,
                      description="An action name (functions/actions/<name>) or workflow:<workflow id>.")
    payload: Any = None
    delaySeconds: int | None = Field(None, ge=0, le=MAX_DELAY_SECONDS,
                                     description="Run once this many seconds after the step (default: now).")
    cron: str | None = Field(None, min_length=1, description="Run on every occurrence: cron(...), six cron "
                             "fields or rate(...), until the task is cancelled.")
    timezone: str = Field("UTC", description="cron: IANA time zone of the expression.")
    windowMinutes: int = Field(5, ge=0, le=1440, description="cron: Scheduler's flexible window (0 = off).")
    priority: int = Field(0, ge=-1000, le=1000)

    @field_validator("delaySeconds", mode="before")
    @classmethod
    def _whole_seconds(cls, value: Any) -> Any:
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            raise ValueError(f"delaySeconds must be a whole number of seconds, got {value!r}")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        from coafi.tasks.scheduler import normalize_expression

        try:
            return normalize_expression(value, str(info.data.get("timezone") or "UTC"))
        except ValueError as exc:
            raise ValueError(f"cron {value!r}: {exc}") from None

    @model_validator(mode="after")
    def _when(self) -> ScheduleParameters:
        if self.delaySeconds is not None and self.cron is not None:
            raise ValueError("a schedule step takes delaySeconds (once, later) or cron (repeatedly), not both")
        if self.cron is None and (self.timezone != "UTC" or self.windowMinutes != 5):
            raise ValueError("timezone and windowMinutes apply to cron schedules only")
        return self

    @property
    def workflow_id(self) -> str | None:
        return self.task.removeprefix(WORKFLOW_PREFIX) if self.task.startswith(WORKFLOW_PREFIX) else None


def check_step(step: WorkflowStep) -> None:
    """The ``compensate`` field and a schedule step's parameters (errors located at the field)."""
    from coafi.definitions.models import _error_at, _validate_at

    if step.compensate is not None:
        if step.type not in COMPENSABLE_TYPES:
            raise _error_at("compensate", f"a {step.type} step has nothing to compensate; compensate is for "
                            "task and subworkflow steps", step.compensate)
        if not ACTION_NAME.match(step.compensate):
            raise _error_at("compensate", f"compensate {step.compensate!r} is not an action name "
                            "(functions/actions/<name>, lowercase letters, digits, - and _)", step.compensate)
    if step.type == "schedule":
        if step.action:
            raise _error_at("action", "a schedule step names what it runs in parameters.task (an action name "
                            "or workflow:<id>), not in action", step.action)
        _validate_at("parameters", ScheduleParameters, step.parameters)


def schedule_parameters(step: WorkflowStep) -> ScheduleParameters:
    return ScheduleParameters.model_validate(step.parameters)


def unknown_action_problems(steps: list[Any], actions: set[str]) -> list[tuple[int, str, str, str | None]]:
    """``(index, field path, message, step id)`` for compensations and scheduled actions with no handler."""
    import difflib

    problems: list[tuple[int, str, str, str | None]] = []
    for i, raw in enumerate(steps):
        if not isinstance(raw, dict):
            continue
        sid = raw.get("id") if isinstance(raw.get("id"), str) else None
        named: list[tuple[str, Any]] = [("compensate", raw.get("compensate"))]
        parameters = raw.get("parameters")
        if raw.get("type") == "schedule" and isinstance(parameters, dict):
            named.append(("parameters.task", parameters.get("task")))
        for path, action in named:
            if not isinstance(action, str) or not ACTION_NAME.match(action) or action in actions:
                continue
            hint = difflib.get_close_matches(action, sorted(actions), n=1)
            problems.append((i, path, f"unknown action '{action}': no functions/actions/{action}/handler.py"
                             + (f"; did you mean '{hint[0]}'?" if hint else ""), sid))
    return problems
