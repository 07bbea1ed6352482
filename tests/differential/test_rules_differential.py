"""coafi.rules against the real json-rules-engine 7 (node): generated and hand-written cases must agree on
every rule's result (raw and satisfied), its event, the order of the results, the factResult/valueResult/
result of every condition, and how often computed facts were called. Skipped only when node or
node_modules/json-rules-engine is missing (CI installs it with ``npm ci``)."""

from __future__ import annotations

import functools
import json
from collections import Counter
from typing import Any

import pytest

from tests.differential.generator import DECOS, OPS, PATHS, generate, generate_paths
from tests.differential.harness import Case, Outcome, compare, node_available, run_node, run_python

GENERATED = 2500
PATH_CASES = 1000
SEED = 20240607

NAN = {"$js": "NaN"}
INF = {"$js": "Infinity"}
UNDEF = {"$js": "undefined"}


def _rule(conditions: dict[str, Any], name: str = "r", **extra: Any) -> dict[str, Any]:
    return {"name": name, "conditions": conditions, "event": {"type": name}, **extra}


def _leaf(fact: str, operator: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"fact": fact, "operator": operator, "value": value, **extra}


def _single(fact_value: Any, operator: str, value: Any, **extra: Any) -> Case:
    """One condition on fact ``f``, with ``allowUndefinedFacts`` so undefined values can be tested."""
    facts = {} if fact_value is UNDEF else {"f": fact_value}
    return {
        "rules": [_rule({"all": [_leaf("f", operator, value, **extra)]})],
        "facts": facts,
        "options": {"allowUndefinedFacts": True},
    }


@functools.cache
def generated() -> list[Case]:
    return generate(GENERATED, SEED)


@functools.cache
def generated_paths() -> list[Case]:
    return generate_paths(PATH_CASES, SEED)


def edge_cases() -> list[tuple[str, Case]]:
    cases: list[tuple[str, Case]] = []
    add = cases.append
    # type coercion of the comparison operators
    for fact, op, value in [
        ("1", "equal", 1),
        (1, "equal", 1.0),
        (NAN, "equal", NAN),
        (NAN, "notEqual", NAN),
        (None, "equal", UNDEF),
        (True, "equal", 1),
        ("10", "lessThan", "9"),
        (10, "lessThan", "9"),
        ("abc", "lessThan", 5),
        ("5", "lessThan", "abc"),
        (5, "lessThan", "abc"),
        ([5], "lessThan", 10),
        ([5], "lessThan", [10]),
        (" 12 ", "lessThan", 13),
        ("12px", "lessThan", 13),
        ("12px", "greaterThan", 1),
        (None, "lessThan", 1),
        (True, "greaterThan", 0),
        (-1, "lessThan", None),
        (INF, "greaterThan", 1e308),
        ("Infinity", "greaterThan", 5),
        ([], "lessThan", 1),
        ([1, 2], "lessThan", 2),
        ("\ue000", "lessThan", "😀"),
        ("😀", "lessThan", "\ue000"),
        ("a", "lessThanInclusive", "a"),
        (NAN, "lessThanInclusive", NAN),
        (1, "greaterThanInclusive", NAN),
        (2**53 + 1, "equal", 2**53),
        (2**53 + 1, "greaterThan", 2**53),
        ("0x10", "greaterThan", 15),
        ("1e3", "greaterThanInclusive", 1000),
        (".5", "lessThan", 1),
        ("", "lessThan", 1),
        ({"a": 1}, "lessThan", 2),
        (1e21, "equal", 1e21),
        (0.1, "lessThan", 0.30000000000000004),
        ("\u0663", "lessThan", 5),  # an Arabic-Indic digit is no digit to parseFloat
        ("\u00a012", "lessThan", 13),  # no-break space is JavaScript whitespace
        ("\u200b4", "lessThan", 5),  # zero-width space is not
        ("0b11", "equal", 3),
        ("0b11", "greaterThan", 2),
    ]:
        add((f"{json.dumps(fact)} {op} {json.dumps(value)}", _single(fact, op, value)))
    # in / notIn / contains / doesNotContain
    for fact, op, value in [
        ("b", "in", "abc"),
        (1, "in", "a1c"),
        (None, "in", "null"),
        (UNDEF, "in", "undefined"),
        ([1, 2], "in", "x1,2x"),
        (1, "in", ["1"]),
        (NAN, "in", [NAN]),
        ("a", "notIn", []),
        (UNDEF, "notIn", ["a"]),
        ({"a": 1}, "in", [{"a": 1}]),
        ("bc", "contains", "b"),
        (["a", "b"], "contains", "b"),
        ([1], "contains", "1"),
        ("abc", "doesNotContain", "z"),
        ([NAN], "contains", NAN),
        ([None], "doesNotContain", UNDEF),
        ([[1]], "contains", [1]),
        ("", "in", ""),
    ]:
        add((f"{json.dumps(fact)} {op} {json.dumps(value)}", _single(fact, op, value)))
    # decorators
    for fact, op, value in [
        ([], "everyFact:equal", 1),
        ([], "someFact:equal", 1),
        ([1, 1], "everyFact:equal", 1),
        ("11", "everyFact:equal", "1"),
        (2, "someValue:lessThan", [1, 3]),
        (2, "everyValue:lessThan", [3, 4]),
        (2, "everyValue:lessThan", []),
        (["a", "b"], "swap:in", "a"),
        ("a", "swap:contains", ["a"]),
        (3, "not:lessThan", 2),
        ("x", "not:lessThan", 2),
        ([[1, 2], [3]], "someFact:contains", 3),
        ([1, 2], "everyFact:someValue:equal", [1, 2, 3]),
        ("abc", "swap:lessThan", "abd"),
        (["x"], "not:someFact:equal", "x"),
        (5, "not:not:equal", 5),
    ]:
        add((f"{json.dumps(fact)} {op} {json.dumps(value)}", _single(fact, op, value)))
    # paths
    user = {"profile": {"age": 30, "tags": ["a"], "name": "ann"}, "orders": [{"total": 5}, {"total": 20, "sku": "x"}]}
    for path, op, value in [
        ("$.profile.age", "equal", 30),
        ("$.profile.missing", "equal", UNDEF),
        ("$.missing.deep", "notEqual", None),
        ("$.orders[*].total", "contains", 20),
        ("$..total", "contains", 5),
        ("$.orders[1].sku", "equal", "x"),
        ("$.orders.length", "equal", 2),
        ("$.profile.name.length", "equal", 3),
        ("$.profile.tags[*]", "equal", ["a"]),
        ("$.orders[?(@.total > 10)].sku", "equal", "x"),
        ("$.orders[?(@.total > 10)].sku", "contains", "x"),
        ("profile.age", "equal", 30),
        ("$", "equal", 1),
        ("$.orders[-1:].total", "contains", 20),
        ("$.orders[(@.length-1)].total", "equal", 20),
        ("$['profile']['age']", "equal", 30),
        ("$.profile.*", "contains", 30),
        ("$..sku", "equal", "x"),
        ("$.orders[0,1].total", "contains", 5),
    ]:
        add((f"path {path} {op} {json.dumps(value)}", _single(user, op, value, path=path)))
    add(("path on a number gives the number", _single(5, "equal", 5, path="$.a")))
    add(("path on null gives null", _single(None, "equal", None, path="$.a")))
    add(("path on a string gives the string", _single("abc", "equal", "abc", path="$.length")))
    # fact to fact (same object: identity)
    add(
        (
            "fact equals itself (identity)",
            {"rules": [_rule({"all": [_leaf("u", "equal", {"fact": "u"})]})], "facts": {"u": user}},
        )
    )
    add(
        (
            "sub-object by two paths",
            {
                "rules": [_rule({"all": [_leaf("u", "equal", {"fact": "u", "path": "$.profile"}, path="$.profile")]})],
                "facts": {"u": user},
            },
        )
    )
    add(
        (
            "equal objects are not ===",
            {"rules": [_rule({"all": [_leaf("a", "equal", {"fact": "b"})]})], "facts": {"a": {"x": 1}, "b": {"x": 1}}},
        )
    )
    # missing facts, priorities and short-circuits
    lo = {"priority": 1}
    add(("missing fact is an error", {"rules": [_rule({"all": [_leaf("nope", "equal", 1)]})], "facts": {}}))
    add(
        (
            "missing fact beside a failed sibling of the same priority is still an error",
            {"rules": [_rule({"all": [_leaf("a", "equal", 2), _leaf("nope", "equal", 1)]})], "facts": {"a": 1}},
        )
    )
    add(
        (
            "a failed higher-priority group skips the missing fact",
            {
                "rules": [_rule({"all": [_leaf("a", "equal", 2, priority=2), _leaf("nope", "equal", 1, **lo)]})],
                "facts": {"a": 1},
            },
        )
    )
    add(
        (
            "any: a passed higher-priority group skips the rest",
            {
                "rules": [_rule({"any": [_leaf("a", "equal", 1, priority=5), _leaf("nope", "equal", 1)]})],
                "facts": {"a": 1},
            },
        )
    )
    add(
        (
            "missing fact with allowUndefinedFacts",
            {
                "rules": [_rule({"all": [_leaf("nope", "equal", UNDEF), _leaf("nope", "notEqual", None)]})],
                "facts": {},
                "options": {"allowUndefinedFacts": True},
            },
        )
    )
    add(
        (
            "engine fact priority orders conditions",
            {
                "rules": [_rule({"all": [_leaf("a", "equal", 2), _leaf("b", "equal", 1)]})],
                "facts": {"a": 1},
                "engineFacts": [{"id": "a", "value": 0, "priority": 5}],
            },
        )
    )
    add(
        (
            "fact explicitly undefined is defined",
            {"rules": [_rule({"all": [_leaf("u", "equal", UNDEF)]})], "facts": {"u": UNDEF}},
        )
    )
    add(("a fact with an empty name fails the run", {"rules": [_rule({"all": []})], "facts": {"": 1}}))
    # empty and single-child booleans, raw results of custom operators
    add(
        (
            "empty all and any are true",
            {
                "rules": [_rule({"all": []}, "a"), _rule({"any": []}, "b"), _rule({"not": {"any": []}}, "c")],
                "facts": {},
            },
        )
    )
    add(
        (
            "identity at the top passes its raw value",
            {
                "rules": [
                    _rule({"all": [_leaf("o", "identity", None)]}, "top"),
                    _rule({"all": [{"all": [_leaf("o", "identity", None)]}]}, "nested"),
                ],
                "facts": {"o": {"k": 1}},
                "operators": ["identity"],
            },
        )
    )
    add(
        (
            "identity of 0 and of []",
            {
                "rules": [
                    _rule({"any": [_leaf("z", "identity", None)]}, "zero"),
                    _rule({"any": [_leaf("e", "identity", None)]}, "empty"),
                ],
                "facts": {"z": 0, "e": []},
                "operators": ["identity"],
            },
        )
    )
    # named conditions
    named = {
        "adult": {"all": [_leaf("age", "greaterThanInclusive", 18)]},
        "senior": {"all": [{"condition": "adult"}, _leaf("age", "greaterThan", 64)]},
    }
    add(
        (
            "named conditions, nested",
            {
                "rules": [_rule({"condition": "senior"}, "s"), _rule({"any": [{"condition": "adult"}]}, "a")],
                "facts": {"age": 70},
                "conditions": named,
            },
        )
    )
    add(
        (
            "undefined condition with allowUndefinedConditions",
            {
                "rules": [_rule({"any": [{"condition": "nope"}]})],
                "facts": {},
                "options": {"allowUndefinedConditions": True},
            },
        )
    )
    # rule priorities and the order of results
    add(
        (
            "priorities: higher first, equal ones by completion",
            {
                "rules": [
                    _rule({"all": [{"any": [{"all": [_leaf("a", "equal", 1)]}]}]}, "deep"),
                    _rule({"all": [_leaf("a", "equal", 1)]}, "shallow"),
                    _rule({"all": [_leaf("a", "equal", 1)]}, "high", priority=9),
                    _rule({"all": [_leaf("a", "equal", 1, path="$.x")]}, "path"),
                    _rule({"all": [_leaf("a", "equal", 1)]}, "zero", priority=0),
                    _rule({"all": [_leaf("a", "equal", 1)]}, "string2", priority="2"),
                    _rule({"all": [_leaf("a", "equal", 1)]}, "float", priority=2.7),
                ],
                "facts": {"a": 1},
            },
        )
    )
    # computed facts and their cache
    add(
        (
            "computed facts are cached by params",
            {
                "rules": [
                    _rule(
                        {
                            "all": [
                                _leaf("c", "equal", 1, params={"x": 1}),
                                _leaf("c", "equal", 1, params={"x": 1}),
                                _leaf("c", "equal", 7),
                                _leaf("c", "equal", 7, params={}),
                                _leaf("c", "equal", 2, params={"x": 2}),
                            ]
                        }
                    ),
                ],
                "facts": {},
                "computed": {"c": "calc"},
            },
        )
    )
    add(
        (
            "uncached engine fact is called every time",
            {
                "rules": [_rule({"all": [_leaf("c", "equal", 7), _leaf("c", "equal", 7)]})],
                "facts": {},
                "engineFacts": [{"id": "c", "computed": "calc", "cache": False}],
            },
        )
    )
    add(
        (
            "computed object: cached identity",
            {
                "rules": [_rule({"all": [_leaf("o", "equal", {"fact": "o"})]})],
                "facts": {},
                "computed": {"o": "calcObj"},
            },
        )
    )
    # events
    add(
        (
            "event params only when truthy",
            {
                "rules": [
                    {"name": "a", "conditions": {"all": []}, "event": {"type": "a", "params": {}}},
                    {"name": "b", "conditions": {"all": []}, "event": {"type": "b", "params": None}},
                    {"name": "c", "conditions": {"all": []}, "event": {"type": "c", "params": 0}},
                    {"name": "d", "conditions": {"all": []}, "event": None},
                ],
                "facts": {},
            },
        )
    )
    add(
        (
            "replaceFactsInEventParams",
            {
                "rules": [
                    {
                        "name": "a",
                        "conditions": {"all": []},
                        "event": {"type": "a", "params": {"who": {"fact": "u", "path": "$.n"}, "k": 1}},
                    },
                    {"name": "b", "conditions": {"all": []}, "event": {"type": "b", "params": {"k": 1}}},
                ],
                "facts": {"u": {"n": "ann"}},
                "options": {"replaceFactsInEventParams": True},
            },
        )
    )
    # runtime errors json-rules-engine throws
    add(("someValue on a fact value (swap) that is not an array throws", _single("x", "swap:someValue:equal", ["x"])))
    add(
        (
            "in against a fact-to-fact number throws",
            {"rules": [_rule({"all": [_leaf("a", "in", {"fact": "b"})]})], "facts": {"a": 1, "b": 2}},
        )
    )
    add(
        (
            "filter reading a property of undefined throws",
            _single({"o": [{"a": {"b": 1}}, {}]}, "equal", 1, path="$.o[?(@.a.b == 1)]"),
        )
    )
    return cases


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[list[Case], list[Outcome]]]:
    reason = node_available()
    if reason:
        pytest.skip(reason)
    cases, paths = generated(), generated_paths()
    edges = [case for _, case in edge_cases()]
    outcomes = run_node(cases + paths + edges)
    return {
        "generated": (cases, outcomes[:GENERATED]),
        "paths": (paths, outcomes[GENERATED : GENERATED + PATH_CASES]),
        "edge": (edges, outcomes[GENERATED + PATH_CASES :]),
    }


def _disagreements(cases: list[Case], outcomes: list[Outcome], labels: list[str] | None = None) -> list[str]:
    out = []
    for i, (case, expected) in enumerate(zip(cases, outcomes, strict=True)):
        actual = run_python(case)
        diff = compare(case, expected, actual)
        if diff:
            label = labels[i] if labels else f"generated case #{i}"
            out.append(f"{label}: {diff}\n  case: {json.dumps(case)}")
    return out


def test_generated_cases_agree_with_json_rules_engine(runs: dict[str, tuple[list[Case], list[Outcome]]]) -> None:
    cases, outcomes = runs["generated"]
    bad = _disagreements(cases, outcomes)
    assert not bad, f"{len(bad)} of {len(cases)} cases disagree; first ones:\n" + "\n\n".join(bad[:5])


def test_random_jsonpaths_resolve_like_jsonpath_plus(runs: dict[str, tuple[list[Case], list[Outcome]]]) -> None:
    cases, outcomes = runs["paths"]
    bad = _disagreements(cases, outcomes, [f"path {c['rules'][0]['conditions']['all'][0]['path']!r}" for c in cases])
    assert not bad, f"{len(bad)} of {len(cases)} paths disagree; first ones:\n" + "\n\n".join(bad[:5])
    assert sum(1 for o in outcomes if o["ok"]) > 0.8 * len(outcomes)


def test_hand_written_edge_cases_agree_with_json_rules_engine(
    runs: dict[str, tuple[list[Case], list[Outcome]]],
) -> None:
    cases, outcomes = runs["edge"]
    labels = [label for label, _ in edge_cases()]
    bad = _disagreements(cases, outcomes, labels)
    assert not bad, "\n\n".join(bad)


def test_the_cases_exercise_outcomes_not_just_errors(runs: dict[str, tuple[list[Case], list[Outcome]]]) -> None:
    _, outcomes = runs["generated"]
    ok = [o for o in outcomes if o["ok"]]
    results = [r for o in ok for r in o["results"]]
    assert len(ok) > 0.6 * len(outcomes)
    assert sum(1 for r in results if r["result"] is True) > 0.25 * len(results)
    assert sum(1 for r in results if r["result"] is False) > 0.25 * len(results)
    assert sum(1 for o in outcomes if not o["ok"] and o["code"] == "UNDEFINED_FACT") > 50
    assert sum(1 for o in outcomes if not o["ok"] and o["code"] != "UNDEFINED_FACT") > 50  # TypeErrors of operators
    assert sum(1 for r in results if not isinstance(r["result"], bool)) > 20  # raw custom-operator results
    reordered = 0  # runs where node reports rules of equal priority out of their given order
    for case, outcome in zip(runs["generated"][0], outcomes, strict=True):
        if not outcome["ok"]:
            continue
        given = [r.get("name", {"$js": "undefined"}) for r in case["rules"]]
        groups: dict[int, list[Any]] = {}
        for r in outcome["results"]:
            groups.setdefault(r["priority"], []).append(r["name"])
        reordered += any(
            [given.index(n) for n in group] != sorted(given.index(n) for n in group)
            for group in groups.values()
            if all(n in given for n in group) and len(set(map(json.dumps, group))) == len(group)
        )
    assert reordered > 100, reordered  # about 400 with this seed


def test_generated_cases_cover_the_specification() -> None:
    cases = generated()
    operators: Counter[str] = Counter()
    decorators: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    seen: Counter[str] = Counter()

    def walk(node: Any, depth: int) -> None:
        if not isinstance(node, dict):
            return
        seen[f"depth{min(depth, 4)}"] += 1
        for kind in ("all", "any"):
            if kind in node:
                seen[kind] += 1
                seen[f"{kind}-size{min(len(node[kind]), 3)}"] += 1
                for child in node[kind]:
                    walk(child, depth + 1)
        if "not" in node:
            seen["not"] += 1
            walk(node["not"], depth + 1)
        if "condition" in node:
            seen["named"] += 1
        if "operator" in node:
            *decos, base = node["operator"].split(":")
            operators[base] += 1
            decorators.update(decos)
            if "path" in node:
                paths[node["path"]] += 1
            if isinstance(node["value"], dict) and "fact" in node["value"]:
                seen["fact-to-fact"] += 1
            if "priority" in node:
                seen["condition-priority"] += 1
            if "params" in node:
                seen["params"] += 1

    for case in cases:
        for rule in case["rules"]:
            walk(rule["conditions"], 0)
            seen[f"rule-priority-{rule.get('priority', 'none')}"] += 1
        for condition in (case.get("conditions") or {}).values():
            walk(condition, 1)
        options = case.get("options") or {}
        seen[f"allowUndefinedFacts-{bool(options.get('allowUndefinedFacts'))}"] += 1
        seen["replaceFactsInEventParams"] += bool(options.get("replaceFactsInEventParams"))
        seen["allowUndefinedConditions"] += bool(options.get("allowUndefinedConditions"))
        seen["computed"] += bool(case.get("computed"))
        seen["engineFacts"] += bool(case.get("engineFacts"))
        seen["custom-operators"] += bool(case.get("operators"))
        seen["custom-decorators"] += bool(case.get("decorators"))
        seen["several-rules"] += len(case["rules"]) > 1
        for fact in ("age", "name", "flag", "score", "tags", "user", "misc", "nil", "big"):
            seen["missing-fact"] += fact not in case["facts"]

    assert set(OPS) <= set(operators), set(OPS) - set(operators)
    assert {"startsWith", "identity", "lengthIs"} <= set(operators)
    assert set(DECOS) | {"both"} <= set(decorators), (set(DECOS) | {"both"}) - set(decorators)
    assert set(PATHS) <= set(paths), set(PATHS) - set(paths)
    for feature in (
        "all",
        "any",
        "not",
        "named",
        "fact-to-fact",
        "condition-priority",
        "params",
        "depth4",
        "all-size0",
        "any-size3",
        "allowUndefinedFacts-True",
        "allowUndefinedFacts-False",
        "replaceFactsInEventParams",
        "allowUndefinedConditions",
        "computed",
        "engineFacts",
        "custom-operators",
        "custom-decorators",
        "several-rules",
        "missing-fact",
        "rule-priority-2",
        "rule-priority-0",
        "rule-priority-2.7",
    ):
        assert seen[feature] >= 10, (feature, seen[feature])
