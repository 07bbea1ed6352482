"""A json-rules-engine (7.x) compatible rule engine: the same rule JSON, the same answers, compiled once
into Python closures.

    from coafi.rules import RuleEngine

    engine = RuleEngine()
    result = engine.evaluate(rule_json, {"age": 30})
    result.satisfied, result.event, result.conditions

Imports stay light (no pydantic until the registry's :class:`Rule` model is used): this runs in Lambdas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coafi.rules._js import UNDEFINED
from coafi.rules.engine import Almanac, EngineResult, Fact, RuleEngine, RuleResult
from coafi.rules.errors import (
    Problem,
    RuleConflictError,
    RuleEvaluationError,
    RuleNotFoundError,
    RuleValidationError,
    UndefinedConditionError,
    UndefinedFactError,
)
from coafi.rules.store import InMemoryRuleStore, RuleStore

if TYPE_CHECKING:
    from coafi.rules.models import Rule

__all__ = [
    "UNDEFINED",
    "Almanac",
    "EngineResult",
    "Fact",
    "InMemoryRuleStore",
    "Problem",
    "Rule",
    "RuleConflictError",
    "RuleEngine",
    "RuleEvaluationError",
    "RuleNotFoundError",
    "RuleResult",
    "RuleStore",
    "RuleValidationError",
    "UndefinedConditionError",
    "UndefinedFactError",
]


def __getattr__(name: str) -> Any:
    if name == "Rule":
        from coafi.rules.models import Rule

        return Rule
    raise AttributeError(f"module 'coafi.rules' has no attribute {name!r}")
