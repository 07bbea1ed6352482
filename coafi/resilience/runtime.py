"""What the ``@action`` wrapper does with a failure (``coafi.runtime.action`` wraps every action with
:func:`guarded`), in order:

1. an AWS SDK ``ClientError`` becomes COAFI's typed error of its code (``ThrottlingError``, ``NotFound``...), so
   Step Functions' Retry/Catch can tell them apart by name;
2. an error policy whose escalation threshold this attempt crosses sends its ``Escalation`` event;
3. on a step whose policies name a category (``errorTypes: [transient]``), an error Step Functions could not
   match by name (a project's ``class RateLimited(TransientError)``: its name is in no category list, and no
   policy or ``retryOn`` of the step names it) is raised under its category's name (``TransientError``,
   ``PermanentError``, ``SystemFault``) with ``"RateLimited: <message>"`` as its message, so the category's
   retrier matches it.

The error then goes on to Step Functions."""

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
                error = by_category(error, rules)
            if error is exc:
                raise
            raise error from exc

    return run


def by_category(error: Exception, rules: list[dict[str, Any]]) -> Exception:
    """``error``, or (see the module's docstring, 3.) the same failure under its category's name."""
    from coafi.errors import PermanentError, TransientError
    from coafi.resilience.classification import CATEGORY_WORDS, ErrorCategory, category_of_name, classify
    from coafi.resilience.errors import SystemFault

    name = type(error).__name__
    if category_of_name(name) is not None:
        return error
    listed = {str(n) for rule in rules for n in rule.get("errorTypes", [])}
    if name in listed or "States.ALL" in listed:
        return error
    category = classify(error)
    if category.value not in listed or category.value not in CATEGORY_WORDS:
        return error
    base: type[Exception] = {ErrorCategory.TRANSIENT: TransientError, ErrorCategory.PERMANENT: PermanentError,
                             ErrorCategory.SYSTEM: SystemFault}[category]
    return base(f"{name}: {error}")
