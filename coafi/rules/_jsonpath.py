"""JSONPath as json-rules-engine resolves a condition's ``path``: ``JSONPath({path, json, wrap: false})`` of
jsonpath-plus 10.

A port of jsonpath-plus's ``toPathArray`` (its regex normalisation, quirks included) and ``_trace``: ``$``,
``.name``/``['name']``, ``[n]``, ``.length`` of arrays and strings, ``*``, ``..``, unions ``[a,b]``,
slices ``[start:end:step]``, ``~`` (property name), ``^`` (parent), ``@string()``-style type selectors,
backtick-escaped names, filters ``[?(...)]`` and computed names ``[(...)]``. With ``wrap: false`` a path that
matches nothing gives ``undefined``, a single match through plain names gives the value itself, and anything
reached through ``*``, ``..``, slices, unions or filters gives an array of the matches.

Filter and computed-name scripts are parsed like jsonpath-plus's default "safe" evaluator (jsep) does, for
the subset that evaluator can run without calling functions: literals, ``@``/``@.x``/``@['x']``,
``@property``, ``@parent``, ``@parentProperty``, ``@root``, unary ``- + ! ~ typeof void``, the binary
operators, ``&&``/``||`` and ``?:``. Paths are compiled once (:func:`compile_path`); a path that cannot be
compiled raises :class:`PathError` at rule compile time.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any, Final

from coafi.rules._js import (
    UNDEFINED,
    JsTypeError,
    js_greater,
    js_greater_equal,
    js_less,
    js_less_equal,
    js_number_to_string,
    js_strict_eq,
    js_to_number,
    js_to_string,
    js_truthy,
    js_typeof,
)

__all__ = ["PathError", "PathEvaluationError", "compile_path", "js_own_keys", "to_path_array"]

PathFn = Callable[[Any], Any]

_ARRAYS: Final = (list, tuple)
_INDEX: Final = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_MAX_INDEX: Final = 2**32 - 2
_DOT: Final = "[^\\n\\r\u2028\u2029]"  # JavaScript's `.`: anything but a line terminator
_SLICE: Final = re.compile(r"(-?[0-9]*):(-?[0-9]*):?([0-9]*)\Z")  # JavaScript's \d is ASCII
_OBJECT_PROTO: Final = frozenset(
    {
        "constructor",
        "__proto__",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
        "hasOwnProperty",
        "isPrototypeOf",
        "propertyIsEnumerable",
        "toLocaleString",
        "toString",
        "valueOf",
    }
)


class PathError(ValueError):
    """A path jsonpath-plus would fail on (or that uses a script feature this port does not run)."""


class PathEvaluationError(Exception):
    """What jsonpath-plus throws while resolving (``jsonPath: Cannot read properties of undefined ...``)."""


# --------------------------------------------------------------------------------------------------------------
# toPathArray


#: Object.prototype members whose lookup on a value throws in jsonpath-plus (read as a property of the value).
_OBJECT_PROTOTYPE_THROWS = frozenset({
    "constructor", "__proto__", "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__",
})

def _js_replace_all(pattern: str, repl: str | Callable[[re.Match[str]], str], text: str) -> str:
    return re.sub(pattern, repl, text)


def to_path_array(expr: str) -> list[str]:
    """jsonpath-plus's ``JSONPath.toPathArray``: the normalised list of path components."""
    return list(_to_path_array(expr))


@functools.lru_cache(maxsize=2048)
def _to_path_array(expr: str) -> tuple[str, ...]:
    subx: list[str] = []

    def stash(m: re.Match[str]) -> str:
        subx.append(m.group(1))
        return f"[#{len(subx) - 1}]"

    def escape(m: re.Match[str]) -> str:
        return "['" + m.group(1).replace(".", "%@%").replace("~", "%%@@%%") + "']"

    def ups(m: re.Match[str]) -> str:
        return ";" + ";".join(m.group(1)) + ";"

    s = _js_replace_all(
        r"@(?:null|boolean|number|string|integer|undefined|nonFinite|scalar|array|object|function|other)\(\)",
        lambda m: ";" + m.group(0) + ";",
        expr,
    )
    s = _js_replace_all(rf"[\['](\??\((?:{_DOT}*?)\))[\]'](?!{_DOT}\])", stash, s)
    s = _js_replace_all(r"\[['\"]([^'\]]*)['\"]\]", escape, s)
    s = s.replace("~", ";~;")
    s = _js_replace_all(r"['\"]?\.['\"]?(?![^\[]*\])|\[['\"]?", ";", s)
    s = s.replace("%@%", ".").replace("%%@@%%", "~")
    s = _js_replace_all(r"(?:;)?(\^+)(?:;)?", ups, s)
    s = _js_replace_all(r";;;|;;", ";..;", s)
    s = _js_replace_all(r";$|'?\]|'$", "", s)
    out: list[str] = []
    for part in s.split(";"):
        m = re.search(r"#([0-9]+)", part)
        out.append(subx[int(m.group(1))] if m and m.group(1) and int(m.group(1)) < len(subx) else part)
    return tuple(out)


# --------------------------------------------------------------------------------------------------------------
# property access with JavaScript's own-property rules


def _utf16_units(s: str) -> list[str]:
    data = s.encode("utf-16-le", "surrogatepass")
    return [data[i : i + 2].decode("utf-16-le", "surrogatepass") for i in range(0, len(data), 2)]


def _str_length(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-16-le", "surrogatepass")) // 2


def _key(loc: Any) -> str:
    return loc if isinstance(loc, str) else js_to_string(loc)


def js_own_keys(value: dict[Any, Any]) -> list[Any]:
    """``Object.keys`` order: integer-like keys ascending, then the others in insertion order."""
    ints: list[tuple[int, Any]] = []
    others: list[Any] = []
    for k in value:
        if isinstance(k, str) and _INDEX.match(k) and int(k) <= _MAX_INDEX:
            ints.append((int(k), k))
        else:
            others.append(k)
    if not ints:
        return others
    ints.sort()
    return [k for _, k in ints] + others


def _has_own(val: Any, loc: Any) -> bool:
    """``val && Object.hasOwn(val, loc)``."""
    if not js_truthy(val):
        return False
    key = _key(loc)
    if isinstance(val, dict):
        return key in val
    if isinstance(val, _ARRAYS):
        if key == "length":
            return True
        return _INDEX.match(key) is not None and int(key) < len(val)
    if isinstance(val, str):
        if key == "length":
            return True
        return _INDEX.match(key) is not None and int(key) < _str_length(val)
    return False


def _get(val: Any, loc: Any) -> Any:
    """``val[loc]`` for an own property (see :func:`_has_own`)."""
    key = _key(loc)
    if isinstance(val, dict):
        return val[key]
    if isinstance(val, _ARRAYS):
        return len(val) if key == "length" else val[int(key)]
    if isinstance(val, str):
        if key == "length":
            return _str_length(val)
        return val[int(key)] if val.isascii() else _utf16_units(val)[int(key)]
    return UNDEFINED


def _member(obj: Any, prop: str) -> Any:
    """``obj[prop]`` as the safe evaluator reads it (prototype methods are not modelled: undefined)."""
    if obj is None or obj is UNDEFINED:
        raise PathEvaluationError(f"Cannot read properties of {js_to_string(obj)} (reading '{prop}')")
    if isinstance(obj, dict):
        if prop in obj:
            return obj[prop]
        if prop in _OBJECT_PROTOTYPE_THROWS:
            raise PathEvaluationError(f"Cannot read properties of [object Object] (reading '{prop}')")
        return UNDEFINED
    if isinstance(obj, (str, list, tuple)) and (prop == "length" or _INDEX.match(prop)):
        return _get(obj, prop) if _has_own(obj, prop) or prop == "length" else UNDEFINED
    if prop in _OBJECT_PROTOTYPE_THROWS:
        raise PathEvaluationError(f"Cannot read properties of {js_to_string(obj)} (reading '{prop}')")
    return UNDEFINED


def _walk_keys(val: Any) -> list[Any]:
    if isinstance(val, _ARRAYS):
        return list(range(len(val)))
    if isinstance(val, dict):
        return js_own_keys(val)
    return []


def _child(val: Any, m: Any) -> Any:
    if isinstance(val, _ARRAYS):
        return val[m]
    return val[m]


# --------------------------------------------------------------------------------------------------------------
# the script subset (jsep + jsonpath-plus SafeEval)

Script = Callable[[dict[str, Any] | None], Any]

_BINARY_PREC: Final = {
    "||": 1, "??": 1, "&&": 2, "|": 3, "^": 4, "&": 5,
    "==": 6, "!=": 6, "===": 6, "!==": 6, "<": 7, ">": 7, "<=": 7, ">=": 7,
    "<<": 8, ">>": 8, ">>>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10, "**": 11,
}  # fmt: skip
_UNARY: Final = ("typeof", "void", "-", "!", "~", "+")
_LITERALS: Final = {"true": True, "false": False, "null": None, "undefined": UNDEFINED}


def _ident_start(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ch in "$_" or (ord(ch) >= 128 and ch not in _BINARY_PREC)


def _ident_part(ch: str) -> bool:
    return _ident_start(ch) or "0" <= ch <= "9"


def _loose_eq(a: Any, b: Any) -> bool:
    ta, tb = js_typeof(a), js_typeof(b)
    if ta == tb:
        return js_strict_eq(a, b)
    if {ta, tb} == {"null", "undefined"}:
        return True
    if ta == "number" and tb == "string":
        return _loose_eq(a, js_to_number(b))
    if ta == "string" and tb == "number":
        return _loose_eq(js_to_number(a), b)
    if ta == "boolean":
        return _loose_eq(1 if a else 0, b)
    if tb == "boolean":
        return _loose_eq(a, 1 if b else 0)
    if ta == "object" and tb in ("number", "string"):
        return _loose_eq(js_to_string(a), b)
    if tb == "object" and ta in ("number", "string"):
        return _loose_eq(a, js_to_string(b))
    return False


def _num(value: Any) -> float:
    n = js_to_number(value)
    try:
        return float(n)
    except OverflowError:
        return math.inf if n > 0 else -math.inf


def _int32(value: Any) -> int:
    n = _num(value)
    if n != n or n in (math.inf, -math.inf):
        return 0
    i = int(n) & 0xFFFFFFFF
    return i - 2**32 if i >= 2**31 else i


def _tidy(n: float) -> int | float:
    return int(n) if n == n and n not in (math.inf, -math.inf) and n == int(n) and abs(n) <= 2**53 else n


def _add(a: Any, b: Any) -> Any:
    pa = a if a is None or a is UNDEFINED or isinstance(a, (str, bool, int, float)) else js_to_string(a)
    pb = b if b is None or b is UNDEFINED or isinstance(b, (str, bool, int, float)) else js_to_string(b)
    if isinstance(pa, str) or isinstance(pb, str):
        return js_to_string(pa) + js_to_string(pb)
    return _tidy(_num(pa) + _num(pb))


def _div(a: Any, b: Any) -> Any:
    x, y = _num(a), _num(b)
    if y == 0:
        if x != x or x == 0:
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return _tidy(x / y)


def _mod(a: Any, b: Any) -> Any:
    x, y = _num(a), _num(b)
    if y == 0 or x != x or y != y or x in (math.inf, -math.inf):
        return math.nan
    if y in (math.inf, -math.inf):
        return _tidy(x)
    return _tidy(math.fmod(x, y))


_BINARY_FNS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "|": lambda a, b: _int32(_int32(a) | _int32(b)),
    "^": lambda a, b: _int32(_int32(a) ^ _int32(b)),
    "&": lambda a, b: _int32(_int32(a) & _int32(b)),
    "==": _loose_eq,
    "!=": lambda a, b: not _loose_eq(a, b),
    "===": js_strict_eq,
    "!==": lambda a, b: not js_strict_eq(a, b),
    "<": js_less,
    ">": js_greater,
    "<=": js_less_equal,
    ">=": js_greater_equal,
    "<<": lambda a, b: _int32(_int32(a) << (_int32(b) & 31)),
    ">>": lambda a, b: _int32(a) >> (_int32(b) & 31),
    ">>>": lambda a, b: (_int32(a) & 0xFFFFFFFF) >> (_int32(b) & 31),
    "+": _add,
    "-": lambda a, b: _tidy(_num(a) - _num(b)),
    "*": lambda a, b: _tidy(_num(a) * _num(b)) if _num(a) == _num(a) and _num(b) == _num(b) else math.nan,
    "/": _div,
    "%": _mod,
}


def _typeof(value: Any) -> str:
    t = js_typeof(value)
    return "object" if t == "null" else t


class _Parser:
    """jsep's recursive descent, for the expressions SafeEval can evaluate without calling functions."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    @property
    def ch(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def error(self, message: str) -> PathError:
        return PathError(f"{message} at character {self.i} of script {self.s!r}")

    def spaces(self) -> None:
        while self.ch in (" ", "\t", "\n", "\r") and self.ch:
            self.i += 1

    def parse(self) -> Script:
        self.spaces()
        node = self.expression()
        self.spaces()
        if node is None or self.i < len(self.s):
            raise self.error("unsupported or malformed script (only expressions without function calls run)")
        return node

    def expression(self) -> Script | None:
        node = self.binary()
        self.spaces()
        if node is not None and self.ch == "?":
            self.i += 1
            then = self.expression()
            self.spaces()
            if then is None or self.ch != ":":
                raise self.error("expected ':'")
            self.i += 1
            other = self.expression()
            if other is None:
                raise self.error("expected expression")
            test = node
            return lambda subs: then(subs) if js_truthy(test(subs)) else other(subs)
        return node

    def binary_op(self) -> str | None:
        self.spaces()
        for size in (3, 2, 1):
            op = self.s[self.i : self.i + size]
            if len(op) == size and op in _BINARY_PREC:
                self.i += size
                return op
        return None

    def binary(self) -> Script | None:
        left = self.token()
        if left is None:
            return None
        op = self.binary_op()
        if op is None:
            return left
        right = self.token()
        if right is None:
            raise self.error(f"expected expression after {op}")
        stack: list[Any] = [left, op, right]
        while (op := self.binary_op()) is not None:
            prec = _BINARY_PREC[op]
            while len(stack) > 2 and (
                prec > _BINARY_PREC[stack[-2]] if op == "**" and stack[-2] == "**" else prec <= _BINARY_PREC[stack[-2]]
            ):
                r = stack.pop()
                o = stack.pop()
                lft = stack.pop()
                stack.append(self.make_binary(o, lft, r))
            node = self.token()
            if node is None:
                raise self.error(f"expected expression after {op}")
            stack.extend([op, node])
        node = stack[-1]
        i = len(stack) - 1
        while i > 1:
            node = self.make_binary(stack[i - 1], stack[i - 2], node)
            i -= 2
        result: Script = node
        return result

    def make_binary(self, op: str, left: Script, right: Script) -> Script:
        if op in ("??", "**"):
            raise self.error(f"operator {op} is not run by jsonpath-plus's safe evaluator")
        if op == "||":
            return lambda subs: v if js_truthy(v := left(subs)) else right(subs)
        if op == "&&":
            return lambda subs: right(subs) if js_truthy(v := left(subs)) else v
        fn = _BINARY_FNS[op]
        return lambda subs: fn(left(subs), right(subs))

    def token(self) -> Script | None:
        self.spaces()
        ch = self.ch
        if not ch:
            return None
        node: Script | None
        if "0" <= ch <= "9" or ch == ".":
            return self.number()
        if ch in ("'", '"'):
            node = self.string()
        elif ch == "[":
            self.i += 1
            elements = self.arguments("]")
            node = lambda subs: [UNDEFINED if e is None else e(subs) for e in elements]  # noqa: E731
        else:
            for op in _UNARY:
                if self.s.startswith(op, self.i) and (
                    not _ident_start(ch)
                    or (self.i + len(op) < len(self.s) and not _ident_part(self.s[self.i + len(op)]))
                ):
                    self.i += len(op)
                    arg = self.token()
                    if arg is None:
                        raise self.error("missing unaryOp argument")
                    return self.make_unary(op, arg)
            if _ident_start(ch):
                name = self.identifier()
                if name in _LITERALS:
                    value = _LITERALS[name]
                    node = lambda subs: value  # noqa: E731
                elif name == "this":
                    raise self.error("'this' is not supported")
                else:
                    node = self.make_identifier(name)
            elif ch == "(":
                self.i += 1
                node = self.expression()
                self.spaces()
                if node is None or self.ch != ")":
                    raise self.error("unsupported group (sequences are not supported)")
                self.i += 1
            else:
                return None
        return self.properties(node)

    def make_unary(self, op: str, arg: Script) -> Script:
        if op == "-":
            return lambda subs: _tidy(-_num(arg(subs)))
        if op == "+":
            return lambda subs: js_to_number(arg(subs))
        if op == "!":
            return lambda subs: not js_truthy(arg(subs))
        if op == "~":
            return lambda subs: ~_int32(arg(subs))
        if op == "typeof":
            return lambda subs: _typeof(arg(subs))
        return lambda subs: (arg(subs), UNDEFINED)[1]

    @staticmethod
    def make_identifier(name: str) -> Script:
        def identifier(subs: dict[str, Any] | None) -> Any:
            if subs is None:
                raise PathEvaluationError("Cannot convert undefined or null to object")
            if name in subs:
                return subs[name]
            raise PathEvaluationError(f"{name} is not defined")

        return identifier

    def properties(self, node: Script) -> Script:
        self.spaces()
        while self.ch in (".", "[", "(", "?") and self.ch:
            if self.ch == "?":
                if self.s[self.i + 1 : self.i + 2] != ".":
                    break
                raise self.error("optional chaining is not supported")
            if self.ch == "(":
                raise self.error("function calls are not supported")
            if self.ch == "[":
                self.i += 1
                prop = self.expression()
                if prop is None:
                    raise self.error("unexpected character")
                self.spaces()
                if self.ch != "]":
                    raise self.error("unclosed [")
                self.i += 1
                node = self.make_member(node, prop)
            else:
                self.i += 1
                self.spaces()
                name = self.identifier()
                node = self.make_member(node, lambda subs, n=name: n)  # type: ignore[misc]
            self.spaces()
        return node

    @staticmethod
    def make_member(obj: Script, prop: Script) -> Script:
        def member(subs: dict[str, Any] | None) -> Any:
            key = js_to_string(prop(None))  # SafeEval evaluates a computed property without the context
            return _member(obj(subs), key)

        return member

    def identifier(self) -> str:
        start = self.i
        if not _ident_start(self.ch):
            raise self.error(f"unexpected {self.ch!r}")
        self.i += 1
        while self.i < len(self.s) and _ident_part(self.s[self.i]):
            self.i += 1
        return self.s[start : self.i]

    def number(self) -> Script:
        start = self.i
        while "0" <= self.ch <= "9" and self.ch:
            self.i += 1
        if self.ch == ".":
            self.i += 1
            while "0" <= self.ch <= "9" and self.ch:
                self.i += 1
        if self.ch in ("e", "E") and self.ch:
            self.i += 1
            if self.ch in ("+", "-") and self.ch:
                self.i += 1
            while "0" <= self.ch <= "9" and self.ch:
                self.i += 1
            if not "0" <= self.s[self.i - 1] <= "9":
                raise self.error("expected exponent")
        text = self.s[start : self.i]
        if (self.ch and _ident_start(self.ch)) or self.ch == "." or text == ".":
            raise self.error("malformed number")
        value = _tidy(float(text))
        return lambda subs: value

    def string(self) -> Script:
        quote = self.s[self.i]
        self.i += 1
        out: list[str] = []
        escapes = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\x0b"}
        while self.i < len(self.s):
            ch = self.s[self.i]
            self.i += 1
            if ch == quote:
                text = "".join(out)
                return lambda subs: text
            if ch == "\\":
                nxt = self.s[self.i : self.i + 1]
                self.i += 1
                out.append(escapes.get(nxt, nxt))
            else:
                out.append(ch)
        raise self.error("unclosed quote")

    def arguments(self, end: str) -> list[Script | None]:
        args: list[Script | None] = []
        commas = 0
        while self.i < len(self.s):
            self.spaces()
            if self.ch == end:
                self.i += 1
                return args
            if self.ch == ",":
                self.i += 1
                commas += 1
                while len(args) < commas:
                    args.append(None)
            elif len(args) != commas and commas != 0:
                raise self.error("expected comma")
            else:
                node = self.expression()
                if node is None:
                    raise self.error("expected comma")
                args.append(node)
        raise self.error(f"expected {end}")


def _compile_script(code: str) -> Script:
    if "@path" in code:
        raise PathError(f"@path in JSONPath scripts is not supported: {code!r}")
    script = (
        code.replace("@parentProperty", "_$_parentProperty")
        .replace("@parent", "_$_parent")
        .replace("@property", "_$_property")
        .replace("@root", "_$_root")
    )
    script = re.sub(r"@([.\s)\[])", r"_$_v\1", script)
    return _Parser(script).parse()


# --------------------------------------------------------------------------------------------------------------
# _trace


class _Ret:
    __slots__ = ("arr", "expr", "parent_sel", "path", "value")

    def __init__(
        self, value: Any, arr: bool, path: tuple[Any, ...], parent_sel: bool = False, expr: tuple[Any, ...] = ()
    ) -> None:
        self.value = value
        self.arr = arr
        self.path = path
        self.parent_sel = parent_sel
        self.expr = expr


_TYPE_SELECTORS: Final = frozenset(
    {"null", "boolean", "number", "string", "integer", "undefined", "nonFinite", "scalar", "array", "object",
     "function", "other"}
)  # fmt: skip


class _Tracer:
    def __init__(self, scripts: dict[str, Script], root: Any) -> None:
        self.scripts = scripts
        self.root = root
        self.has_parent_selector = False

    def script(self, code: str, v: Any, vname: Any, parent: Any, parent_prop: Any) -> Any:
        subs = {
            "_$_parentProperty": parent_prop,
            "_$_parent": parent,
            "_$_property": vname,
            "_$_root": self.root,
            "_$_v": v,
        }
        try:
            return self.scripts[code](subs)
        except PathEvaluationError as exc:
            raise PathEvaluationError(f"jsonPath: {exc}: {code}") from None
        except JsTypeError as exc:
            raise PathEvaluationError(f"jsonPath: {exc}: {code}") from None

    def trace(
        self,
        expr: tuple[Any, ...],
        val: Any,
        path: tuple[Any, ...],
        parent: Any,
        parent_prop: Any,
        arr: bool,
        literal: bool = False,
    ) -> _Ret | list[Any]:
        if not expr:
            return _Ret(val, arr, path)
        loc, x = expr[0], expr[1:]
        ret: list[Any] = []

        def add(elems: Any) -> None:
            if isinstance(elems, list):
                ret.extend(elems)
            else:
                ret.append(elems)

        is_str = isinstance(loc, str)
        if (not is_str or literal) and _has_own(val, loc):
            add(self.trace(x, _get(val, loc), (*path, loc), val, loc, arr))
        elif loc == "*":
            for m in _walk_keys(val):
                add(self.trace(x, _child(val, m), (*path, m), val, m, True, True))
        elif loc == "..":
            add(self.trace(x, val, path, parent, parent_prop, arr))
            for m in _walk_keys(val):
                child = _child(val, m)
                if js_typeof(child) in ("object", "null"):
                    add(self.trace(expr, child, (*path, m), val, m, True))
        elif loc == "^":
            self.has_parent_selector = True
            return _Ret(UNDEFINED, False, path[:-1], parent_sel=True, expr=x)
        elif loc == "~":
            return _Ret(parent_prop, False, (*path, loc))
        elif loc == "$":
            add(self.trace(x, val, path, None, None, arr))
        elif (m_slice := _SLICE.match(js_to_string(loc))) is not None:
            add(self.slice(m_slice, x, val, path, parent, parent_prop))
        elif not is_str:
            raise PathEvaluationError("loc.indexOf is not a function")
        elif loc.startswith("?("):
            code = loc[2:-1] if loc.endswith(")") else loc
            for m in _walk_keys(val):
                child = _child(val, m)
                if js_truthy(self.script(code, child, m, parent, parent_prop)):
                    add(self.trace(x, child, (*path, m), val, m, True))
        elif loc.startswith("("):
            name = self.script(loc, val, path[-1] if path else UNDEFINED, parent, parent_prop)
            add(self.trace((name, *x), val, path, parent, parent_prop, arr))
        elif loc.startswith("@"):
            if self.type_matches(loc[1:-2], val):
                return _Ret(val, False, path)
        elif loc.startswith("`") and _has_own(val, loc[1:]):
            prop = loc[1:]
            add(self.trace(x, _get(val, prop), (*path, prop), val, prop, arr, True))
        elif "," in loc:
            for part in loc.split(","):
                add(self.trace((part, *x), val, path, parent, parent_prop, True))
        elif not literal and _has_own(val, loc):
            add(self.trace(x, _get(val, loc), (*path, loc), val, loc, arr, True))

        if self.has_parent_selector:
            t = 0
            while t < len(ret):
                rett = ret[t]
                if isinstance(rett, _Ret) and rett.parent_sel:
                    tmp = self.trace(rett.expr, val, rett.path, parent, parent_prop, arr)
                    if isinstance(tmp, list):
                        ret[t : t + 1] = tmp[:1] if tmp else [UNDEFINED]
                        for extra in tmp[1:]:
                            t += 1
                            ret.insert(t, extra)
                    else:
                        ret[t] = tmp
                t += 1
        return ret

    @staticmethod
    def type_matches(kind: str, val: Any) -> bool:
        t = js_typeof(val)
        if kind == "scalar":
            return not js_truthy(val) or t not in ("object",)
        if kind in ("boolean", "string", "undefined"):
            return t == kind
        if kind == "function":
            return False
        if kind in ("integer", "number"):
            if t != "number" or val != val or val in (math.inf, -math.inf):
                return False
            return kind == "number" or float(val).is_integer()
        if kind == "nonFinite":
            return t == "number" and (val != val or val in (math.inf, -math.inf))
        if kind == "object":
            return t == "object"
        if kind == "array":
            return isinstance(val, _ARRAYS)
        if kind == "null":
            return val is None
        if kind == "other":
            raise PathEvaluationError(
                "You must supply an otherTypeCallback callback option with the @other() operator."
            )
        raise PathEvaluationError(f"Unknown value type {kind}")

    def slice(
        self, m: re.Match[str], x: tuple[Any, ...], val: Any, path: tuple[Any, ...], parent: Any, parent_prop: Any
    ) -> list[Any] | None:
        if not isinstance(val, _ARRAYS):
            return None
        n = len(val)
        start_s, end_s, step_s = m.group(1), m.group(2), m.group(3)
        step = (int(step_s) if step_s else 0) or 1
        start = (int(start_s) if start_s and start_s not in ("-",) else 0) or 0
        end = (int(end_s) if end_s and end_s not in ("-",) else 0) or n
        start = max(0, start + n) if start < 0 else min(n, start)
        end = max(0, end + n) if end < 0 else min(n, end)
        ret: list[Any] = []
        i = start
        while i < end:
            tmp = self.trace((i, *x), val, path, parent, parent_prop, True)
            if isinstance(tmp, list):
                ret.extend(tmp)
            i += step
        return ret


def _is_plain(component: str) -> bool:
    """A component that can only ever be an own-property lookup (the fast path)."""
    if not component or component in ("*", "..", "^", "~", "$"):
        return False
    return not (component[0] in "?(@`" or "," in component or _SLICE.match(component))


_NOKEY: Final[Any] = object()


def _plain_path(keys: tuple[str, ...]) -> PathFn:
    """Own-property lookups only (``$.a.b[0].c``): a match is the value itself, a miss ``undefined``."""
    steps = tuple((k, int(k) if _INDEX.match(k) else None) for k in keys)
    nokey = _NOKEY

    def step(value: Any, key: str, index: int | None) -> Any:
        cls = value.__class__
        if cls is dict:
            return value.get(key, nokey)
        if cls is list and index is not None:
            return value[index] if index < len(value) else nokey
        return _get(value, key) if _has_own(value, key) else nokey

    if len(steps) == 1:
        (k1, i1) = steps[0]

        def one(value: Any) -> Any:
            value = value.get(k1, nokey) if value.__class__ is dict else step(value, k1, i1)
            return UNDEFINED if value is nokey else value

        return one

    if len(steps) == 2:
        (k1, i1), (k2, i2) = steps

        def two(value: Any) -> Any:
            value = value.get(k1, nokey) if value.__class__ is dict else step(value, k1, i1)
            if value is nokey:
                return UNDEFINED
            value = value.get(k2, nokey) if value.__class__ is dict else step(value, k2, i2)
            return UNDEFINED if value is nokey else value

        return two

    def many(value: Any) -> Any:
        for key, index in steps:
            value = value.get(key, nokey) if value.__class__ is dict else step(value, key, index)
            if value is nokey:
                return UNDEFINED
        return value

    return many


@functools.lru_cache(maxsize=2048)
def compile_path(path: str) -> PathFn:
    """Compile a condition ``path`` into ``fn(fact_value) -> value`` (``UNDEFINED`` when nothing matches).
    The caller applies it only to objects and arrays, as json-rules-engine does."""
    if path in _OBJECT_PROTO:
        raise PathError(f"jsonpath-plus cannot resolve a path named like an Object.prototype member: {path!r}")
    components = to_path_array(path)
    if components[0] == "$" and len(components) > 1:
        components = components[1:]
    scripts: dict[str, Script] = {}
    for c in components:
        if c.startswith("?("):
            code = c[2:-1] if c.endswith(")") else c
            if re.search(rf"@{_DOT}?([^?]*)[\['](\??\({_DOT}*?\))(?!{_DOT}\)\])[\]']", code):
                raise PathError(f"nested filters are not supported: {path!r}")
            scripts[code] = _compile_script(code)
        elif c.startswith("("):
            scripts[c] = _compile_script(c)
        elif c.startswith("@") and c[1:-2] not in _TYPE_SELECTORS:
            # jsonpath-plus throws `Unknown value type` only when reached; refuse it up front
            raise PathError(f"unknown JSONPath type selector {c!r} in {path!r}")
    expr = tuple(components)

    if all(_is_plain(c) for c in components):
        return _plain_path(expr)

    def traced(value: Any) -> Any:
        tracer = _Tracer(scripts, value)
        found = tracer.trace(expr, value, ("$",), None, None, False)
        if not isinstance(found, list):  # a top-level ~, ^ or matching @type() answers an object, not a list
            raise PathEvaluationError("this._trace(...).filter is not a function")
        results = [r for r in found if isinstance(r, _Ret) and not r.parent_sel]
        if not results:
            return UNDEFINED
        if len(results) == 1 and not results[0].arr:
            return results[0].value
        return [r.value for r in results]

    return traced


def number_key(value: int | float) -> str:
    return js_number_to_string(value)
