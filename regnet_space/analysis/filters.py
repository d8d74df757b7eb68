"""Row filters of `analyze --filter` and the field of `--split` (pycls's PRE_FILTERS and
SPLIT_FILTERS): `FIELD OP VALUE`, read by a small parser, never evaluated as code.

FIELD is a record column (letters, digits, `_` and `.`; a recipe field also by its bare
name: `base_lr` finds `recipe.base_lr`), or flops, params, acts (counted where a record
lacks them) or space. OP is one of < <= > >= == != (= is ==). VALUE is a number (1e8, 0.5,
400M with K/M/G/T for powers of 1000) or text (quoted, or a bare word such as RegNetX-CIFAR),
which only == and != compare. A record without the field (or with null there) fails the
filter; a field no record has is an error.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..infra.errors import RegNetSpaceError
from ..infra.text import short as short_repr
from .studydb import RECIPE_PREFIX

MAX_EXPRESSION = 200  # characters of one filter
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
}
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_FIELD = r"[A-Za-z_][A-Za-z0-9_.]*"
_EXPRESSION = re.compile(rf"\s*({_FIELD})\s*(<=|>=|==|!=|<|>|=)\s*(.*?)\s*")
_NUMBER = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)([kKmMgGtT]?)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*")


class FilterError(RegNetSpaceError, ValueError):
    """A filter expression that does not parse or names a field the records lack."""


@dataclass(frozen=True)
class Filter:
    """One parsed `FIELD OP VALUE` expression."""

    text: str  # as the user wrote it (stripped)
    field: str
    op: str  # the canonical operator (= is written ==)
    value: float | str

    def __str__(self) -> str:
        value = f"{self.value:g}" if isinstance(self.value, float) else repr(self.value)
        return f"{self.field} {self.op} {value}"

    def matches(self, row: Mapping[str, Any], key: str) -> bool:
        """Whether a record (its column `key`, the resolved field) passes the filter."""
        got = row.get(key)
        if got is None:
            return False
        compare = _OPS[self.op]
        if isinstance(self.value, str):
            text = str(got).lower() if isinstance(got, bool) else str(got)
            return bool(compare(text, self.value))
        number = as_number(got)
        if number is None:
            raise FilterError(
                f"--filter {self.text!r}: {key} holds {short_repr(got)}, not a number; "
                "compare text with == or != and a quoted value"
            )
        return bool(compare(number, self.value))


def as_number(value: Any) -> float | None:
    """A record's value as a number: ints, floats and numeric text; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def parse_filter(text: str) -> Filter:
    """`FIELD OP VALUE` -> Filter; anything else is a one-line FilterError."""
    if not isinstance(text, str):
        raise FilterError(f"--filter: expected text like 'flops<4e8', got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION:
        raise FilterError(f"--filter: longer than {MAX_EXPRESSION} characters")
    shown = text.strip()
    m = _EXPRESSION.fullmatch(text)
    if not m or not m.group(3):
        raise FilterError(
            f"--filter {short_repr(shown)}: expected FIELD OP VALUE with OP one of "
            "< <= > >= == !=, e.g. 'flops<4e8' or 'epochs==10'"
        )
    field, op, raw = m.group(1), m.group(2), m.group(3)
    op = "==" if op == "=" else op
    value: float | str
    number = _NUMBER.fullmatch(raw)
    if number:
        value = float(number.group(1)) * _SCALE[number.group(2).lower()]
        if not math.isfinite(value):
            raise FilterError(f"--filter {short_repr(shown)}: {raw} is not a finite number")
    elif len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" and raw[0] not in raw[1:-1]:
        value = raw[1:-1]
    elif _WORD.fullmatch(raw):
        value = raw
    else:
        raise FilterError(
            f"--filter {short_repr(shown)}: the value {short_repr(raw)} is neither a number "
            "nor a word (quote text with spaces or symbols)"
        )
    if isinstance(value, str) and op not in ("==", "!="):
        raise FilterError(
            f"--filter {short_repr(shown)}: {op} needs a number; text compares with == or !="
        )
    return Filter(shown, field, op, value)


def resolve_field(name: str, columns: Iterable[str], what: str) -> str:
    """The column a filter or split field names: itself, else recipe.NAME; else an error."""
    cols = set(columns)
    if name in cols:
        return name
    if RECIPE_PREFIX + name in cols:
        return RECIPE_PREFIX + name
    shown = ", ".join(sorted(cols)[:30])
    raise FilterError(f"{what}: no record has a field {name!r} (fields: {shown})")
