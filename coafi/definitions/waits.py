"""Parameters of the waiting step types (docs/waits.md).

- ``callback``: the workflow waits until someone completes (``coafi task complete``) or fails
  (``coafi task fail``) the step: a human approval, an external system. Its task token is stored against the
  execution and step, and (``notify``) announced as a ``TaskTokenIssued`` event on the app's bus.
- ``signal``: the workflow waits for a named signal (``coafi signal EXECUTION NAME``). A signal sent before the
  workflow reaches the step is buffered and delivered when it does.

Both wait at most the step's ``timeoutSeconds`` (then the step fails with ``States.Timeout``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: A signal name: what ``signalWorkflow(executionId, name, payload)`` names.
SIGNAL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
MAX_WAIT_SECONDS = 99_999_999


class _Parameters(BaseModel):
    # defer_build (here and below): validators are built on first use; a function uses few of this
    # module's models per invocation (cold start: BENCHMARKS.md)
    model_config = ConfigDict(defer_build=True, extra="forbid")


class CallbackParameters(_Parameters):
    """``type: callback``: waits for completeTask / failTask by execution and step id, or by task token."""

    notify: bool = Field(
        True, description="Publish a TaskTokenIssued event (execution, step, task token, details) on the app's "
        "bus when the step starts waiting, so external systems learn of it.",
    )
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form data put in the TaskTokenIssued event, e.g. who should approve and why.",
    )
    heartbeatSeconds: int | None = Field(
        None, ge=1, le=MAX_WAIT_SECONDS,
        description="Fail the step with States.HeartbeatTimeout when no heartbeat (SendTaskHeartbeat) arrives "
        "for this long; must be shorter than the step's timeoutSeconds.",
    )


class SignalParameters(_Parameters):
    """``type: signal``: waits for the named signal; signals sent earlier are buffered, never lost."""

    signal: str = Field(description="The signal's name: letters, digits, '_', '.', ':' or '-' (at most 128).")

    @field_validator("signal")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(SIGNAL_NAME_PATTERN, value):
            raise ValueError(f"signal {value!r} is not a valid signal name: use a letter or digit, then letters, "
                             "digits, '_', '.', ':' or '-' (at most 128 characters), e.g. approved")
        return value

    @model_validator(mode="before")
    @classmethod
    def _needs_signal(cls, value: Any) -> Any:
        if isinstance(value, dict) and not value:
            raise ValueError("a signal step needs parameters.signal: the name of the signal it waits for")
        return value


def check_wait_step(
    step: Any,
    error_at: Callable[[str, str, Any], ValidationError],
    validate_at: Callable[[str, type[BaseModel], Any], BaseModel],
) -> None:
    """The checks of a callback or signal ``WorkflowStep`` (called by its validator, with its helpers that
    locate an error at a field of the step)."""
    if step.action:
        raise error_at("action", f"a {step.type} step takes no action (it waits; nothing is invoked)", step.action)
    if step.type == "signal":
        validate_at("parameters", SignalParameters, step.parameters)
        return
    params = validate_at("parameters", CallbackParameters, step.parameters)
    assert isinstance(params, CallbackParameters)
    heartbeat = params.heartbeatSeconds
    if heartbeat is not None and step.timeoutSeconds is not None and heartbeat >= step.timeoutSeconds:
        raise error_at(
            "parameters",
            f"heartbeatSeconds ({heartbeat}) must be shorter than the step's timeoutSeconds ({step.timeoutSeconds})",
            heartbeat,
        )
