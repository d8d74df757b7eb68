"""Commit journals: what one names, how a dead writer's commit is rolled back, and the stale
temp files the next writer in a folder removes.

An output made of several files is committed under journals, one in each folder it writes in:
a writer killed in the middle leaves them, and the next writer in any of those folders rolls
the targets back to their previous state. A journal is obeyed only within its own folder, for
the temp files of its own commit, and only when this user owns it. Temp files of processes
that no longer exist are removed by the next writer in the folder (`find . -name
'.regnet-space-tmp-*'` lists them meanwhile).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import TMP_PREFIX, is_ours, remove_path
from .errors import OutputError, RegNetSpaceError
from .locks import interrupts_deferred, locked
from .parsing import parse_json
from .reading import open_regular
from .text import clean

COMMIT_JOURNAL = "commit.journal"
_MAX_BOOKKEEPING = 64 << 20  # bytes of a manifest or journal (a million file names)


def read_bookkeeping(path: Path) -> Any:
    """A manifest or journal: a regular file (a FIFO must not block), bounded, safe JSON."""
    with open_regular(path, "JSON", error=OutputError) as fh:
        raw = fh.read(_MAX_BOOKKEEPING + 1)
    if len(raw) > _MAX_BOOKKEEPING:
        raise OutputError(f"{path}: too large")
    return parse_json(raw.decode("utf-8"), str(path), error=OutputError)


def journal_row(final: Path, staged: Path | None, backup: Path | None) -> dict[str, object]:
    """One target as its journal names it: file names in the journal's folder, and the inodes
    that tell our own files from others (the staged file, the file a backup keeps)."""
    staged_ino = old_ino = None
    if staged is not None and staged.exists():
        staged_ino = staged.lstat().st_ino
    if backup is not None:
        old_ino = final.lstat().st_ino
    return {
        "final": final.name,
        "staged": None if staged is None else staged.name,
        "backup": None if backup is None else backup.name,
        "ino": staged_ino,
        "old_ino": old_ino,
    }


# ---------------------------------------------------------------------------------------------
# Stale temp files


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
        if is_ours(st):
            remove_path(e)
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
# Recovery


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
    if not (name.startswith(TMP_PREFIX) and name.endswith("-" + COMMIT_JOURNAL)):
        return None
    prefix = name[: -len(COMMIT_JOURNAL)]
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
    return st if stat.S_ISREG(st.st_mode) and is_ours(st) else None


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
    if not is_ours(st):
        _note(ignored, path, "the journal itself: another user's file")
        return None
    try:
        data = read_bookkeeping(path)
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
            and (kept.st_ino == row.old_ino or (row.old_ino is None and is_ours(kept)))
        ):
            os.replace(backup, final)  # type: ignore[arg-type]
        elif row.ino is not None:
            now = _lstat_quiet(final)
            if now is not None and is_ours(now) and now.st_ino == row.ino:  # the new entry
                remove_path(final)
        if row.staged is not None:
            left = _lstat_quiet(folder / row.staged)
            if left is not None and is_ours(left):
                remove_path(folder / row.staged)


def _lstat_quiet(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _unlink_ours(path: Path) -> None:
    if _our_file(path) is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def roll_back(primary: Path, ignored: Ignored) -> None:
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
    with interrupts_deferred(), locked(folders):
        if _our_file(journal) is None:
            return  # another writer finished it meanwhile
        if head is None:
            _unlink_ours(journal)  # complete: its backups go with the other temp files
        else:
            roll_back(head.path, ignored)
