"""The steps of writing one file safely: temp names, exclusive create and move, flushing.

Every output is staged under a temp name with one recognizable prefix, `.regnet-space-tmp-<pid>-`,
beside its target, then moved into place. Without `force` the move is exclusive (rename with
RENAME_NOREPLACE, or link()), so of two writers racing for one name exactly one wins.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from .errors import OutputError
from .text import clean

TMP_PREFIX = ".regnet-space-tmp-"


def tmp_name(pid: int, token: str, what: str) -> str:
    # The target's name after the token helps a person recognize the file; NAME_MAX is 255.
    return f"{TMP_PREFIX}{pid}-{token}-{what[:120]}"


def umask_mode() -> int:
    """The mode a new file gets here (0666 less the process's umask), read without changing it.

    Linux shows the umask in /proc/self/status; elsewhere a probe file tells (setting the umask
    to read it would change it for every thread of the process meanwhile).
    """
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status", encoding="ascii") as fh:
            line = next(x for x in fh if x.startswith("Umask:"))
        return 0o666 & ~int(line.split()[1], 8)
    import tempfile

    probe = Path(tempfile.gettempdir()) / tmp_name(os.getpid(), secrets.token_hex(4), "umask")
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        os.unlink(probe)


def reason(exc: OSError) -> str:
    """An OSError's reason in a few words (ENOSPC: 'no space left on device')."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (exc.strerror or type(exc).__name__).lower()


def write_error(path: str | Path, exc: BaseException) -> OutputError:
    """One-line OutputError for a failed write (OSError, or a library's own error type)."""
    if isinstance(exc, OSError):
        return OutputError(f"{clean(str(path))}: cannot write: {reason(exc)}")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "no space" in low or "enospc" in low or "os error 28" in low:
        text = "no space left on device"
    return OutputError(f"{clean(str(path))}: cannot write: {clean(text)[:120]}")


def is_ours(st: os.stat_result) -> bool:
    """Made by this user (a file another user planted is never obeyed nor removed)."""
    return st.st_uid == os.geteuid()


def remove_path(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def write_new(path: Path, data: bytes, mode: int = 0o666, sync: bool = True) -> None:
    """Create `path` (exclusively; `mode` less the umask) holding `data`."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def finish_file(path: Path, sync: bool, mode: int) -> None:
    """Give a staged file the usual `mode` (a library's writer may have made it private) and
    flush it to disk, before it is moved into place."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    if not sync:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(folders: Sequence[Path]) -> bool:
    """Flush the file systems holding `folders` (one call for thousands of files); False if
    syncfs(2) is unavailable (then each file is flushed on its own)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if fn(fd) != 0:
                return False
        finally:
            os.close(fd)
    return True


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """renameat2(2); False where the system or file system lacks it (the caller falls back)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), ctypes.c_uint(flags))
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


_RENAME_NOREPLACE = 1


def move_new(src: Path, dst: Path) -> None:
    """Move src to dst only if dst does not exist (FileExistsError otherwise), atomically."""
    if _renameat2(src, dst, _RENAME_NOREPLACE):
        return
    if src.is_dir():
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(errno.EEXIST, "exists", str(dst))
        os.rename(src, dst)
        return
    os.link(src, dst)  # fails with EEXIST: the classic exclusive create
    os.unlink(src)
