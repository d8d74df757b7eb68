"""pydantic validation failures as one line: `field.path: rule, got value` joined by "; "."""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ..infra.parsing import TooLong
from ..infra.text import short

# Location parts pydantic adds for unions and validators; they mean nothing to a user.
_TAGS = ("range", "choice", "function-after", "int", "float", "bool", "str")


def loc_text(loc: tuple[int | str, ...]) -> str:
    """`stages[1].width` from ('stages', 1, 'width'); user keys that are not names are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if part.isidentifier() else short(part)
        out += f".{name}" if out else name
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through unions, Annotated, tuples)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _fields_at(model: type[BaseModel], path: tuple[int | str, ...]) -> set[str]:
    """Field names valid at `path` inside `model` (for did-you-mean hints)."""
    models = [model]
    for part in path:
        if isinstance(part, int):
            continue
        models = [
            m
            for cls in models
            if part in cls.model_fields
            for m in _models_in(cls.model_fields[part].annotation)
        ]
    return {f for cls in models for f in cls.model_fields}


def format_error(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    """One pydantic error as `location: message, got value`."""
    loc = tuple(p for p in err["loc"] if p not in _TAGS)
    where = loc_text(loc)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        known = sorted(_fields_at(model, loc[:-1]))
        import difflib  # only for a message

        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"{where}: " if where else "") + "unknown field" + hint
    if err["type"] == "missing":
        return (f"{where}: " if where else "") + "required field is missing"
    named = re.match(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*): ", msg)
    if where and named and err["type"] == "value_error":
        # A model-level rule naming its own field: one location, `outer.field: ...`.
        where, msg = f"{where}.{named.group(1)}", msg[named.end() :]
    value = err.get("input")
    if isinstance(value, TooLong):
        return f"{where}: number too long to read"
    if isinstance(value, float) and not math.isfinite(value):
        msg = "must be a finite number"
    elif (isinstance(value, (int, float, str, bool)) or value is None) and "got " not in msg:
        msg += f", got {short(value)}"
    return f"{where}: {msg}" if where else msg


def format_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    """All errors of one validation, one line, joined by "; "."""
    errors = exc.errors(include_url=False)
    locs = [tuple(p for p in e["loc"] if p not in _TAGS) for e in errors]
    # A container whose items failed also reports itself too short: noise, drop it.
    deeper = {loc[:i] for loc in locs for i in range(1, len(loc))}
    # A value failing every member of a union (int | float) gives one error per member: keep
    # the last one of each location, the most general.
    by_loc = {
        loc: format_error(e, model)
        for e, loc in zip(errors, locs, strict=True)
        if not (e["type"] == "too_short" and loc in deeper)
    }
    return "; ".join(dict.fromkeys(by_loc.values()))
