"""`study best`: the best trials' spec, recipe, weights and result out of a study, whole.

K = 1 writes the four files into DIR; K > 1 one folder per trial (`1-trial-00012/`, ...);
DIR/best.json lists what was written (rank, trial, error, files). All-or-nothing like every
multi-file output: a killed run leaves DIR as it was (or absent). No torch.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.studydb import StudyDbError, connect_readonly, read_meta
from ..infra.outputs import MANIFEST, OutputSet, Staging
from ..infra.paths import check_folder
from .errors import StudyError
from .monitor import best_trials
from .runfolder import RunFiles, read_json_file, read_result
from .storage import trial_folder

FILES = ("spec.yaml", "recipe.yaml", "model.safetensors", "result.json")
INDEX = "best.json"


@dataclass(frozen=True)
class BestTrial:
    """One trial to copy out: its rank, id, error, run folder and the folder it goes to."""

    rank: int
    id: int
    name: str
    error: float
    source: Path
    sub: str  # "" for K = 1 (the files go into DIR itself)

    def as_dict(self) -> dict[str, Any]:
        files = [f"{self.sub}/{f}" if self.sub else f for f in FILES]
        return {"rank": self.rank, "id": self.id, "name": self.name, "error": self.error,
                "run_folder": str(self.source), "files": files}  # fmt: skip


def find_best(db_path: Path, top: int, storage: Path | None) -> list[BestTrial]:
    """The best `top` finished trials and their run folders, checked against the database."""
    con = connect_readonly(db_path)
    try:
        meta = read_meta(con, str(db_path))
        rows = best_trials(con, top)
    except sqlite3.DatabaseError as exc:
        raise StudyDbError(f"{db_path}: cannot read the study database: {exc}") from None
    finally:
        con.close()
    if not rows:
        raise StudyError(f"{db_path}: no finished trials yet")
    if storage is None:
        if not meta.get("storage"):
            raise StudyError(f"{db_path}: records no storage folder (give it with --storage)")
        storage = Path(meta["storage"])
    out = []
    for rank, row in enumerate(rows, 1):
        sub = "" if top == 1 else f"{rank}-trial-{row['id']:05d}"
        folder = trial_folder(storage, row["id"])
        out.append(BestTrial(rank, row["id"], row["name"], row["error"], folder, sub))
        _check_source(out[-1], meta.get("keep", "?"))
    return out


def _check_source(t: BestTrial, keep: str) -> None:
    files = RunFiles(t.source)
    if not files.weights(True).is_file():
        raise StudyError(
            f"trial {t.id}: no model.safetensors in {t.source} (the study keeps the weights of "
            f"`keep: {keep}`; rerun the trial or raise keep)"
        )
    result = read_result(files)
    if result.error != t.error:
        raise StudyError(
            f"{files.result}: error {result.error} disagrees with the database's {t.error}"
        )
    for name in FILES:
        if not (t.source / name).is_file():
            raise StudyError(f"{t.source / name}: missing")


def write_best(best: list[BestTrial], out: Path, force: bool) -> None:
    """Copy the trials' files into `out`, committed together (or nothing)."""
    final = check_folder(out, force)
    outputs = OutputSet(force)
    flat = len(best) == 1 and best[0].sub == ""
    new = not final.exists()
    index = [t.as_dict() for t in best]
    wanted = {f for t in index for f in t["files"]} | {INDEX}
    if new:
        names = [*FILES, INDEX] if flat else [*(t.sub for t in best), INDEX]
        outputs.folder(out, names)
    else:
        if flat:
            outputs.folder(out, [*FILES, INDEX])
        else:
            for t in best:
                outputs.folder(out / t.sub, list(FILES))
            outputs.file(out / INDEX)
        previous = _previous(final)
        for rel in previous - wanted:
            if (final / rel).is_file():
                outputs.remove(final / rel)
    with outputs.staging() as staging:
        for t in best:
            _copy(staging, out, t, new)
        staging.write_text(out / INDEX, json.dumps({"trials": index}, indent=2) + "\n")
    if not new:
        stale = {Path(r).parts[0] for r in previous if len(Path(r).parts) == 2}
        _tidy(final, stale - {t.sub for t in best})


def _copy(staging: Staging, out: Path, t: BestTrial, new: bool) -> None:
    if t.sub and new:
        staged_dir = staging.path(out / t.sub)
        staged_dir.mkdir()
        for name in FILES:
            shutil.copyfile(t.source / name, staged_dir / name)
        return
    target = out / t.sub if t.sub else out
    for name in FILES:
        shutil.copyfile(t.source / name, staging.path(target / name))


def _previous(folder: Path) -> set[str]:
    """The files an earlier `study best` wrote in `folder` (its best.json), with each
    subfolder's manifest."""
    try:
        data = read_json_file(folder / INDEX, "best.json", 1 << 24)
        rels = {f for t in data["trials"] for f in t["files"] if isinstance(f, str)}
    except (StudyError, KeyError, TypeError):
        return set()
    safe = {r for r in rels if ".." not in Path(r).parts and not Path(r).is_absolute()}
    subs = {Path(r).parts[0] for r in safe if len(Path(r).parts) == 2}
    return safe | {f"{s}/{MANIFEST}" for s in subs}


def _tidy(folder: Path, stale: set[str]) -> None:
    """Remove an earlier result's subfolders this one emptied."""
    for name in stale:
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            with contextlib.suppress(OSError):
                entry.rmdir()  # only when empty: anything else in it stays
