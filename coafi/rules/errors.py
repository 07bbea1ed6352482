"""Errors of the rule engine: malformed rules (at compile/registration time) and failures while evaluating."""

from __future__ import annotations

from typing import NamedTuple

from coafi.errors import PermanentError

__all__ = [
    "Problem",
    "RuleConflictError",
    "RuleEvaluationError",
    "RuleNotFoundError",
    "RuleValidationError",
    "UndefinedConditionError",
    "UndefinedFactError",
]


class Problem(NamedTuple):
    """One thing wrong with a rule: where (a JSONPath such as ``$[2].conditions.all[1].operator``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class RuleValidationError(PermanentError, ValueError):
    """A rule (or named condition) that cannot be compiled; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid rule")


class RuleEvaluationError(PermanentError):
    """Evaluating a rule failed the way json-rules-engine's ``run()`` would reject (a JavaScript TypeError of
    an operator, a JSONPath script error, ...). ``rule`` names the rule when known."""

    code = "RULE_EVALUATION"

    def __init__(self, message: str, *, rule: object = None) -> None:
        self.message = message
        self.rule = rule
        super().__init__(message if rule is None else f"{message} (rule {rule!r})")

    def with_rule(self, rule: object) -> RuleEvaluationError:
        """The same error naming the rule it happened in."""
        if self.rule is not None:
            return self
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        RuleEvaluationError.__init__(clone, self.message, rule=rule)
        return clone


class UndefinedFactError(RuleEvaluationError):
    """A condition needs a fact that was not given (and ``allow_undefined_facts`` is off):
    json-rules-engine's ``Undefined fact: <id>`` (code ``UNDEFINED_FACT``)."""

    code = "UNDEFINED_FACT"

    def __init__(self, fact: str, *, rule: object = None) -> None:
        self.fact = fact
        super().__init__(f"Undefined fact: {fact}", rule=rule)

    def with_rule(self, rule: object) -> RuleEvaluationError:
        if self.rule is not None:
            return self
        return UndefinedFactError(self.fact, rule=rule)


class UndefinedConditionError(RuleEvaluationError):
    """A named condition was removed after a rule referencing it was compiled."""

    code = "UNDEFINED_CONDITION"


class RuleNotFoundError(KeyError):
    """No rule with that id in the registry."""

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        super().__init__(rule_id)

    def __str__(self) -> str:
        return f"no rule with id {self.rule_id!r}"


class RuleConflictError(PermanentError):
    """A write to the registry expected another version of the rule (someone else changed it first)."""

    def __init__(self, rule_id: str, expected: int | None, actual: int | None) -> None:
        self.rule_id = rule_id
        self.expected = expected
        self.actual = actual
        if actual is None:
            message = f"rule {rule_id!r} does not exist (any more), but version {expected} was expected: it was " \
                      "unregistered meanwhile; register it anew without an expected version"
        else:
            message = f"rule {rule_id!r} is at version {actual}, not {expected}: reload it and apply the change again"
        super().__init__(message)
