"""Which workflow, step and execution the running code works for: the labels telemetry adds by itself.

The scope lives in a context variable, so threads and asyncio tasks started inside a step keep it (copy the
context for threads), and two steps handled in the same process never see each other's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class StepScope:
    """What telemetry knows about the code running now. Unknown parts are None."""

    workflow: str | None = None
    step: str | None = None
    execution_id: str | None = None
    attempt: int | None = None

    def merged(self, other: StepScope) -> StepScope:
        """This scope with every part ``other`` knows replaced."""
        changes = {k: v for k, v in vars(other).items() if v is not None}
        return replace(self, **changes)


_NOWHERE = StepScope()  # frozen: safe as the context variable's shared default
_CURRENT: ContextVar[StepScope] = ContextVar("coafi_telemetry_scope", default=_NOWHERE)


def current_scope() -> StepScope:
    return _CURRENT.get()


def scope_of(event: Any) -> StepScope:
    """The scope of a step event: a ``coafi.runtime.StepEvent`` or the raw ``{"context": {...}}`` payload."""
    context = event.get("context") if isinstance(event, Mapping) else getattr(event, "context", None)
    if context is None:
        raise ValueError("not a COAFI step event: it has no 'context' (executionId, workflowId, stepId)")

    def field(name: str) -> Any:
        return context.get(name) if isinstance(context, Mapping) else getattr(context, name, None)

    attempt = field("attempt")
    return StepScope(
        workflow=_text(field("workflowId")),
        step=_text(field("stepId")),
        execution_id=_text(field("executionId")),
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _resolve(
    event: Any, workflow: str | None, step: str | None, execution_id: str | None, attempt: int | None
) -> StepScope:
    scope = current_scope()
    if event is not None:
        scope = scope.merged(scope_of(event))
    return scope.merged(StepScope(workflow, step, execution_id, attempt))


def bind(
    event: Any = None,
    *,
    workflow: str | None = None,
    step: str | None = None,
    execution_id: str | None = None,
    attempt: int | None = None,
) -> Token[StepScope]:
    """Set the scope for the rest of the current context (e.g. a Lambda invocation); ``unbind`` the token to
    restore the previous one. Prefer ``step_scope`` where a ``with`` block fits."""
    return _CURRENT.set(_resolve(event, workflow, step, execution_id, attempt))


def unbind(token: Token[StepScope]) -> None:
    _CURRENT.reset(token)


@contextmanager
def step_scope(
    event: Any = None,
    *,
    workflow: str | None = None,
    step: str | None = None,
    execution_id: str | None = None,
    attempt: int | None = None,
) -> Iterator[StepScope]:
    """Within the block, metrics, logs and traces carry this workflow/step/execution (parts not given are
    kept from the enclosing scope)::

        with telemetry.step_scope(event):      # a StepEvent or the raw step event
            telemetry.increment_counter("OrdersSeen")
    """
    token = bind(event, workflow=workflow, step=step, execution_id=execution_id, attempt=attempt)
    try:
        yield current_scope()
    finally:
        unbind(token)
