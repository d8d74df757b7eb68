"""Outputs of a command: checked before any work, created exclusively, committed whole or not
at all.

Without `force` each file appears only where none was (of two writers racing for one name
exactly one wins, the other fails with one line); with `force` the last complete result
replaces the previous one whole. An output made of several files (weights + resolved spec,
records + a folder of specs, an HTML report with its pictures) is committed under journals
(`journal`), one in each folder it writes in, so that a writer killed in the middle leaves
the previous state or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .atomic import (
    TMP_PREFIX,
    finish_file,
    fsync_dir,
    move_new,
    reason,
    remove_path,
    syncfs,
    tmp_name,
    umask_mode,
    write_error,
    write_new,
)
from .errors import OutputError, RegNetSpaceError
from .journal import COMMIT_JOURNAL, journal_row, read_bookkeeping, roll_back
from .locks import interrupts_deferred, locked
from .paths import check_folder, check_target
from .text import clean

MANIFEST = ".regnet-space-manifest"


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
            finish_file(staging.path(folder / MANIFEST), sync=True, mode=mode)

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
                    e.staged = e.final.parent / tmp_name(os.getpid(), self.token, e.final.name)
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
                remove_path(e.staged)

    def _commit(self, staging: Staging) -> None:
        pid = os.getpid()
        for e in self.entries:
            if e.kind == "file" and e.optional and not _has(e):
                # Not written this time: an earlier result's file of that name goes (force).
                e.kind, e.staged = "remove", None
        staged = [e for e in self.entries if e.staged is not None]
        synced = syncfs(list(dict.fromkeys(e.final.parent for e in staged)))
        mode = umask_mode()
        for e in staged:
            if e.kind == "file":
                finish_file(e.staged, sync=not synced, mode=mode)  # type: ignore[arg-type]
            elif e.kind == "dir":
                for f in e.staged.iterdir():  # type: ignore[union-attr]
                    finish_file(f, sync=not synced, mode=mode)
        folders = list(dict.fromkeys(e.final.parent for e in self.entries))
        # Ctrl-C waits until the commit (or its rollback) is complete: never half of it.
        with interrupts_deferred(), locked(folders):
            self._earlier_results(staging, mode)
            entries = [e for e in self.entries if e.kind != "remove" or e.final.exists()]
            if not entries:
                return
            for e in entries:
                if e.kind in ("file", "remove") and e.final.exists() and (self.force or e.replace):
                    e.backup = e.final.parent / tmp_name(pid, self.token, "old-" + e.final.name)
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
        name = tmp_name(os.getpid(), self.token, COMMIT_JOURNAL)
        journals = [folder / name for folder in groups]
        listed = [str(folder) for folder in groups]
        try:
            for i, (folder, group) in enumerate(groups.items()):
                rows = [journal_row(e.final, e.staged, e.backup) for e in group]
                data = {"written_by": "regnet-space", "folders": listed, "primary": i == 0}
                write_new(folder / name, json.dumps(data | {"entries": rows}).encode(), 0o600)
            for e in entries:
                _apply(e, self.force)
        except FileExistsError as exc:
            roll_back(journals[0], {})
            raise OutputError(
                f"{clean(str(exc.filename or entries[0].shown))}: already exists "
                "(another writer created it meanwhile; use --force to overwrite)"
            ) from None
        except BaseException:
            roll_back(journals[0], {})
            raise
        for folder in groups:
            fsync_dir(folder)
        _commit_point(journals[0])
        for journal in journals[1:]:
            remove_path(journal)
        for e in entries:
            if e.backup is not None:
                remove_path(e.backup)


def _commit_point(journal: Path) -> None:
    """Delete the primary journal: from here on the new result stands."""
    os.unlink(journal)
    fsync_dir(journal.parent)


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
        raise OutputError(f"{clean(str(shown))}: cannot list: {reason(exc)}") from None
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
        data = read_bookkeeping(folder / MANIFEST)
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError, RegNetSpaceError):
        return []
    return [f for f in files if isinstance(f, str) and "/" not in f and f not in ("", ".", "..")]


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
        move_new(e.staged, e.final)


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
        write_new(self.path(final), text.encode("utf-8"), sync=False)

    def write_bytes(self, final: str | Path, data: bytes) -> None:
        """Write bytes to output `final`'s temp path."""
        write_new(self.path(final), data, sync=False)


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
