"""What the rules function does (``functions/rules/handler.py``): evaluate named (registry) or inline rules
against a workflow's facts and return, for each, whether it is satisfied, so a Choice state can route on it.

The facts are ``input`` (the workflow input) and ``steps`` (earlier steps' outputs, ``{stepId: {"output":
...}}``), the same data a decision's native ``condition`` reads. The compiler (``coafi/compiler/asl.py``) sends
one entry per rule-driven choice, keyed ``c<n>`` for choice n (1-based); the Choice state tests
``$.steps.<decision>.rules.satisfied.c<n>``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coafi.rules.errors import RuleNotFoundError

if TYPE_CHECKING:
    from coafi.rules.engine import RuleEngine
    from coafi.rules.store import RuleStore

__all__ = ["RuleOutcome", "RuleRef", "RulesContext", "RulesRequest", "RulesResponse", "evaluate_request",
           "rules_engine"]


class RuleRef(BaseModel):
    """One rule to evaluate: a registry rule by id, or an inline json-rules-engine rule (as JSON text, so no
    key of it is ever read as a Step Functions path)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    ruleId: str | None = Field(None, min_length=1)
    ruleJson: str | None = None

    @model_validator(mode="after")
    def _one(self) -> RuleRef:
        if (self.ruleId is None) == (self.ruleJson is None):
            raise ValueError(f"rule {self.key}: give exactly one of ruleId or ruleJson")
        return self

    def inline(self) -> dict[str, Any]:
        rule = json.loads(self.ruleJson or "null")
        if not isinstance(rule, dict):
            raise ValueError(f"rule {self.key}: ruleJson must hold a rule object")
        from coafi.rules.decisions import with_event

        return with_event(rule, "choice")


class RulesContext(BaseModel):
    model_config = ConfigDict(extra="allow")

    executionId: str = ""
    workflowId: str = ""
    stepId: str = ""


class RulesRequest(BaseModel):
    """The rules function's event."""

    model_config = ConfigDict(extra="forbid")

    context: RulesContext = Field(default_factory=RulesContext)
    rules: list[RuleRef] = Field(default_factory=list)
    category: str | None = Field(None, min_length=1, description="also every enabled rule of this category, "
                                 "keyed by rule id")
    input: Any = None
    steps: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> RulesRequest:
        if not self.rules and self.category is None:
            raise ValueError("give rules, a category, or both")
        keys = [r.key for r in self.rules]
        if len(set(keys)) != len(keys):
            raise ValueError(f"rule keys must be unique, got {keys}")
        return self

    def facts(self) -> dict[str, Any]:
        return {"input": self.input, "steps": self.steps}


class RuleOutcome(BaseModel):
    key: str
    ruleId: str | None = None
    name: Any = None
    enabled: bool = True
    version: int | None = None
    satisfied: bool
    event: dict[str, Any] | None = None


class RulesResponse(BaseModel):
    """``satisfied``: key -> bool (what the Choice routes on); ``matched``: the first satisfied key in request
    order (None when none is); ``results``: one outcome per rule, in request order."""

    satisfied: dict[str, bool]
    matched: str | None = None
    results: list[RuleOutcome]
    events: list[dict[str, Any]] = Field(default_factory=list, description="the satisfied rules' events, in order")


def evaluate_request(request: RulesRequest, engine: RuleEngine, store: RuleStore | None = None) -> RulesResponse:
    """Evaluate every rule of the request against its facts. A registry rule that is disabled is not
    evaluated and counts as not satisfied. Raises ``RuleNotFoundError`` for an unknown rule id,
    ``RuleValidationError`` for a malformed inline rule and ``RuleEvaluationError`` (e.g. ``UndefinedFactError``)
    when evaluation fails: the step fails with that error, which the workflow records."""
    store = store if store is not None else engine.store
    facts = request.facts()
    results: list[RuleOutcome] = []
    refs: list[tuple[RuleRef, Any]] = [(ref, None) for ref in request.rules]
    if request.category is not None:
        taken = {r.ruleId for r in request.rules}
        for member in store.list(category=request.category):
            if member.enabled and member.id not in taken:
                refs.append((RuleRef(key=_key(member.id), ruleId=member.id), member))
    for ref, listed in refs:
        if ref.ruleId is not None:
            rule = listed if listed is not None else store.get(ref.ruleId)
            if rule is None:
                raise RuleNotFoundError(ref.ruleId)
            if not rule.enabled:
                results.append(RuleOutcome(key=ref.key, ruleId=rule.id, name=rule.display_name, enabled=False,
                                           version=rule.version, satisfied=False))
                continue
            # compiled once per content (not per id and version: a rule deleted and created again restarts
            # at version 1 with other content)
            compiled = engine._compile_cached(rule.engine_rule())
            outcome = engine.evaluate(compiled, facts)
            results.append(RuleOutcome(key=ref.key, ruleId=rule.id, name=rule.display_name, version=rule.version,
                                       satisfied=outcome.satisfied, event=_json(outcome.event)))
        else:
            outcome = engine.evaluate(engine._compile_cached(ref.inline()), facts)
            results.append(RuleOutcome(key=ref.key, name=_json(outcome.name), satisfied=outcome.satisfied,
                                       event=_json(outcome.event)))
    satisfied = {r.key: r.satisfied for r in results}
    matched = next((r.key for r in results if r.satisfied), None)
    events = [r.event for r in results if r.satisfied and r.event is not None]
    return RulesResponse(satisfied=satisfied, matched=matched, results=results, events=events)


def _key(rule_id: str) -> str:
    """A category rule's key: its id where that is a plain name (a JSONPath-safe key), else ``rule_<n>``."""
    import re

    return rule_id if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", rule_id) else "rule_" + re.sub(r"\W", "_", rule_id)


def _json(value: Any) -> Any:
    from coafi.rules.engine import to_json_safe

    return to_json_safe(value)


@lru_cache(maxsize=4)
def rules_engine(table_name: str) -> RuleEngine:
    """The engine of a warm rules function: registry on the state table, compiled rules cached by content."""
    from coafi.rules.dynamo import DynamoRuleStore
    from coafi.rules.engine import RuleEngine

    return RuleEngine(store=DynamoRuleStore(table_name))
