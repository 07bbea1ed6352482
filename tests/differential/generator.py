"""Seeded random rule/fact cases for the differential test.

Every case is a small json-rules-engine setup: 1-4 rules (priorities, names, events), facts of mixed JSON
types (numbers, numeric strings, unicode, booleans, null, arrays, nested objects, NaN/Infinity, big
integers, undefined), conditions nested all/any/not up to depth 4 with every operator, decorator chains,
paths (plain, wildcards, recursive descent, slices, unions, filters), fact-to-fact values, condition
priorities (so groups short-circuit), named conditions, missing facts with ``allowUndefinedFacts`` on and
off, computed facts (cached and not), engine facts with priorities, custom operators and decorators, and
``replaceFactsInEventParams``. Leaves the Python engine refuses at compile time (a static value some
operator would throw a TypeError on) are drawn again: those are the documented deviations.
"""

from __future__ import annotations

import random
from typing import Any

from coafi.rules import RuleEngine, RuleValidationError
from tests.differential.harness import DECORATORS, OPERATORS, Case

OPS = ["equal", "notEqual", "lessThan", "lessThanInclusive", "greaterThan", "greaterThanInclusive", "in", "notIn",
       "contains", "doesNotContain"]  # fmt: skip
DECOS = ["everyFact", "someFact", "everyValue", "someValue", "not", "swap"]

NAN = {"$js": "NaN"}
INF = {"$js": "Infinity"}
NINF = {"$js": "-Infinity"}
UNDEF = {"$js": "undefined"}

SCALARS: list[Any] = [
    0, 1, -1, 2, 3, 5, 10, 18, 21, 42, 100, 1.5, -2.5, 0.1, 0.30000000000000004, 1e21, 1e-7, 2**53 + 1, 2**60,
    "0", "1", "5", "10", "9", "18", "abc", "ABC", "b", "", " 12 ", "12px", "1e3", "0x10", "Infinity", "-5", ".5",
    "é", "😀", "\ue000", "a,b", "true", "null", "undefined", "[object Object]", "1,2", "\u0663", "\u00a012",
    "\ufeff3", "\u200b4", "+5", "1e", "0b11", "0o7", "0X1f", "-0x10", "1_000", "Infinityx", 5e-324,
    True, False, None, NAN, INF, NINF,
]  # fmt: skip
ARRAYS: list[Any] = [
    [], [1], [5], [1, 2, 3], ["a", "b"], [1, "1", True, None], [[1], [2]], [{"a": 1}, {"a": 2}], ["10", "9"],
    [NAN], ["abc", "b"], [0, False, ""], [18, 21, 42], ["é", "😀"],
]  # fmt: skip


def _scalar(rng: random.Random) -> Any:
    return rng.choice(SCALARS)


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.6 or depth > 2:
        return _scalar(rng)
    if roll < 0.85:
        return rng.choice(ARRAYS) if rng.random() < 0.6 else [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "b", "0", "x y", "total"]): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _user(rng: random.Random) -> dict[str, Any]:
    orders = [
        {"total": rng.choice([0, 5, 10, 12.5, 20, "15", None, NAN]), "sku": rng.choice(["a", "b", "c", ""]),
         **({"items": [_scalar(rng) for _ in range(rng.randint(0, 3))]} if rng.random() < 0.5 else {})}
        for _ in range(rng.randint(0, 3))
    ]  # fmt: skip
    user: dict[str, Any] = {
        "profile": {
            "age": rng.choice([17, 18, 30, 65, "30", None, 18.5]),
            "name": rng.choice(["ann", "bob", "Zoë", "", "😀x"]),
            "tags": rng.choice(ARRAYS),
            "address": {"city": rng.choice(["Paris", "Oslo", None])} if rng.random() < 0.7 else None,
        },
        "orders": orders,
    }
    if rng.random() < 0.3:
        user["0"] = "zero"
    if rng.random() < 0.2:
        user["a.b"] = rng.choice([1, "dot"])
    if rng.random() < 0.2:
        user["length"] = 3
    if rng.random() < 0.3:
        user["total"] = rng.choice([1, 99])
    return user


FACTS = ["age", "name", "flag", "score", "tags", "user", "misc", "nil", "big"]

PATHS = [
    "$.profile.age", "$.profile.name", "$.profile.tags", "$.profile.tags[0]", "$.profile.tags[1]",
    "$.profile.tags.length", "$.profile.name.length", "$.profile.name[0]", "$.profile.address.city",
    "$.profile.missing", "$.missing.deep", "$.orders[0].total", "$.orders[1].sku", "$.orders[*].total",
    "$.orders[*].sku", "$..total", "$..sku", "$.orders.length", "$.orders[0:2].total", "$.orders[-1:].total",
    "$.orders[:1]", "$.orders[?(@.total > 10)].sku", "$.orders[?(@.total >= 5 && @.sku != 'b')].total",
    "$.orders[(@.length-1)].total", "$['profile']['age']", "$.profile['name']", "$[0]", "$['0']", "$.*",
    "$.profile.*", "$.orders[0,1].total", "$['a.b']", "$", "profile.age", "$.orders[*]", "$..age",
    "$.orders[?(@.sku)].sku", "$.profile.tags[*]", "$.length", "$[1:]", "$[*]", "$..a", "$.a", "$.a.b",
    "$.orders[0].items[0]", "$.orders[?(@.total == '15')].total", "$.orders[?(@.total === null)].sku",
    "$.orders[?(!@.items)].sku", "$.profile~", "$.orders[0]^", "$.orders[0:0]", "$.orders[::2].sku",
    "$.total", "$..items[*]", "$.orders[?(@.total < 15 || @.sku == 'c')].sku", "$[?(@ > 1)]",
    "$.orders[?(typeof @.total === 'number')].total", "$.profile.tags[-1]", "$.x y", "$['x y']",
]  # fmt: skip


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        checker = RuleEngine(allow_undefined_conditions=True)
        for name, (fn, validator) in OPERATORS.items():
            checker.add_operator(name, fn, validator)
        for name, decorator in DECORATORS.items():
            checker.add_operator_decorator(name, decorator)
        self.checker = checker

    # -- pieces -----------------------------------------------------------------------------------------------

    def facts(self, allow_undefined: bool) -> dict[str, Any]:
        rng = self.rng
        keep = 0.75 if allow_undefined else 0.985
        family: dict[str, Any] = {
            "age": lambda: rng.choice([17, 18, 30, 65, "30", "18", 18.0, 2.5, None, NAN, INF, True]),
            "name": lambda: rng.choice(["ann", "bob", "abc", "", "Zoë", "😀", "\ue000", "10", "a,b", 5]),
            "flag": lambda: rng.choice([True, False, None, 0, 1, "true", ""]),
            "score": lambda: _scalar(rng),
            "tags": lambda: rng.choice(ARRAYS),
            "user": lambda: _user(rng),
            "misc": lambda: _value(rng),
            "nil": lambda: rng.choice([None, UNDEF]),
            "big": lambda: rng.choice([2**53, 2**53 + 1, 2**53 + 2, 2**64, -(2**60), 9007199254740993]),
        }
        out = {name: make() for name, make in family.items() if rng.random() < keep}
        if rng.random() < 0.2:
            out["user2"] = _user(rng)
        return out

    def path(self) -> str:
        return self.rng.choice(PATHS)

    def operator(self, custom: list[str], decorators: list[str]) -> str:
        rng = self.rng
        base = rng.choice(OPS + custom) if custom and rng.random() < 0.3 else rng.choice(OPS)
        chain: list[str] = []
        roll = rng.random()
        if roll < 0.18:
            chain = [rng.choice(DECOS + decorators)]
        elif roll < 0.23:
            chain = [rng.choice(DECOS + decorators) for _ in range(2)]
        return ":".join([*chain, base])

    def fact_name(self, computed: list[str]) -> str:
        rng = self.rng
        if computed and rng.random() < 0.25:
            return rng.choice(computed)
        if rng.random() < 0.015:
            return "ghost"
        return rng.choice([*FACTS, "user2"] if rng.random() < 0.1 else FACTS)

    def leaf(self, ctx: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        for _ in range(50):
            op = self.operator(ctx["operators"], ctx["decorators"])
            fact = self.fact_name(ctx["computed"])
            cond: dict[str, Any] = {"fact": fact, "operator": op}
            if rng.random() < 0.45:
                cond["path"] = self.path()
            base = op.rsplit(":", 1)[-1]
            if rng.random() < (0.03 if base in ("in", "notIn") or "Value" in op else 0.12):
                ref: dict[str, Any] = {"fact": self.fact_name(ctx["computed"])}
                if rng.random() < 0.5:
                    ref["path"] = self.path()
                cond["value"] = ref
            elif "swap" in op and rng.random() < 0.6:
                cond["value"] = rng.choice(ARRAYS) if rng.random() < 0.7 else rng.choice(["abc", "a,b,10", ""])
            elif "someValue" in op or "everyValue" in op:
                cond["value"] = rng.choice(ARRAYS) if rng.random() < 0.7 else [_value(rng) for _ in range(3)]
            elif base in ("in", "notIn"):
                cond["value"] = rng.choice(
                    [
                        rng.choice(ARRAYS),
                        [_scalar(rng) for _ in range(rng.randint(0, 4))],
                        rng.choice(["abc", "a,b,10", "", "1,2,true", "null undefined"]),
                    ]
                )
            else:
                cond["value"] = _value(rng)
            if rng.random() < 0.2:
                cond["params"] = rng.choice([{"x": _scalar(rng)}, {"x": 1}, {}, None, {"y": 2}])
            if rng.random() < 0.2:
                cond["priority"] = rng.choice([1, 2, 3, 5, 0, 1.5, -1])
            probe = {"conditions": {"all": [cond]}, "event": {"type": "probe"}}
            try:
                self.checker.compile(probe)
            except RuleValidationError:
                continue
            return cond
        raise AssertionError("could not draw a valid leaf")

    def condition(self, ctx: dict[str, Any], depth: int) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        if ctx["named"] and roll < 0.1:
            return {"condition": rng.choice(ctx["named"])}
        if ctx["ghosts"] and roll < 0.13:
            return {"condition": "ghost-condition"}
        if depth < 4 and roll < 0.45 - depth * 0.1:
            return self.boolean(ctx, depth + 1)
        return self.leaf(ctx)

    def boolean(self, ctx: dict[str, Any], depth: int) -> dict[str, Any]:
        rng = self.rng
        kind = rng.choice(["all", "all", "any", "any", "not"])
        node: dict[str, Any]
        if kind == "not":
            node = {"not": self.condition(ctx, depth)}
        else:
            n = rng.choice([0, 1, 1, 2, 2, 3, 3, 4, 5]) if depth > 1 else rng.choice([1, 2, 3, 4, 5])
            node = {kind: [self.condition(ctx, depth) for _ in range(n)]}
        if rng.random() < 0.15:
            node["priority"] = rng.choice([1, 2, 3, 2.7, 0])
        return node

    def event(self, i: int, replace: bool, computed: list[str]) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            return None
        event: dict[str, Any] = {"type": f"e{i}"}
        if roll < 0.6:
            params: Any = {"i": i, "tag": rng.choice(["x", 1, None, [1, 2]])}
            if replace and rng.random() < 0.6:
                ref: dict[str, Any] = {"fact": rng.choice([*FACTS, *computed])}
                if rng.random() < 0.5:
                    ref["path"] = self.path()
                params["resolved"] = ref
            event["params"] = params
        elif roll < 0.7:
            event["params"] = rng.choice([{}, None, 0, "", [1]])
        return event

    # -- a case -----------------------------------------------------------------------------------------------

    def case(self) -> Case:
        rng = self.rng
        allow_undefined = rng.random() < 0.5
        options: dict[str, Any] = {"allowUndefinedFacts": allow_undefined}
        ghosts = rng.random() < 0.08
        if ghosts:
            options["allowUndefinedConditions"] = True
        replace = rng.random() < 0.15
        if replace:
            options["replaceFactsInEventParams"] = True
        computed: dict[str, str] = {}
        if rng.random() < 0.3:
            computed = {f"calc{i}": rng.choice(["calc", "calcObj"]) for i in range(rng.randint(1, 2))}
        engine_facts: list[dict[str, Any]] = []
        if rng.random() < 0.2:
            engine_facts.append({"id": rng.choice(FACTS), "value": _value(rng), "priority": rng.choice([1, 2, 3])})
        if rng.random() < 0.1:
            engine_facts.append(
                {"id": "engineCalc", "computed": "calc", "cache": rng.random() < 0.5, "priority": rng.choice([1, 2])}
            )
        ctx: dict[str, Any] = {
            "operators": sorted(OPERATORS) if rng.random() < 0.15 else [],
            "decorators": sorted(DECORATORS) if rng.random() < 0.1 else [],
            "computed": [*computed, *(f["id"] for f in engine_facts if f.get("computed"))],
            "named": [],
            "ghosts": ghosts,
        }
        conditions: dict[str, Any] = {}
        if rng.random() < 0.3:
            for i in range(rng.randint(1, 3)):
                conditions[f"named{i}"] = self.boolean(ctx, 2)
                ctx["named"].append(f"named{i}")  # later ones may refer to earlier ones: never a cycle
        rules = []
        for i in range(rng.choice([1, 1, 2, 2, 3, 4, 6])):
            if "identity" in ctx["operators"] and rng.random() < 0.3:
                top = {
                    rng.choice(["all", "any"]): [
                        {
                            "fact": self.fact_name(ctx["computed"]),
                            "operator": "identity",
                            "value": None,
                            **({"path": self.path()} if rng.random() < 0.5 else {}),
                        }
                    ]
                }
            else:
                top = self.boolean(ctx, 0) if rng.random() < 0.92 else self.root_ref(ctx)
            rule: dict[str, Any] = {"conditions": top, "event": self.event(i, replace, [*computed])}
            name_roll = rng.random()
            if name_roll < 0.85:
                rule["name"] = f"r{i}"
            elif name_roll < 0.9:
                rule["name"] = i
            prio_roll = rng.random()
            if prio_roll < 0.6:
                rule["priority"] = rng.choice([1, 1, 2, 3, 10])
            elif prio_roll < 0.7:
                rule["priority"] = rng.choice([0, 2.7, "2", "3x"])
            rules.append(rule)
        case: Case = {"rules": rules, "facts": self.facts(allow_undefined), "options": options}
        if conditions:
            case["conditions"] = conditions
        if computed:
            case["computed"] = computed
        if engine_facts:
            case["engineFacts"] = engine_facts
        if ctx["operators"]:
            case["operators"] = ctx["operators"]
        if ctx["decorators"]:
            case["decorators"] = ctx["decorators"]
        return case

    def root_ref(self, ctx: dict[str, Any]) -> dict[str, Any]:
        if ctx["named"]:
            return {"condition": self.rng.choice(ctx["named"])}
        return self.boolean(ctx, 0)


def generate(count: int, seed: int = 20240607) -> list[Case]:
    gen = Generator(seed)
    return [gen.case() for _ in range(count)]


# -- random JSONPaths ------------------------------------------------------------------------------------------

_PATH_NAMES = ["profile", "orders", "age", "name", "tags", "total", "sku", "items", "a", "b", "0", "1", "length",
               "x y", "a.b", "*", "$"]  # fmt: skip
_FILTERS = [
    "@.total > 5", "@.sku == 'a'", "@ > 1", "@.a", "!@.items", "@.total >= 10 || @.sku === 'b'",
    "typeof @ === 'string'", "@property == 0", "@.length > 1", "@property === 'a'", "@parentProperty == 'orders'",
    "@root.total", "@.total * 2 > 19", "@.sku + 'x' == 'ax'", "-@.total < -5", "@.total % 2 == 0",
    "@.total != null", "@.total === undefined", "@.a.b == 1", "@.total ? 1 : 0", "[1, 2][0] == @.total",
    "@.total / 0 > 1", "@.total & 1", "@.sku < 'b'", "void @.a", "~@.total",
]  # fmt: skip
_TYPES = ["~", "^", "@string()", "@number()", "@array()", "@object()", "@scalar()", "@integer()", "@null()",
          "@boolean()", "@nonFinite()", "@undefined()"]  # fmt: skip


def _path_component(rng: random.Random) -> str:
    r = rng.random()
    name = rng.choice(_PATH_NAMES)
    if r < 0.3:
        return "." + name if " " not in name and "." not in name else f"['{name}']"
    if r < 0.4:
        return f"['{name}']"
    if r < 0.5:
        return f"[{rng.randint(-3, 3)}]"
    if r < 0.58:
        return "[*]"
    if r < 0.64:
        return ".*"
    if r < 0.7:
        return ".." + rng.choice(["total", "sku", "a", "*", "age"])
    if r < 0.76:
        start = rng.choice(["", "0", "1", "-1", "-2"])
        return f"[{start}:{rng.choice(['', '1', '2', '-1', '0'])}{rng.choice(['', ':2', ':1'])}]"
    if r < 0.82:
        return f"[{rng.randint(0, 2)},{rng.randint(0, 2)}]"
    if r < 0.86:
        return f"['{rng.choice(_PATH_NAMES)}','{rng.choice(_PATH_NAMES)}']"
    if r < 0.93:
        return f"[?({rng.choice(_FILTERS)})]"
    if r < 0.95:
        return "[(" + rng.choice(["@.length-1", "@.length", "'sku'", "0", "@.length-2"]) + ")]"
    if r < 0.97:
        return rng.choice(_TYPES)
    return rng.choice([".`a", "['x y']", ".a.b"])


def generate_paths(count: int, seed: int) -> list[Case]:
    """Cases of one condition each: a random JSONPath into a random fact (the factResult is what is compared)."""
    rng = random.Random(seed)
    checker = RuleEngine(allow_undefined_facts=True)
    cases: list[Case] = []
    for _ in range(count):
        rule: dict[str, Any] = {}
        for _ in range(20):
            path = rng.choice(["$", "$", "$", ""]) + "".join(_path_component(rng) for _ in range(rng.randint(1, 4)))
            if not path.startswith("$"):
                path = path.lstrip(".")
            cond = {"fact": "f", "operator": "equal", "value": None, "path": path}
            rule = {"name": "path", "conditions": {"all": [cond]}, "event": {"type": "t"}}
            try:
                checker.compile(rule)
            except RuleValidationError:
                continue
            break
        fact = rng.choice(
            [_user(rng), _value(rng), [_user(rng), _user(rng)], {"a": {"b": [1, {"a": 2}]}, "x y": 3, "a.b": 4, "*": 5}]
        )
        cases.append({"rules": [rule], "facts": {"f": fact}, "options": {"allowUndefinedFacts": True}})
    return cases
