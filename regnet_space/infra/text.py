"""Text that reaches a terminal, a spreadsheet or a message: controls escaped, formulas inert,
users' values shortened."""

from __future__ import annotations

import re
from typing import Any, TextIO

# C0 and C1 controls and DEL, except tab and newline in multi-line text; also the Unicode
# bidirectional overrides, which reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str, multiline: bool = False) -> str:
    """`text` with control characters shown as `\\x1b`-style escapes (tabs and, when
    `multiline`, newlines kept), so that nothing printed can drive the terminal."""
    return (_CONTROL if multiline else _CONTROL_LINE).sub(_escape, text)


def short(value: Any) -> str:
    """A repr of a user value, at most 40 characters, safe for huge integers."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def short_text(text: str, limit: int = 40) -> str:
    """A user's text shortened to `limit` characters for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def csv_cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: `'` before =, +, -, @, tab, CR unless a number."""
    if text and text[0] in "=+-@\t\r" and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


class SafeStream:
    """A text stream whose `write` escapes control characters (newlines and tabs pass).

    `write_raw` writes as is: for the command's own terminal controls (a progress line's \\r).
    """

    def __init__(self, stream: TextIO) -> None:
        self.raw = stream

    def write(self, text: str) -> int:
        """Write `text` with its control characters escaped; returns len(text)."""
        self.raw.write(clean(text, multiline=True))
        return len(text)

    def write_raw(self, text: str) -> int:
        """Write `text` unchanged."""
        return self.raw.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
