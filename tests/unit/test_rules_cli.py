"""``coafi rules eval`` and ``coafi rules validate`` (through ``coafi.rules.cli.register``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from coafi.rules.cli import register

RULES = [
    {
        "name": "adult",
        "conditions": {"all": [{"fact": "user", "path": "$.age", "operator": "greaterThanInclusive", "value": 18}]},
        "event": {"type": "adult"},
    },
    {
        "name": "vip",
        "priority": 5,
        "conditions": {"any": [{"fact": "user", "path": "$.tier", "operator": "in", "value": ["gold"]}]},
        "event": {"type": "vip", "params": {"discount": 10}},
    },
]


def coafi(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="coafi")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def write(folder: Path, name: str, data: Any) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_eval_prints_each_rule_in_file_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "rules.json", RULES)
    facts = write(tmp_path, "facts.json", {"user": {"age": 30, "tier": "silver"}})
    assert coafi("rules", "eval", "--rules", str(rules), "--facts", str(facts)) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [
        {"name": "adult", "satisfied": True, "event": {"type": "adult"}},
        {"name": "vip", "satisfied": False, "event": None},
    ]
    assert err == ""


def test_eval_of_a_single_rule_and_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "rule.json", RULES[1])
    facts = write(tmp_path, "facts.json", {"user": {"tier": "gold"}})
    assert coafi("rules", "eval", "--rules", str(rules), "--facts", str(facts), "--explain", "--compact") == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    (item,) = json.loads(out)
    assert item["satisfied"] and item["event"] == {"type": "vip", "params": {"discount": 10}}
    assert item["priority"] == 5 and item["result"] is True
    assert item["conditions"]["any"][0]["factResult"] == "gold"


def test_eval_reads_yaml_and_named_conditions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(
        tmp_path,
        "rules.yaml",
        "conditions:\n"
        "  adult: {all: [{fact: age, operator: greaterThanInclusive, value: 18}]}\n"
        "rules:\n"
        "  - {name: grown-up, conditions: {condition: adult}, event: {type: ok}}\n",
    )
    facts = write(tmp_path, "facts.yaml", "age: 40\n")
    assert coafi("rules", "eval", "--rules", str(rules), "--facts", str(facts)) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "grown-up", "satisfied": True, "event": {"type": "ok"}}]


def test_eval_fails_on_undefined_facts_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write(tmp_path, "rules.json", RULES)
    facts = write(tmp_path, "facts.json", {})
    assert coafi("rules", "eval", "--rules", str(rules), "--facts", str(facts)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: Undefined fact: user")
    assert coafi("rules", "eval", "--rules", str(rules), "--facts", str(facts), "--allow-undefined-facts") == 0
    assert [r["satisfied"] for r in json.loads(capsys.readouterr().out)] == [False, False]


def test_eval_refuses_invalid_rules_with_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = [RULES[0], {"conditions": {"all": [{"fact": "a", "operator": "equals", "value": 1}]}, "event": {"type": "t"}}]
    rules = write(tmp_path, "rules.json", bad)
    facts = write(tmp_path, "facts.json", {"a": 1})
    assert coafi("rules", "eval", "--rules", str(rules), "--facts", str(facts)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{rules}: $[1].conditions.all[0].operator: unknown operator 'equals'; did you mean 'equal'?"
    ]


def test_validate_reports_every_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "good.json", RULES)
    bad = write(
        tmp_path,
        "bad.json",
        [
            RULES[0],
            RULES[1],
            {
                "conditions": {
                    "all": [
                        {"fact": "a", "operator": "equal", "value": 1},
                        {"fact": "a", "operator": "equals", "value": 1},
                        {"condition": "missing"},
                    ]
                },
                "event": {"type": "t"},
                "priority": -1,
            },
        ],
    )
    broken = write(tmp_path, "broken.json", "[{")
    assert coafi("rules", "validate", str(good), str(bad), str(broken)) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"ok  {good}: 2 rules"]
    assert err.splitlines() == [
        f"{bad}: $[2].priority: priority must be greater than zero (got -1)",
        f"{bad}: $[2].conditions.all[1].operator: unknown operator 'equals'; did you mean 'equal'?",
        f"{bad}: $[2].conditions.all[2].condition: unknown named condition 'missing'",
        f"{broken}: invalid JSON: Expecting property name enclosed in double quotes (line 1, column 3)",
    ]


def test_validate_a_single_rule_and_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    single = write(tmp_path, "one.json", RULES[0])
    bundle = write(
        tmp_path,
        "bundle.json",
        {
            "conditions": {"x": {"all": [{"fact": "a", "operator": "nope", "value": 1}]}},
            "rules": [{"conditions": {"condition": "x"}, "event": {"type": "t"}}],
        },
    )
    assert coafi("rules", "validate", str(single)) == 0
    assert capsys.readouterr().out == f"ok  {single}: 1 rule\n"
    assert coafi("rules", "validate", str(bundle)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{bundle}: $.conditions[\"x\"].all[0].operator: unknown operator 'nope'"
    assert err[1] == f"{bundle}: $.rules[0].conditions.condition: unknown named condition 'x'"
