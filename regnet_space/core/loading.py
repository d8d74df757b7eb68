"""Reading user files safely and turning validation failures into one-line messages.

Shared by every file format of the project (specs, design spaces, configs): the YAML loader
is a SafeLoader that also refuses aliases (alias bombs), duplicate keys and deep nesting,
parsing with libyaml where PyYAML has it and the same answers either way; pydantic errors
become `field.path: rule, got value` joined by "; ".
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import RegNetSpaceError, SpecError
from .text import clean

MAX_FILE_BYTES = 1 << 20
MAX_DIGITS = 400  # digits of a number literal; longer ones are refused by name


@dataclass(frozen=True)
class _TooLong:
    """Stands for an integer literal too long for Python to convert (over 4300 digits)."""

    def __repr__(self) -> str:  # what a message shows where it quotes the value
        return "a number too long to read"


def short(value: Any) -> str:
    """A repr of a user value, at most 40 characters, safe for huge integers."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large integer"
    if isinstance(value, _TooLong):
        return repr(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Deeper YAML is refused (specs nest 3 levels); the same bound on both parsers keeps their
# answers equal, and it stays far below Python's recursion limit and libyaml's 1,000 levels.
MAX_DEPTH = 100


class _TooDeep(Exception):
    """Raised inside the loaders when a document nests deeper than MAX_DEPTH."""


class _Checks:
    """The checks both loaders share: duplicate keys refused, long ints left to validation."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # PyYAML keeps the last of two equal keys; in a spec that hides a mistake.
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(f"line {key_node.start_mark.line + 1}: keys must be plain names")
            if key_node.value in seen:
                line = key_node.start_mark.line + 1
                raise SpecError(f"line {line}: duplicate key {short(key_node.value)}")
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)  # type: ignore[misc]

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except SpecError:
            raise
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
            # PyYAML's scalar constructors fail this way on explicit tags (`!!int ''`,
            # `!!bool x`, `!!timestamp x`); say which value, not where PyYAML broke.
            line = node.start_mark.line + 1
            tag = str(node.tag).rsplit(":", 1)[-1]
            value = short(node.value) if isinstance(node, yaml.ScalarNode) else "a collection"
            raise SpecError(f"line {line}: {value} is not a valid {tag}") from exc

    def construct_yaml_int(self, node: Any) -> Any:
        try:
            return super().construct_yaml_int(node)  # type: ignore[misc]
        except ValueError:
            if len(str(node.value)) < 4000:
                raise
            return _TooLong()  # left to validation, which names the field


class SafeLoader(_Checks, yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases, duplicate keys and deep nesting; long ints pass."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SpecError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


SafeLoader.add_constructor("tag:yaml.org,2002:int", SafeLoader.construct_yaml_int)

_CBase: Any = getattr(yaml, "CSafeLoader", None)  # None when PyYAML was built without libyaml


class _Fallback(Exception):
    """The C loader cannot answer for this text; the Python loader will."""


if _CBase is not None:

    class CSafeLoader(_Checks, _CBase):  # type: ignore[misc, valid-type]
        """libyaml's parser and composer with SafeLoader's constructor checks."""

    CSafeLoader.add_constructor("tag:yaml.org,2002:int", CSafeLoader.construct_yaml_int)

_TAG = "tag:yaml.org,2002:"
_PLAIN = {_TAG + t for t in ("int", "float", "bool", "null")}


def _build(loader: Any, node: Any, seen: set[int], depth: int) -> Any:
    """The object SafeLoader constructs from a composed node, for plain data only.

    Mappings, lists, strings, numbers, booleans and nulls are built directly (PyYAML's own
    constructors for the scalars); anything else (an alias, which the C composer returns as
    a shared node, a duplicate or non-scalar key, a merge key, another tag, nesting deeper
    than MAX_DEPTH) raises _Fallback.
    """
    if depth > MAX_DEPTH or id(node) in seen:
        raise _Fallback
    seen.add(id(node))
    tag = node.tag
    if tag == _TAG + "str":
        return node.value
    if tag in _PLAIN:
        return loader.yaml_constructors[tag](loader, node)
    if tag == _TAG + "seq":
        return [_build(loader, child, seen, depth + 1) for child in node.value]
    if tag != _TAG + "map":
        raise _Fallback
    out = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _KEY_TAGS:
            raise _Fallback
        key = _build(loader, key_node, seen, depth + 1)
        if key in out:  # a duplicate key, or two keys of equal value: SafeLoader's call
            raise _Fallback
        out[key] = _build(loader, value_node, seen, depth + 1)
    return out


_KEY_TAGS = {_TAG + "str"} | _PLAIN


# Where libyaml was seen to answer otherwise than PyYAML's Python parser (differential fuzzing):
# tabs, explicit tags, "?" (a key to PyYAML in flow context even unspaced), byte-order marks
# and Unicode line breaks, a block scalar header running into a comment, and what the Python
# reader refuses as non-printable.
_C_DISAGREES = re.compile(
    r"[\t!?\ufeff\x85\u2028\u2029]|[|>][-+0-9]*#|" + yaml.reader.Reader.NON_PRINTABLE.pattern
)


def _load_c(text: str) -> Any:
    """Parse with libyaml where it gives what the Python loader gives; else raise _Fallback."""
    if _CBase is None or _C_DISAGREES.search(text):
        raise _Fallback
    loader = CSafeLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _build(loader, node, set(), 1)
    except Exception:  # any problem: the Python loader decides, with its own message
        raise _Fallback from None
    finally:
        loader.dispose()


# Strings the C emitter was seen to write byte for byte as the Python one does (differential
# fuzzing): longer ones are wrapped differently, empty keys and escapes written differently.
_C_DUMPABLE = re.compile(r"[A-Za-z0-9_.+\-/ ]{1,64}")
_CDumper: Any = getattr(yaml, "CSafeDumper", None)


def _c_dumpable(data: Any) -> bool:
    """Whether every string in nested dicts and lists is one _C_DUMPABLE matches."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _C_DUMPABLE.fullmatch(item) is None:
                return False
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


# A word PyYAML writes plain (no quotes) when it resolves to a string: a letter first, then
# letters, digits and _ . + - (no space, colon or hash that would call for quotes).
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.+\-]{0,63}")
_REPRESENTER = yaml.representer.SafeRepresenter()
_RESOLVER = yaml.resolver.Resolver()


def _flat_scalar(value: Any) -> str | None:
    """How safe_dump writes one scalar of a flat mapping; None when it is not that simple."""
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        text = _REPRESENTER.represent_float(value).value
        return (
            text
            if _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)).endswith(":float")
            else None
        )
    if type(value) is str and _PLAIN_WORD.fullmatch(value):
        resolved = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))
        return value if resolved.endswith(":str") else None
    return None


def _dump_flat(data: dict) -> str | None:
    """safe_dump of a non-empty mapping of plain words to simple scalars, written directly."""
    lines = []
    for key, value in data.items():
        text = _flat_scalar(value)
        if text is None or type(key) is not str or _flat_scalar(key) != key:
            return None
        lines.append(f"{key}: {text}\n")
    return "".join(lines) or None


def dump_yaml(data: Any) -> str:
    """yaml.safe_dump(data, sort_keys=False), by libyaml where it writes the same bytes.

    A flat mapping of words to numbers, booleans and words (a parametric spec) is written
    directly: the same bytes, without PyYAML's representer.
    """
    if isinstance(data, dict):
        flat = _dump_flat(data)
        if flat is not None:
            return flat
    if _CDumper is not None and _c_dumpable(data):
        return yaml.dump(data, Dumper=_CDumper, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False)


# Besides the controls `clean` escapes: YAML's Unicode line breaks, the byte-order mark and
# what YAML cannot hold (non-characters, lone surrogates from undecodable command lines).
_NOT_IN_COMMENTS = re.compile("[\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def yaml_comment(text: str) -> str:
    """`text` as one YAML comment line, line breaks and controls escaped (`\\n`, `\\x00`):
    nothing in a user's name can end the comment and become part of the document."""
    safe = _NOT_IN_COMMENTS.sub(lambda m: f"\\u{ord(m.group()):04x}", clean(text))
    return f"# {safe}\n"


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML and JSON `true` are ints to isinstance)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    """Parse YAML text safely; every failure is one line `source: ...` of `error`.

    libyaml parses when PyYAML has it, with the same checks; whatever it cannot answer
    exactly as the pure-Python SafeLoader would goes to that loader, so results and
    messages are the same with or without libyaml.
    """
    if not text.strip():
        raise error(f"{source}: the {what} is empty")
    try:
        data = _load_c(text)
    except _Fallback:
        data = _load_python(text, source, error)
    except RecursionError:
        raise error(f"{source}: YAML nested too deeply") from None
    check_depth(data, source, error)  # both paths: libyaml has no depth limit of its own
    return data


def _load_python(text: str, source: str, error: type[RegNetSpaceError]) -> Any:
    """Parse with the pure-Python SafeLoader; the reference for results and messages."""
    try:
        return yaml.load(text, Loader=SafeLoader)  # SafeLoader subclass: no arbitrary objects
    except SpecError as exc:
        if str(exc).startswith(f"{source}: "):
            raise error(str(exc)) from None
        raise error(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise error(f"{source}: {where}invalid YAML: {problem}") from None
    except (RecursionError, _TooDeep):
        raise error(f"{source}: YAML nested too deeply") from None


def check_depth(data: Any, source: str, error: type[RegNetSpaceError] = SpecError) -> None:
    """Refuse lists and mappings nested deeper than MAX_DEPTH (iteratively: no recursion)."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise error(f"{source}: nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in children)


def parse_json(text: str, source: str, error: type[RegNetSpaceError] = SpecError) -> Any:
    """JSON with limits: no NaN/Infinity or duplicate keys, finite floats, numbers of at most
    MAX_DIGITS digits, nesting at most MAX_DEPTH; every failure is one line `source: ...`."""
    try:
        return _load_json(text, source, error)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: line {exc.lineno}: invalid JSON: {exc.msg}") from None


def parse_json_or_yaml(
    text: str, source: str, what: str = "spec", error: type[RegNetSpaceError] = SpecError
) -> Any:
    """JSON text as parse_json reads it; anything else, such as a flow-style YAML mapping
    (`{name: a}` starts with a brace too), as parse_yaml reads it."""
    if text.lstrip().startswith(("{", "[")):
        try:
            return _load_json(text, source, error)
        except json.JSONDecodeError:
            pass  # not JSON's grammar: YAML's, whose parser names any mistake
    return parse_yaml(text, source, what, error)


def _load_json(text: str, source: str, error: type[RegNetSpaceError]) -> Any:
    """parse_json's limits as `error`; a text outside JSON's grammar raises JSONDecodeError."""

    def constant(name: str) -> Any:
        raise error(f"{source}: {name} is not a number JSON allows")

    def number(literal: str, kind: type) -> Any:
        if len(literal) > MAX_DIGITS:
            raise error(f"{source}: a number of {len(literal)} digits; at most {MAX_DIGITS}")
        value = kind(literal)
        if isinstance(value, float) and not math.isfinite(value):
            raise error(f"{source}: number {short_text(literal)} is out of range")
        return value

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json keeps the last of two equal keys; in a config that hides a mistake (as in YAML).
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise error(f"{source}: duplicate key {short(key)}")
                seen.add(key)
        return obj

    try:
        data = json.loads(
            text,
            object_pairs_hook=unique,
            parse_constant=constant,
            parse_float=lambda t: number(t, float),
            parse_int=lambda t: number(t, int),
        )
    except RecursionError:
        raise error(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    check_depth(data, source, error)
    return data


def short_text(text: str, limit: int = 40) -> str:
    """A user's text shortened to `limit` characters for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def file_kind(mode: int) -> str:
    """What a file of this st_mode is, in words ("a FIFO"), for a message refusing it."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


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
        kind = file_kind(mode) + ("," if stat.S_ISDIR(mode) else ", not a regular file;")
        raise error(f"{path}: is {kind} expected a {what} file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_text_file(
    path: Path, what: str = "spec", error: type[RegNetSpaceError] = SpecError
) -> str:
    """Read a small UTF-8 text file, turning every OS problem into a one-line `error`."""
    try:
        with open_regular(path, what, error) as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(f"{path}: larger than {MAX_FILE_BYTES} bytes, not a {what} file")
    if b"\0" in raw:
        raise error(f"{path}: binary data, expected a YAML {what} file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text, expected a YAML {what} file") from None


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
