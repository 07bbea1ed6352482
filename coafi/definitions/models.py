"""The workflow definition format (the original design's ``WorkflowDefinition``), as pydantic v2 models.

Field names are the design's (camelCase) so a definition written for it loads unchanged.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WORKFLOW_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
LAMBDA_ARN_PATTERN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9$_-]+)?$"
)
ACTION_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

#: Errors retried when a retryPolicy names no ``retryOn``: the transient ones.
TRANSIENT_ERRORS: tuple[str, ...] = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
    "States.Timeout",
    "TransientError",
    "ThrottlingException",
    "TimeoutError",
    "ConnectionError",
)

StepType = Literal["task", "wait", "decision", "subworkflow"]
KNOWN_STEP_TYPES: tuple[str, ...] = ("task", "wait", "decision", "subworkflow")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetryPolicy(_Model):
    """How a step is retried. ``maxAttempts`` counts every attempt, the first included."""

    maxAttempts: int = Field(3, ge=1, le=100, description="Total attempts including the first (1 = no retry).")
    intervalSeconds: int = Field(1, ge=1, le=99_999_999, description="Delay before the first retry.")
    backoffRate: float = Field(2.0, ge=1.0, le=100.0, description="Multiplier applied to the delay per retry.")
    maxDelaySeconds: int | None = Field(None, ge=1, le=31_622_400, description="Upper bound of any delay.")
    jitter: Literal["full", "none"] = Field("full", description="'full' randomises each delay (recommended).")
    retryOn: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="Error names to retry; default: the transient errors."
    )

    @model_validator(mode="after")
    def _check(self) -> RetryPolicy:
        if self.maxDelaySeconds is not None and self.maxDelaySeconds < self.intervalSeconds:
            raise ValueError(
                f"maxDelaySeconds ({self.maxDelaySeconds}) is smaller than intervalSeconds "
                f"({self.intervalSeconds}); raise maxDelaySeconds or lower intervalSeconds"
            )
        if self.retryOn is not None:
            if not self.retryOn:
                raise ValueError("retryOn is empty; omit it to retry the transient errors")
            if "States.ALL" in self.retryOn and len(self.retryOn) > 1:
                raise ValueError("retryOn: States.ALL matches every error and must stand alone")
        return self

    @property
    def error_names(self) -> list[str]:
        return list(self.retryOn) if self.retryOn else list(TRANSIENT_ERRORS)


ConditionOperator = Literal[
    "equal", "notEqual", "lessThan", "lessThanInclusive", "greaterThan", "greaterThanInclusive"
]


class FactCondition(_Model):
    """A built-in condition in json-rules-engine's shape: ``fact`` is ``input`` or ``steps``."""

    fact: Literal["input", "steps"]
    path: str = Field("$", pattern=r"^\$(\.[A-Za-z0-9_-]+|\[\d+\])*$")
    operator: ConditionOperator
    value: str | bool | int | float | None

    @model_validator(mode="after")
    def _numeric(self) -> FactCondition:
        numeric = self.operator not in ("equal", "notEqual")
        if numeric and (isinstance(self.value, bool) or not isinstance(self.value, int | float)):
            raise ValueError(f"operator {self.operator} compares numbers; value must be a number")
        return self


class AllCondition(_Model):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Model):
    any: list[Condition] = Field(min_length=1)


class NotCondition(_Model):
    not_: Condition = Field(alias="not")


Condition = FactCondition | AllCondition | AnyCondition | NotCondition


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class DecisionChoice(_Model):
    condition: Condition
    next: list[str] = Field(min_length=1, description="Step ids started when the condition holds.")

    _coerce = field_validator("next", mode="before")(_as_list)


class DecisionParameters(_Model):
    choices: list[DecisionChoice] = Field(min_length=1)
    default: list[str] = Field(default_factory=list, description="Step ids started when no choice matches.")

    _coerce = field_validator("default", mode="before")(_as_list)


class WaitParameters(_Model):
    seconds: int | str | None = Field(None, description="Seconds to wait, or a JSONPath ($.input.x) to read them.")
    until: str | None = Field(None, description="ISO-8601 timestamp with zone, or a JSONPath to read one.")

    @model_validator(mode="after")
    def _one(self) -> WaitParameters:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("a wait step needs exactly one of parameters.seconds or parameters.until")
        if isinstance(self.seconds, int) and not 0 <= self.seconds <= 31_536_000:
            raise ValueError("parameters.seconds must be between 0 and 31536000 (one year)")
        if isinstance(self.seconds, str) and not self.seconds.startswith("$."):
            raise ValueError("parameters.seconds must be a whole number or a JSONPath starting with '$.'")
        if self.until is not None and not self.until.startswith("$."):
            try:
                parsed = datetime.fromisoformat(self.until.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(
                    f"parameters.until {self.until!r} is not an ISO-8601 timestamp (e.g. 2026-12-01T09:00:00Z)"
                ) from None
            if parsed.tzinfo is None:
                raise ValueError("parameters.until needs a time zone, e.g. 2026-12-01T09:00:00Z")
        return self


class WorkflowStep(_Model):
    id: str = Field(pattern=STEP_ID_PATTERN, description="Unique step id; names the state in Step Functions.")
    name: str = Field("", max_length=200)
    type: StepType = "task"
    action: str = Field("", description="Action folder name, Lambda ARN, or (subworkflow) a workflow id.")
    parameters: dict[str, Any] = Field(default_factory=dict)
    dependencies: list[str] = Field(default_factory=list)
    retryPolicy: RetryPolicy | None = None
    timeoutSeconds: int | None = Field(None, ge=1, le=99_999_999)

    _coerce = field_validator("dependencies", mode="before")(_as_list)

    @model_validator(mode="after")
    def _by_type(self) -> WorkflowStep:
        if not self.name:
            self.name = self.id
        if self.type in ("task", "subworkflow") and not self.action:
            raise ValueError(f"a {self.type} step needs an action")
        if self.type == "task" and not (
            LAMBDA_ARN_PATTERN.match(self.action) or ACTION_NAME_PATTERN.match(self.action)
        ):
            raise ValueError(
                f"action {self.action!r} is neither an action name (functions/actions/<name>) nor a Lambda ARN"
            )
        if self.type == "subworkflow" and not re.match(WORKFLOW_ID_PATTERN, self.action):
            raise ValueError(f"a subworkflow step's action must be a workflow id, got {self.action!r}")
        if self.type in ("wait", "decision") and self.action:
            raise ValueError(f"a {self.type} step takes no action")
        if self.type == "wait":
            WaitParameters.model_validate(self.parameters)
        if self.type == "decision":
            DecisionParameters.model_validate(self.parameters)
        if self.type in ("wait", "decision") and self.retryPolicy is not None:
            raise ValueError(f"a {self.type} step cannot have a retryPolicy")
        return self

    @property
    def is_external(self) -> bool:
        return self.type == "task" and bool(LAMBDA_ARN_PATTERN.match(self.action))

    @property
    def wait(self) -> WaitParameters:
        return WaitParameters.model_validate(self.parameters)

    @property
    def decision(self) -> DecisionParameters:
        return DecisionParameters.model_validate(self.parameters)


class EventTrigger(_Model):
    type: Literal["event"]
    source: list[str] | None = None
    detailType: list[str] | None = None
    detail: dict[str, Any] | None = None

    _coerce = field_validator("source", "detailType", mode="before")(_as_list)

    @model_validator(mode="after")
    def _some_pattern(self) -> EventTrigger:
        if not (self.source or self.detailType or self.detail):
            raise ValueError("an event trigger needs at least one of source, detailType or detail")
        return self


_RATE = re.compile(r"^(?:rate\()?\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)?$")


class ScheduleTrigger(_Model):
    type: Literal["schedule"]
    cron: str | None = None
    rate: str | None = None
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _one(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.rate is None):
            raise ValueError("a schedule trigger needs exactly one of cron or rate")
        if self.cron is not None:
            fields = self.cron_fields
            if len(fields) != 6:
                raise ValueError(
                    f"cron {self.cron!r} has {len(fields)} fields; EventBridge cron has 6: "
                    "minutes hours day-of-month month day-of-week year, e.g. '0 9 * * ? *'"
                )
            if "?" not in (fields[2], fields[4]):
                raise ValueError(f"cron {self.cron!r}: one of day-of-month or day-of-week must be '?'")
        if self.rate is not None:
            m = _RATE.match(self.rate.strip())
            if not m:
                raise ValueError(f"rate {self.rate!r} is not like '5 minutes', '1 hour' or '2 days'")
            if int(m.group(1)) < 1:
                raise ValueError("rate must be at least 1")
            if (int(m.group(1)) == 1) != (not m.group(2).endswith("s")):
                raise ValueError(f"rate {self.rate!r}: use the singular unit for 1 and the plural otherwise")
        return self

    @property
    def cron_fields(self) -> list[str]:
        text = (self.cron or "").strip()
        if text.startswith("cron(") and text.endswith(")"):
            text = text[5:-1]
        return text.split()

    @property
    def expression(self) -> str:
        if self.cron is not None:
            return f"cron({' '.join(self.cron_fields)})"
        m = _RATE.match((self.rate or "").strip())
        assert m is not None
        return f"rate({m.group(1)} {m.group(2)})"


class ManualTrigger(_Model):
    type: Literal["manual"]


Trigger = Annotated[EventTrigger | ScheduleTrigger | ManualTrigger, Field(discriminator="type")]


class WorkflowDefinition(_Model):
    """A workflow: steps with dependencies, the triggers that start it, the policies that govern it."""

    id: str = Field(pattern=WORKFLOW_ID_PATTERN, description="Lowercase letters, digits and dashes.")
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)
    description: str | None = None
    steps: list[WorkflowStep] = Field(min_length=1)
    triggers: list[Trigger] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list)
    logLevel: Literal["ALL", "ERROR", "FATAL", "OFF"] = "ERROR"

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"version must be a string; quote it: version: \"{value}\"")
        return value

    def step(self, step_id: str) -> WorkflowStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
