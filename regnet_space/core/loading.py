"""Reading user files safely and turning validation failures into one-line messages.

Shared by every file format of the project (specs, design spaces, configs): the YAML loader
is a SafeLoader that also refuses aliases (alias bombs) and duplicate keys, and pydantic
errors become `field.path: rule, got value` joined by "; ".
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import RegNetSpaceError, SpecError

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64  # nesting of lists and mappings in any YAML or JSON input
MAX_DIGITS = 400  # digits of a number literal; longer ones are refused by name


class _TooLong:
    """Stands for an integer literal too long for Python to convert (over 4300 digits)."""


def short(value: Any) -> str:
    """A repr of a user value, at most 40 characters, safe for huge integers."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases and duplicate keys and never fails on long ints."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SpecError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        # PyYAML keeps the last of two equal keys; in a spec that hides a mistake.
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(f"line {key_node.start_mark.line + 1}: keys must be plain names")
            if key_node.value in seen:
                line = key_node.start_mark.line + 1
                raise SpecError(f"line {line}: duplicate key {short(key_node.value)}")
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: Any) -> Any:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # left to validation, which names the field
            return _TooLong()


SafeLoader.add_constructor("tag:yaml.org,2002:int", SafeLoader.construct_yaml_int)


def is_yaml_text(source: str) -> bool:
    """Whether a string argument is YAML text rather than a path.

    Text when it is blank, holds a newline, or looks like a mapping (`key: value`, `{...}`)
    and names no existing file; `dir:name.yaml` or `C:/x.yaml` is a path.
    """
    if not source.strip() or "\n" in source:
        return True
    looks = re.search(r":(\s|$)", source) is not None or source.lstrip().startswith("{")
    return looks and not Path(source).exists()


def parse_yaml(
    text: str, source: str, what: str = "spec", error: type[RegNetSpaceError] = SpecError
) -> Any:
    """Parse YAML text with SafeLoader; every failure is one line `source: ...` of `error`."""
    if not text.strip():
        raise error(f"{source}: the {what} is empty")
    try:
        data = yaml.load(text, Loader=SafeLoader)  # SafeLoader subclass: no arbitrary objects
        check_depth(data, source, error)
        return data
    except SpecError as exc:
        if str(exc).startswith(f"{source}: "):
            raise error(str(exc)) from None
        raise error(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise error(f"{source}: {where}invalid YAML: {problem}") from None
    except RecursionError:
        raise error(f"{source}: YAML nested too deeply") from None


def check_depth(
    data: Any, source: str, error: type[RegNetSpaceError] = SpecError, limit: int = MAX_DEPTH
) -> None:
    """Refuse lists and mappings nested deeper than `limit` (iteratively: no recursion)."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            raise error(f"{source}: nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


def parse_json(text: str, source: str, error: type[RegNetSpaceError] = SpecError) -> Any:
    """JSON with limits: no NaN/Infinity, finite floats, numbers of at most MAX_DIGITS digits,
    nesting at most MAX_DEPTH; every failure is one line `source: ...` of `error`."""

    def constant(name: str) -> Any:
        raise error(f"{source}: {name} is not a number JSON allows")

    def number(literal: str, kind: type) -> Any:
        if len(literal) > MAX_DIGITS:
            raise error(f"{source}: a number of {len(literal)} digits; at most {MAX_DIGITS}")
        value = kind(literal)
        if isinstance(value, float) and not math.isfinite(value):
            raise error(f"{source}: number {short_text(literal)} is out of range")
        return value

    try:
        data = json.loads(
            text,
            parse_constant=constant,
            parse_float=lambda t: number(t, float),
            parse_int=lambda t: number(t, int),
        )
    except json.JSONDecodeError as exc:
        raise error(f"{source}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise error(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    check_depth(data, source, error)
    return data


def short_text(text: str, limit: int = 40) -> str:
    """A user's text shortened to `limit` characters for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_regular(path: Path, what: str, error: type[RegNetSpaceError] = SpecError) -> Any:
    """Open a regular file for reading (binary); FIFOs, devices and folders are refused at once.

    Opened non-blocking, so that a FIFO with no writer cannot hang the command.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a {what} file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {(exc.strerror or str(exc)).lower()}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise error(f"{path}: is {kind}, expected a {what} file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_text_file(path: Path, what: str = "spec") -> str:
    """Read a small UTF-8 text file, turning every OS problem into a one-line SpecError."""
    try:
        with open_regular(path, what) as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"{path}: larger than {MAX_FILE_BYTES} bytes, not a {what} file")
    if b"\0" in raw:
        raise SpecError(f"{path}: binary data, expected a YAML {what} file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text, expected a YAML {what} file") from None


# ---------------------------------------------------------------------------------------------
# Validation errors

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
    if isinstance(value, _TooLong):
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


_SPACE_KEY = re.compile(rb"^space[ \t]*:", re.MULTILINE)


def is_space_file(path: str | Path) -> bool:
    """Cheap check (no YAML parsing): does the file have a top-level `space:` key?

    A spec cannot have one (specs forbid unknown fields), so tools that read folders of specs
    can skip space files with this. Unreadable files are not space files.
    """
    try:
        with open_regular(Path(path), "spec") as fh:  # a FIFO must not block a folder scan
            head = fh.read(1 << 16)
    except (OSError, RegNetSpaceError):
        return False
    return _SPACE_KEY.search(head) is not None
