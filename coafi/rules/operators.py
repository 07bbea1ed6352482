"""json-rules-engine's operators and operator decorators, with their JavaScript semantics.

An operator is ``fn(fact_value, value) -> result`` guarded by a fact-value validator: the result is
``validator(fact_value) && fn(fact_value, value)``, as in ``Operator.evaluate``. A decorator wraps an
operator: ``"not:someFact:equal"`` is ``not`` around ``someFact`` around ``equal`` (the leftmost name is the
outermost), each decorated operator carrying the decorator's validator, as ``OperatorMap.get`` builds them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from coafi.rules._js import (
    UNDEFINED,
    JsTypeError,
    js_greater,
    js_greater_equal,
    js_less,
    js_less_equal,
    js_strict_eq,
    js_to_string,
    js_truthy,
    parse_float_valid,
)

__all__ = [
    "DEFAULT_DECORATORS",
    "DEFAULT_OPERATORS",
    "Decorator",
    "Operator",
    "OperatorFn",
    "OperatorMap",
    "Validator",
]

OperatorFn = Callable[[Any, Any], Any]
DecoratorFn = Callable[[Any, Any, OperatorFn], Any]
Validator = Callable[[Any], Any]

_ARRAYS: Final = (list, tuple)


def _always(_value: Any) -> bool:
    return True


def is_array(value: Any) -> bool:
    """``Array.isArray``."""
    return isinstance(value, _ARRAYS)


class Operator:
    """A named comparison: ``evaluate(a, b)`` is ``validator(a) && fn(a, b)``."""

    __slots__ = ("evaluate", "fn", "name", "validator")

    def __init__(self, name: str, fn: OperatorFn, validator: Validator | None = None) -> None:
        if not name:
            raise ValueError("Missing operator name")
        if not callable(fn):
            raise TypeError("Missing operator callback")
        self.name = str(name)
        self.fn = fn
        self.validator = validator or _always
        self.evaluate: OperatorFn = self._build()

    def _build(self) -> OperatorFn:
        fn, validator = self.fn, self.validator
        if validator is _always:
            return fn
        if validator is is_array:

            def array_guarded(a: Any, b: Any) -> Any:
                return isinstance(a, _ARRAYS) and fn(a, b)

            return array_guarded
        if validator is parse_float_valid:

            def number_guarded(a: Any, b: Any) -> Any:
                return parse_float_valid(a) and fn(a, b)

            return number_guarded

        def guarded(a: Any, b: Any) -> Any:
            ok = validator(a)
            return fn(a, b) if js_truthy(ok) else ok

        return guarded


class Decorator:
    """An operator decorator: ``fn(fact_value, value, next)`` around another operator."""

    __slots__ = ("fn", "name", "validator")

    def __init__(self, name: str, fn: DecoratorFn, validator: Validator | None = None) -> None:
        if not name:
            raise ValueError("Missing decorator name")
        if not callable(fn):
            raise TypeError("Missing decorator callback")
        self.name = str(name)
        self.fn = fn
        self.validator = validator or _always

    def decorate(self, operator: Operator) -> Operator:
        fn, nxt = self.fn, operator.evaluate

        def decorated(a: Any, b: Any) -> Any:
            return fn(a, b, nxt)

        return Operator(f"{self.name}:{operator.name}", decorated, self.validator)


# -- the default operators (engine-default-operators.js) ---------------------------------------------------------


def _index_of_found(haystack: Any, needle: Any) -> bool:
    """``haystack.indexOf(needle) > -1`` for an array (strict equality) or a string (``String(needle)``)."""
    if isinstance(haystack, str):
        return js_to_string(needle) in haystack
    if isinstance(haystack, _ARRAYS):
        cls = needle.__class__
        if cls is str:
            return needle in haystack  # list membership is == (str only equals str) or identity
        return any(js_strict_eq(x, needle) for x in haystack)
    raise JsTypeError(_not_a_function(haystack, "b", "indexOf"))


def _not_a_function(value: Any, name: str, method: str) -> str:
    if value is None or value is UNDEFINED:
        return f"Cannot read properties of {js_to_string(value)} (reading '{method}')"
    return f"{name}.{method} is not a function"


def _equal(a: Any, b: Any) -> bool:
    return js_strict_eq(a, b)


def _not_equal(a: Any, b: Any) -> bool:
    return not js_strict_eq(a, b)


def _in(a: Any, b: Any) -> bool:
    return _index_of_found(b, a)


def _not_in(a: Any, b: Any) -> bool:
    return not _index_of_found(b, a)


def _contains(a: Any, b: Any) -> bool:
    return any(js_strict_eq(x, b) for x in a)


def _does_not_contain(a: Any, b: Any) -> bool:
    return not any(js_strict_eq(x, b) for x in a)


DEFAULT_OPERATORS: Final[tuple[Operator, ...]] = (
    Operator("equal", _equal),
    Operator("notEqual", _not_equal),
    Operator("in", _in),
    Operator("notIn", _not_in),
    Operator("contains", _contains, is_array),
    Operator("doesNotContain", _does_not_contain, is_array),
    Operator("lessThan", js_less, parse_float_valid),
    Operator("lessThanInclusive", js_less_equal, parse_float_valid),
    Operator("greaterThan", js_greater, parse_float_valid),
    Operator("greaterThanInclusive", js_greater_equal, parse_float_valid),
)


# -- the default decorators (engine-default-operator-decorators.js) ------------------------------------------------


def _array_method(value: Any, method: str) -> list[Any] | tuple[Any, ...]:
    if isinstance(value, _ARRAYS):
        return value
    raise JsTypeError(_not_a_function(value, "jsonValue", method))


def _some_fact(a: Any, b: Any, nxt: OperatorFn) -> bool:
    return any(js_truthy(nxt(x, b)) for x in a)


def _some_value(a: Any, b: Any, nxt: OperatorFn) -> bool:
    return any(js_truthy(nxt(a, y)) for y in _array_method(b, "some"))


def _every_fact(a: Any, b: Any, nxt: OperatorFn) -> bool:
    return all(js_truthy(nxt(x, b)) for x in a)


def _every_value(a: Any, b: Any, nxt: OperatorFn) -> bool:
    return all(js_truthy(nxt(a, y)) for y in _array_method(b, "every"))


def _swap(a: Any, b: Any, nxt: OperatorFn) -> Any:
    return nxt(b, a)


def _not(a: Any, b: Any, nxt: OperatorFn) -> bool:
    return not js_truthy(nxt(a, b))


DEFAULT_DECORATORS: Final[tuple[Decorator, ...]] = (
    Decorator("someFact", _some_fact, is_array),
    Decorator("someValue", _some_value),
    Decorator("everyFact", _every_fact, is_array),
    Decorator("everyValue", _every_value),
    Decorator("swap", _swap),
    Decorator("not", _not),
)

#: Decorators whose ``value`` must be an array (they call ``value.some``/``value.every``).
VALUE_ARRAY_DECORATORS: Final = frozenset({"someValue", "everyValue"})


class OperatorMap:
    """Operators and decorators by name; ``get("not:someFact:equal")`` builds (and remembers) decorated ones."""

    def __init__(self) -> None:
        self.operators: dict[str, Operator] = {op.name: op for op in DEFAULT_OPERATORS}
        self.decorators: dict[str, Decorator] = {dec.name: dec for dec in DEFAULT_DECORATORS}
        self._decorated: dict[str, Operator] = {}

    def add_operator(self, operator: Operator) -> None:
        self.operators[operator.name] = operator

    def remove_operator(self, name: str) -> bool:
        suffix = ":" + name
        for key in [k for k in self._decorated if k.endswith(suffix)]:
            del self._decorated[key]
        return self.operators.pop(name, None) is not None

    def add_decorator(self, decorator: Decorator) -> None:
        self.decorators[decorator.name] = decorator

    def remove_decorator(self, name: str) -> bool:
        prefix = name + ":"
        for key in [k for k in self._decorated if prefix in k]:
            del self._decorated[key]
        return self.decorators.pop(name, None) is not None

    def chain(self, name: str) -> tuple[list[str], str] | None:
        """``(decorators outermost first, base operator)``, or ``None`` when the name does not resolve."""
        decorators: list[str] = []
        op_name = name
        while op_name not in self.operators:
            index = op_name.find(":")
            if index <= 0:
                return None
            decorator = op_name[:index]
            if decorator not in self.decorators:
                return None
            decorators.append(decorator)
            op_name = op_name[index + 1 :]
        return decorators, op_name

    def get(self, name: str) -> Operator | None:
        if name in self.operators:
            return self.operators[name]
        if name in self._decorated:
            return self._decorated[name]
        found = self.chain(name)
        if found is None:
            return None
        decorators, op_name = found
        op = self.operators[op_name]
        for decorator in reversed(decorators):
            op = self.decorators[decorator].decorate(op)
            op = self._decorated.setdefault(op.name, op)
        return op

    def names(self) -> list[str]:
        return sorted(self.operators)


# -- fast paths for a default operator against a constant value ------------------------------------------------------

_SAFE: Final = 2**53


def _safe_number(value: Any) -> bool:
    cls = value.__class__
    return (cls is int and -_SAFE < value < _SAFE) or (cls is float and value == value and -_SAFE < value < _SAFE)


def _number_compare(base: str, c: Any, general: OperatorFn) -> OperatorFn | None:
    if value_cls_is_number(c):
        # a number against a number: Python's comparison is JavaScript's (NaN compares false) as long as a
        # big integer fact does not need rounding to a double first
        if base == "lessThan":

            def lt(a: Any, b: Any) -> Any:
                cls = a.__class__
                if cls is float or (cls is int and -_SAFE < a < _SAFE):
                    return a < c
                return general(a, b)

            return lt
        if base == "lessThanInclusive":

            def le(a: Any, b: Any) -> Any:
                cls = a.__class__
                if cls is float or (cls is int and -_SAFE < a < _SAFE):
                    return a <= c
                return general(a, b)

            return le
        if base == "greaterThan":

            def gt(a: Any, b: Any) -> Any:
                cls = a.__class__
                if cls is float or (cls is int and -_SAFE < a < _SAFE):
                    return a > c
                return general(a, b)

            return gt
        if base == "greaterThanInclusive":

            def ge(a: Any, b: Any) -> Any:
                cls = a.__class__
                if cls is float or (cls is int and -_SAFE < a < _SAFE):
                    return a >= c
                return general(a, b)

            return ge
    return None


def value_cls_is_number(value: Any) -> bool:
    cls = value.__class__
    return (cls is int and -_SAFE < value < _SAFE) or cls is float


def specialize(operator: Operator, value: Any) -> OperatorFn:
    """``operator.evaluate`` for a constant ``value``, with a fast path for the common fact types when the
    operator is one of the defaults (the general JavaScript-semantics function handles everything else)."""
    general = operator.evaluate
    default = _DEFAULT_BY_NAME.get(operator.name)
    if default is None or default is not operator:
        return general
    base = operator.name
    cls = value.__class__
    if base in ("equal", "notEqual"):
        negate = base == "notEqual"
        if cls is str:
            if negate:
                return lambda a, b: a != value if a.__class__ is str else general(a, b)
            return lambda a, b: a == value if a.__class__ is str else general(a, b)
        if _safe_number(value):
            if negate:
                return lambda a, b: a != value if a.__class__ is int or a.__class__ is float else general(a, b)
            return lambda a, b: a == value if a.__class__ is int or a.__class__ is float else general(a, b)
        if cls is bool or value is None:
            if negate:
                return lambda a, b: a is not value
            return lambda a, b: a is value
        return general
    compare = _number_compare(base, value, general)
    if compare is not None:
        return compare
    if base in ("in", "notIn") and (cls is list or cls is tuple):
        negate = base == "notIn"
        if value and all(v.__class__ is str for v in value):
            strings = frozenset(value)
            if negate:
                return lambda a, b: a not in strings if a.__class__ is str else general(a, b)
            return lambda a, b: a in strings if a.__class__ is str else general(a, b)
        if value and all(_safe_number(v) for v in value):
            numbers = frozenset(value)
            if negate:
                return lambda a, b: a not in numbers if a.__class__ is int or a.__class__ is float else general(a, b)
            return lambda a, b: a in numbers if a.__class__ is int or a.__class__ is float else general(a, b)
        return general
    if base in ("in", "notIn") and cls is str:
        if base == "in":
            return lambda a, b: a in value if a.__class__ is str else general(a, b)
        return lambda a, b: a not in value if a.__class__ is str else general(a, b)
    if base in ("contains", "doesNotContain") and cls is str:
        if base == "contains":
            return lambda a, b: value in a if a.__class__ is list else general(a, b)
        return lambda a, b: value not in a if a.__class__ is list else general(a, b)
    return general


_DEFAULT_BY_NAME: Final = {op.name: op for op in DEFAULT_OPERATORS}
