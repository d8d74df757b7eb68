"""Writing outputs: checked before any work, created exclusively, committed whole or not at all.

Every output is staged under a temp name with one recognizable prefix, `.regnet-space-tmp-<pid>-`,
beside its target, then moved into place. Without `force` the move is exclusive (rename with
RENAME_NOREPLACE, or link()), so of two writers racing for one name exactly one wins and the
other fails with one line; with `force` the last complete result replaces the previous one whole.
An output made of several files (weights + resolved spec, records + a folder of specs, an HTML
report with its pictures) is committed under journals, one in each folder it writes in: a writer
killed in the middle leaves them, and the next writer in any of those folders rolls the targets
back to their previous state. A journal is obeyed only within its own folder, for the temp files
of its own commit, and only when this user owns it. Temp files of processes that no longer exist
are removed by the next writer in the folder (`find . -name '.regnet-space-tmp-*'` lists them
meanwhile).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import OutputError, RegNetSpaceError
from .loading import open_regular, parse_json
from .text import clean

TMP_PREFIX = ".regnet-space-tmp-"
MANIFEST = ".regnet-space-manifest"
_COMMIT = "commit.journal"
_MAX_BOOKKEEPING = 64 << 20  # bytes of a manifest or journal (a million file names)


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

    probe = Path(tempfile.gettempdir()) / _tmp_name(os.getpid(), secrets.token_hex(4), "umask")
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        os.unlink(probe)


def _why(exc: OSError) -> str:
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
        return OutputError(f"{clean(str(path))}: cannot write: {_why(exc)}")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "no space" in low or "enospc" in low or "os error 28" in low:
        text = "no space left on device"
    return OutputError(f"{clean(str(path))}: cannot write: {clean(text)[:120]}")


# ---------------------------------------------------------------------------------------------
# Temp names and stale temp files


def _tmp_name(pid: int, token: str, what: str) -> str:
    # The target's name after the token helps a person recognize the file; NAME_MAX is 255.
    return f"{TMP_PREFIX}{pid}-{token}-{what[:120]}"


def _owner(name: str) -> int | None:
    if not name.startswith(TMP_PREFIX):
        return None
    head = name[len(TMP_PREFIX) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _start_time(pid: int) -> float | None:
    """When a live process started (seconds since the epoch), from /proc; None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        with open("/proc/stat") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _is_stale(entry: Path, pid: int) -> bool:
    """Temp file of a process that is gone (or whose pid now names a younger process)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's
    started = _start_time(pid)
    if started is None:
        return False
    try:
        return entry.lstat().st_mtime < started - 2  # made before that process existed
    except OSError:
        return False


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _is_ours(st: os.stat_result) -> bool:
    """Made by this user (a file another user planted is never obeyed nor removed)."""
    return st.st_uid == os.geteuid()


def clean_stale(folder: str | Path) -> list[Path]:
    """Roll back dead writers' journals in `folder`, then remove their temp files; the removed.

    Only this user's files are touched; what a journal names that it may not touch is left
    alone and named in one line on stderr (one per journal).
    """
    d = Path(folder)
    try:
        entries = [e for e in d.iterdir() if e.name.startswith(TMP_PREFIX)]
    except OSError:
        return []
    stale = [e for e in entries if (pid := _owner(e.name)) is not None and _is_stale(e, pid)]
    ignored: dict[Path, list[str]] = {}
    for e in stale:
        if _journal_prefix(e.name) is not None:
            with contextlib.suppress(OSError, ValueError):
                _recover(e, ignored)
    removed = []
    for e in stale:
        try:
            st = e.lstat()
        except OSError:
            continue
        if _is_ours(st):
            _remove(e)
            removed.append(e)
        elif _journal_prefix(e.name) is not None:
            _note(ignored, e, "the journal itself: another user's file")
    for journal, what in ignored.items():
        _say_ignored(journal, what)
    return removed


_SAID: set[tuple[Path, tuple[str, ...]]] = set()  # said once per process, not per folder check


def _say_ignored(journal: Path, what: list[str]) -> None:
    import sys

    if (journal, tuple(what)) in _SAID:
        return
    _SAID.add((journal, tuple(what)))
    shown = ", ".join(clean(w) for w in what[:4]) + (
        f" and {len(what) - 4} more" if len(what) > 4 else ""
    )
    sys.stderr.write(
        f"regnet-space: {clean(str(journal))}: ignored what this stale journal may not touch "
        f"(only its own temp files in its folder): {shown}\n"
    )


# ---------------------------------------------------------------------------------------------
# Checking targets


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _resolve_link(p: Path) -> Path:
    """A symlink's final target (outputs are written through links, never replace them)."""
    st = _lstat(p, p)
    if st is None or not stat.S_ISLNK(st.st_mode):
        return p
    try:
        return Path(os.path.realpath(p))
    except OSError as exc:
        raise OutputError(f"{clean(str(p))}: cannot follow the link: {_why(exc)}") from None


def _probe(folder: Path, shown: Path) -> None:
    """Create and remove a temp file in `folder`: the only sure test of writability (root...)."""
    name = folder / _tmp_name(os.getpid(), secrets.token_hex(4), "probe")
    try:
        fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise OutputError(f"{clean(str(shown))}: cannot write in {folder}: {_why(exc)}") from None


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
        raise OutputError(f"{clean(str(shown))}: {_why(exc)}") from None


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
                f"{clean(str(shown))}: is {_kind(st.st_mode)}{extra}; "
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


# ---------------------------------------------------------------------------------------------
# Exclusive moves


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


def _move_new(src: Path, dst: Path) -> None:
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


# ---------------------------------------------------------------------------------------------
# Output sets


@dataclass
class _Entry:
    final: Path
    shown: Path
    kind: str  # "file", "dir" (a new folder staged whole) or "remove" (a stale companion)
    staged: Path | None = None
    backup: Path | None = None
    optional: bool = False
    replace: bool = False  # replaced even without force (a folder's manifest)


@dataclass
class OutputSet:
    """Outputs of one command: checked when added, staged by `staging()`, committed together."""

    force: bool
    entries: list[_Entry] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    _manifests: dict[Path, list[str]] = field(default_factory=dict)
    _checked: set[Path] = field(default_factory=set)
    _finals: set[Path] = field(default_factory=set)
    _existing: set[Path] = field(default_factory=set)  # folders that hold earlier results

    def file(self, path: str | Path, optional: bool = False) -> Path:
        """Add one output file (checked now); `optional`: the writer may leave it unwritten
        (then, with force, an existing file of that name is removed with the commit)."""
        final = check_target(path, self.force, self._checked)
        self._add(_Entry(final, Path(path), "file", optional=optional))
        return final

    def folder(self, path: str | Path, names: Sequence[str], shared: bool = False) -> Path:
        """Add a folder of files `names`: staged whole if new, else those files plus a manifest.

        With force, files an earlier result listed in the folder's manifest and this one does
        not write are removed in the same commit. `shared`: an existing folder may hold earlier
        results of this tool (without force each of `names` must be new), and other files with
        force only.
        """
        final = check_folder(path, self.force, shared)
        if not final.exists():
            self._add(_Entry(final, Path(path), "dir"))
            self._manifests[final] = list(names)
            return final
        for name in names:
            self.file(final / name)
        if not self.force:
            _refuse_foreign(final, Path(path))
        self._manifests[final] = list(names)
        self._existing.add(final)
        manifest = check_target(final / MANIFEST, True, self._checked)
        self._add(_Entry(manifest, manifest, "file", replace=True))
        return final

    def _earlier_results(self, staging: Staging, mode: int) -> None:
        """With force, files of an earlier result (its manifest) that this one does not write
        are removed; without, the manifest lists both results. Read at commit time, under the
        folder lock, so a result committed meanwhile by another writer is accounted for too.
        """
        for folder in self._existing:
            names = self._manifests[folder]
            old = _read_manifest(folder)
            if self.force:
                for name in old:
                    path = folder / name
                    if name not in names and path not in self._finals and path.is_file():
                        self.remove(path)
            else:
                names = list(dict.fromkeys([*old, *names]))
            _write_manifest(staging, folder, names)
            _finish_file(staging.path(folder / MANIFEST), sync=True, mode=mode)

    def remove(self, path: str | Path) -> None:
        """Remove an existing file with the commit (a stale companion of the previous result)."""
        final = Path(path)
        if final.exists() and not self.force:
            raise OutputError(f"{clean(str(final))}: already exists (use --force to overwrite)")
        self._add(_Entry(final, final, "remove"))

    def _add(self, entry: _Entry) -> None:
        if entry.final in self._finals:
            raise OutputError(f"{clean(str(entry.shown))}: named twice among the outputs")
        self._finals.add(entry.final)
        self.entries.append(entry)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        """Temp paths to write into; committed when the block ends normally, else removed."""
        try:
            for e in self.entries:
                if e.kind in ("dir", "file"):
                    e.staged = e.final.parent / _tmp_name(os.getpid(), self.token, e.final.name)
                if e.kind == "dir":
                    os.mkdir(e.staged)  # type: ignore[arg-type]
            staging = Staging(self)
            yield staging
            for folder, names in self._manifests.items():
                if folder not in self._existing:  # a new folder: its manifest goes inside
                    _write_manifest(staging, folder, names)
            self._commit(staging)
        except OSError as exc:
            self._discard()
            raise write_error(
                getattr(exc, "filename", None) or self.entries[0].shown, exc
            ) from None
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        for e in self.entries:
            if e.staged is not None:
                _remove(e.staged)

    def _commit(self, staging: Staging) -> None:
        pid = os.getpid()
        for e in self.entries:
            if e.kind == "file" and e.optional and not _has(e):
                # Not written this time: an earlier result's file of that name goes (force).
                e.kind, e.staged = "remove", None
        staged = [e for e in self.entries if e.staged is not None]
        synced = _syncfs(list(dict.fromkeys(e.final.parent for e in staged)))
        mode = umask_mode()
        for e in staged:
            if e.kind == "file":
                _finish_file(e.staged, sync=not synced, mode=mode)  # type: ignore[arg-type]
            elif e.kind == "dir":
                for f in e.staged.iterdir():  # type: ignore[union-attr]
                    _finish_file(f, sync=not synced, mode=mode)
        folders = list(dict.fromkeys(e.final.parent for e in self.entries))
        # Ctrl-C waits until the commit (or its rollback) is complete: never half of it.
        with _interrupts_deferred(), _locked(folders):
            self._earlier_results(staging, mode)
            entries = [e for e in self.entries if e.kind != "remove" or e.final.exists()]
            if not entries:
                return
            for e in entries:
                if e.kind in ("file", "remove") and e.final.exists() and (self.force or e.replace):
                    e.backup = e.final.parent / _tmp_name(pid, self.token, "old-" + e.final.name)
            self._commit_entries(entries)

    def _commit_entries(self, entries: list[_Entry]) -> None:
        """Journal, apply, commit: one journal per folder, each naming that folder's entries.

        The first folder's journal is the primary: deleting it is the commit point. Until then
        the next writer in any of the folders rolls every folder back; after it, the other
        journals only say that their folder's part is complete.
        """
        resolved = {f: f.resolve() for f in {e.final.parent for e in entries}}
        groups: dict[Path, list[_Entry]] = {}
        for e in entries:
            groups.setdefault(resolved[e.final.parent], []).append(e)
        name = _tmp_name(os.getpid(), self.token, _COMMIT)
        journals = [folder / name for folder in groups]
        listed = [str(folder) for folder in groups]
        try:
            for i, (folder, group) in enumerate(groups.items()):
                rows = [_journal_row(e) for e in group]
                data = {"written_by": "regnet-space", "folders": listed, "primary": i == 0}
                _write_bytes(folder / name, json.dumps(data | {"entries": rows}).encode(), 0o600)
            for e in entries:
                _apply(e, self.force)
        except FileExistsError as exc:
            _roll_back(journals[0], {})
            raise OutputError(
                f"{clean(str(exc.filename or entries[0].shown))}: already exists "
                "(another writer created it meanwhile; use --force to overwrite)"
            ) from None
        except BaseException:
            _roll_back(journals[0], {})
            raise
        for folder in groups:
            _fsync_dir(folder)
        _commit_point(journals[0])
        for journal in journals[1:]:
            _remove(journal)
        for e in entries:
            if e.backup is not None:
                _remove(e.backup)


def _commit_point(journal: Path) -> None:
    """Delete the primary journal: from here on the new result stands."""
    os.unlink(journal)
    _fsync_dir(journal.parent)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back for the block; one that came meanwhile is raised after it.

    The Python-level handler is swapped (a signal mask would not do: the kernel may hand the
    signal to another thread, such as a BLAS worker, whose mask lets it through).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
    elif caught and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _locked(folders: Sequence[Path]) -> Iterator[None]:
    """flock the target folders (in a fixed order): two forced commits never interleave."""
    import fcntl

    fds = []
    try:
        for folder in sorted({f.resolve() for f in folders}):
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def _has(e: _Entry) -> bool:
    return e.staged is not None and e.staged.exists()


def _write_manifest(staging: Staging, folder: Path, names: list[str]) -> None:
    """Stage the manifest naming the files a folder's result consists of."""
    text = json.dumps({"written_by": "regnet-space", "files": names}) + "\n"
    staging.write_bytes(folder / MANIFEST, text.encode())


def _refuse_foreign(folder: Path, shown: Path) -> None:
    """Refuse a folder holding files that no manifest of ours lists (someone else's)."""
    listed = set(_read_manifest(folder))
    try:
        names = [e.name for e in os.scandir(folder)]
    except OSError as exc:
        raise OutputError(f"{clean(str(shown))}: cannot list: {_why(exc)}") from None
    foreign = sorted(
        n for n in names if n not in listed and n != MANIFEST and not n.startswith(TMP_PREFIX)
    )
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputError(
            f"{clean(str(shown))}: holds files regnet-space did not write ({clean(foreign[0])}"
            f"{more}); use --force to write among them"
        )


def _read_manifest(folder: Path) -> list[str]:
    try:
        data = _read_small_json(folder / MANIFEST)
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError, RegNetSpaceError):
        return []
    return [f for f in files if isinstance(f, str) and "/" not in f and f not in ("", ".", "..")]


def _read_small_json(path: Path) -> Any:
    """A manifest or journal: a regular file (a FIFO must not block), bounded, safe JSON."""
    with open_regular(path, "JSON", OutputError) as fh:
        raw = fh.read(_MAX_BOOKKEEPING + 1)
    if len(raw) > _MAX_BOOKKEEPING:
        raise OutputError(f"{path}: too large")
    return parse_json(raw.decode("utf-8"), str(path), OutputError)


def _journal_row(e: _Entry) -> dict[str, object]:
    """An entry as its journal names it: file names in the journal's folder, and the inodes
    that tell our own files from others (the staged file, the file a backup keeps)."""
    staged_ino = old_ino = None
    if e.staged is not None and e.staged.exists():
        staged_ino = e.staged.lstat().st_ino
    if e.backup is not None:
        old_ino = e.final.lstat().st_ino
    return {
        "final": e.final.name,
        "staged": None if e.staged is None else e.staged.name,
        "backup": None if e.backup is None else e.backup.name,
        "ino": staged_ino,
        "old_ino": old_ino,
    }


def _apply(e: _Entry, force: bool) -> None:
    if e.backup is not None:
        try:
            os.link(e.final, e.backup)  # the previous file stays in place until replaced
        except OSError:  # a file system without hard links: moved aside instead
            os.rename(e.final, e.backup)
    if e.kind == "remove":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(e.final)
        return
    if e.staged is None:  # staged for every file and dir entry by staging()
        raise RuntimeError(f"{e.final}: output was not staged")
    if (force or e.replace) and e.kind == "file":
        os.replace(e.staged, e.final)
    else:
        _move_new(e.staged, e.final)


# ---------------------------------------------------------------------------------------------
# Recovery from journals


@dataclass(frozen=True)
class _Row:
    """One journal entry: names in the journal's folder (staged and backup: its temp names)."""

    final: str
    staged: str | None
    backup: str | None
    ino: int | None
    old_ino: int | None


@dataclass(frozen=True)
class _Journal:
    """A journal of ours, its entries checked (those it may not act on are left out)."""

    path: Path
    folders: tuple[Path, ...]  # every folder of the commit, the primary journal's first
    primary: bool
    rows: tuple[_Row, ...]


Ignored = dict[Path, list[str]]  # per journal: what it names that it may not touch


def _journal_prefix(name: str) -> str | None:
    """`.regnet-space-tmp-PID-TOKEN-` for a journal named that way plus `commit.journal`."""
    if not (name.startswith(TMP_PREFIX) and name.endswith("-" + _COMMIT)):
        return None
    prefix = name[: -len(_COMMIT)]
    pid, _, token = prefix[len(TMP_PREFIX) : -1].partition("-")
    return prefix if pid.isdigit() and token and "-" not in token else None


def _note(ignored: Ignored, journal: Path, what: str) -> None:
    seen = ignored.setdefault(journal, [])
    if what not in seen:
        seen.append(what)


def _our_file(path: Path) -> os.stat_result | None:
    """The stat of a regular file this user owns at `path`, else None."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) and _is_ours(st) else None


def _name_in(value: Any, folder: Path) -> str | None:
    """A file name in `folder` from a journal value: a bare name, or (as earlier versions
    wrote) an absolute path whose folder is `folder`; None for anything else."""
    if not isinstance(value, str) or value in ("", ".", "..") or "\0" in value:
        return None
    if "/" not in value:
        return value
    p = Path(value)
    try:
        inside = p.is_absolute() and p.name not in ("", "..") and p.parent.samefile(folder)
    except OSError:
        return None
    return p.name if inside else None


def _row(raw: Any, folder: Path, prefix: str) -> _Row | None:
    """A journal entry it may act on: a final in its folder, its own temp names; else None."""
    if not isinstance(raw, dict):
        return None
    final = _name_in(raw.get("final"), folder)
    if final is None or final.startswith(TMP_PREFIX):
        return None
    temps = []
    for key in ("staged", "backup"):
        value = raw.get(key)
        name = None if value is None else _name_in(value, folder)
        if value is not None and (name is None or not name.startswith(prefix) or name == prefix):
            return None
        temps.append(name)
    inos = [raw.get("ino"), raw.get("old_ino")]
    if any(i is not None and (not isinstance(i, int) or isinstance(i, bool)) for i in inos):
        return None
    return _Row(final, temps[0], temps[1], inos[0], inos[1])


def _read_journal(path: Path, ignored: Ignored) -> _Journal | None:
    """A journal of this user's, its entries checked; None when there is none to go by."""
    prefix = _journal_prefix(path.name)
    try:
        st = path.lstat()
    except OSError:
        return None
    if prefix is None or not stat.S_ISREG(st.st_mode):
        return None
    if not _is_ours(st):
        _note(ignored, path, "the journal itself: another user's file")
        return None
    try:
        data = _read_small_json(path)
    except (OSError, RegNetSpaceError):
        return None  # cut short while being written: nothing was moved yet
    folder = path.parent
    if isinstance(data, list):  # an earlier version's journal: one folder
        raws, folders, primary = data, [str(folder.absolute())], True
    elif isinstance(data, dict):
        raws, folders, primary = data.get("entries"), data.get("folders"), data.get("primary")
    else:
        raws = folders = primary = None
    if (
        not isinstance(raws, list)
        or not isinstance(folders, list)
        or not folders
        or not all(isinstance(f, str) and f.startswith("/") for f in folders)
        or not isinstance(primary, bool)
    ):
        _note(ignored, path, "the journal itself: not one this tool writes")
        return None
    rows = []
    for raw in raws:
        row = _row(raw, folder, prefix)
        if row is not None:
            rows.append(row)
            continue
        named = [raw.get(k) for k in ("final", "staged", "backup")] if isinstance(raw, dict) else []
        for value in [v for v in named if isinstance(v, str)] or [repr(raw)[:60]]:
            _note(ignored, path, value)
    return _Journal(path, tuple(map(Path, folders)), primary, tuple(rows))


def _undo(j: _Journal) -> None:
    """Put each target of one folder's journal back as it was before the commit."""
    folder = j.path.parent
    for row in reversed(j.rows):
        final = folder / row.final
        backup = None if row.backup is None else folder / row.backup
        kept = None if backup is None else _lstat_quiet(backup)
        if (
            kept is not None
            and stat.S_ISREG(kept.st_mode)
            and (kept.st_ino == row.old_ino or (row.old_ino is None and _is_ours(kept)))
        ):
            os.replace(backup, final)  # type: ignore[arg-type]
        elif row.ino is not None:
            now = _lstat_quiet(final)
            if now is not None and _is_ours(now) and now.st_ino == row.ino:  # the new entry
                _remove(final)
        if row.staged is not None:
            left = _lstat_quiet(folder / row.staged)
            if left is not None and _is_ours(left):
                _remove(folder / row.staged)


def _lstat_quiet(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _unlink_ours(path: Path) -> None:
    if _our_file(path) is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _roll_back(primary: Path, ignored: Ignored) -> None:
    """Undo the commit whose primary journal is `primary`, in every folder it wrote in; the
    primary journal goes last, so that a rollback cut short is taken up again."""
    j = _read_journal(primary, ignored)
    if j is None or not j.primary:
        _unlink_ours(primary)
        return
    for folder in j.folders[1:]:
        sibling = folder / primary.name
        other = _read_journal(sibling, ignored)
        if other is not None and not other.primary and other.folders == j.folders:
            _undo(other)
        if sibling != primary:
            _unlink_ours(sibling)
    _undo(j)
    _unlink_ours(primary)


def _recover(journal: Path, ignored: Ignored) -> None:
    """Finish a dead writer's commit: roll it back while its primary journal exists (it may be
    in another of the commit's folders, under the same name); else it was complete."""
    j = _read_journal(journal, ignored)
    if j is None:
        return
    name = journal.name
    head = j if j.primary else _read_journal(j.folders[0] / name, ignored)
    if head is not None and (not head.primary or head.folders != j.folders):
        head = None
    members = [journal] if head is None else [head.path, *(f / name for f in head.folders[1:])]
    folders = [m.parent for m in members if m == journal or _our_file(m) is not None]
    with _interrupts_deferred(), _locked(folders):
        if _our_file(journal) is None:
            return  # another writer finished it meanwhile
        if head is None:
            _unlink_ours(journal)  # complete: its backups go with the other temp files
        else:
            _roll_back(head.path, ignored)


def _write_bytes(path: Path, data: bytes, mode: int = 0o666, sync: bool = True) -> None:
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


def _finish_file(path: Path, sync: bool, mode: int) -> None:
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


def _syncfs(folders: Sequence[Path]) -> bool:
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


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Staging:
    """Where a command writes its outputs before the commit."""

    def __init__(self, outputs: OutputSet) -> None:
        self._files: dict[Path, Path] = {}
        self._dirs: dict[Path, Path] = {}
        for e in outputs.entries:
            if e.staged is None:
                continue
            index = self._files if e.kind == "file" else self._dirs
            index[e.final] = index[e.shown] = e.staged

    def path(self, final: str | Path) -> Path:
        """The temp path standing for output `final` (a file in a new folder: inside its temp)."""
        f = Path(final)
        if f in self._files:
            return self._files[f]
        if f.parent in self._dirs:
            return self._dirs[f.parent] / f.name
        raise KeyError(f"{f} is not one of the outputs")

    def write_text(self, final: str | Path, text: str) -> None:
        """Write text (UTF-8) to output `final`'s temp path."""
        _write_bytes(self.path(final), text.encode("utf-8"), sync=False)

    def write_bytes(self, final: str | Path, data: bytes) -> None:
        """Write bytes to output `final`'s temp path."""
        _write_bytes(self.path(final), data, sync=False)


# ---------------------------------------------------------------------------------------------
# One file


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", force: bool = False) -> Iterator[IO]:
    """Open a temp file for `path`; it replaces (force) or creates `path` if the block succeeds."""
    outputs = OutputSet(force)
    final = outputs.file(path)
    with outputs.staging() as staging:
        encoding = {} if "b" in mode else {"encoding": "utf-8"}
        with open(staging.path(final), mode.replace("w", "x"), **encoding) as fh:
            yield fh


def atomic_write_text(path: str | Path, text: str, force: bool = False) -> Path:
    """Write text to `path` atomically and exclusively (unless force)."""
    with atomic_open(path, "w", force) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_with(path: str | Path, writer: Callable[[str], None], force: bool = False) -> Path:
    """Let `writer(tmp_path)` write a file (e.g. torch.save), then move it onto `path`."""
    outputs = OutputSet(force)
    final = outputs.file(path)
    with outputs.staging() as staging:
        call_writer(writer, staging.path(final), Path(path))
    return Path(path)


def call_writer(writer: Callable[[str], None], tmp: Path, shown: Path) -> None:
    """Run a library's writer; its failures (OSError or its own error types) become one line."""
    try:
        writer(str(tmp))
    except (OSError, RuntimeError, ValueError) as exc:
        raise write_error(shown, exc) from None
    except Exception as exc:  # e.g. safetensors' SafetensorError: a write failure all the same
        if type(exc).__name__ in ("SafetensorError",):
            raise write_error(shown, exc) from None
        raise
