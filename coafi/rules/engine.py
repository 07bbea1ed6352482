"""The rule engine: json-rules-engine 7 semantics, rules compiled once into Python closures."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from coafi.rules._compiler import (
    UNSET,
    CompiledRule,
    CompileEnv,
    PathResolver,
    build_tree,
    cache_key,
    compile_rule,
    copy_params,
    validate_named_condition,
)
from coafi.rules._js import UNDEFINED, JsTypeError, js_truthy
from coafi.rules._jsonpath import PathError, PathEvaluationError, compile_path
from coafi.rules.errors import (
    Problem,
    RuleEvaluationError,
    RuleNotFoundError,
    RuleValidationError,
    UndefinedFactError,
)
from coafi.rules.operators import Decorator, DecoratorFn, Operator, OperatorFn, OperatorMap, Validator

if TYPE_CHECKING:
    from coafi.rules.models import Rule
    from coafi.rules.store import RuleStore

__all__ = ["Almanac", "EngineResult", "Fact", "RuleEngine", "RuleResult", "to_json_safe"]

FactFn = Callable[[Any, "Almanac"], Any]
_T = TypeVar("_T")
RuleLike: TypeAlias = "Mapping[str, Any] | CompiledRule | Rule"


class Fact:
    """An engine-level fact: a constant, or ``fn(params, almanac)`` computed on demand (cached per run by
    fact id and params unless ``cache=False``). ``priority`` orders the conditions that use it."""

    __slots__ = ("cache", "fn", "id", "priority", "value")

    def __init__(self, fact_id: str, value_or_fn: Any, *, priority: int = 1, cache: bool = True) -> None:
        if not fact_id:
            raise ValueError("factId required")
        self.id = fact_id
        self.fn: FactFn | None = value_or_fn if callable(value_or_fn) else None
        self.value = None if self.fn is not None else value_or_fn
        self.priority = int(priority or 1)
        self.cache = cache

    def __repr__(self) -> str:
        return f"Fact({self.id!r}, {'<computed>' if self.fn else repr(self.value)}, priority={self.priority})"


class Almanac:
    """The facts of one run. A computed fact is called as ``fn(params, almanac)`` and may read other facts
    with :meth:`fact_value` (``factValue``) or add some with :meth:`add_fact` (``addRuntimeFact``)."""

    __slots__ = ("_cache", "allow_undefined_facts", "path_resolver", "values")

    def __init__(
        self, values: dict[str, Any], *, allow_undefined_facts: bool = False, path_resolver: PathResolver | None = None
    ) -> None:
        self.values = values
        self.allow_undefined_facts = allow_undefined_facts
        self.path_resolver = path_resolver
        self._cache: dict[tuple[str, str], Any] = {}

    def missing(self, fact_id: str) -> Any:
        if self.allow_undefined_facts:
            return UNDEFINED
        raise UndefinedFactError(fact_id)

    def compute(self, fact_id: str, raw: Any, params: Any, key: str) -> Any:
        if raw.__class__ is Fact:
            if raw.fn is None:
                return raw.value
            fn: FactFn = raw.fn
            cache = raw.cache
        elif callable(raw):
            fn, cache = raw, True
        else:
            return raw
        if not cache:
            return fn(copy_params(params), self)
        k = (fact_id, key)
        try:
            return self._cache[k]
        except KeyError:
            value = fn(copy_params(params), self)
            self._cache[k] = value
            return value

    def fact_value(self, fact_id: str, params: Any = None, path: str | None = None) -> Any:
        """The value of a fact (``almanac.factValue``), optionally through a JSONPath."""
        raw = self.values.get(fact_id, _MISSING)
        if raw is _MISSING:
            return self.missing(fact_id)
        value = self.compute(fact_id, raw, UNDEFINED if params is None else params, cache_key(params or {}))
        if path and not (value is None or value is UNDEFINED or isinstance(value, (str, int, float, bool))):
            if self.path_resolver is not None:
                return self.path_resolver(value, path)
            return compile_path(path)(value)
        return value

    factValue = fact_value

    def add_fact(self, fact_id: str, value: Any) -> None:
        """Add (or replace) a fact for the rest of the run."""
        self.values[fact_id] = value

    addFact = add_fact
    add_runtime_fact = add_fact
    addRuntimeFact = add_fact

    def get_value(self, value: Any) -> Any:
        """``almanac.getValue``: a ``{fact, params, path}`` object resolved, anything else as is."""
        if isinstance(value, Mapping) and "fact" in value:
            return self.fact_value(value["fact"], value.get("params"), value.get("path"))
        return value


_MISSING: Any = object()
_CONTENT_CACHE_SIZE = 512


def to_json_safe(value: Any) -> Any:
    """A value as ``JSON.stringify`` would write it: ``undefined`` and NaN/Infinity become ``null``."""
    if value is UNDEFINED:
        return None
    if isinstance(value, float) and (value != value or value in (math.inf, -math.inf)):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json_safe(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    return str(value)


def _deep(value: _T) -> _T:
    return copy.deepcopy(value)


class RuleResult:
    """What one rule gave for one set of facts.

    ``satisfied`` is json-rules-engine's ``ruleResult.result`` judged as node would (truthiness); ``result``
    is that raw value (always a boolean unless a custom operator returns something else). ``event`` is the
    rule's event when satisfied, else ``None`` (``rule_event`` is the event either way). ``conditions`` is
    the condition tree with ``factResult``/``valueResult``/``result`` on every condition that was evaluated.
    """

    __slots__ = ("_compiled", "_event", "_event_ticks", "_slots", "_tree", "result")

    def __init__(
        self, compiled: CompiledRule, result: Any, slots: list[Any], event: dict[str, Any], event_ticks: int = 0
    ) -> None:
        self._compiled = compiled
        self.result = result
        self._slots = slots
        self._event = event
        self._event_ticks = event_ticks
        self._tree: dict[str, Any] | None = None

    @property
    def name(self) -> Any:
        return self._compiled.name

    @property
    def priority(self) -> int:
        return self._compiled.priority

    @property
    def satisfied(self) -> bool:
        return js_truthy(self.result)

    @property
    def event(self) -> dict[str, Any] | None:
        return _deep(self._event) if js_truthy(self.result) else None

    @property
    def rule_event(self) -> dict[str, Any]:
        return _deep(self._event)

    @property
    def on_success(self) -> Any:
        return self._compiled.on_success

    @property
    def on_failure(self) -> Any:
        return self._compiled.on_failure

    @property
    def conditions(self) -> dict[str, Any]:
        if self._tree is None:
            self._tree = build_tree(self._compiled.root, self._slots, _deep)
            root_state = self._slots[self._compiled.root.slot]
            if root_state is not UNSET and "result" not in self._tree:
                self._tree["result"] = root_state
        return self._tree

    def to_dict(self, *, conditions: bool = False) -> dict[str, Any]:
        """JSON-safe: ``{"name", "satisfied", "event"}`` plus ``priority``, ``result``, ``onSuccess``/
        ``onFailure`` (when the rule has them) and, if asked, the ``conditions`` tree."""
        out: dict[str, Any] = {
            "name": to_json_safe(self.name),
            "satisfied": self.satisfied,
            "event": to_json_safe(self.event),
            "priority": self.priority,
            "result": to_json_safe(self.result),
        }
        if self.on_success is not None:
            out["onSuccess"] = to_json_safe(self.on_success)
        if self.on_failure is not None:
            out["onFailure"] = to_json_safe(self.on_failure)
        if conditions:
            out["conditions"] = to_json_safe(self.conditions)
        return out

    def __repr__(self) -> str:
        return f"RuleResult(name={self.name!r}, satisfied={self.satisfied}, priority={self.priority})"


class EngineResult:
    """The outcome of :meth:`RuleEngine.run`, shaped like json-rules-engine's: ``results`` (satisfied),
    ``failure_results``, ``events``, ``failure_events``; ``all`` is every result in the order node reports
    them (priority groups highest first; within a group, the order the evaluations finish)."""

    __slots__ = ("all", "almanac")

    def __init__(self, results: list[RuleResult], almanac: Almanac) -> None:
        self.all = results
        self.almanac = almanac

    @property
    def results(self) -> list[RuleResult]:
        return [r for r in self.all if r.satisfied]

    @property
    def failure_results(self) -> list[RuleResult]:
        return [r for r in self.all if not r.satisfied]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [r.rule_event for r in self.all if r.satisfied]

    @property
    def failure_events(self) -> list[dict[str, Any]]:
        return [r.rule_event for r in self.all if not r.satisfied]

    failureResults = failure_results
    failureEvents = failure_events


class RuleEngine:
    """json-rules-engine's ``Engine`` in Python, plus the registry-style API of the design.

    Plain rule JSON::

        engine = RuleEngine()
        result = engine.evaluate({"conditions": {"all": [...]}, "event": {"type": "x"}}, {"age": 30})
        results = engine.evaluate_all([rule_a, rule_b], facts)      # ordered like node's run()

    json-rules-engine style: :meth:`add_rule`, :meth:`set_condition`, :meth:`add_operator`,
    :meth:`add_operator_decorator`, :meth:`add_fact`, :meth:`run` (camelCase aliases exist). Registry style:
    :meth:`register_rule`, :meth:`unregister_rule`, :meth:`evaluate_rule`, :meth:`evaluate_rules`,
    :meth:`get_rules_by_category`, :meth:`get_rule_by_id`, over a :class:`~coafi.rules.store.RuleStore`.

    Rules are validated and compiled once (:meth:`compile`); a malformed rule raises
    :class:`~coafi.rules.errors.RuleValidationError` naming the JSONPath of every problem.
    """

    def __init__(
        self,
        rules: Iterable[Mapping[str, Any]] | None = None,
        *,
        allow_undefined_facts: bool = False,
        allow_undefined_conditions: bool = False,
        replace_facts_in_event_params: bool = False,
        path_resolver: PathResolver | None = None,
        conditions: Mapping[str, Any] | None = None,
        store: RuleStore | None = None,
    ) -> None:
        self.allow_undefined_facts = allow_undefined_facts
        self.allow_undefined_conditions = allow_undefined_conditions
        self.replace_facts_in_event_params = replace_facts_in_event_params
        self.path_resolver = path_resolver
        self._operators = OperatorMap()
        self._conditions: dict[str, Any] = {}
        self._facts: dict[str, Fact] = {}
        self._fact_priority: dict[str, int] = {}
        self._generation = 0
        self._env: CompileEnv | None = None
        self._rules: list[CompiledRule] = []
        self._prioritized: list[list[CompiledRule]] | None = None
        self._store = store
        self._registry: dict[str, tuple[int | None, CompiledRule]] = {}
        self._by_content: dict[str, CompiledRule] = {}
        for name, condition in (conditions or {}).items():
            self.set_condition(name, condition)
        for rule in rules or ():
            self.add_rule(rule)

    # -- configuration (json-rules-engine's Engine API) ---------------------------------------------------------

    def _changed(self) -> None:
        self._generation += 1
        self._env = None
        self._prioritized = None

    @property
    def env(self) -> CompileEnv:
        if self._env is None:
            self._env = CompileEnv(
                self._operators,
                self._conditions,
                self._fact_priority,
                allow_undefined_facts=self.allow_undefined_facts,
                allow_undefined_conditions=self.allow_undefined_conditions,
                replace_facts_in_event_params=self.replace_facts_in_event_params,
                path_resolver=self.path_resolver,
            )
        return self._env

    def set_condition(self, name: str, conditions: Mapping[str, Any]) -> RuleEngine:
        """A named condition rules can reference with ``{"condition": name}`` (``setCondition``)."""
        problems = validate_named_condition(name, conditions, self.env)
        if problems:
            raise RuleValidationError(problems)
        self._conditions[name] = copy.deepcopy(dict(conditions))
        self._changed()
        return self

    setCondition = set_condition

    def remove_condition(self, name: str) -> bool:
        """Forget a named condition; rules that reference it fail to compile from now on."""
        if name not in self._conditions:
            return False
        del self._conditions[name]
        self._changed()
        return True

    removeCondition = remove_condition

    def add_operator(
        self, name: str | Operator, fn: OperatorFn | None = None, validator: Validator | None = None
    ) -> None:
        """A custom operator ``fn(fact_value, value) -> result``, optionally guarded by
        ``validator(fact_value)`` (``addOperator``)."""
        operator = name if isinstance(name, Operator) else Operator(name, fn, validator)  # type: ignore[arg-type]
        self._operators.add_operator(operator)
        self._changed()

    addOperator = add_operator

    def remove_operator(self, name: str) -> bool:
        removed = self._operators.remove_operator(name.name if isinstance(name, Operator) else name)
        self._changed()
        return removed

    removeOperator = remove_operator

    def add_operator_decorator(
        self, name: str | Decorator, fn: DecoratorFn | None = None, validator: Validator | None = None
    ) -> None:
        """A custom decorator ``fn(fact_value, value, next)``, used as ``"<name>:<operator>"``."""
        decorator = name if isinstance(name, Decorator) else Decorator(name, fn, validator)  # type: ignore[arg-type]
        self._operators.add_decorator(decorator)
        self._changed()

    addOperatorDecorator = add_operator_decorator

    def remove_operator_decorator(self, name: str) -> bool:
        removed = self._operators.remove_decorator(name)
        self._changed()
        return removed

    removeOperatorDecorator = remove_operator_decorator

    def add_fact(
        self, fact_id: str | Fact, value_or_fn: Any = None, *, priority: int = 1, cache: bool = True
    ) -> RuleEngine:
        """A fact every run sees (facts given to a run override it): a constant, or ``fn(params, almanac)``."""
        fact = fact_id if isinstance(fact_id, Fact) else Fact(fact_id, value_or_fn, priority=priority, cache=cache)
        old = self._fact_priority.get(fact.id, 1)
        self._facts[fact.id] = fact
        if fact.priority != 1:
            self._fact_priority[fact.id] = fact.priority
        else:
            self._fact_priority.pop(fact.id, None)
        if old != fact.priority:
            self._changed()
        return self

    addFact = add_fact

    def remove_fact(self, fact_id: str | Fact) -> bool:
        key = fact_id.id if isinstance(fact_id, Fact) else fact_id
        if self._facts.pop(key, None) is None:
            return False
        if self._fact_priority.pop(key, None) is not None:
            self._changed()
        return True

    removeFact = remove_fact

    def get_fact(self, fact_id: str) -> Fact | None:
        return self._facts.get(fact_id)

    getFact = get_fact

    # -- compiling ----------------------------------------------------------------------------------------------

    def compile(self, rule: RuleLike, *, base: str = "$") -> CompiledRule:
        """Validate and compile a rule (json-rules-engine rule JSON) for this engine."""
        if isinstance(rule, CompiledRule):
            return self._fresh(rule, base)
        return compile_rule(_rule_json(rule), self.env, base=base, generation=self._generation)

    def _compile_cached(self, rule: RuleLike, base: str = "$") -> CompiledRule:
        """``compile``, remembering plain rule JSON by content: a Lambda handed the same inline rules on every
        invocation compiles them once. The cached rule compiles from its own copy of the JSON."""
        if isinstance(rule, CompiledRule):
            return self._fresh(rule, base)
        rule = _rule_json(rule)
        try:
            key = json.dumps(rule, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return self.compile(rule, base=base)
        cached = self._by_content.get(key)
        if cached is not None:
            return self._fresh(cached, base)
        compiled = compile_rule(json.loads(key), self.env, base=base, generation=self._generation)
        if len(self._by_content) >= _CONTENT_CACHE_SIZE:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # another thread got there first
                self._by_content.pop(next(iter(self._by_content)))
        self._by_content[key] = compiled
        return compiled

    def validate(self, rules: Any) -> list[Problem]:
        """Every problem of one rule or a list of rules (``$[i]...`` paths for a list); empty when all compile."""
        problems: list[Problem] = []
        items = list(enumerate(rules)) if isinstance(rules, list) else [(None, rules)]
        for i, rule in items:
            try:
                compile_rule(rule, self.env, base="$" if i is None else f"$[{i}]")
            except RuleValidationError as exc:
                problems.extend(exc.problems)
        return problems

    def _fresh(self, compiled: CompiledRule, base: str = "$") -> CompiledRule:
        """The compiled rule, recompiled in place if operators, named conditions or fact priorities changed
        since (so handles held by callers stay valid)."""
        if compiled.generation != self._generation:
            compiled.refresh(compile_rule(compiled.source, self.env, base=base, generation=self._generation))
        return compiled

    # -- rules held by the engine (addRule/run) -----------------------------------------------------------------

    def add_rule(self, rule: RuleLike) -> CompiledRule:
        """Add a rule for :meth:`run` (``addRule``); returns it compiled."""
        compiled = self.compile(rule)
        self._rules.append(compiled)
        self._prioritized = None
        return compiled

    addRule = add_rule

    def update_rule(self, rule: RuleLike) -> None:
        """Replace the rule with the same name (``updateRule``)."""
        compiled = self.compile(rule)
        for i, existing in enumerate(self._rules):
            if existing.name == compiled.name:
                del self._rules[i]
                self._rules.append(compiled)
                self._prioritized = None
                return
        raise RuleNotFoundError(str(compiled.name))

    updateRule = update_rule

    def remove_rule(self, rule: str | CompiledRule) -> bool:
        """Remove a rule by name (every rule of that name) or the compiled rule itself (``removeRule``)."""
        before = len(self._rules)
        if isinstance(rule, CompiledRule):
            self._rules = [r for r in self._rules if r is not rule]
        else:
            self._rules = [r for r in self._rules if r.name != rule]
        self._prioritized = None
        return len(self._rules) != before

    removeRule = remove_rule

    @property
    def rules(self) -> list[CompiledRule]:
        return list(self._rules)

    def run(self, facts: Mapping[str, Any] | None = None) -> EngineResult:
        """Evaluate the engine's rules (``engine.run(facts)``)."""
        if self._prioritized is None or any(r.generation != self._generation for r in self._rules):
            for r in self._rules:
                self._fresh(r)
            self._prioritized = _prioritize(self._rules)
        almanac = self._almanac(facts)
        return EngineResult(self._execute(self._prioritized, almanac), almanac)

    # -- evaluating rule JSON directly ------------------------------------------------------------------------

    def evaluate(self, rule: RuleLike, facts: Mapping[str, Any] | None = None) -> RuleResult:
        """Evaluate one rule (rule JSON or :meth:`compile`'s result) against ``facts``."""
        compiled = self._compile_cached(rule)
        almanac = self._almanac(facts)
        return self._evaluate_one(compiled, almanac.values, almanac)

    def evaluate_all(self, rules: Sequence[RuleLike], facts: Mapping[str, Any] | None = None) -> list[RuleResult]:
        """Evaluate rules together like one ``engine.run``: every rule's result, higher priority first and,
        within a priority, in the order json-rules-engine reports them."""
        compiled = [self._compile_cached(r, base=f"$[{i}]") for i, r in enumerate(rules)]
        almanac = self._almanac(facts)
        return self._execute(_prioritize(compiled), almanac)

    def _almanac(self, facts: Mapping[str, Any] | None) -> Almanac:
        if facts and "" in facts:
            raise RuleEvaluationError("factId required")  # node's run() throws on a fact with an empty name
        if self._facts:
            values: dict[str, Any] = {k: (f if f.fn is not None else f.value) for k, f in self._facts.items()}
            if facts:
                values.update(facts)
        else:
            values = dict(facts) if facts else {}
        return Almanac(values, allow_undefined_facts=self.allow_undefined_facts, path_resolver=self.path_resolver)

    def _evaluate_one(self, compiled: CompiledRule, values: dict[str, Any], almanac: Almanac) -> RuleResult:
        slots = [UNSET] * compiled.nslots
        try:
            result = compiled.evaluate(values, almanac, slots)
            event = compiled.event
            event_ticks = 0
            if self.replace_facts_in_event_params:
                event, event_ticks = _resolve_event_params(event, almanac)
        except RuleEvaluationError as exc:
            raise exc.with_rule(compiled.name) from None
        except (JsTypeError, PathEvaluationError, PathError) as exc:
            raise RuleEvaluationError(str(exc), rule=compiled.name) from exc
        return RuleResult(compiled, result, slots, event, event_ticks)

    def _execute(self, groups: list[list[CompiledRule]], almanac: Almanac) -> list[RuleResult]:
        values = almanac.values
        out: list[RuleResult] = []
        for group in groups:
            if len(group) == 1:
                out.append(self._evaluate_one(group[0], values, almanac))
                continue
            results = [self._evaluate_one(c, values, almanac) for c in group]
            keys = [r._compiled.ticks(r._slots) + r._event_ticks for r in results]
            if min(keys) != max(keys):
                order = sorted(range(len(results)), key=keys.__getitem__)
                results = [results[i] for i in order]
            out.extend(results)
        return out

    # -- registry (the design's API) ------------------------------------------------------------------------

    @property
    def store(self) -> RuleStore:
        if self._store is None:
            from coafi.rules.store import InMemoryRuleStore

            self._store = InMemoryRuleStore()
        return self._store

    def register_rule(self, rule: Rule | Mapping[str, Any], *, expected_version: int | None = None) -> Rule:
        """Validate, compile and store a rule (a :class:`~coafi.rules.models.Rule` or its JSON); returns the
        stored rule with its new ``version``. A malformed rule raises ``RuleValidationError`` and is not stored."""
        from coafi.rules.models import Rule as RuleModel

        model = rule if isinstance(rule, RuleModel) else RuleModel.model_validate(rule)
        compiled = self.compile(model.engine_rule())
        stored = self.store.put(model, expected_version=expected_version)
        self._registry[stored.id] = (stored.version, compiled)
        return stored

    registerRule = register_rule

    def unregister_rule(self, rule_id: str) -> bool:
        """Remove a rule from the registry; ``False`` if there was none."""
        self._registry.pop(rule_id, None)
        return self.store.delete(rule_id)

    unregisterRule = unregister_rule

    def get_rule_by_id(self, rule_id: str) -> Rule | None:
        return self.store.get(rule_id)

    getRuleById = get_rule_by_id

    def get_rules_by_category(self, category: str) -> list[Rule]:
        return self.store.list(category=category)

    getRulesByCategory = get_rules_by_category

    def list_rules(self) -> list[Rule]:
        return self.store.list()

    def _registered(self, rule_id: str) -> tuple[Rule, CompiledRule]:
        rule = self.store.get(rule_id)
        if rule is None:
            raise RuleNotFoundError(rule_id)
        cached = self._registry.get(rule_id)
        if cached is not None and cached[0] == rule.version:
            return rule, self._fresh(cached[1])
        compiled = self.compile(rule.engine_rule())
        self._registry[rule_id] = (rule.version, compiled)
        return rule, compiled

    def evaluate_rule(self, rule_id: str, facts: Mapping[str, Any] | None = None) -> RuleResult:
        """Evaluate a registered rule (enabled or not) by id."""
        _, compiled = self._registered(rule_id)
        almanac = self._almanac(facts)
        return self._evaluate_one(compiled, almanac.values, almanac)

    evaluateRule = evaluate_rule

    def evaluate_rules(
        self, rule_ids: Iterable[str] | None = None, facts: Mapping[str, Any] | None = None
    ) -> list[RuleResult]:
        """Evaluate registered rules together (``None``: every rule in the registry); disabled rules are
        skipped. Ordered like :meth:`evaluate_all`."""
        ids = [r.id for r in self.store.list()] if rule_ids is None else list(rule_ids)
        compiled: list[CompiledRule] = []
        for rule_id in ids:
            rule, c = self._registered(rule_id)
            if rule.enabled:
                compiled.append(c)
        almanac = self._almanac(facts)
        return self._execute(_prioritize(compiled), almanac)

    evaluateRules = evaluate_rules


def _rule_json(rule: Any) -> Any:
    """Rule JSON, also from a registry :class:`~coafi.rules.models.Rule`."""
    engine_rule = getattr(rule, "engine_rule", None)
    return engine_rule() if callable(engine_rule) and not isinstance(rule, Mapping) else rule


def _prioritize(rules: list[CompiledRule]) -> list[list[CompiledRule]]:
    """``Engine.prioritizeRules``: groups of equal priority, highest first, each in the order given."""
    if not rules:
        return []
    first = rules[0].priority
    if all(r.priority == first for r in rules):
        return [list(rules)]
    groups: dict[int, list[CompiledRule]] = {}
    for rule in rules:
        groups.setdefault(rule.priority, []).append(rule)
    return [groups[p] for p in sorted(groups, reverse=True)]


def _resolve_event_params(event: dict[str, Any], almanac: Almanac) -> tuple[dict[str, Any], int]:
    """``replaceFactsInEventParams``: ``{fact, params, path}`` params replaced by their values; also the promise
    ticks node spends doing it (which shifts where the rule lands among rules of its priority)."""
    params = event.get("params")
    if isinstance(params, Mapping):
        items: list[tuple[Any, Any]] = list(params.items())
    elif isinstance(params, (list, tuple)):
        items = list(enumerate(params))
    else:
        return event, 0
    if not items:
        return event, 0
    resolved = copy.deepcopy(event)
    target = resolved["params"]
    extra = 0
    for key, value in items:
        if isinstance(value, Mapping) and "fact" in value:
            fact_id = value["fact"]
            if value.get("path") and fact_id in almanac.values:
                extra = 1
            target[key] = almanac.fact_value(fact_id, value.get("params"), value.get("path"))
    return resolved, 2 + extra
