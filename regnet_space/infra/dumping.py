"""YAML text written: `dump_yaml` (byte for byte what yaml.safe_dump writes, faster) and
comment lines nothing in a user's text can break out of."""

from __future__ import annotations

import re
from typing import Any

import yaml

from .text import clean

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
