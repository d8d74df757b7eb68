"""Progress on stderr with an ETA, shown only on a terminal (quiet in pipes and logs)."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """A `\\r` line `label: done/total, elapsed, ETA` at most 10 times a second, TTY only.

    `step(text)` names the current phase of a command without a count (e.g. "exporting").
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: IO[str] | None = None,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.tty = enabled and _isatty(self.stream)
        self.start = time.perf_counter()
        self.last = -1.0
        self.shown = False

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """Show `done` of `total` (or of the total given at creation) with an ETA."""
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and (total or self.total) != done:
            return
        self.last = now
        total = total if total is not None else self.total
        elapsed = now - self.start
        text = f"{self.label}: {done:,}" + (f"/{total:,}" if total else "")
        text += f" {note}" if note else ""
        text += f", {_duration(elapsed)}"
        if total and 0 < done < total:
            text += f", ETA {_duration(elapsed * (total - done) / done)}"
        self._show(text)

    def step(self, text: str) -> None:
        """Show the phase the command is in, with the time so far."""
        if self.tty:
            self._show(f"{self.label}: {text} ({_duration(time.perf_counter() - self.start)})")

    def _show(self, text: str) -> None:
        self._write_raw(f"\r{self._clean(text)}\033[K")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        """Erase the line (the command's own output follows)."""
        if self.shown:
            self._write_raw("\r\033[K")
            self.stream.flush()
            self.shown = False

    def _write_raw(self, text: str) -> None:
        # Our own \r and erase-line controls; SafeStream.write would escape them.
        getattr(self.stream, "write_raw", self.stream.write)(text)

    @staticmethod
    def _clean(text: str) -> str:
        from ..infra.text import clean

        return clean(text)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60} min"
