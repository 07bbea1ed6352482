"""JavaScript value semantics, as json-rules-engine's operators see them.

Python values stand for JavaScript ones: ``None`` is ``null``, :data:`UNDEFINED` is ``undefined``, ``bool``
is boolean, ``int``/``float`` are numbers, ``str`` is a string, ``list``/``tuple`` are arrays and anything
else (``dict`` in practice) is an object. The helpers below reproduce ``===``, ``<`` and friends, ``String(x)``,
``Number(x)``, truthiness and ``Number.parseFloat`` validity exactly enough for the operators to give the
answers node gives.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

__all__ = [
    "UNDEFINED",
    "JsTypeError",
    "js_greater",
    "js_greater_equal",
    "js_less",
    "js_less_equal",
    "js_number_to_string",
    "js_parse_int",
    "js_strict_eq",
    "js_to_number",
    "js_to_string",
    "js_truthy",
    "js_typeof",
    "parse_float_valid",
]


class _Undefined:
    """JavaScript's ``undefined``: a missing fact (with ``allowUndefinedFacts``) or a path that matched nothing."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class JsTypeError(Exception):
    """What node would throw as a ``TypeError`` (``b.indexOf is not a function`` and the like)."""


_MAX_SAFE: Final = 2**53
_ARRAYS: Final = (list, tuple)
_NUMBERS: Final = (int, float)

# StrWhiteSpaceChar: WhiteSpace and LineTerminator of ECMA-262 (not Python's str.isspace set).
_JS_SPACE: Final = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501
_PARSE_FLOAT_OK: Final = re.compile(r"[+-]?(?:Infinity|[0-9]|\.[0-9])")
_DECIMAL: Final = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\Z")
_RADIX: Final = re.compile(r"0(?:([xX])[0-9a-fA-F]+|([oO])[0-7]+|([bB])[01]+)\Z")
_PARSE_INT: Final = re.compile(r"([+-]?)([0-9]+)")


def js_typeof(value: Any) -> str:
    """``typeof`` with ``null`` reported as ``"null"`` (the distinction ``===`` needs)."""
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    cls = value.__class__
    if cls is bool:
        return "boolean"
    if cls is str or isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, _NUMBERS):
        return "number"
    return "object"


def _as_double(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _number_eq(a: int | float, b: int | float) -> bool:
    if a.__class__ is int and b.__class__ is int and -_MAX_SAFE <= a <= _MAX_SAFE and -_MAX_SAFE <= b <= _MAX_SAFE:
        return a == b
    return _as_double(a) == _as_double(b)


def js_strict_eq(a: Any, b: Any) -> bool:
    """``a === b``: same type and value; numbers compare as doubles (``NaN`` equals nothing, ``1 === 1.0``);
    arrays and objects compare by identity."""
    ta = js_typeof(a)
    if ta != js_typeof(b):
        return False
    if ta == "number":
        return _number_eq(a, b)
    if ta == "object":
        return a is b
    if ta == "string":
        return str(a) == str(b)
    return bool(a is b or a == b)


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness: ``0``, ``NaN``, ``""``, ``null``, ``undefined`` and ``false`` are falsy; every
    array and object (empty ones too) is truthy."""
    if value is None or value is UNDEFINED or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str):
        return value != ""
    if isinstance(value, _NUMBERS):
        return value == value and value != 0  # NaN and (-)0 are falsy
    return True


def js_number_to_string(value: int | float) -> str:
    """``Number.prototype.toString()``: shortest round-trip digits, JavaScript's layout (``1e+21``, ``1e-7``,
    ``100000000000000000000``, ``0.000001``)."""
    if value.__class__ is int and -_MAX_SAFE <= value <= _MAX_SAFE:
        return str(value)
    x = _as_double(value)
    if x != x:
        return "NaN"
    if x == math.inf:
        return "Infinity"
    if x == -math.inf:
        return "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp_text = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.<digits> * 10**n  with the decimal point after `n` digits
    n = len(whole.lstrip("0")) if whole.strip("0") else -(len(frac) - len(frac.lstrip("0")))
    if exp_text:
        n += int(exp_text)
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exponent = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    if k == 1:
        return sign + digits + exponent
    return sign + digits[0] + "." + digits[1:] + exponent


def js_to_string(value: Any) -> str:
    """``String(value)``: arrays join their elements with commas (``null``/``undefined`` as empty), objects are
    ``"[object Object]"``."""
    if isinstance(value, str):
        return str(value)
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, _NUMBERS):
        return js_number_to_string(value)
    if isinstance(value, _ARRAYS):
        return ",".join("" if v is None or v is UNDEFINED else js_to_string(v) for v in value)
    return "[object Object]"


def _string_to_number(text: str) -> float | int:
    s = text.strip(_JS_SPACE)
    if not s:
        return 0
    if _DECIMAL.match(s):
        return float(s)
    m = _RADIX.match(s)
    if m:
        base = 16 if m.group(1) else 8 if m.group(2) else 2
        return int(s[2:], base)
    return math.nan


def js_to_number(value: Any) -> int | float:
    """``Number(value)`` (ToNumber after ToPrimitive): ``null`` is 0, ``undefined`` NaN, ``"  12 "`` 12,
    ``"12px"`` NaN, ``[5]`` 5, ``[]`` 0, objects NaN."""
    if value.__class__ is int or value.__class__ is float:
        return value
    if value is None or value is False:
        return 0
    if value is True:
        return 1
    if value is UNDEFINED:
        return math.nan
    if isinstance(value, str):
        return _string_to_number(value)
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, _NUMBERS):
        return value
    return _string_to_number(js_to_string(value))


def parse_float_valid(value: Any) -> bool:
    """json-rules-engine's ``numberValidator``: ``Number.parseFloat(value).toString() !== 'NaN'`` -- a leading
    number after whitespace is enough (``"12abc"``, ``[3]``, ``"Infinity"`` pass; ``true``, ``null``, ``""`` fail)."""
    cls = value.__class__
    if cls is int:
        return True
    if cls is float:
        return value == value  # type: ignore[no-any-return]
    if isinstance(value, bool) or value is None or value is UNDEFINED:
        return False
    if isinstance(value, _NUMBERS):
        return bool(value == value)
    return _PARSE_FLOAT_OK.match(js_to_string(value).lstrip(_JS_SPACE)) is not None


def js_parse_int(value: Any) -> int | None:
    """``parseInt(value, 10)``; ``None`` stands for NaN."""
    m = _PARSE_INT.match(js_to_string(value).lstrip(_JS_SPACE))
    if not m:
        return None
    number = int(m.group(2))
    return -number if m.group(1) == "-" else number


def _utf16_less(a: str, b: str) -> bool:
    if a.isascii() and b.isascii():
        return a < b
    return a.encode("utf-16-be", "surrogatepass") < b.encode("utf-16-be", "surrogatepass")


def _to_primitive(value: Any) -> Any:
    if value is None or value is UNDEFINED or isinstance(value, (str, bool, int, float)):
        return value
    return js_to_string(value)


def _compare(a: Any, b: Any) -> bool | None:
    """IsLessThan(a, b): ``True``/``False``, or ``None`` for JavaScript's *undefined* (a NaN was involved)."""
    pa = _to_primitive(a)
    pb = _to_primitive(b)
    if isinstance(pa, str) and isinstance(pb, str):
        return _utf16_less(str(pa), str(pb))
    na = js_to_number(pa)
    nb = js_to_number(pb)
    if na != na or nb != nb:
        return None
    if (na.__class__ is int and not -_MAX_SAFE <= na <= _MAX_SAFE) or (
        nb.__class__ is int and not -_MAX_SAFE <= nb <= _MAX_SAFE
    ):
        na, nb = _as_double(na), _as_double(nb)
    return bool(na < nb)


def js_less(a: Any, b: Any) -> bool:
    """``a < b``."""
    return _compare(a, b) is True


def js_greater(a: Any, b: Any) -> bool:
    """``a > b``."""
    return _compare(b, a) is True


def js_less_equal(a: Any, b: Any) -> bool:
    """``a <= b``: not ``b < a``, and false whenever a NaN is involved."""
    return _compare(b, a) is False


def js_greater_equal(a: Any, b: Any) -> bool:
    """``a >= b``."""
    return _compare(a, b) is False
