"""A study's storage folder: one run folder per trial, the Ray log, and what it keeps.

    <storage>/study.json        which study database the folder belongs to
    <storage>/trial-00012/      trial 12's run folder (the format of `regnet-space train -o`)
    <storage>/ray.log           Ray's own output during `study run --executor ray`

The database decides what runs; a run folder only carries a trial's epochs across attempts
(and its final weights, as many as `keep` says). No torch here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from ..infra.atomic import TMP_PREFIX
from ..infra.outputs import atomic_write_text
from ..infra.paths import check_folder
from .errors import StudyError
from .runfolder import RunFiles, read_json_file

MARKER = "study.json"
RAY_LOG = "ray.log"


def trial_folder(storage: Path, trial_id: int) -> Path:
    """Trial `trial_id`'s run folder."""
    return storage / f"trial-{trial_id:05d}"


def prepare_storage(storage: Path, study_id: str, name: str) -> bool:
    """Create the storage folder, or check it: it must be this study's (its marker names the
    same study id), or a new or empty folder. True when this call marked it as the study's
    (remove_new_storage undoes that)."""
    check_folder(storage, force=True, shared=True)  # a folder, writable, or a new one
    marker = storage / MARKER
    if marker.exists():
        data = read_json_file(marker, "storage marker", 1 << 16)
        if not isinstance(data, dict) or data.get("study_id") != study_id:
            other = data.get("name", "?") if isinstance(data, dict) else "?"
            raise StudyError(
                f"{storage}: holds the runs of another study database ({other!r}); "
                "set `storage` in the study file or use another --db"
            )
        return False
    # `study run --executor ray` opens its log there before the run is checked.
    names = os.listdir(storage) if storage.exists() else []
    if any(n != RAY_LOG and not n.startswith(TMP_PREFIX) for n in names):
        raise StudyError(
            f"{storage}: exists and is not a study's storage folder (no {MARKER}); "
            "set `storage` in the study file to a new or empty folder"
        )
    storage.mkdir(exist_ok=True)
    text = json.dumps({"written_by": "regnet-space", "study_id": study_id, "name": name})
    atomic_write_text(marker, text + "\n", force=True)
    return True


def remove_new_storage(storage: Path) -> None:
    """Undo prepare_storage (a run refused before it started): the marker, and the folder
    when nothing else is in it."""
    with contextlib.suppress(OSError):
        (storage / MARKER).unlink()
        storage.rmdir()


def drop_weights(folders: Iterable[Path]) -> None:
    """Remove the final weights of these run folders (a trial no longer among those kept)."""
    for folder in folders:
        files = RunFiles(folder)
        for path in (files.weights(True), files.weights(False)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# ---------------------------------------------------------------------------------------------
# Probing a shared storage from every node


def probe_name(token: str, who: str) -> str:
    """A probe file's name: our temp prefix, so the next writer removes it if left behind."""
    return f"{TMP_PREFIX}{os.getpid()}-{token}-probe-{who}"


def write_driver_probe(storage: Path) -> tuple[str, Path]:
    """The driver's probe: a file with a random token every node must read back."""
    token = secrets.token_hex(8)
    path = storage / probe_name(token, "driver")
    path.write_text(token)
    return token, path


def node_probe(storage: str, driver_file: str, token: str, node: str) -> str | None:
    """Run on a node: read the driver's probe, write one back; None, or why it cannot."""
    try:
        if Path(driver_file).read_text() != token:
            return "reads another file at that path"
        Path(driver_file).with_name(Path(driver_file).name + f"-{node}").write_text(node)
    except OSError as exc:
        return f"cannot use it ({(exc.strerror or str(exc)).lower()})"
    return None


def check_node_probe(driver_file: Path, node: str) -> str | None:
    """After a node's probe: the driver reads what the node wrote (None when it did)."""
    back = driver_file.with_name(driver_file.name + f"-{node}")
    try:
        ok = back.read_text() == node
    except OSError:
        ok = False
    with contextlib.suppress(OSError):
        back.unlink()
    return None if ok else "writes files the driver cannot see"
