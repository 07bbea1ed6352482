"""Evaluations per second of coafi.rules and of json-rules-engine (node) on the same rules, in one run.

    .venv/bin/python bench/rules.py [--seconds S] [--repeat N] [--json]

The standard case of the rule-engine issue: 10 rules of 5 conditions each, nested all/any, with JSONPaths,
three priorities. One *evaluation* is one ``engine.run(facts)`` over all 10 rules (both engines hold the
rules compiled/added once; only the facts change hands). json-rules-engine is timed inside node with
``process.hrtime`` by ``tests/differential/jre_driver.js`` (bench mode), after a warm-up; the Python engine
with ``time.perf_counter``, best of ``--repeat`` rounds. Both engines' answers are checked to agree before
anything is printed. No assertion on the ratio: this informs (the issue's goal is >= 3x).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from coafi.rules import RuleEngine  # noqa: E402
from tests.differential.harness import node_available, run_node  # noqa: E402


def standard_rules() -> list[dict[str, Any]]:
    """10 rules x 5 conditions: all[path, path, any[path, path, plain]] with mixed operators."""
    rules = []
    for i in range(10):
        rules.append(
            {
                "name": f"rule-{i}",
                "priority": 1 + i % 3,
                "event": {"type": f"event-{i}", "params": {"rule": i, "discount": 5 * i}},
                "conditions": {
                    "all": [
                        {"fact": "user", "path": "$.profile.age", "operator": "greaterThanInclusive", "value": 18 + i},
                        {"fact": "order", "path": "$.total", "operator": "lessThan", "value": 1000 * (i + 1)},
                        {
                            "any": [
                                {
                                    "fact": "user",
                                    "path": "$.profile.country",
                                    "operator": "in",
                                    "value": ["US", "CA", "GB"],
                                },
                                {"fact": "order", "path": "$.items[0].sku", "operator": "equal", "value": f"sku-{i}"},
                                {"fact": "segment", "operator": "notEqual", "value": "blocked"},
                            ]
                        },
                    ]
                },
            }
        )
    return rules


def standard_facts() -> dict[str, Any]:
    return {
        "user": {"profile": {"age": 30, "country": "DE", "name": "Ann"}, "id": "u-1"},
        "order": {"total": 2500, "items": [{"sku": "sku-3", "qty": 2}, {"sku": "sku-9", "qty": 1}]},
        "segment": "gold",
    }


def measure_python(
    rules: list[dict[str, Any]], facts: dict[str, Any], seconds: float, repeat: int
) -> tuple[float, Any]:
    engine = RuleEngine(rules)
    for _ in range(2000):
        engine.run(facts)
    # calibrate a batch that takes ~seconds/repeat
    n = 1000
    while True:
        start = time.perf_counter()
        for _ in range(n):
            engine.run(facts)
        elapsed = time.perf_counter() - start
        if elapsed > 0.2:
            break
        n *= 2
    n = max(1000, int(n * (seconds / repeat) / elapsed))
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            engine.run(facts)
        best = max(best, n / (time.perf_counter() - start))
    check = [{"name": r.name, "result": r.result} for r in engine.run(facts).all]
    return best, check


def measure_node(rules: list[dict[str, Any]], facts: dict[str, Any], seconds: float, repeat: int) -> tuple[float, Any]:
    probe = run_node({"bench": {"rules": rules, "facts": facts, "iterations": 2000, "warmup": 2000}})
    iterations = max(2000, int(probe["runsPerSecond"] * seconds / repeat))
    best = 0.0
    check: Any = None
    for _ in range(repeat):
        out = run_node({"bench": {"rules": rules, "facts": facts, "iterations": iterations, "warmup": 2000}})
        best = max(best, float(out["runsPerSecond"]))
        check = out["check"]
    return best, check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per engine (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per engine; the best counts (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    rules, facts = standard_rules(), standard_facts()
    reason = node_available()
    if reason:
        print(f"cannot run json-rules-engine: {reason}", file=sys.stderr)
        return 2
    node_rate, node_check = measure_node(rules, facts, args.seconds, args.repeat)
    py_rate, py_check = measure_python(rules, facts, args.seconds, args.repeat)
    if node_check != py_check:
        print(f"the engines disagree:\n  node   {node_check}\n  python {py_check}", file=sys.stderr)
        return 1
    figures = {
        "case": "10 rules x 5 conditions, nested all/any, JSONPaths, 3 priorities",
        "python_runs_per_second": round(py_rate),
        "node_runs_per_second": round(node_rate),
        "python_rule_evaluations_per_second": round(py_rate * len(rules)),
        "node_rule_evaluations_per_second": round(node_rate * len(rules)),
        "ratio": round(py_rate / node_rate, 2),
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"standard case: {figures['case']}")
    print(
        f"  json-rules-engine (node): {node_rate:>10,.0f} runs/s  ({node_rate * len(rules):>11,.0f} rule evaluations/s)"
    )
    print(f"  coafi.rules (python):     {py_rate:>10,.0f} runs/s  ({py_rate * len(rules):>11,.0f} rule evaluations/s)")
    print(f"  ratio python/node:        {py_rate / node_rate:>10.2f}x   (goal: >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
