"""Both sides of the differential test: json-rules-engine through ``jre_driver.js`` (one node process for a
batch of cases) and :class:`coafi.rules.RuleEngine` on the same case, reduced to the same outcome shape.

A case is JSON: ``{rules, facts, options?, conditions?, engineFacts?, computed?, operators?, decorators?}``
(see ``jre_driver.js``). Values may hold ``{"$js": "undefined" | "NaN" | "Infinity" | "-Infinity"}``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coafi.rules import UNDEFINED, Almanac, RuleEngine, RuleEvaluationError, UndefinedFactError
from coafi.rules._js import js_strict_eq, js_truthy
from coafi.rules.operators import OperatorFn, is_array

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("jre_driver.js")
JRE = ROOT / "node_modules" / "json-rules-engine" / "package.json"

Case = dict[str, Any]
Outcome = dict[str, Any]


def node_available() -> str | None:
    """Why the reference cannot run (``None`` when it can)."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not JRE.exists():
        return "node_modules/json-rules-engine is missing (run npm ci)"
    return None


def run_node(payload: Any, timeout: float = 120) -> Any:
    """Feed ``payload`` (a list of cases, or ``{"bench": ...}``) to one node process; its JSON answer."""
    proc = subprocess.run(
        ["node", str(DRIVER)],
        input=json.dumps(payload, allow_nan=False).encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"jre_driver.js failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return json.loads(proc.stdout)


# -- values across the JSON boundary ------------------------------------------------------------------------------

_SPECIAL: dict[str, Any] = {"undefined": UNDEFINED, "NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$js" in value:
            return _SPECIAL[value["$js"]]
        return {k: decode(v) for k, v in value.items()}
    return value


def encode(value: Any) -> Any:
    if value is UNDEFINED:
        return {"$js": "undefined"}
    if isinstance(value, float):
        if value != value:
            return {"$js": "NaN"}
        if value in (math.inf, -math.inf):
            return {"$js": "Infinity" if value > 0 else "-Infinity"}
        return value
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if callable(value):
        return {"$js": "function"}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, booleans never equal to numbers, numbers compared as doubles."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


# -- the shared libraries of custom operators, decorators and computed facts -------------------------------------


def _both(a: Any, b: Any, nxt: OperatorFn) -> Any:
    first = nxt(a, b)
    return nxt(b, a) if js_truthy(first) else first


OPERATORS: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any], Any] | None]] = {
    "startsWith": (lambda a, b: isinstance(a, str) and isinstance(b, str) and a.startswith(b), None),
    "identity": (lambda a, b: a, None),
    "lengthIs": (lambda a, b: js_strict_eq(len(a), b), is_array),
}
DECORATORS: dict[str, Callable[[Any, Any, OperatorFn], Any]] = {"both": _both}


def computed_fact(kind: str, calls: dict[str, int], fact_id: str) -> Callable[[Any, Almanac], Any]:
    def fact(params: Any, almanac: Almanac) -> Any:
        calls[fact_id] = calls.get(fact_id, 0) + 1
        x = params["x"] if isinstance(params, dict) and "x" in params else None
        has_x = isinstance(params, dict) and "x" in params
        if kind == "calc":
            return x if has_x else 7
        if kind == "calcObj":
            return {"a": {"b": x if has_x else 3}, "list": [1, 2, 3]}
        raise ValueError(kind)

    return fact


# -- the Python side ---------------------------------------------------------------------------------------------


def tree(node: Any) -> Any:
    """``jre_driver.js``'s ``tree()`` of a :attr:`RuleResult.conditions` dict."""
    if not isinstance(node, dict):
        return None
    out: dict[str, Any] = {}
    kind = next((k for k in ("any", "all", "not") if k in node), None)
    if kind is not None:
        out["k"] = kind
        out["c"] = [tree(node["not"])] if kind == "not" else [tree(c) for c in node[kind]]
    elif "condition" in node:
        out["k"] = "ref"
    else:
        out["k"] = "leaf"
        if "factResult" in node:
            out["f"] = encode(node["factResult"])
        if "valueResult" in node:
            out["v"] = encode(node["valueResult"])
    if "result" in node and node["result"] is not UNDEFINED:
        out["r"] = encode(node["result"])
    return out


def build_engine(case: Case, calls: dict[str, int]) -> RuleEngine:
    options = decode(case.get("options") or {})
    engine = RuleEngine(
        allow_undefined_facts=bool(options.get("allowUndefinedFacts")),
        allow_undefined_conditions=bool(options.get("allowUndefinedConditions")),
        replace_facts_in_event_params=bool(options.get("replaceFactsInEventParams")),
    )
    for name in case.get("operators") or []:
        fn, validator = OPERATORS[name]
        engine.add_operator(name, fn, validator)
    for name in case.get("decorators") or []:
        engine.add_operator_decorator(name, DECORATORS[name])
    for name, condition in (case.get("conditions") or {}).items():
        engine.set_condition(name, decode(condition))
    for f in case.get("engineFacts") or []:
        value = computed_fact(f["computed"], calls, f["id"]) if f.get("computed") else decode(f.get("value"))
        engine.add_fact(f["id"], value, priority=f.get("priority") or 1, cache=f.get("cache", True) is not False)
    for rule in case["rules"]:
        engine.add_rule(decode(rule))
    return engine


def run_python(case: Case) -> Outcome:
    calls: dict[str, int] = {}
    try:
        engine = build_engine(case, calls)
        facts = decode(case.get("facts") or {})
        for fact_id, kind in (case.get("computed") or {}).items():
            facts[fact_id] = computed_fact(kind, calls, fact_id)
        outcome = engine.run(facts)
    except RuleEvaluationError as exc:
        code = "UNDEFINED_FACT" if isinstance(exc, UndefinedFactError) else None
        return {"ok": False, "error": str(exc), "code": code, "calls": calls}
    results = [
        {
            "name": encode(r.name) if r.name is not None else {"$js": "undefined"},
            "priority": r.priority,
            "result": encode(r.result),
            "event": encode(r.rule_event),
            "tree": tree(r.conditions),
        }
        for r in outcome.all
    ]
    return {"ok": True, "results": results, "calls": calls}


def compare(case: Case, expected: Outcome, actual: Outcome) -> str | None:
    """``None`` when both agree, else what differs."""
    if expected["ok"] != actual["ok"]:
        return f"node {'succeeded' if expected['ok'] else 'failed: ' + expected['error']}, python " + (
            "succeeded" if actual["ok"] else "failed: " + actual["error"]
        )
    if not expected["ok"]:
        # both failed; which of several errors node reports first depends on promise timing
        return None
    exp, act = expected["results"], actual["results"]
    if [r["name"] for r in exp] != [r["name"] for r in act]:
        return f"order of results: node {[r['name'] for r in exp]}, python {[r['name'] for r in act]}"
    for e, a in zip(exp, act, strict=True):
        for key in ("priority", "result", "event"):
            if not same(e[key], a[key]):
                return f"rule {e['name']!r}: {key} node {e[key]!r}, python {a[key]!r}"
        et, at = dict(e["tree"] or {}), dict(a["tree"] or {})
        if et.get("k") != "ref":
            et.pop("r", None)
            at.pop("r", None)  # node leaves the top all/any/not without a result
        if not same(et, at):
            return f"rule {e['name']!r}: condition tree\n  node   {json.dumps(et)}\n  python {json.dumps(at)}"
    if not same(expected.get("calls") or {}, actual.get("calls") or {}):
        return f"computed fact calls: node {expected.get('calls')}, python {actual.get('calls')}"
    return None
