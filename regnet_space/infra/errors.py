"""The base error types: every user-facing failure is one of them, shown as one line."""

from __future__ import annotations


class RegNetSpaceError(Exception):
    """Base of every error caused by user input; the CLI prints it as one line, exit 2."""


class InputError(RegNetSpaceError, ValueError):
    """A user's file or text that cannot be read or parsed (the readers' default error)."""


class OutputError(RegNetSpaceError):
    """An output path that cannot be written (exists without --force, or is not writable)."""
