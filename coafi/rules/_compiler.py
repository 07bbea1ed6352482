"""Compile json-rules-engine rule JSON into Python closures, once.

Validation and compilation are one pass: every problem is collected with the JSONPath of its place
(``$.conditions.all[1].operator``) and reported together in a :class:`RuleValidationError`.

What a compiled rule does mirrors ``Rule.evaluate`` of json-rules-engine 7:

* conditions of one ``all``/``any`` are grouped by priority (a condition's own ``priority``, else its fact's
  priority, else 1); groups run highest first and a later group runs only if the earlier ones did not decide
  the result. Within a group *every* condition is evaluated (node evaluates them in parallel), so a missing
  fact anywhere in a group that runs is an error even when a sibling already failed;
* a nested ``all``/``any``/``not`` passes only on a result ``=== true``; the rule's top-level ``all``/``any``
  with a single condition passes that condition's raw result through (it matters for custom operators);
* an empty ``all`` *or* ``any`` is true;
* named conditions are expanded where they are referenced (each reference evaluates on its own).

Each evaluation writes what it saw into a list of *slots* (one per node); the result tree
(``factResult``/``result`` per condition) is built from them only when asked for. The slots also give the
number of promise ticks node would need for the rule, which decides the order of the results of rules
with equal priority (json-rules-engine lists them in the order their evaluations finish).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from coafi.rules._js import UNDEFINED, js_parse_int, js_truthy
from coafi.rules._jsonpath import PathError, compile_path
from coafi.rules.errors import Problem, RuleValidationError
from coafi.rules.operators import VALUE_ARRAY_DECORATORS, OperatorFn, OperatorMap, specialize

__all__ = ["UNSET", "CompileEnv", "CompiledRule", "compile_rule", "validate_named_condition"]

#: a slot of a condition that was not evaluated (its group was short-circuited)
UNSET: Final[Any] = type("_Unset", (), {"__repr__": lambda self: "<not evaluated>"})()
_MISSING: Final[Any] = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()

#: classes of fact values that are plain data (no computed fact, no missing marker): the fast path
_PLAIN: Final = frozenset({dict, list, str, int, float, bool, type(None), tuple})
_OBJECTS: Final = (dict, list, tuple)
_BOOLEAN_KEYS: Final = ("any", "all", "not")

Evaluator = Callable[[dict[str, Any], Any, list[Any]], Any]
PathResolver = Callable[[Any, str], Any]


class CompileEnv:
    """What compiling needs from the engine: operators, named conditions, fact priorities, options."""

    __slots__ = (
        "allow_undefined_conditions",
        "allow_undefined_facts",
        "conditions",
        "fact_priority",
        "operators",
        "path_resolver",
        "replace_facts_in_event_params",
    )

    def __init__(
        self,
        operators: OperatorMap,
        conditions: Mapping[str, Any],
        fact_priority: Mapping[str, int],
        *,
        allow_undefined_facts: bool = False,
        allow_undefined_conditions: bool = False,
        replace_facts_in_event_params: bool = False,
        path_resolver: PathResolver | None = None,
    ) -> None:
        self.operators = operators
        self.conditions = conditions
        self.fact_priority = fact_priority
        self.allow_undefined_facts = allow_undefined_facts
        self.allow_undefined_conditions = allow_undefined_conditions
        self.replace_facts_in_event_params = replace_facts_in_event_params
        self.path_resolver = path_resolver


# -- nodes (the structure behind the closures: result trees and tick counts) ------------------------------------


class _Node:
    __slots__ = ("slot", "source")

    def __init__(self, slot: int, source: Mapping[str, Any]) -> None:
        self.slot = slot
        self.source = source


class _Leaf(_Node):
    __slots__ = ("path_ticks",)

    def __init__(self, slot: int, source: Mapping[str, Any], path_ticks: bool) -> None:
        super().__init__(slot, source)
        self.path_ticks = path_ticks  # a path on the fact or on the value's fact: one more tick when defined


class _Bool(_Node):
    __slots__ = ("children", "kind", "sets")

    def __init__(
        self, slot: int, source: Mapping[str, Any], kind: str, children: list[_Node], sets: list[list[int]] | None
    ) -> None:
        super().__init__(slot, source)
        self.kind = kind
        self.children = children
        self.sets = sets  # priority groups (indices into children, highest first) when more than one


class _Ref(_Node):
    __slots__ = ("name", "target")

    def __init__(self, slot: int, source: Mapping[str, Any], name: str, target: _Node | None) -> None:
        super().__init__(slot, source)
        self.name = name
        self.target = target


# -- ticks --------------------------------------------------------------------------------------------------------


def _eval_ticks(node: _Node, slots: list[Any] | None) -> int:
    """Promise ticks of ``evaluateCondition(node)`` in json-rules-engine (``slots=None``: the static count)."""
    if isinstance(node, _Leaf):
        if slots is None:
            return 3 + (1 if node.path_ticks else 0)
        ticks: int = slots[node.slot][3]
        return 3 + ticks
    if isinstance(node, _Ref):
        return 0 if node.target is None else _eval_ticks(node.target, slots)
    assert isinstance(node, _Bool)
    if node.kind == "not":
        return _eval_ticks(node.children[0], slots) + 2
    return _run_ticks(node, slots) + 1


def _run_ticks(node: _Bool, slots: list[Any] | None) -> int:
    """Ticks of ``prioritizeAndRun`` over the node's conditions."""
    children = node.children
    if not children:
        return 0
    if len(children) == 1:
        return _eval_ticks(children[0], slots)
    total = 0
    for group in node.sets or [list(range(len(children)))]:
        first = children[group[0]]
        if slots is not None and slots[first.slot] is UNSET:
            total += 1  # short-circuited: the cursor just passes its value on
        else:
            total += max(_eval_ticks(children[i], slots) for i in group) + 4
    return total


def _root_ticks(node: _Node, slots: list[Any] | None) -> int:
    if isinstance(node, _Bool):
        if node.kind == "not":
            return _eval_ticks(node.children[0], slots) + 1
        return _run_ticks(node, slots)
    return _eval_ticks(node, slots)


# -- compiled rule ------------------------------------------------------------------------------------------------


class CompiledRule:
    """A rule compiled for one engine configuration. Evaluate it with the engine that compiled it."""

    __slots__ = (
        "evaluate",
        "event",
        "event_fact_params",
        "generation",
        "name",
        "nslots",
        "on_failure",
        "on_success",
        "priority",
        "root",
        "source",
        "static_ticks",
    )

    def __init__(
        self,
        source: Mapping[str, Any],
        name: Any,
        priority: int,
        event: dict[str, Any],
        root: _Node,
        evaluate: Evaluator,
        nslots: int,
        static_ticks: int | None,
        event_fact_params: bool,
        generation: int,
    ) -> None:
        self.source = source
        self.name = name
        self.priority = priority
        self.event = event
        self.root = root
        self.evaluate = evaluate
        self.nslots = nslots
        self.static_ticks = static_ticks
        self.event_fact_params = event_fact_params
        self.on_success = source.get("onSuccess")
        self.on_failure = source.get("onFailure")
        self.generation = generation

    def refresh(self, other: CompiledRule) -> None:
        """Take over ``other``'s compilation (same source, newer engine configuration)."""
        for name in self.__slots__:
            setattr(self, name, getattr(other, name))

    def ticks(self, slots: list[Any]) -> int:
        """When node would finish this rule, relative to the others of its priority (smaller: earlier)."""
        if self.static_ticks is not None:
            return self.static_ticks
        return _root_ticks(self.root, slots)

    def __repr__(self) -> str:
        return f"CompiledRule(name={self.name!r}, priority={self.priority})"


def _where(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def cache_key(params: Any) -> str:
    """The computed-fact cache key of ``params`` (json-rules-engine hashes ``{params, id}`` by value)."""
    if params is UNDEFINED:
        params = {}  # factValue(id, params = {}): no params and {} are the same cache entry
    try:
        return json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError):
        return repr(params)


_EMPTY_KEY: Final = cache_key({})


def _object_like(value: Any) -> bool:
    """``value != null && typeof value === 'object'``."""
    cls = value.__class__
    if cls is dict or cls is list:
        return True
    return not (value is None or value is UNDEFINED or isinstance(value, (str, int, float, bool)))


class _Builder:
    def __init__(self, env: CompileEnv) -> None:
        self.env = env
        self.problems: list[Problem] = []
        self.nslots = 0
        self.dynamic = False  # ticks depend on what happened (short-circuits, undefined facts under paths)
        self.expanding: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def new_slot(self) -> int:
        self.nslots += 1
        return self.nslots - 1

    # -- priorities -------------------------------------------------------------------------------------------

    def check_priority(self, cond: Mapping[str, Any], path: str) -> None:
        if "priority" in cond and cond["priority"] is not None and not _is_number(cond["priority"]):
            self.problem(_where(path, "priority"), f"priority must be a number, not {_type_name(cond['priority'])}")

    def priority_of(self, cond: Mapping[str, Any]) -> float:
        """The priority ``Rule.prioritizeConditions`` groups a condition by."""
        raw = cond.get("priority")
        if _boolean_key(cond) is not None:
            parsed = js_parse_int(raw) if _is_number(raw) else None
            return parsed or 1
        if _is_number(raw) and raw:
            return float(raw)
        if "condition" in cond:
            return 1
        fact = cond.get("fact")
        return self.env.fact_priority.get(fact, 1) if isinstance(fact, str) else 1

    # -- conditions -------------------------------------------------------------------------------------------

    def condition(self, cond: Any, path: str) -> tuple[_Node, Evaluator] | None:
        """A nested condition, evaluated as ``evaluateCondition`` does."""
        if not isinstance(cond, Mapping):
            self.problem(path, f"a condition must be an object, not {_type_name(cond)}")
            return None
        kinds = [k for k in (*_BOOLEAN_KEYS, "condition") if k in cond]
        if len(kinds) > 1 or (kinds and any(k in cond for k in ("fact", "operator"))):
            extra = kinds + [k for k in ("fact", "operator") if k in cond]
            self.problem(
                path,
                "ambiguous condition: it has "
                + ", ".join(repr(k) for k in extra)
                + " (use exactly one of all, any, not, condition, or a fact/operator/value comparison)",
            )
            return None
        self.check_priority(cond, path)
        if "condition" in cond:
            return self.reference(cond, path)
        kind = _boolean_key(cond)
        if kind is not None:
            return self.boolean(cond, kind, path, root=False)
        return self.leaf(cond, path)

    def reference(self, cond: Mapping[str, Any], path: str) -> tuple[_Node, Evaluator] | None:
        name = cond["condition"]
        where = _where(path, "condition")
        if not isinstance(name, str) or not name:
            self.problem(where, f"a condition reference must name a condition (a string), not {_type_name(name)}")
            return None
        if name in self.expanding:
            cycle = " -> ".join([*self.expanding[self.expanding.index(name) :], name])
            self.problem(where, f"named conditions refer to each other in a cycle: {cycle}")
            return None
        slot = self.new_slot()
        target_source = self.env.conditions.get(name)
        if target_source is None:
            if not self.env.allow_undefined_conditions:
                hint = _did_you_mean(name, list(self.env.conditions))
                self.problem(where, f"unknown named condition {name!r}{hint}")
                return None

            def undefined_reference(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
                slots[slot] = False
                return False

            return _Ref(slot, cond, name, None), undefined_reference
        self.expanding.append(name)
        try:
            built = self.condition(target_source, f"{where}<{name}>")
        finally:
            self.expanding.pop()
        if built is None:
            return None
        target, target_fn = built

        def reference(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
            slots[slot] = True
            return target_fn(values, alm, slots)

        return _Ref(slot, cond, name, target), reference

    def children(self, cond: Mapping[str, Any], kind: str, path: str) -> list[tuple[_Node, Evaluator]] | None:
        subs = cond[kind]
        where = _where(path, kind)
        if kind == "not":
            if isinstance(subs, list):
                self.problem(where, '"not" takes one condition (an object), not an array')
                return None
            built = self.condition(subs, where)
            return None if built is None else [built]
        if not isinstance(subs, list):
            self.problem(where, f'"{kind}" must be an array of conditions, not {_type_name(subs)}')
            return None
        out: list[tuple[_Node, Evaluator]] = []
        ok = True
        for i, sub in enumerate(subs):
            built = self.condition(sub, _where(where, i))
            if built is None:
                ok = False
            else:
                out.append(built)
        return out if ok else None

    def boolean(self, cond: Mapping[str, Any], kind: str, path: str, *, root: bool) -> tuple[_Node, Evaluator] | None:
        built = self.children(cond, kind, path)
        if built is None:
            return None
        slot = self.new_slot()
        nodes = [n for n, _ in built]
        fns = [f for _, f in built]
        sets: list[list[int]] | None = None
        if kind != "not" and len(nodes) > 1:
            by_priority: dict[float, list[int]] = {}
            for i, n in enumerate(nodes):
                by_priority.setdefault(self.priority_of(n.source), []).append(i)
            if len(by_priority) > 1:
                sets = [by_priority[p] for p in sorted(by_priority, reverse=True)]
                self.dynamic = True
        node = _Bool(slot, cond, kind, nodes, sets)
        return node, _boolean_evaluator(kind, fns, sets, slot, root)

    def leaf(self, cond: Mapping[str, Any], path: str) -> tuple[_Node, Evaluator] | None:
        ok = True
        for key in ("fact", "operator", "value"):
            if key not in cond:
                self.problem(path, f'a condition needs "{key}" (or one of all, any, not, condition)')
                ok = False
        if not ok:
            return None
        fact = cond["fact"]
        if not isinstance(fact, str) or not fact:
            self.problem(_where(path, "fact"), f"fact must be a non-empty string, not {_type_name(fact)}")
            ok = False
        op_name = cond["operator"]
        op: OperatorFn | None = None
        if not isinstance(op_name, str):
            self.problem(_where(path, "operator"), f"operator must be a string, not {_type_name(op_name)}")
            ok = False
        else:
            chain = self.env.operators.chain(op_name)
            if chain is None:
                self.problem(_where(path, "operator"), self.unknown_operator(op_name))
                ok = False
            else:
                operator = self.env.operators.get(op_name)
                assert operator is not None
                value = cond["value"]
                op = (
                    operator.evaluate if isinstance(value, Mapping) and "fact" in value else specialize(operator, value)
                )
                ok = self.check_value_type(chain[0], chain[1], cond["value"], path) and ok
        path_fn, ok = self.path_of(cond, path, ok)
        params = cond.get("params", UNDEFINED)
        if params is not UNDEFINED and params is not None and not isinstance(params, Mapping):
            self.problem(_where(path, "params"), f"params must be an object, not {_type_name(params)}")
            ok = False
        value = cond["value"]
        value_ref = isinstance(value, Mapping) and "fact" in value
        value_path_fn: Callable[[Any], Any] | None = None
        value_params: Any = UNDEFINED
        if value_ref:
            vwhere = _where(path, "value")
            if not isinstance(value["fact"], str) or not value["fact"]:
                self.problem(
                    _where(vwhere, "fact"), f"fact must be a non-empty string, not {_type_name(value['fact'])}"
                )
                ok = False
            value_path_fn, ok = self.path_of(value, vwhere, ok)
            value_params = value.get("params", UNDEFINED)
            if value_params is not UNDEFINED and value_params is not None and not isinstance(value_params, Mapping):
                self.problem(_where(vwhere, "params"), f"params must be an object, not {_type_name(value_params)}")
                ok = False
        if not ok or op is None:
            return None
        slot = self.new_slot()
        has_path = path_fn is not None or value_path_fn is not None
        if has_path and self.env.allow_undefined_facts:
            self.dynamic = True
        node = _Leaf(slot, cond, has_path)
        fn = _leaf_evaluator(
            slot,
            fact,
            params,
            path_fn,
            op,
            value,
            (value["fact"], value_params, value_path_fn) if value_ref else None,
        )
        return node, fn

    def path_of(self, cond: Mapping[str, Any], where: str, ok: bool) -> tuple[Callable[[Any], Any] | None, bool]:
        if "path" not in cond:
            return None, ok
        raw = cond["path"]
        if raw is None or raw == "" or raw is False:
            return None, ok
        if not isinstance(raw, str):
            self.problem(_where(where, "path"), f"path must be a string (a JSONPath), not {_type_name(raw)}")
            return None, False
        resolver = self.env.path_resolver
        if resolver is not None:
            return (lambda value: resolver(value, raw)), ok
        try:
            return compile_path(raw), ok
        except PathError as exc:
            self.problem(_where(where, "path"), str(exc))
            return None, False

    def unknown_operator(self, name: str) -> str:
        known = [k for k in self.env.operators.names() if ":" not in k]
        base = name.rsplit(":", 1)[-1]
        prefix = name[: len(name) - len(base)]
        if ":" in name:
            for dec in name.split(":")[:-1]:
                if dec not in self.env.operators.decorators:
                    return f"unknown operator decorator {dec!r} in {name!r}" + _did_you_mean(
                        dec, list(self.env.operators.decorators)
                    )
        if prefix and base not in self.env.operators.operators:
            import difflib

            guess = difflib.get_close_matches(base, known, n=1)
            return f"unknown operator {name!r}" + (f"; did you mean {prefix + guess[0]!r}?" if guess else "")
        return f"unknown operator {name!r}" + _did_you_mean(name, known)

    def check_value_type(self, decorators: list[str], base: str, value: Any, path: str) -> bool:
        """Refuse values json-rules-engine would throw a TypeError on whenever the condition runs."""
        if isinstance(value, Mapping) and "fact" in value:
            return True
        where = _where(path, "value")
        # the value side the base operator sees: swapped decorators trade sides
        value_side = True
        for dec in decorators:
            if dec in VALUE_ARRAY_DECORATORS and value_side:
                if not isinstance(value, (list, tuple)):
                    self.problem(where, f"{dec} needs an array value, not {_type_name(value)}")
                    return False
                return True  # the base operator then sees the elements; do not judge further
            if dec == "swap":
                value_side = not value_side
            if dec in ("someFact", "everyFact") and not value_side:
                return True
        if value_side and base in ("in", "notIn") and not isinstance(value, (list, tuple, str)):
            self.problem(where, f"{base} needs an array (or string) value, not {_type_name(value)}")
            return False
        return True


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    guess = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {guess[0]!r}?" if guess else ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _boolean_key(cond: Mapping[str, Any]) -> str | None:
    for key in _BOOLEAN_KEYS:
        if key in cond:
            return key
    return None


# -- evaluators -----------------------------------------------------------------------------------------------


def _leaf_evaluator(
    slot: int,
    fact: str,
    params: Any,
    path_fn: Callable[[Any], Any] | None,
    op: OperatorFn,
    value: Any,
    value_ref: tuple[str, Any, Callable[[Any], Any] | None] | None,
) -> Evaluator:
    plain = _PLAIN
    missing = _MISSING
    key = _EMPTY_KEY if params is UNDEFINED else cache_key(params)

    if value_ref is None and path_fn is None:

        def leaf(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
            fv = values.get(fact, missing)
            if fv.__class__ not in plain:
                fv = alm.missing(fact) if fv is missing else alm.compute(fact, fv, params, key)
            r = op(fv, value)
            slots[slot] = (fv, value, r, 0)
            return r

        return leaf

    if value_ref is None:
        assert path_fn is not None
        resolve_path = path_fn

        def leaf_path(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
            fv = values.get(fact, missing)
            cls = fv.__class__
            if cls is dict or cls is list:
                fv = resolve_path(fv)
            elif fv is missing:
                fv = alm.missing(fact)
                r = op(fv, value)
                slots[slot] = (fv, value, r, 0)
                return r
            else:
                if cls not in plain:
                    fv = alm.compute(fact, fv, params, key)
                if _object_like(fv):
                    fv = resolve_path(fv)
            r = op(fv, value)
            slots[slot] = (fv, value, r, 1)
            return r

        return leaf_path

    vfact, vparams, vpath = value_ref
    vkey = _EMPTY_KEY if vparams is UNDEFINED else cache_key(vparams)

    def leaf_ref(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
        tick = 0
        rhs = values.get(vfact, missing)
        if rhs is missing:
            rhs = alm.missing(vfact)
        else:
            if rhs.__class__ not in plain:
                rhs = alm.compute(vfact, rhs, vparams, vkey)
            if vpath is not None:
                tick = 1
                if _object_like(rhs):
                    rhs = vpath(rhs)
        fv = values.get(fact, missing)
        if fv is missing:
            fv = alm.missing(fact)
        else:
            if fv.__class__ not in plain:
                fv = alm.compute(fact, fv, params, key)
            if path_fn is not None:
                tick = 1
                if _object_like(fv):
                    fv = path_fn(fv)
        r = op(fv, rhs)
        slots[slot] = (fv, rhs, r, tick)
        return r

    return leaf_ref


def _boolean_evaluator(
    kind: str, fns: list[Evaluator], sets: list[list[int]] | None, slot: int, root: bool
) -> Evaluator:
    """``evaluateCondition`` of an all/any/not (``root``: the rule's top level, whose result is not coerced)."""
    if kind == "not":
        only = fns[0]

        def not_(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
            r = not js_truthy(only(values, alm, slots))
            slots[slot] = r
            return r

        return not_

    n = len(fns)
    if n == 0:

        def empty(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
            slots[slot] = True
            return True

        return empty

    if n == 1:
        single = fns[0]
        if root:

            def single_root(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
                r = single(values, alm, slots)
                slots[slot] = r
                return r

            return single_root

        def single_nested(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
            r = single(values, alm, slots) is True
            slots[slot] = r
            return r

        return single_nested

    if sets is None:
        members = tuple(fns)
        if kind == "all":

            def all_(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
                ok = True
                for f in members:
                    if f(values, alm, slots) is not True:
                        ok = False
                slots[slot] = ok
                return ok

            return all_

        def any_(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
            ok = False
            for f in members:
                if f(values, alm, slots) is True:
                    ok = True
            slots[slot] = ok
            return ok

        return any_

    groups = tuple(tuple(fns[i] for i in group) for group in sets)
    is_all = kind == "all"

    def prioritized(values: dict[str, Any], alm: Any, slots: list[Any]) -> Any:
        cursor = is_all
        for group in groups:
            if cursor is not is_all:
                break  # all: a group failed; any: a group passed -- later groups are not evaluated
            if is_all:
                ok = True
                for f in group:
                    if f(values, alm, slots) is not True:
                        ok = False
            else:
                ok = False
                for f in group:
                    if f(values, alm, slots) is True:
                        ok = True
            cursor = ok
        slots[slot] = cursor
        return cursor

    return prioritized


# -- rules ----------------------------------------------------------------------------------------------------


def _rule_priority(rule: Mapping[str, Any], builder: _Builder, base: str) -> int:
    raw = rule.get("priority")
    if raw is None or raw is False or raw == 0 or raw == "":
        return 1  # `options.priority || 1`
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        builder.problem(_where(base, "priority"), f"priority must be a number, not {_type_name(raw)}")
        return 1
    parsed = js_parse_int(raw)
    if parsed is None:
        builder.problem(_where(base, "priority"), f"priority must be a number, not {raw!r}")
        return 1
    if parsed <= 0:
        builder.problem(_where(base, "priority"), f"priority must be greater than zero (got {raw!r})")
        return 1
    return parsed


def _rule_event(rule: Mapping[str, Any], builder: _Builder, base: str) -> dict[str, Any]:
    if "event" not in rule:
        builder.problem(base, 'a rule needs an "event" ({"type": ..., "params": {...}})')
        return {"type": "unknown"}
    raw = rule["event"]
    if not js_truthy(raw):
        return {"type": "unknown"}  # `options.event || { type: 'unknown' }`
    if not isinstance(raw, Mapping):
        builder.problem(_where(base, "event"), f"event must be an object with a type, not {_type_name(raw)}")
        return {"type": "unknown"}
    if "type" not in raw:
        builder.problem(_where(base, "event"), 'event needs a "type"')
        return {"type": "unknown"}
    event: dict[str, Any] = {"type": raw["type"]}
    if js_truthy(raw.get("params", UNDEFINED)):
        event["params"] = raw["params"]
    return event


def _event_param_refs(event: dict[str, Any], builder: _Builder, base: str) -> bool:
    """With ``replaceFactsInEventParams``: check the ``{fact: ...}`` params; true when any has a path."""
    params = event.get("params")
    has_path = False
    items: list[tuple[Any, Any]]
    if isinstance(params, Mapping):
        items = list(params.items())
    elif isinstance(params, (list, tuple)):
        items = list(enumerate(params))
    else:
        return False
    for key, value in items:
        if isinstance(value, Mapping) and "fact" in value:
            where = _where(_where(_where(base, "event"), "params"), key if isinstance(key, (int, str)) else str(key))
            if not isinstance(value["fact"], str) or not value["fact"]:
                builder.problem(
                    _where(where, "fact"), f"fact must be a non-empty string, not {_type_name(value['fact'])}"
                )
            path_fn, _ = builder.path_of(value, where, True)
            has_path = has_path or path_fn is not None
    return has_path


def compile_rule(rule: Any, env: CompileEnv, *, base: str = "$", generation: int = 0) -> CompiledRule:
    """Validate and compile one rule (json-rules-engine's rule JSON). Raises :class:`RuleValidationError`
    listing every problem, each with its JSONPath under ``base``."""
    builder = _Builder(env)
    if not isinstance(rule, Mapping):
        raise RuleValidationError([Problem(base, f"a rule must be an object, not {_type_name(rule)}")])
    priority = _rule_priority(rule, builder, base)
    event = _rule_event(rule, builder, base)
    event_paths = _event_param_refs(event, builder, base) if env.replace_facts_in_event_params else False
    raw_name = rule.get("name", UNDEFINED)
    # `if (options.name || options.name === 0) setName(options.name)`
    name = raw_name if js_truthy(raw_name) or (_is_number(raw_name) and raw_name == 0) else None
    root: tuple[_Node, Evaluator] | None = None
    if "conditions" not in rule:
        builder.problem(base, 'a rule needs "conditions" (an object with all, any, not or condition)')
    else:
        conditions = rule["conditions"]
        where = _where(base, "conditions")
        if not isinstance(conditions, Mapping):
            builder.problem(where, f"conditions must be an object, not {_type_name(conditions)}")
        elif not any(k in conditions for k in (*_BOOLEAN_KEYS, "condition")):
            builder.problem(where, 'the top level of "conditions" must be all, any, not or condition')
        else:
            root = _root(conditions, builder, where)
    if builder.problems or root is None:
        raise RuleValidationError(builder.problems or [Problem(base, "invalid rule")])
    node, fn = root
    static = None if builder.dynamic else _root_ticks(node, None)
    return CompiledRule(rule, name, priority, event, node, fn, builder.nslots, static, event_paths, generation)


def _root(conditions: Mapping[str, Any], builder: _Builder, where: str) -> tuple[_Node, Evaluator] | None:
    """The rule's top level: ``Rule.evaluate`` checks any, all, not, then a condition reference."""
    kinds = [k for k in (*_BOOLEAN_KEYS, "condition") if k in conditions]
    if len(kinds) > 1 or any(k in conditions for k in ("fact", "operator")):
        builder.condition(conditions, where)  # reports the ambiguity
        return None
    builder.check_priority(conditions, where)
    kind = _boolean_key(conditions)
    if kind is None:
        return builder.reference(conditions, where)
    return builder.boolean(conditions, kind, where, root=True)


def validate_named_condition(name: Any, conditions: Any, env: CompileEnv) -> list[Problem]:
    """Problems of a named condition (``setCondition``), references to other named conditions included."""
    where = f"$.conditions[{json.dumps(name)}]" if isinstance(name, str) else "$.conditions"
    if not isinstance(name, str) or not name:
        return [Problem("$", "a named condition needs a name (a non-empty string)")]
    if not isinstance(conditions, Mapping):
        return [Problem(where, f"a named condition must be an object, not {_type_name(conditions)}")]
    if not any(k in conditions for k in (*_BOOLEAN_KEYS, "condition")):
        return [
            Problem(where, '"conditions" root must contain a single instance of "all", "any", "not", or "condition"')
        ]
    lenient = CompileEnv(
        env.operators,
        env.conditions,
        env.fact_priority,
        allow_undefined_facts=env.allow_undefined_facts,
        allow_undefined_conditions=True,
        path_resolver=env.path_resolver,
    )
    builder = _Builder(lenient)  # references may name conditions set later: they are checked when a rule compiles
    builder.expanding.append(name)
    builder.condition(conditions, where)
    return builder.problems


def copy_params(params: Any) -> Any:
    """json-rules-engine hands a computed fact a clone of the condition's params."""
    if params is UNDEFINED:
        return {}
    return copy.deepcopy(params)


def build_tree(node: _Node, slots: list[Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """The condition tree with what each evaluated condition saw (like ``ruleResult.conditions``)."""
    src = node.source
    if isinstance(node, _Ref):
        state = slots[node.slot]
        if state is UNSET or node.target is None:
            out = {k: convert(v) for k, v in src.items()}
            if node.target is None and state is not UNSET:
                out["result"] = False
            return out
        realized = build_tree(node.target, slots, convert)
        merged = {k: convert(v) for k, v in src.items() if k != "condition"}
        merged.update(realized)
        return merged
    if isinstance(node, _Leaf):
        out = {k: convert(v) for k, v in src.items()}
        state = slots[node.slot]
        if state is not UNSET:
            fact_result, value_result, result, _ = state
            if fact_result is not UNDEFINED:
                out["factResult"] = convert(fact_result)
            if value_result is not UNDEFINED:
                out["valueResult"] = convert(value_result)
            if result is not UNDEFINED:
                out["result"] = convert(result)
        return out
    assert isinstance(node, _Bool)
    out = {k: convert(v) for k, v in src.items() if k != node.kind}
    raw_priority = src.get("priority")
    out["priority"] = (js_parse_int(raw_priority) if _is_number(raw_priority) else None) or 1
    if node.kind == "not":
        out["not"] = build_tree(node.children[0], slots, convert)
    else:
        out[node.kind] = [build_tree(c, slots, convert) for c in node.children]
    state = slots[node.slot]
    if state is not UNSET:
        out["result"] = convert(state)
    return out
