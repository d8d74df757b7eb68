"""YAML and JSON text parsed safely, to plain data, with the same limits everywhere.

Shared by every file format of the project (specs, design spaces, configs, studies, results):
the YAML loader is a SafeLoader that also refuses aliases (alias bombs), duplicate keys and
deep nesting, parsing with libyaml where PyYAML has it and the same answers either way; JSON
refuses NaN, duplicate keys, overlong numbers and deep nesting. Every failure is one line
`source: problem` of the error type the caller names.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import InputError, RegNetSpaceError
from .text import short, short_text

MAX_DIGITS = 400  # digits of a number literal; longer ones are refused by name


@dataclass(frozen=True)
class TooLong:
    """Stands for an integer literal too long for Python to convert (over 4300 digits)."""

    def __repr__(self) -> str:  # what a message shows where it quotes the value
        return "a number too long to read"


# Deeper YAML is refused (specs nest 3 levels); the same bound on both parsers keeps their
# answers equal, and it stays far below Python's recursion limit and libyaml's 1,000 levels.
MAX_DEPTH = 100


class _TooDeep(Exception):
    """Raised inside the loaders when a document nests deeper than MAX_DEPTH."""


class _Refused(Exception):
    """Raised inside the loaders with a line-numbered problem; parse_yaml adds the source."""


class _Checks:
    """The checks both loaders share: duplicate keys refused, long ints left to validation."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # PyYAML keeps the last of two equal keys; in a spec that hides a mistake.
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(f"line {key_node.start_mark.line + 1}: keys must be plain names")
            if key_node.value in seen:
                line = key_node.start_mark.line + 1
                raise _Refused(f"line {line}: duplicate key {short(key_node.value)}")
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)  # type: ignore[misc]

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
            # PyYAML's scalar constructors fail this way on explicit tags (`!!int ''`,
            # `!!bool x`, `!!timestamp x`); say which value, not where PyYAML broke.
            line = node.start_mark.line + 1
            tag = str(node.tag).rsplit(":", 1)[-1]
            value = short(node.value) if isinstance(node, yaml.ScalarNode) else "a collection"
            raise _Refused(f"line {line}: {value} is not a valid {tag}") from exc

    def construct_yaml_int(self, node: Any) -> Any:
        try:
            return super().construct_yaml_int(node)  # type: ignore[misc]
        except ValueError:
            if len(str(node.value)) < 4000:
                raise
            return TooLong()  # left to validation, which names the field


class SafeLoader(_Checks, yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases, duplicate keys and deep nesting; long ints pass."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused(f"line {mark.line + 1}: YAML aliases (*name) are not allowed")
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
_C_DISAGREES = (
    r"[\t!?\ufeff\x85\u2028\u2029]|[|>][-+0-9]*#|" + yaml.reader.Reader.NON_PRINTABLE.pattern
)
# The same places in ASCII text: compiling the full pattern's classes over all of Unicode takes
# longer than a spec takes to read, so it is compiled only for text that is not ASCII.
_C_DISAGREES_ASCII = re.compile(r"[\t!?\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|[|>][-+0-9]*#")


def c_disagrees(text: str) -> bool:
    """Whether `text` has a place where libyaml was seen to differ from PyYAML's parser."""
    if text.isascii():
        return _C_DISAGREES_ASCII.search(text) is not None
    return _c_disagrees_full().search(text) is not None


@functools.cache
def _c_disagrees_full() -> re.Pattern[str]:
    return re.compile(_C_DISAGREES)


def _load_c(text: str) -> Any:
    """Parse with libyaml where it gives what the Python loader gives; else raise _Fallback."""
    if _CBase is None or c_disagrees(text):
        raise _Fallback
    loader = CSafeLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _build(loader, node, set(), 1)
    except Exception:  # any problem: the Python loader decides, with its own message
        raise _Fallback from None
    finally:
        loader.dispose()


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML and JSON `true` are ints to isinstance)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_yaml(
    text: str, source: str, what: str = "document", *, error: type[RegNetSpaceError] = InputError
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
    _check_depth(data, source, error)  # both paths: libyaml has no depth limit of its own
    return data


def _load_python(text: str, source: str, error: type[RegNetSpaceError]) -> Any:
    """Parse with the pure-Python SafeLoader; the reference for results and messages."""
    try:
        return yaml.load(text, Loader=SafeLoader)  # SafeLoader subclass: no arbitrary objects
    except _Refused as exc:
        raise error(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise error(f"{source}: {where}invalid YAML: {problem}") from None
    except (RecursionError, _TooDeep):
        raise error(f"{source}: YAML nested too deeply") from None


def _check_depth(data: Any, source: str, error: type[RegNetSpaceError]) -> None:
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


def parse_json(text: str, source: str, *, error: type[RegNetSpaceError] = InputError) -> Any:
    """JSON with limits: no NaN/Infinity or duplicate keys, finite floats, numbers of at most
    MAX_DIGITS digits, nesting at most MAX_DEPTH; every failure is one line `source: ...`."""
    import json  # where JSON is read: a command reading YAML starts without it

    try:
        return _load_json(text, source, error)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: line {exc.lineno}: invalid JSON: {exc.msg}") from None


def parse_json_or_yaml(
    text: str, source: str, what: str = "document", *, error: type[RegNetSpaceError] = InputError
) -> Any:
    """JSON text as parse_json reads it; anything else, such as a flow-style YAML mapping
    (`{name: a}` starts with a brace too), as parse_yaml reads it."""
    if text.lstrip().startswith(("{", "[")):
        import json

        try:
            return _load_json(text, source, error)
        except json.JSONDecodeError:
            pass  # not JSON's grammar: YAML's, whose parser names any mistake
    return parse_yaml(text, source, what, error=error)


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

    import json

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
    _check_depth(data, source, error)
    return data
