"""The workflow definition format (the original design's ``WorkflowDefinition``), as pydantic v2 models.

Field names are the design's (camelCase) so a definition written for it loads unchanged.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from coafi.definitions.waits import CallbackParameters, SignalParameters, check_wait_step
from coafi.resilience.policies import PolicyRef

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

StepType = Literal["task", "wait", "decision", "subworkflow", "callback", "signal", "schedule", "rules"]
KNOWN_STEP_TYPES: tuple[str, ...] = (
    "task", "wait", "decision", "subworkflow", "callback", "signal", "schedule", "rules",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


_M = TypeVar("_M", bound=BaseModel)


def _error_at(field: str, message: str, value: Any) -> ValidationError:
    """An error located at ``field`` of the model being validated (a model validator's own errors are
    otherwise located at the whole model, and the user is not told which field to change)."""
    details = InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(field,), input=value)
    return ValidationError.from_exception_data("WorkflowStep", [details])


def _validate_at(field: str, model: type[_M], value: Any) -> _M:
    """``model.model_validate(value)``, with the errors located under ``field``."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        details = [
            InitErrorDetails(type=PydanticCustomError(e["type"], e["msg"]), loc=(field, *e["loc"]),
                             input=e["input"])
            for e in exc.errors()
        ]
        raise ValidationError.from_exception_data(exc.title, details) from None


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

    @field_validator("maxDelaySeconds")
    @classmethod
    def _not_below_interval(cls, value: int | None, info: ValidationInfo) -> int | None:
        interval = info.data.get("intervalSeconds")
        if value is not None and interval is not None and value < interval:
            raise ValueError(
                f"maxDelaySeconds ({value}) is smaller than intervalSeconds "
                f"({interval}); raise maxDelaySeconds or lower intervalSeconds"
            )
        return value

    @field_validator("retryOn")
    @classmethod
    def _retry_on(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("retryOn is empty; omit it to retry the transient errors")
            if "States.ALL" in value and len(value) > 1:
                raise ValueError("retryOn: States.ALL matches every error and must stand alone")
        return value

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

    @field_validator("value")
    @classmethod
    def _numeric(cls, value: str | bool | int | float | None, info: ValidationInfo) -> Any:
        operator = info.data.get("operator")
        numeric = operator is not None and operator not in ("equal", "notEqual")
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"operator {operator} compares numbers; value must be a number")
        return value


class AllCondition(_Model):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Model):
    any: list[Condition] = Field(min_length=1)


class NotCondition(_Model):
    not_: Condition = Field(alias="not")


def _condition_kind(value: Any) -> str | None:
    """Which condition a value is, so a wrong condition is reported against that kind only (not against
    each member of the union). The tags are not field names: they never show in a problem's path."""
    if isinstance(value, dict):
        for key in ("all", "any", "not"):
            if key in value:
                return f"{key}-condition"
        return "fact-condition"
    kinds: dict[type[Any], str] = {
        FactCondition: "fact", AllCondition: "all", AnyCondition: "any", NotCondition: "not"
    }
    kind = kinds.get(type(value))
    return f"{kind}-condition" if kind else None


Condition = Annotated[
    Annotated[FactCondition, Tag("fact-condition")]
    | Annotated[AllCondition, Tag("all-condition")]
    | Annotated[AnyCondition, Tag("any-condition")]
    | Annotated[NotCondition, Tag("not-condition")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition is {fact, path, operator, value}, {all: [...]}, {any: [...]} "
        "or {not: ...}",
    ),
]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class DecisionChoice(_Model):
    condition: Condition | None = None
    rule: str | dict[str, Any] | None = Field(
        None, description="A registry rule id (statemachines/rules/) or an inline json-rules-engine rule, evaluated "
        "by the rules function against the facts input and steps (coafi/rules/README.md); instead of condition."
    )
    next: list[str] = Field(min_length=1, description="Step ids started when the condition holds.")

    _coerce = field_validator("next", mode="before")(_as_list)

    @field_validator("rule")
    @classmethod
    def _rule(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        from coafi.rules.decisions import check_choice_rule

        return check_choice_rule(value)

    @model_validator(mode="after")
    def _condition_or_rule(self) -> DecisionChoice:
        if (self.condition is None) == (self.rule is None):
            raise ValueError("a choice needs exactly one of condition (native) or rule (a rule id or inline rule)")
        return self


class DecisionParameters(_Model):
    choices: list[DecisionChoice] = Field(min_length=1)
    default: list[str] = Field(default_factory=list, description="Step ids started when no choice matches.")

    _coerce = field_validator("default", mode="before")(_as_list)


class RulesParameters(_Model):
    """A rules step: evaluates registry rules (by id, or every enabled rule of a category) and inline rules
    against the facts input and steps; its output is the rules function's result (coafi/rules/README.md)."""

    rules: list[str | dict[str, Any]] = Field(
        default_factory=list, description="Registry rule ids and inline json-rules-engine rules, evaluated in order."
    )
    category: str | None = Field(None, min_length=1, description="Also every enabled registry rule of this category.")

    @field_validator("rules")
    @classmethod
    def _rules(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        from coafi.rules.decisions import check_choice_rule

        for i, rule in enumerate(value):
            try:
                check_choice_rule(rule)
            except ValueError as exc:
                raise ValueError(f"rules[{i}]: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something(self) -> RulesParameters:
        if not self.rules and self.category is None:
            raise ValueError("a rules step needs parameters.rules (rule ids or inline rules) or parameters.category")
        return self


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<zone>Z|[+-]\d{2}:\d{2})?$")


class WaitParameters(_Model):
    seconds: int | str | None = Field(None, description="Seconds to wait, or a JSONPath ($.input.x) to read them.")
    until: str | None = Field(None, description="ISO-8601 timestamp with zone, or a JSONPath to read one.")

    @field_validator("seconds", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"seconds must be a whole number or a JSONPath starting with '$.', got {value}")
        return value

    @field_validator("seconds")
    @classmethod
    def _seconds(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 0 <= value <= 31_536_000:
            raise ValueError(f"seconds must be between 0 and 31536000 (one year), got {value}")
        if isinstance(value, str) and not value.startswith("$."):
            raise ValueError(f"seconds must be a whole number or a JSONPath starting with '$.', got {value!r}")
        return value

    @field_validator("until")
    @classmethod
    def _until(cls, value: str | None) -> str | None:
        if value is None or value.startswith("$."):
            return value
        # Step Functions takes RFC 3339 only (Python's fromisoformat also takes '2026-12-01 09:00',
        # '20261201T0900Z', '+0200'...: such a definition would fail at deploy time).
        match = _RFC3339.match(value)
        if match is None:
            raise ValueError(
                f"until {value!r} is not an ISO-8601 timestamp like 2026-12-01T09:00:00Z or 2026-12-01T09:00:00+02:00"
            )
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"until {value!r} is not a valid date and time") from None
        if match.group("zone") is None:
            raise ValueError(f"until {value!r} needs a time zone, e.g. 2026-12-01T09:00:00Z")
        return value

    @model_validator(mode="after")
    def _one(self) -> WaitParameters:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("a wait step needs exactly one of parameters.seconds or parameters.until")
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
    compensate: str | None = Field(
        None, description="Action (functions/actions/<name>) that undoes this step when the workflow fails later "
        "(saga): compensations of the completed steps run in reverse completion order (docs/saga-and-dlq.md)."
    )

    _coerce = field_validator("dependencies", mode="before")(_as_list)

    @model_validator(mode="after")
    def _by_type(self) -> WorkflowStep:
        if not self.name:
            self.name = self.id
        if self.type in ("task", "subworkflow") and not self.action:
            raise _error_at("action", f"a {self.type} step needs an action", self.action)
        if self.type == "task" and not (
            LAMBDA_ARN_PATTERN.match(self.action) or ACTION_NAME_PATTERN.match(self.action)
        ):
            raise _error_at(
                "action",
                f"action {self.action!r} is neither an action name (functions/actions/<name>) nor a Lambda ARN",
                self.action,
            )
        if self.type == "subworkflow" and not re.match(WORKFLOW_ID_PATTERN, self.action):
            raise _error_at(
                "action", f"a subworkflow step's action must be a workflow id, got {self.action!r}", self.action
            )
        if self.type in ("wait", "decision") and self.action:
            raise _error_at("action", f"a {self.type} step takes no action", self.action)
        if self.type == "rules" and self.action:
            raise _error_at("action", "a rules step takes no action (the rules function runs it)", self.action)
        if self.type == "rules":
            _validate_at("parameters", RulesParameters, self.parameters)
        if self.type == "wait":
            _validate_at("parameters", WaitParameters, self.parameters)
        if self.type == "decision":
            _validate_at("parameters", DecisionParameters, self.parameters)
        if self.type in ("wait", "decision") and self.retryPolicy is not None:
            raise _error_at("retryPolicy", f"a {self.type} step cannot have a retryPolicy", None)
        if self.type in ("wait", "decision") and self.timeoutSeconds is not None:
            raise _error_at("timeoutSeconds", f"a {self.type} step cannot have a timeoutSeconds", self.timeoutSeconds)
        if self.type in ("callback", "signal"):  # waits for completeTask / signalWorkflow (docs/waits.md)
            check_wait_step(self, _error_at, _validate_at)
        return self

    @model_validator(mode="after")
    def _saga_and_schedule(self) -> WorkflowStep:
        from coafi.saga.definitions import check_step

        check_step(self)
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

    @property
    def callback(self) -> CallbackParameters:
        return CallbackParameters.model_validate(self.parameters)

    @property
    def signal(self) -> SignalParameters:
        return SignalParameters.model_validate(self.parameters)

    @property
    def rules(self) -> RulesParameters:
        return RulesParameters.model_validate(self.parameters)


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


def _cron_fields(cron: str) -> list[str]:
    text = cron.strip()
    if text.startswith("cron(") and text.endswith(")"):
        text = text[5:-1]
    return text.split()


class ScheduleTrigger(_Model):
    type: Literal["schedule"]
    cron: str | None = None
    rate: str | None = None
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            fields = _cron_fields(value)
            if len(fields) != 6:
                raise ValueError(
                    f"cron {value!r} has {len(fields)} fields; EventBridge cron has 6: "
                    "minutes hours day-of-month month day-of-week year, e.g. '0 9 * * ? *'"
                )
            if "?" not in (fields[2], fields[4]):
                raise ValueError(f"cron {value!r}: one of day-of-month or day-of-week must be '?'")
        return value

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            m = _RATE.match(value.strip())
            if not m:
                raise ValueError(f"rate {value!r} is not like '5 minutes', '1 hour' or '2 days'")
            if int(m.group(1)) < 1:
                raise ValueError("rate must be at least 1")
            if (int(m.group(1)) == 1) != (not m.group(2).endswith("s")):
                raise ValueError(f"rate {value!r}: use the singular unit for 1 and the plural otherwise")
        return value

    @model_validator(mode="after")
    def _one(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.rate is None):
            raise ValueError("a schedule trigger needs exactly one of cron or rate")
        return self

    @property
    def cron_fields(self) -> list[str]:
        return _cron_fields(self.cron or "")

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


#: CloudWatch evaluates an alarm over at most one day (evaluationPeriods x periodMinutes).
MAX_ALARM_WINDOW_MINUTES = 1440
MAX_ALARM_THRESHOLD = 1_000_000
_ALARM_THRESHOLDS = (
    "failedExecutions", "timedOutExecutions", "throttledExecutions", "functionErrors", "functionThrottles"
)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class AlarmSettings(_Model):
    """Alarm thresholds of one workflow (``alarms:`` in its definition; these defaults when absent).

    Each threshold is a count over one period: the alarm goes off when the metric's sum in a period reaches
    it, for ``datapointsToAlarm`` of the last ``evaluationPeriods`` periods. ``null`` turns that alarm off.
    Lambda thresholds apply to the functions the workflow invokes; a function several workflows share gets
    the strictest of their settings.
    """

    enabled: bool = Field(True, description="false: no alarms for this workflow (its dashboard row stays).")
    periodMinutes: int = Field(5, description="Length of one evaluation period, in minutes (1 to 1440).")
    evaluationPeriods: int = Field(1, description="How many recent periods the alarm looks at.")
    datapointsToAlarm: int | None = Field(
        None, description="Breaching periods (of evaluationPeriods) that raise the alarm; default: all of them."
    )
    failedExecutions: int | None = Field(1, description="Executions failed (AWS/States ExecutionsFailed).")
    timedOutExecutions: int | None = Field(1, description="Executions timed out (ExecutionsTimedOut).")
    throttledExecutions: int | None = Field(1, description="Throttled starts (ExecutionThrottled).")
    functionErrors: int | None = Field(1, description="Errors of each function the workflow invokes.")
    functionThrottles: int | None = Field(1, description="Throttles of each function the workflow invokes.")

    @field_validator("enabled", mode="before")
    @classmethod
    def _enabled(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"enabled is true or false, got {value!r}")
        return value

    @field_validator("periodMinutes", "evaluationPeriods", mode="before")
    @classmethod
    def _minutes(cls, value: Any, info: ValidationInfo) -> Any:
        if not _whole(value) or not 1 <= value <= MAX_ALARM_WINDOW_MINUTES:
            unit = "minutes" if info.field_name == "periodMinutes" else "periods"
            raise ValueError(
                f"{info.field_name} must be a whole number of {unit} from 1 to {MAX_ALARM_WINDOW_MINUTES}, "
                f"got {value!r}"
            )
        return value

    @field_validator("datapointsToAlarm", mode="before")
    @classmethod
    def _datapoints(cls, value: Any) -> Any:
        if value is not None and (not _whole(value) or value < 1):
            raise ValueError(f"datapointsToAlarm must be a whole number of at least 1, got {value!r}")
        return value

    @field_validator(*_ALARM_THRESHOLDS, mode="before")
    @classmethod
    def _threshold(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and (not _whole(value) or not 1 <= value <= MAX_ALARM_THRESHOLD):
            raise ValueError(
                f"{info.field_name} is a count from 1 to {MAX_ALARM_THRESHOLD:,} (the alarm goes off when a "
                f"period reaches it), or null to turn this alarm off; got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _window(self) -> AlarmSettings:
        window = self.periodMinutes * self.evaluationPeriods
        if window > MAX_ALARM_WINDOW_MINUTES:
            raise _error_at(
                "evaluationPeriods",
                f"evaluationPeriods x periodMinutes is {self.evaluationPeriods} x {self.periodMinutes} = {window} "
                f"minutes; CloudWatch alarms look back at most {MAX_ALARM_WINDOW_MINUTES} minutes (one day)",
                self.evaluationPeriods,
            )
        if self.datapointsToAlarm is not None and self.datapointsToAlarm > self.evaluationPeriods:
            raise _error_at(
                "datapointsToAlarm",
                f"datapointsToAlarm ({self.datapointsToAlarm}) cannot exceed evaluationPeriods "
                f"({self.evaluationPeriods})",
                self.datapointsToAlarm,
            )
        return self

    @property
    def datapoints(self) -> int:
        return self.datapointsToAlarm or self.evaluationPeriods


class WorkflowDefinition(_Model):
    """A workflow: steps with dependencies, the triggers that start it, the policies that govern it."""

    id: str = Field(pattern=WORKFLOW_ID_PATTERN, description="Lowercase letters, digits and dashes.")
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)
    description: str | None = None
    steps: list[WorkflowStep] = Field(min_length=1)
    triggers: list[Trigger] = Field(default_factory=list)
    policies: list[PolicyRef] = Field(
        default_factory=list, description="Error policies: ids of policies in policies/ next to the definition, or "
        "policies declared inline (docs/error-handling.md)."
    )
    logLevel: Literal["ALL", "ERROR", "FATAL", "OFF"] = "ERROR"
    alarms: AlarmSettings | None = Field(
        None, description="Alarm thresholds of this workflow (executions failed/timed out/throttled, Lambda "
        "errors/throttles); defaults when absent."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"version must be a string; quote it: version: \"{value}\"")
        return value

    @property
    def alarm_settings(self) -> AlarmSettings:
        """The ``alarms:`` block, or the defaults when the definition has none."""
        return self.alarms if self.alarms is not None else AlarmSettings()

    def step(self, step_id: str) -> WorkflowStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
