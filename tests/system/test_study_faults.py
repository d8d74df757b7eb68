"""Study faults: a trial past its time limit, a database path that is a FIFO or on a
read-only mount, a build of the database killed halfway, damaged rows, storage folders and
run folders that are not the study's (each one line, exit 2, or a failed trial)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from study_helpers import (
    TINY_RECIPE,
    in_read_only_mount,
    metrics_lines,
    run_cli,
    start_cli,
    wait_until,
    write_study,
)

from regnet_space.infra.atomic import TMP_PREFIX
from regnet_space.study.monitor import read_status

FAST: dict[str, Any] = {
    "n": 1,
    "recipe": {**TINY_RECIPE, "train_size": 8, "test_size": 8, "batch_size": 128},
    "executor": {"kind": "local", "workers": 1, "threads": 1},
}


def _one_line(proc: Any, code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_a_trial_past_its_time_limit_fails_is_retried_and_resumes(tmp_path: Path) -> None:
    recipe = {**FAST["recipe"], "epochs": 10_000}  # never ends within the limit
    # 30 s an attempt: a loaded machine still finishes an epoch of it, so that the retry has a
    # checkpoint to go on from.
    study = write_study(tmp_path / "t.yaml", **FAST | {"recipe": recipe, "trial_timeout": 0.5})
    db, trial = tmp_path / "t.db", tmp_path / "t.runs" / "trial-00000"
    driver = start_cli("study", "run", str(study), "--db", str(db), "--json", cwd=tmp_path)
    try:

        def first_timeout() -> list[str] | None:
            st = read_status(db, 1) if db.exists() else None
            # The lines (possibly none yet) in a tuple: the moment is seen even without them.
            return (metrics_lines(trial),) if st and st["retried"] + st["failures"] else None

        (snapshot,) = wait_until(first_timeout, 240, "the first timeout", driver)
        out, err = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, err
    assert json.loads(out)["failed"] == 1
    (failure,) = read_status(db, 1)["failures"]
    message = "trial timed out after 0.5 minutes (trial_timeout)"
    assert failure["attempts"] == 2 and failure["message"] == message
    assert [h["message"] for h in failure["history"]] == [message, message]
    final = metrics_lines(trial)
    assert snapshot and final[: len(snapshot)] == snapshot  # the retry went on from there
    assert [json.loads(line)["epoch"] for line in final] == list(range(1, len(final) + 1))


def test_a_fifo_as_the_database_is_one_line(tmp_path: Path) -> None:
    study = write_study(tmp_path / "f.yaml", **FAST)
    os.mkfifo(tmp_path / "f.db")
    err = _one_line(run_cli("study", "run", str(study), "--db", "f.db", cwd=tmp_path, timeout=60))
    assert "f.db: is a FIFO" in err


def test_a_database_on_a_read_only_mount_is_one_line(tmp_path: Path) -> None:
    study = write_study(tmp_path / "r.yaml", **FAST)
    py = f"{sys.executable} -m regnet_space study run {study}"
    (tmp_path / "new").mkdir()
    err = _one_line(in_read_only_mount(tmp_path / "new", f"{py} --db $MNT/r.db"))
    assert "read-only file system" in err
    # An existing database there: made on the mount before it becomes read-only.
    (tmp_path / "old").mkdir()
    made = f"{py} --db $MNT/r.db --quiet"
    err = _one_line(in_read_only_mount(tmp_path / "old", f"{py} --db $MNT/r.db", made))
    assert "read-only file system" in err


def test_a_database_build_killed_halfway_is_removed_by_the_next_writer(tmp_path: Path) -> None:
    # A study large enough that building its database takes a moment.
    space = Path(__file__).resolve().parents[2] / "specs/spaces/regnetx-cifar.yaml"
    study = write_study(tmp_path / "big.yaml", **FAST | {"n": 20_000, "space": str(space)})
    building = ("-big.db", "-big.db-journal", "-big.db-wal")  # ours; `.big.db.` was tempfile's
    seen = False
    for _ in range(5):
        proc = start_cli("study", "run", str(study), "--db", "big.db", cwd=tmp_path)
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            names = os.listdir(tmp_path)
            if any(n.endswith(building) or n.startswith(".big.db.") for n in names):
                proc.send_signal(signal.SIGKILL)  # while the database is being built
                seen = True
                break
            time.sleep(0.001)
        proc.communicate()
        if seen:
            break
        (tmp_path / "big.db").unlink(missing_ok=True)
    assert seen and not (tmp_path / "big.db").exists()
    left = [n for n in os.listdir(tmp_path) if n.startswith((TMP_PREFIX, ".big.db."))]
    assert left  # the killed build's files, for now
    small = write_study(tmp_path / "small.yaml", **FAST)
    proc = run_cli("study", "run", str(small), "--db", "small.db", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not [n for n in os.listdir(tmp_path) if n.startswith((TMP_PREFIX, ".big.db."))]


@pytest.mark.parametrize("column", ["record", "spec", "recipe"])
def test_a_damaged_trial_row_is_one_line(tmp_path: Path, column: str) -> None:
    study = write_study(tmp_path / "d.yaml", **FAST | {"n": 2})
    db = tmp_path / "d.db"
    proc = run_cli("study", "run", str(study), "--db", str(db), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0
    con = sqlite3.connect(db)
    # Trial 1 damaged, and to run again.
    con.execute(f"UPDATE trials SET {column} = '{{not json', state = 'pending' WHERE id = 1")
    con.commit()
    con.close()
    argv = ("study", "run", str(study), "--db", str(db), "--quiet")
    err = _one_line(run_cli(*argv, cwd=tmp_path))
    assert f"damaged study database: trial 1's {column}" in err


def test_storage_of_another_study_or_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    study = write_study(tmp_path / "s.yaml", **FAST)
    proc = run_cli("study", "run", str(study), "--db", "a.db", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shared = write_study(tmp_path / "o.yaml", **FAST | {"storage": "a.runs"})
    err = _one_line(run_cli("study", "run", str(shared), "--db", "b.db", cwd=tmp_path))
    assert "a.runs: holds the runs of another study database" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    foreign = write_study(tmp_path / "p.yaml", **FAST | {"storage": "mine"})
    err = _one_line(run_cli("study", "run", str(foreign), "--db", "c.db", cwd=tmp_path))
    assert "mine: exists and is not a study's storage folder" in err
    assert not (tmp_path / "b.db").exists() and not (tmp_path / "c.db").exists()


def test_a_run_folder_of_another_run_fails_its_trial(tmp_path: Path) -> None:
    """The database decides: a run folder holding another design is never reused."""
    study = write_study(tmp_path / "s.yaml", **FAST | {"n": 2, "retries": 0})
    proc = run_cli("study", "run", str(study), "--db", "a.db", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0
    runs = tmp_path / "a.runs"
    # Trial 1's folder now holds trial 0's run, and trial 1 is to run again.
    (runs / "trial-00001" / "run.json").write_bytes((runs / "trial-00000/run.json").read_bytes())
    con = sqlite3.connect(tmp_path / "a.db")
    con.execute("UPDATE trials SET state = 'pending', attempts = 0 WHERE id = 1")
    con.commit()
    con.close()
    proc = run_cli("study", "run", str(study), "--db", "a.db", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1
    (failure,) = read_status(tmp_path / "a.db", 1)["failures"]
    assert failure["id"] == 1
    assert "holds a run of another spec, recipe or data" in failure["message"]
