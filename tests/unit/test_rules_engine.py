"""coafi.rules.RuleEngine: evaluating json-rules-engine rule JSON, what results carry, options, computed
facts, custom operators and decorators, named conditions, priorities and the order of results."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest

from coafi.rules import (
    UNDEFINED,
    Almanac,
    RuleEngine,
    RuleEvaluationError,
    RuleValidationError,
    UndefinedFactError,
)


def rule(conditions: dict[str, Any], name: str = "r", **extra: Any) -> dict[str, Any]:
    return {"name": name, "conditions": conditions, "event": {"type": f"{name}-event"}, **extra}


def leaf(fact: str, operator: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"fact": fact, "operator": operator, "value": value, **extra}


ELIGIBLE: dict[str, Any] = {
    "name": "eligible",
    "priority": 2,
    "conditions": {
        "all": [
            leaf("user", "greaterThanInclusive", 18, path="$.profile.age"),
            {
                "any": [
                    leaf("user", "in", ["FR", "DE"], path="$.profile.country"),
                    leaf("segment", "equal", "vip"),
                ]
            },
        ]
    },
    "event": {"type": "eligible", "params": {"discount": 10}},
}


def test_evaluate_gives_name_satisfied_event_priority_and_the_condition_tree() -> None:
    result = RuleEngine().evaluate(ELIGIBLE, {"user": {"profile": {"age": 30, "country": "US"}}, "segment": "vip"})
    assert (result.name, result.satisfied, result.result, result.priority) == ("eligible", True, True, 2)
    assert result.event == {"type": "eligible", "params": {"discount": 10}}
    tree = result.conditions
    age, either = tree["all"]
    assert (age["factResult"], age["valueResult"], age["result"]) == (30, 18, True)
    country, segment = either["any"]
    assert (country["factResult"], country["result"]) == ("US", False)
    assert (segment["factResult"], segment["result"]) == ("vip", True)
    assert either["result"] is True
    assert tree["result"] is True


def test_a_failed_rule_has_no_event_but_keeps_its_rule_event() -> None:
    result = RuleEngine().evaluate(ELIGIBLE, {"user": {"profile": {"age": 12, "country": "FR"}}, "segment": "x"})
    assert not result.satisfied
    assert result.event is None
    assert result.rule_event == {"type": "eligible", "params": {"discount": 10}}
    assert result.to_dict() == {
        "name": "eligible",
        "satisfied": False,
        "event": None,
        "priority": 2,
        "result": False,
    }


def test_results_are_independent_copies() -> None:
    engine = RuleEngine()
    compiled = engine.compile(ELIGIBLE)
    facts = {"user": {"profile": {"age": 30, "country": "FR"}}, "segment": "x"}
    first = engine.evaluate(compiled, facts)
    assert first.event is not None
    first.event["params"]["discount"] = 99
    first.conditions["all"][0]["value"] = 0
    again = engine.evaluate(compiled, facts)
    assert again.event == {"type": "eligible", "params": {"discount": 10}}
    assert again.conditions["all"][0]["value"] == 18
    assert ELIGIBLE["conditions"]["all"][0]["value"] == 18


def test_evaluate_all_orders_by_priority_then_like_node() -> None:
    rules = [
        rule({"all": [{"any": [{"all": [leaf("a", "equal", 1)]}]}]}, "deep"),
        rule({"all": [leaf("a", "equal", 1)]}, "shallow"),
        rule({"all": [leaf("a", "equal", 2)]}, "high", priority=9),
    ]
    results = RuleEngine().evaluate_all(rules, {"a": 1})
    # node finishes the shallow rule's promise chain before the deep one's
    assert [r.name for r in results] == ["high", "shallow", "deep"]
    assert [r.satisfied for r in results] == [False, True, True]


def test_run_returns_results_failures_and_events_like_json_rules_engine() -> None:
    engine = RuleEngine([rule({"all": [leaf("a", "equal", 1)]}, "yes"), rule({"all": [leaf("a", "equal", 2)]}, "no")])
    outcome = engine.run({"a": 1})
    assert [r.name for r in outcome.results] == ["yes"]
    assert [r.name for r in outcome.failure_results] == ["no"]
    assert outcome.events == [{"type": "yes-event"}]
    assert outcome.failure_events == [{"type": "no-event"}]
    assert outcome.failureResults == outcome.failure_results


def test_a_missing_fact_is_an_error_naming_the_fact_and_the_rule() -> None:
    with pytest.raises(UndefinedFactError) as info:
        RuleEngine().evaluate(rule({"all": [leaf("age", "greaterThan", 18)]}, "adult"), {})
    assert info.value.fact == "age"
    assert info.value.code == "UNDEFINED_FACT"
    assert str(info.value) == "Undefined fact: age (rule 'adult')"


def test_allow_undefined_facts_makes_a_missing_fact_undefined() -> None:
    engine = RuleEngine(allow_undefined_facts=True)
    result = engine.evaluate(rule({"all": [leaf("age", "notEqual", None), leaf("age", "notIn", [1])]}), {})
    assert result.satisfied
    assert "factResult" not in result.conditions["all"][0]  # undefined, as json-rules-engine's toJSON leaves it out


def test_a_higher_priority_group_that_fails_skips_the_rest() -> None:
    conditions = {"all": [leaf("a", "equal", 2, priority=10), leaf("missing", "equal", 1)]}
    result = RuleEngine().evaluate(rule(conditions), {"a": 1})
    assert not result.satisfied
    skipped = result.conditions["all"][1]
    assert "result" not in skipped and "factResult" not in skipped
    with pytest.raises(UndefinedFactError):  # same priority: evaluated, so the missing fact is an error
        RuleEngine().evaluate(rule({"all": [leaf("a", "equal", 2), leaf("missing", "equal", 1)]}), {"a": 1})


def test_engine_fact_priority_orders_conditions() -> None:
    engine = RuleEngine()
    engine.add_fact("cheap", 0, priority=5)
    result = engine.evaluate(rule({"all": [leaf("costly", "equal", 1), leaf("cheap", "equal", 1)]}), {})
    assert not result.satisfied  # "costly" was never needed


def test_computed_facts_are_called_with_params_and_cached_per_run() -> None:
    calls: list[Any] = []

    def price(params: Any, almanac: Almanac) -> Any:
        calls.append(params)
        return {"eur": 10, "usd": 11}[params["currency"]]

    conditions = {
        "all": [
            leaf("price", "lessThan", 20, params={"currency": "eur"}),
            leaf("price", "lessThan", 20, params={"currency": "eur"}),
            leaf("price", "greaterThan", 10, params={"currency": "usd"}),
        ]
    }
    engine = RuleEngine()
    assert engine.evaluate(rule(conditions), {"price": price}).satisfied
    assert calls == [{"currency": "eur"}, {"currency": "usd"}]
    engine.evaluate(rule(conditions), {"price": price})
    assert len(calls) == 4  # a new run computes again


def test_uncached_engine_facts_are_computed_every_time_and_can_read_other_facts() -> None:
    calls = 0

    def doubled(params: Any, almanac: Almanac) -> Any:
        nonlocal calls
        calls += 1
        return 2 * almanac.fact_value("base")

    engine = RuleEngine()
    engine.add_fact("doubled", doubled, cache=False)
    result = engine.evaluate(rule({"all": [leaf("doubled", "equal", 8), leaf("doubled", "equal", 8)]}), {"base": 4})
    assert result.satisfied and calls == 2


def test_facts_given_to_a_run_override_engine_facts() -> None:
    engine = RuleEngine()
    engine.add_fact("country", "FR")
    r = rule({"all": [leaf("country", "equal", "DE")]})
    assert not engine.evaluate(r, {}).satisfied
    assert engine.evaluate(r, {"country": "DE"}).satisfied


def test_custom_operators_and_validators() -> None:
    engine = RuleEngine()
    engine.add_operator("startsWith", lambda a, b: a.startswith(b), lambda a: isinstance(a, str))
    r = rule({"all": [leaf("name", "startsWith", "an")]})
    assert engine.evaluate(r, {"name": "ann"}).satisfied
    assert not engine.evaluate(r, {"name": 42}).satisfied  # the validator keeps the operator away from 42
    engine.add_operator_decorator("both", lambda a, b, nxt: nxt(a, b) and nxt(b, a))
    assert engine.evaluate(rule({"all": [leaf("n", "both:lessThanInclusive", 3)]}), {"n": 3}).satisfied
    assert engine.remove_operator("startsWith")
    with pytest.raises(RuleValidationError):
        engine.compile(r)


def test_a_truthy_custom_result_passes_at_the_top_but_not_nested() -> None:
    engine = RuleEngine()
    engine.add_operator("identity", lambda a, b: a)
    top = engine.evaluate(rule({"all": [leaf("o", "identity", None)]}), {"o": {"k": 1}})
    nested = engine.evaluate(rule({"all": [{"all": [leaf("o", "identity", None)]}]}), {"o": {"k": 1}})
    assert top.satisfied and top.result == {"k": 1}
    assert not nested.satisfied and nested.result is False


def test_named_conditions_are_expanded_where_referenced() -> None:
    engine = RuleEngine()
    engine.set_condition("adult", {"all": [leaf("age", "greaterThanInclusive", 18)]})
    engine.set_condition("senior", {"all": [{"condition": "adult"}, leaf("age", "greaterThan", 64)]})
    result = engine.evaluate(rule({"condition": "senior"}), {"age": 70})
    assert result.satisfied
    realized = result.conditions["all"][0]
    assert "condition" not in realized and realized["all"][0]["factResult"] == 70
    assert engine.setCondition is not None and engine.removeCondition("senior")


def test_undefined_named_conditions_are_false_when_allowed() -> None:
    engine = RuleEngine(allow_undefined_conditions=True)
    result = engine.evaluate(rule({"any": [{"condition": "later"}, leaf("a", "equal", 1)]}), {"a": 2})
    assert not result.satisfied
    assert result.conditions["any"][0] == {"condition": "later", "result": False}


def test_replace_facts_in_event_params() -> None:
    engine = RuleEngine(replace_facts_in_event_params=True)
    r = {"conditions": {"all": []}, "event": {"type": "t", "params": {"who": {"fact": "user", "path": "$.name"}}}}
    assert engine.evaluate(r, {"user": {"name": "ann"}}).event == {"type": "t", "params": {"who": "ann"}}


def test_operator_type_errors_surface_as_evaluation_errors() -> None:
    r = rule({"all": [leaf("a", "in", {"fact": "b"})]}, "fact-to-fact")
    with pytest.raises(RuleEvaluationError, match=r"b\.indexOf is not a function \(rule 'fact-to-fact'\)"):
        RuleEngine().evaluate(r, {"a": 1, "b": 2})


def test_rules_added_to_the_engine_follow_later_operator_changes() -> None:
    engine = RuleEngine()
    compiled = engine.add_rule(rule({"all": [leaf("a", "equal", 1)]}))
    assert engine.run({"a": 1}).results
    engine.add_operator("equal", lambda a, b: False)
    assert not engine.run({"a": 1}).results
    assert engine.remove_rule(compiled) and engine.rules == []


def test_update_rule_replaces_the_rule_of_that_name() -> None:
    engine = RuleEngine([rule({"all": [leaf("a", "equal", 1)]}, "x")])
    engine.update_rule(rule({"all": [leaf("a", "equal", 2)]}, "x"))
    assert [r.satisfied for r in engine.run({"a": 2}).all] == [True]


def test_nan_and_infinity_survive_into_results() -> None:
    result = RuleEngine().evaluate(rule({"all": [leaf("x", "equal", math.nan)]}), {"x": math.inf})
    tree = result.conditions["all"][0]
    assert tree["factResult"] == math.inf and math.isnan(tree["valueResult"])
    assert result.to_dict(conditions=True)["conditions"]["all"][0]["valueResult"] is None  # like JSON.stringify


def test_undefined_is_a_falsy_singleton() -> None:
    assert not UNDEFINED
    assert repr(UNDEFINED) == "undefined"
    assert type(UNDEFINED)() is UNDEFINED


def test_importing_coafi_rules_stays_light() -> None:
    code = "import sys, coafi.rules; print(sorted(m for m in ('pydantic', 'boto3', 'yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plain_rules_are_compiled_once_by_content_and_edits_take_effect() -> None:
    engine = RuleEngine()
    r = rule({"all": [leaf("a", "equal", 1)]})
    first = engine.evaluate(r, {"a": 1})
    assert first._compiled is engine.evaluate(dict(r), {"a": 1})._compiled
    r["conditions"]["all"][0]["value"] = 2
    assert not engine.evaluate(r, {"a": 1}).satisfied
    assert engine.evaluate(r, {"a": 2}).satisfied
