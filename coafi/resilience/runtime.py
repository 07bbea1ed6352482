"""What the ``@action`` wrapper does with a failure (``coafi.runtime.action`` wraps every action with
:func:`guarded`): AWS SDK ``ClientError``s become COAFI's typed errors (``ThrottlingError``, ``NotFound``...,
so Step Functions' Retry/Catch can tell them apart by name), and an error policy whose escalation threshold
is crossed sends its ``Escalation`` event. The error then goes on to Step Functions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coafi.runtime.action import StepEvent


def guarded(fn: Callable[[StepEvent], Any]) -> Callable[[StepEvent], Any]:
    @functools.wraps(fn)
    def run(step: StepEvent) -> Any:
        try:
            return fn(step)
        except Exception as exc:
            from coafi.resilience.classification import typed

            error = typed(exc)
            rules = step.context.errorPolicies
            if rules:
                from coafi.resilience.escalation import escalate_if_due

                escalate_if_due(step, error, rules)
            if error is exc:
                raise
            raise error from exc

    return run
