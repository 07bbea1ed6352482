"""The registry API of the design (registerRule ... getRuleById) over the in-memory RuleStore."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from coafi.rules import (
    InMemoryRuleStore,
    Rule,
    RuleConflictError,
    RuleEngine,
    RuleNotFoundError,
    RuleStore,
    RuleValidationError,
)


def registry_rule(rule_id: str, category: str = "pricing", **extra: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "category": category,
        "description": f"{rule_id} rule",
        "conditions": {"all": [{"fact": "total", "operator": "greaterThan", "value": extra.pop("threshold", 100)}]},
        **extra,
    }


def test_register_evaluate_and_look_up_rules() -> None:
    engine = RuleEngine()
    stored = engine.register_rule(registry_rule("big-order", event={"type": "discount", "params": {"pct": 5}}))
    assert isinstance(stored, Rule) and stored.version == 1
    engine.registerRule(registry_rule("huge-order", threshold=1000, priority=3))
    engine.register_rule(registry_rule("vip", category="loyalty"))

    result = engine.evaluate_rule("big-order", {"total": 150})
    assert (result.name, result.satisfied, result.event) == (
        "big-order",
        True,
        {"type": "discount", "params": {"pct": 5}},
    )
    results = engine.evaluate_rules(["big-order", "huge-order"], {"total": 150})
    assert [(r.name, r.satisfied) for r in results] == [("huge-order", False), ("big-order", True)]  # priority 3 first

    assert engine.get_rule_by_id("vip") == engine.getRuleById("vip")
    assert engine.get_rule_by_id("nope") is None
    assert [r.id for r in engine.get_rules_by_category("pricing")] == ["big-order", "huge-order"]
    assert [r.id for r in engine.getRulesByCategory("loyalty")] == ["vip"]

    assert engine.unregister_rule("vip") and not engine.unregisterRule("vip")
    with pytest.raises(RuleNotFoundError, match="no rule with id 'vip'"):
        engine.evaluate_rule("vip", {})


def test_malformed_rules_are_refused_and_not_stored() -> None:
    engine = RuleEngine()
    bad = registry_rule("bad")
    bad["conditions"]["all"][0]["operator"] = "greater"
    with pytest.raises(RuleValidationError, match=r"\$\.conditions\.all\[0\]\.operator: unknown operator 'greater'"):
        engine.register_rule(bad)
    assert engine.get_rule_by_id("bad") is None
    with pytest.raises(ValidationError):
        engine.register_rule({"id": "", "conditions": {}})


def test_disabled_rules_are_skipped_by_evaluate_rules_but_evaluable_by_id() -> None:
    engine = RuleEngine()
    engine.register_rule(registry_rule("on"))
    engine.register_rule(registry_rule("off", enabled=False))
    assert [r.name for r in engine.evaluate_rules(None, {"total": 500})] == ["on"]
    assert engine.evaluate_rule("off", {"total": 500}).satisfied


def test_versions_and_conditional_writes() -> None:
    engine = RuleEngine()
    engine.register_rule(registry_rule("r"))
    second = engine.register_rule(registry_rule("r", threshold=10), expected_version=1)
    assert second.version == 2
    assert engine.evaluate_rule("r", {"total": 50}).satisfied  # the new version is what evaluates
    with pytest.raises(RuleConflictError, match="rule 'r' is at version 2, not 1"):
        engine.register_rule(registry_rule("r", threshold=5), expected_version=1)
    assert engine.get_rule_by_id("r") == second
    with pytest.raises(RuleConflictError):
        engine.store.delete("r", expected_version=1)


def test_actions_become_the_event_and_on_success_is_carried() -> None:
    engine = RuleEngine()
    engine.register_rule(
        registry_rule("act", actions=[{"type": "notify", "to": "ops"}], onSuccess={"next": "approve"}, name="Act!")
    )
    result = engine.evaluate_rule("act", {"total": 500})
    assert result.name == "Act!"
    assert result.event == {"type": "act", "params": {"actions": [{"type": "notify", "to": "ops"}]}}
    assert result.on_success == {"next": "approve"}
    assert result.to_dict()["onSuccess"] == {"next": "approve"}


def test_condition_is_accepted_for_conditions_and_a_string_is_a_named_reference() -> None:
    engine = RuleEngine()
    engine.set_condition("rich", {"all": [{"fact": "total", "operator": "greaterThan", "value": 1000}]})
    engine.register_rule({"id": "by-ref", "condition": "rich"})
    engine.register_rule({"id": "inline", "condition": {"any": [{"condition": "rich"}]}})
    assert engine.evaluate_rule("by-ref", {"total": 2000}).satisfied
    assert not engine.evaluate_rule("inline", {"total": 2}).satisfied


def test_the_store_is_pluggable() -> None:
    store = InMemoryRuleStore()
    assert isinstance(store, RuleStore)
    engine = RuleEngine(store=store)
    engine.register_rule(registry_rule("x"))
    assert [r.id for r in store.list()] == ["x"]
    other = RuleEngine(store=store)  # another engine (another Lambda) on the same registry
    assert other.evaluate_rule("x", {"total": 101}).satisfied


def test_registered_rules_follow_named_condition_changes() -> None:
    engine = RuleEngine()
    engine.set_condition("big", {"all": [{"fact": "total", "operator": "greaterThan", "value": 10}]})
    engine.register_rule({"id": "r", "conditions": {"condition": "big"}})
    assert engine.evaluate_rule("r", {"total": 50}).satisfied
    engine.set_condition("big", {"all": [{"fact": "total", "operator": "greaterThan", "value": 100}]})
    assert not engine.evaluate_rule("r", {"total": 50}).satisfied


def test_registry_rule_models_evaluate_directly() -> None:
    model = Rule.model_validate(registry_rule("m", threshold=1))
    engine = RuleEngine()
    assert engine.evaluate(model, {"total": 2}).satisfied
    assert engine.compile(model).name == "m"
