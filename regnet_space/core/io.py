"""Writing outputs: atomically (temp file + rename), never silently overwriting."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from .errors import OutputError


def _umask_mode() -> int:
    # mkstemp creates files 0600; outputs should get the usual mode (0666 less the umask).
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_target(path: str | Path, force: bool) -> Path:
    """Refuse an existing output without force, a directory, or a missing parent folder."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: is a directory, expected a file name")
    if p.exists() and not force:
        raise OutputError(f"{p}: already exists (use --force to overwrite)")
    if not p.parent.is_dir():
        raise OutputError(f"{p.parent}: no such directory")
    return p


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", force: bool = False) -> Iterator[IO]:
    """Open a temp file beside `path`; rename it onto `path` only if the block succeeds."""
    p = check_target(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str, force: bool = False) -> Path:
    """Write text to `path` atomically."""
    with atomic_open(path, "w", force) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_with(path: str | Path, writer: Callable[[str], None], force: bool = False) -> Path:
    """Let `writer(tmp_path)` write a file (e.g. torch.save), then rename it onto `path`."""
    p = check_target(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


def atomic_write_texts(items: Sequence[tuple[Path, str]], force: bool = False) -> None:
    """Write many small files, each atomically, with one flush to disk for all of them.

    Every target is checked first; the texts go to temp files beside their targets, one
    os.sync() makes them durable (an fsync per file costs milliseconds each), then each is
    renamed onto its target. On a failure the temp files not yet renamed are removed.
    """
    for path, _ in items:
        check_target(path, force)
    mode = _umask_mode()
    temps: list[tuple[str, Path]] = []
    try:
        for path, text in items:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fd, mode)
                fh.write(text)
        os.sync()
        for i, (tmp, path) in enumerate(temps):
            os.replace(tmp, path)
            temps[i] = ("", path)  # renamed: nothing to remove
    except BaseException:
        for tmp, _ in temps:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        raise
