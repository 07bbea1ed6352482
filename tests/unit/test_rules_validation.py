"""Malformed rules are refused when compiled or registered, with every problem and its JSONPath."""

from __future__ import annotations

from typing import Any

import pytest

from coafi.rules import Problem, RuleEngine, RuleValidationError


def problems(rule: Any, engine: RuleEngine | None = None) -> list[str]:
    with pytest.raises(RuleValidationError) as info:
        (engine or RuleEngine()).compile(rule)
    return [str(p) for p in info.value.problems]


def ok_rule(conditions: Any) -> dict[str, Any]:
    return {"conditions": conditions, "event": {"type": "t"}}


def test_every_problem_is_reported_with_its_path() -> None:
    rule = ok_rule(
        {
            "all": [
                {"fact": "a", "operator": "equals", "value": 1},
                {"fact": 3, "operator": "in", "value": 4},
                {"any": {"fact": "a"}},
                {"fact": "a", "value": 1},
                {"condition": "nowhere"},
                {"fact": "a", "operator": "equal", "value": 1, "path": 5, "params": [1], "priority": "high"},
            ]
        }
    )
    assert problems(rule) == [
        "$.conditions.all[0].operator: unknown operator 'equals'; did you mean 'equal'?",
        "$.conditions.all[1].fact: fact must be a non-empty string, not a number",
        "$.conditions.all[1].value: in needs an array (or string) value, not a number",
        '$.conditions.all[2].any: "any" must be an array of conditions, not an object',
        '$.conditions.all[3]: a condition needs "operator" (or one of all, any, not, condition)',
        "$.conditions.all[4].condition: unknown named condition 'nowhere'",
        "$.conditions.all[5].priority: priority must be a number, not a string",
        "$.conditions.all[5].path: path must be a string (a JSONPath), not a number",
        "$.conditions.all[5].params: params must be an object, not an array",
    ]


def test_rule_level_problems() -> None:
    assert problems({"conditions": {"all": []}}) == ['$: a rule needs an "event" ({"type": ..., "params": {...}})']
    assert problems({"event": {"type": "t"}}) == [
        '$: a rule needs "conditions" (an object with all, any, not or condition)'
    ]
    assert problems({"conditions": {"fact": "a"}, "event": {"type": "t"}}) == [
        '$.conditions: the top level of "conditions" must be all, any, not or condition'
    ]
    assert problems({"conditions": {"all": []}, "event": {"params": {}}}) == ['$.event: event needs a "type"']
    assert problems({"conditions": {"all": []}, "event": {"type": "t"}, "priority": -2}) == [
        "$.priority: priority must be greater than zero (got -2)"
    ]
    assert problems({"conditions": {"all": []}, "event": {"type": "t"}, "priority": 0.5}) == [
        "$.priority: priority must be greater than zero (got 0.5)"
    ]
    assert problems([1]) == ["$: a rule must be an object, not an array"]


def test_not_takes_one_condition_and_ambiguous_conditions_are_refused() -> None:
    assert problems(ok_rule({"not": [{"fact": "a", "operator": "equal", "value": 1}]})) == [
        '$.conditions.not: "not" takes one condition (an object), not an array'
    ]
    assert problems(ok_rule({"all": [{"all": [], "any": []}]})) == [
        "$.conditions.all[0]: ambiguous condition: it has 'any', 'all' (use exactly one of all, any, not, "
        "condition, or a fact/operator/value comparison)"
    ]


def test_unknown_decorators_and_decorated_typos_get_suggestions() -> None:
    assert problems(ok_rule({"all": [{"fact": "a", "operator": "someFacts:equal", "value": 1}]})) == [
        "$.conditions.all[0].operator: unknown operator decorator 'someFacts' in 'someFacts:equal'; "
        "did you mean 'someFact'?"
    ]
    assert problems(ok_rule({"all": [{"fact": "a", "operator": "not:lesThan", "value": 1}]})) == [
        "$.conditions.all[0].operator: unknown operator 'not:lesThan'; did you mean 'not:lessThan'?"
    ]


def test_value_decorators_need_array_values_unless_swapped() -> None:
    assert problems(ok_rule({"all": [{"fact": "a", "operator": "someValue:equal", "value": "x"}]})) == [
        "$.conditions.all[0].value: someValue needs an array value, not a string"
    ]
    engine = RuleEngine()
    engine.compile(ok_rule({"all": [{"fact": "a", "operator": "swap:someValue:equal", "value": "x"}]}))
    engine.compile(ok_rule({"all": [{"fact": "a", "operator": "someValue:in", "value": [["x"], "xy"]}]}))
    engine.compile(ok_rule({"all": [{"fact": "a", "operator": "in", "value": {"fact": "b"}}]}))  # checked at run time


def test_named_condition_cycles_are_refused() -> None:
    engine = RuleEngine()
    engine.set_condition("a", {"all": [{"condition": "b"}]})  # b may come later
    with pytest.raises(RuleValidationError) as info:
        engine.set_condition("b", {"any": [{"condition": "a"}]})
    assert [str(p) for p in info.value.problems] == [
        '$.conditions["b"].any[0].condition<a>.all[0].condition: named conditions refer to each other in a cycle: '
        "b -> a -> b"
    ]
    with pytest.raises(RuleValidationError, match="cycle: c -> c"):
        engine.set_condition("c", {"not": {"condition": "c"}})
    assert problems(ok_rule({"condition": "a"}), engine) == [
        "$.conditions.condition<a>.all[0].condition: unknown named condition 'b'"
    ]


def test_named_conditions_are_checked_when_set() -> None:
    engine = RuleEngine()
    with pytest.raises(RuleValidationError) as info:
        engine.set_condition("x", {"fact": "a", "operator": "equal", "value": 1})
    assert info.value.problems == [
        Problem(
            '$.conditions["x"]',
            '"conditions" root must contain a single instance of "all", "any", "not", or "condition"',
        )
    ]
    with pytest.raises(RuleValidationError, match=r'\$\.conditions\["y"\]\.all\[0\]\.operator: unknown operator'):
        engine.set_condition("y", {"all": [{"fact": "a", "operator": "nope", "value": 1}]})


def test_paths_that_cannot_run_are_refused() -> None:
    engine = RuleEngine()
    for path, message in [
        ("$.a[?(@.name.startsWith('x'))]", "function calls are not supported"),
        ("$.a[?(@path == 1)]", "@path in JSONPath scripts is not supported"),
        ("$.a.@foo()", "unknown JSONPath type selector"),
        ("constructor", "Object.prototype member"),
    ]:
        found = problems(ok_rule({"all": [{"fact": "f", "operator": "equal", "value": 1, "path": path}]}), engine)
        assert len(found) == 1 and found[0].startswith("$.conditions.all[0].path: ") and message in found[0], found


def test_validate_lists_problems_of_a_list_of_rules_with_indexes() -> None:
    engine = RuleEngine()
    good = ok_rule({"all": []})
    bad = ok_rule({"all": [{"fact": "a", "operator": "equals", "value": 1}]})
    assert [str(p) for p in engine.validate([good, good, bad])] == [
        "$[2].conditions.all[0].operator: unknown operator 'equals'; did you mean 'equal'?"
    ]
    assert engine.validate(good) == []


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(RuleValidationError) as info:
        RuleEngine().compile(ok_rule({"all": [{"fact": "", "operator": 1, "value": 1}]}))
    assert str(info.value).splitlines() == [
        "$.conditions.all[0].fact: fact must be a non-empty string, not a string",
        "$.conditions.all[0].operator: operator must be a string, not a number",
    ]
    assert isinstance(info.value, ValueError)
