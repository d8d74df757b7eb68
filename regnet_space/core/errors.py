"""Error types shared by every step; each one is a user-facing, one-line message."""

from __future__ import annotations


class RegNetSpaceError(Exception):
    """Base of every error caused by user input; the CLI prints it as one line, exit 2."""


class SpecError(RegNetSpaceError, ValueError):
    """A spec (file, text or dict) that does not parse or breaks a rule."""


class PlanError(RegNetSpaceError, ValueError):
    """A valid spec whose generated design is impossible (for example, incompatible widths)."""


class BuildError(RegNetSpaceError):
    """A design that is refused for building (too large to allocate) or a bad build option."""


class OutputError(RegNetSpaceError):
    """An output path that cannot be written (exists without --force, or is not writable)."""
