"""Opening users' files: regular files only (a FIFO never blocks), bounded, UTF-8 text.

Every problem is one line of the error type the caller names (the spec reader's SpecError,
a study's StudyError...), naming the path.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import IO

from .errors import InputError, RegNetSpaceError

MAX_FILE_BYTES = 1 << 20


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


def open_regular(path: Path, what: str, *, error: type[RegNetSpaceError] = InputError) -> IO[bytes]:
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


def read_text_file(path: Path, what: str, *, error: type[RegNetSpaceError] = InputError) -> str:
    """Read a small UTF-8 text file, turning every OS problem into a one-line `error`."""
    try:
        with open_regular(path, what, error=error) as fh:
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


def is_yaml_text(source: str) -> bool:
    """Whether a string argument is YAML text rather than a path.

    Text when it is blank, holds a newline, or looks like a mapping (`key: value`, `{...}`)
    and names no existing file; `dir:name.yaml` or `C:/x.yaml` is a path.
    """
    if not source.strip() or "\n" in source:
        return True
    looks = re.search(r":(\s|$)", source) is not None or source.lstrip().startswith("{")
    return looks and not Path(source).exists()
