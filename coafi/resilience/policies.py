"""Error policies: the original design's ``ErrorPolicy`` (id, errorTypes, contextTypes, maxRetries, retryStrategy,
escalationThreshold, actions) as pydantic models.

A policy is declared inline in a definition's ``policies`` list or in its own file under
``statemachines/policies/`` (named from ``policies`` by id). The compiler turns the policies that apply to a step
into the step's ``Retry`` and ``Catch``; the action wrapper escalates when a threshold is crossed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from coafi.resilience.classification import CATEGORY_WORDS, ErrorCategory, category_of_name, names_of

POLICY_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
ERROR_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,255}$")
CONTEXT_TYPE = re.compile(r"^(\*|task|subworkflow|action:[A-Za-z0-9:_$-]{1,140}|step:[A-Za-z][A-Za-z0-9_-]{0,63})$")
ALL_ERRORS = "States.ALL"

ErrorAction = Literal["retry", "escalate", "fail", "continue"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _error_at(field: str, message: str, value: Any) -> ValidationError:
    """An error located at ``field`` of the model being validated (not at the whole model)."""
    details = InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(field,), input=value)
    return ValidationError.from_exception_data("ErrorPolicy", [details])


class RetryStrategy(_Model):
    """How retries are spaced: ``exponential`` (interval x backoffRate^n) or ``fixed``; full jitter by default."""

    type: Literal["exponential", "fixed"] = Field("exponential", description="exponential or fixed delays.")
    intervalSeconds: int = Field(1, ge=1, le=99_999_999, description="Delay before the first retry.")
    backoffRate: float | None = Field(
        None, ge=1.0, le=100.0, description="Multiplier per retry (exponential; default 2). fixed: 1."
    )
    maxDelaySeconds: int | None = Field(None, ge=1, le=31_622_400, description="Upper bound of any delay.")
    jitter: Literal["full", "none"] = Field("full", description="'full' draws each delay at random below it.")

    @model_validator(mode="after")
    def _consistent(self) -> RetryStrategy:
        if self.type == "fixed" and self.backoffRate not in (None, 1.0):
            raise _error_at("backoffRate", f"a fixed retryStrategy has no backoffRate (got {self.backoffRate}); "
                            "use type: exponential or remove backoffRate", self.backoffRate)
        if self.maxDelaySeconds is not None and self.maxDelaySeconds < self.intervalSeconds:
            raise _error_at("maxDelaySeconds", f"maxDelaySeconds ({self.maxDelaySeconds}) is smaller than "
                            f"intervalSeconds ({self.intervalSeconds})", self.maxDelaySeconds)
        return self

    @property
    def rate(self) -> float:
        if self.type == "fixed":
            return 1.0
        return float(self.backoffRate) if self.backoffRate is not None else 2.0


class EscalationThreshold(_Model):
    """When to escalate, one of: the ``attempts``-th failed attempt of a step in one execution; or the
    ``failures``-th matching failure of the workflow's steps, across executions, within a window of
    ``windowSeconds`` (tumbling windows, counted in the state table)."""

    attempts: int | None = Field(None, ge=1, le=100,
                                 description="Escalate when this many attempts of a step have failed.")
    failures: int | None = Field(None, ge=1, le=1_000_000,
                                 description="Escalate when this many failures happened across executions...")
    windowSeconds: int = Field(300, ge=1, le=86_400, description="...within this window (failures only).")

    @model_validator(mode="after")
    def _one(self) -> EscalationThreshold:
        if (self.attempts is None) == (self.failures is None):
            raise ValueError("an escalationThreshold needs exactly one of attempts (failed attempts of a step in "
                             "one execution) or failures (failures across executions within windowSeconds)")
        return self


class ErrorPolicy(_Model):
    """What to do when a step fails with one of ``errorTypes``."""

    id: str = Field(pattern=POLICY_ID_PATTERN, description="Lowercase letters, digits and dashes.")
    description: str | None = None
    errorTypes: list[str] = Field(
        min_length=1, description="Error names (exception class names, States.*), or the categories "
        "transient, permanent, system; States.ALL matches every error and stands alone."
    )
    contextTypes: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1,
        description="Steps it applies to: '*', 'task', 'subworkflow', 'action:<name>', 'step:<id>'."
    )
    maxRetries: int = Field(0, ge=0, le=99, description="Retries after the first attempt (0 = none).")
    retryStrategy: RetryStrategy = Field(default_factory=RetryStrategy)
    escalationThreshold: EscalationThreshold | None = None
    actions: list[ErrorAction] = Field(
        default_factory=list, description="retry, escalate, then fail (the default) or continue (the workflow "
        "goes on without the step's output). Default: derived from maxRetries and escalationThreshold."
    )

    @field_validator("errorTypes")
    @classmethod
    def _error_types(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if name not in CATEGORY_WORDS and not ERROR_NAME.match(name):
                raise ValueError(
                    f"errorTypes[{index}] {name!r} is neither an error name (an exception class name such as "
                    f"ThrottlingError, or States.Timeout) nor a category ({', '.join(CATEGORY_WORDS)})"
                )
        if ALL_ERRORS in value and len(value) > 1:
            raise ValueError("errorTypes: States.ALL matches every error and must stand alone")
        if len(set(value)) != len(value):
            raise ValueError(f"errorTypes lists a name twice: {sorted(n for n in set(value) if value.count(n) > 1)}")
        return value

    @field_validator("contextTypes")
    @classmethod
    def _context_types(cls, value: list[str]) -> list[str]:
        for index, context in enumerate(value):
            if not CONTEXT_TYPE.match(context):
                raise ValueError(
                    f"contextTypes[{index}] {context!r} is not one of '*', 'task', 'subworkflow', "
                    "'action:<action name>', 'step:<step id>'"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ErrorPolicy:
        actions: list[ErrorAction] = list(self.actions)
        if len(set(actions)) != len(actions):
            raise _error_at("actions", f"actions lists an action twice: {actions}", actions)
        if not actions:
            if self.maxRetries:
                actions.append("retry")
            if self.escalationThreshold is not None:
                actions.append("escalate")
            actions.append("fail")
        if "retry" in actions and self.maxRetries == 0:
            raise _error_at("maxRetries", "actions has retry but maxRetries is 0; set maxRetries (1 or more) "
                            "or remove retry", self.maxRetries)
        if self.maxRetries and "retry" not in actions:
            raise _error_at("actions", f"maxRetries is {self.maxRetries} but actions has no retry; add retry "
                            "or set maxRetries: 0", actions)
        if "escalate" in actions and self.escalationThreshold is None:
            raise _error_at("escalationThreshold", "actions has escalate but there is no escalationThreshold; "
                            "add one, e.g. escalationThreshold: {attempts: 3}", None)
        if self.escalationThreshold is not None and "escalate" not in actions:
            raise _error_at("actions", "escalationThreshold is set but actions has no escalate; add escalate",
                            actions)
        if "fail" in actions and "continue" in actions:
            raise _error_at("actions", "fail and continue exclude each other: after the retries the workflow "
                            "either fails or goes on", actions)
        if "retry" in actions:
            for index, name in enumerate(self.errorTypes):
                if name == "permanent" or category_of_name(name) == ErrorCategory.PERMANENT:
                    raise _error_at("errorTypes", f"errorTypes[{index}] {name!r} is a permanent error: retrying "
                                    "cannot help, so permanent errors are never retried; remove it or put it in "
                                    "a policy without retry", self.errorTypes)
        threshold = self.escalationThreshold
        if threshold is not None and threshold.attempts is not None and threshold.attempts > self.maxRetries + 1:
            raise _error_at("escalationThreshold", f"escalationThreshold.attempts ({threshold.attempts}) is never "
                            f"reached: with maxRetries {self.maxRetries} a step runs at most "
                            f"{self.maxRetries + 1} time(s)", threshold.attempts)
        if "continue" not in actions and "fail" not in actions:
            actions.append("fail")
        self.actions = actions
        return self

    # -- derived ----------------------------------------------------------------------------------------------
    @property
    def retries(self) -> bool:
        return "retry" in self.actions and self.maxRetries > 0

    @property
    def error_names(self) -> list[str]:
        """The names Step Functions matches: categories expanded to their known names, in order, once each."""
        names: list[str] = []
        for entry in self.errorTypes:
            for name in names_of(entry) if entry in CATEGORY_WORDS else [entry]:
                if name not in names:
                    names.append(name)
        return names

    @property
    def categories(self) -> list[str]:
        return [entry for entry in self.errorTypes if entry in CATEGORY_WORDS]

    def applies_to(self, *, step_id: str, step_type: str, action: str) -> bool:
        for context in self.contextTypes:
            if context == "*" or context == step_type or context == f"step:{step_id}":
                return True
            if action and context == f"action:{action}":
                return True
        return False

    def matches_error(self, name: str, category: ErrorCategory | None = None) -> bool:
        """Whether an error of this name (and run-time category) is one of the policy's errorTypes."""
        if ALL_ERRORS in self.errorTypes or name in self.errorTypes:
            return True
        categories = self.categories
        if category is not None and category.value in categories:
            return True
        known = category_of_name(name)
        return known is not None and known.value in categories


def _policy_kind(value: Any) -> str:
    return "policy-id" if isinstance(value, str) else "policy"


#: An entry of a definition's ``policies``: the id of a policy in ``policies/``, or a policy declared inline.
PolicyRef = Annotated[
    Annotated[Annotated[str, Field(pattern=POLICY_ID_PATTERN)], Tag("policy-id")]
    | Annotated[ErrorPolicy, Tag("policy")],
    Discriminator(_policy_kind),
]
