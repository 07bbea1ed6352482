"""json-rules-engine's JavaScript semantics, as documented in coafi/rules/README.md ("Where json-rules-engine
is surprising"). The differential test checks the same against node; these run without it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from coafi.rules import UNDEFINED, RuleEngine
from coafi.rules._js import (
    js_less,
    js_less_equal,
    js_number_to_string,
    js_parse_int,
    js_strict_eq,
    js_to_number,
    js_to_string,
    js_truthy,
    parse_float_valid,
)

ENGINE = RuleEngine(allow_undefined_facts=True)


def holds(fact: Any, operator: str, value: Any, **extra: Any) -> bool:
    facts = {} if fact is UNDEFINED else {"f": fact}
    rule = {
        "conditions": {"all": [{"fact": "f", "operator": operator, "value": value, **extra}]},
        "event": {"type": "t"},
    }
    return ENGINE.evaluate(rule, facts).satisfied


@pytest.mark.parametrize(
    ("fact", "operator", "value", "expected"),
    [
        ("1", "equal", 1, False),
        (True, "equal", 1, False),
        (1, "equal", 1.0, True),
        (math.nan, "equal", math.nan, False),
        (math.nan, "notEqual", math.nan, True),
        (None, "equal", UNDEFINED, False),
        (UNDEFINED, "notEqual", None, True),
        (UNDEFINED, "notIn", ["a"], True),
        ({"a": 1}, "equal", {"a": 1}, False),
        (2**53 + 1, "equal", 2**53, True),
        ("10", "lessThan", "9", True),
        (10, "lessThan", "9", False),
        ("abc", "lessThan", 5, False),
        ("12px", "lessThan", 13, False),
        ("12px", "greaterThan", 1, False),
        (" 12 ", "lessThan", 13, True),
        ([5], "lessThan", 10, True),
        (None, "lessThan", 1, False),
        (True, "greaterThan", 0, False),
        (-1, "lessThan", None, True),
        ("Infinity", "greaterThan", 5, True),
        ("\ue000", "lessThan", "😀", False),
        (math.nan, "lessThanInclusive", math.nan, False),
        ("b", "in", "abc", True),
        (1, "in", "a1c", True),
        (None, "in", "null", True),
        (1, "in", ["1"], False),
        (math.nan, "in", [math.nan], False),
        ("abc", "contains", "b", False),
        ("abc", "doesNotContain", "z", False),
        (["a", "b"], "contains", "b", True),
        ([], "everyFact:equal", 1, True),
        ([], "someFact:equal", 1, False),
        ("x", "everyFact:equal", "x", False),
        (2, "someValue:lessThan", [1, 3], True),
        (["a"], "swap:contains", "a", False),
        ("a", "swap:contains", ["a"], True),
        ("x", "not:lessThan", 2, True),
    ],
)
def test_operators_follow_javascript(fact: Any, operator: str, value: Any, expected: bool) -> None:
    assert holds(fact, operator, value) is expected


@pytest.mark.parametrize(
    ("fact", "path", "value", "operator", "expected"),
    [
        (5, "$.a", 5, "equal", True),  # a path on a non-object gives the fact itself
        (None, "$.a", None, "equal", True),
        ({"a": {}}, "$.a.b", None, "equal", False),  # undefined is not null
        ({"a": {}}, "$.a.b", None, "notEqual", True),
        ({"o": [{"t": 5}]}, "$.o[*].t", 5, "equal", False),  # a wildcard always gives an array
        ({"o": [{"t": 5}]}, "$.o[*].t", 5, "contains", True),
        ({"o": [{"t": 5}]}, "$.o[0].t", 5, "equal", True),
        ({"o": [1, 2, 3]}, "$.o.length", 3, "equal", True),
        ({"s": "héllo"}, "$.s.length", 5, "equal", True),
        ({"p": {"age": 3}}, "p.age", 3, "equal", True),
        ({"o": [{"t": 1}, {"t": 20, "s": "x"}]}, "$.o[?(@.t > 10)].s", "x", "contains", True),
        ({"o": [{"t": 1}, {"t": 20}]}, "$.o[(@.length-1)].t", 20, "equal", True),
        ({"o": [{"t": 1}, {"t": 20}]}, "$..t", [1, 20], "equal", False),
        ({"o": [{"t": 1}, {"t": 20}]}, "$.o[-1:].t", 20, "contains", True),
        ({"a b": 1}, "$['a b']", 1, "equal", True),
    ],
)
def test_paths_resolve_like_jsonpath_plus_without_wrapping(
    fact: Any, path: str, value: Any, operator: str, expected: bool
) -> None:
    assert holds(fact, operator, value, path=path) is expected


def test_a_multi_match_path_gives_the_matches_in_order() -> None:
    rule = {
        "conditions": {"all": [{"fact": "f", "path": "$..t", "operator": "equal", "value": 0}]},
        "event": {"type": "t"},
    }
    tree = ENGINE.evaluate(rule, {"f": {"b": {"t": 2}, "1": {"t": 1}, "t": 0}}).conditions
    assert tree["all"][0]["factResult"] == [0, 1, 2]  # the object's own t, then integer keys first (Object.keys)


def test_empty_all_and_any_are_true_and_priorities_of_rules_are_parse_int() -> None:
    assert ENGINE.evaluate({"conditions": {"any": []}, "event": {"type": "t"}}, {}).satisfied
    assert not ENGINE.evaluate({"conditions": {"not": {"any": []}}, "event": {"type": "t"}}, {}).satisfied
    for given, parsed in [(0, 1), (2.7, 2), ("2", 2), (None, 1), (1e21, 1)]:
        rule = {"conditions": {"all": []}, "event": {"type": "t"}, "priority": given}
        assert ENGINE.evaluate(rule, {}).priority == parsed


def test_event_params_are_kept_only_when_truthy() -> None:
    cases: list[tuple[Any, bool]] = [({}, True), ([], True), (None, False), (0, False), ("", False)]
    for params, kept in cases:
        rule = {"conditions": {"all": []}, "event": {"type": "t", "params": params}}
        assert ("params" in ENGINE.evaluate(rule, {}).rule_event) is kept
    assert ENGINE.evaluate({"conditions": {"all": []}, "event": None}, {}).event == {"type": "unknown"}


def test_javascript_value_helpers() -> None:
    assert [js_number_to_string(x) for x in (1e21, 1e-7, 1e20, 1.5e-6, 0.1, -0.0, 123.0, 2**53 + 1, math.inf)] == [
        "1e+21", "1e-7", "100000000000000000000", "0.0000015", "0.1", "0", "123", "9007199254740992", "Infinity",
    ]  # fmt: skip
    assert js_to_string([1, None, [2, UNDEFINED], {"a": 1}, True]) == "1,,2,,[object Object],true"
    assert [js_to_number(x) for x in ("  12 ", "0x1F", "", "1_0", None, [5], [])] == [
        12,
        31,
        0,
        js_to_number("x"),
        0,
        5,
        0,
    ]
    assert math.isnan(js_to_number("1_0")) and math.isnan(js_to_number(UNDEFINED))
    assert [parse_float_valid(x) for x in ("12abc", ".5", "-.5e3", "e5", "", True, [3], [], math.inf)] == [
        True, True, True, False, False, False, True, False, True,
    ]  # fmt: skip
    assert [js_parse_int(x) for x in (2.7, "  -3x", "x", 1e21)] == [2, -3, None, 1]
    values: tuple[Any, ...] = (0, math.nan, "", [], {}, "0", UNDEFINED)
    assert [js_truthy(x) for x in values] == [
        False,
        False,
        False,
        True,
        True,
        True,
        False,
    ]
    assert js_strict_eq(1, 1.0) and not js_strict_eq(True, 1) and not js_strict_eq([], [])
    assert js_less("10", "9") and not js_less(10, "9") and js_less_equal(None, 0) and not js_less_equal(UNDEFINED, 0)
