"""Output paths checked before any work: what an output may replace, and a writable folder."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from .atomic import TMP_PREFIX, reason, tmp_name
from .errors import OutputError
from .journal import clean_stale
from .reading import file_kind
from .text import clean


def _resolve_link(p: Path) -> Path:
    """A symlink's final target (outputs are written through links, never replace them)."""
    st = _lstat(p, p)
    if st is None or not stat.S_ISLNK(st.st_mode):
        return p
    try:
        return Path(os.path.realpath(p))
    except OSError as exc:
        raise OutputError(f"{clean(str(p))}: cannot follow the link: {reason(exc)}") from None


def _probe(folder: Path, shown: Path) -> None:
    """Create and remove a temp file in `folder`: the only sure test of writability (root...)."""
    name = folder / tmp_name(os.getpid(), secrets.token_hex(4), "probe")
    try:
        fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise OutputError(f"{clean(str(shown))}: cannot write in {folder}: {reason(exc)}") from None


def _parent_dir(p: Path) -> Path:
    parent = p.parent
    if not parent.is_dir():
        what = "not a directory" if parent.exists() else "no such directory"
        raise OutputError(f"{clean(str(parent))}: {what} (for {clean(p.name)})")
    return parent


def _lstat(p: Path, shown: Path) -> os.stat_result | None:
    """What is at an output path (None: nothing); other errors are one line naming `shown`."""
    try:
        return p.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"{clean(str(shown))}: {reason(exc)}") from None


def check_target(path: str | Path, force: bool, _seen: set[Path] | None = None) -> Path:
    """Refuse what an output must not replace; probe the folder; remove stale temp files there.

    Allowed: a new path, or (with force) an existing regular file, directly or through a
    symlink (the link's target is written). Refused: directories, FIFOs, devices, sockets,
    links to them, an existing file without force, a missing or unwritable parent folder.
    """
    shown = Path(path)
    p = _resolve_link(shown)
    st = _lstat(p, shown)
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            extra = ", expected a file name" if stat.S_ISDIR(st.st_mode) else ""
            raise OutputError(
                f"{clean(str(shown))}: is {file_kind(st.st_mode)}{extra}; "
                "outputs are regular files or new paths"
            )
        if not force:
            raise OutputError(f"{clean(str(shown))}: already exists (use --force to overwrite)")
    parent = _parent_dir(p)
    if _seen is None or parent not in _seen:  # once per folder for many files in one folder
        clean_stale(parent)
        _probe(parent, shown)
        if _seen is not None:
            _seen.add(parent)
    return p


def check_folder(path: str | Path, force: bool, shared: bool = False) -> Path:
    """An output folder: new, empty, or (with force) one holding a previous result.

    `shared`: other files may stay in it (each output file is then checked on its own).
    """
    shown = Path(path)
    p = _resolve_link(shown)
    st = _lstat(p, shown)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{clean(str(shown))}: exists and is not a directory")
    if st is not None:
        names = [e.name for e in p.iterdir() if not e.name.startswith(TMP_PREFIX)]
        if names and not force and not shared:
            raise OutputError(f"{clean(str(shown))}: not empty (use --force to replace its result)")
        clean_stale(p)
        _probe(p, shown)
        return p
    parent = _parent_dir(p)
    clean_stale(parent)
    _probe(parent, shown)
    return p
