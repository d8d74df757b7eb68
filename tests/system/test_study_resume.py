"""Trials survive their interruption: kill -9 of the driver or of a worker at a real moment
(a trial in its third of five epochs), then a rerun or a retry; the trial resumes from its
last finished epoch in its run folder and ends exactly as the same study run without
interruption (CPU, one thread a trial)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from study_helpers import (
    TINY_RECIPE,
    holder_pid,
    metrics_lines,
    pid_alive,
    run_cli,
    start_cli,
    status_json,
    wait_until,
    write_study,
)

from regnet_space.analysis.studydb import read_study_db

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")

# Two designs of five epochs on two workers, one thread each; a failed attempt is retried once.
RESUME: dict[str, Any] = {"n": 2, "recipe": {**TINY_RECIPE, "epochs": 5}}


def _curve(trial: Any) -> list[tuple[float, float]]:
    return [(m["train_loss"], m["test_error"]) for m in trial.curve]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Any]:
    """The study run without interruption: each trial's error and curve."""
    folder = tmp_path_factory.mktemp("reference")
    study = write_study(folder / "r.yaml", **RESUME)
    proc = run_cli("study", "run", str(study), "--db", str(folder / "r.db"), cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return {t.id: t for t in read_study_db(folder / "r.db").trials}


def _in_third_epoch(folder: Path, proc: Any) -> list[str]:
    """Wait until trial 0 has finished exactly two epochs (it trains its third); its lines."""
    lines = wait_until(lambda: len(metrics_lines(folder)) >= 2 and metrics_lines(folder),
                       240, "trial 0's second epoch", proc)  # fmt: skip
    assert len(lines) == 2, "the third epoch ended before the kill"
    return lines


def _same_as_reference(db: Path, reference: dict[int, Any]) -> None:
    for t in read_study_db(db).trials:
        assert t.state == "done"
        assert t.error == reference[t.id].error
        assert _curve(t) == _curve(reference[t.id])


def test_driver_killed_in_a_third_epoch_resumes_there(
    tmp_path: Path, reference: dict[int, Any]
) -> None:
    study = write_study(tmp_path / "r.yaml", **RESUME)
    db, trial = tmp_path / "r.db", tmp_path / "r.runs" / "trial-00000"
    driver = start_cli("study", "run", str(study), "--db", str(db), cwd=tmp_path)
    try:
        before = _in_third_epoch(trial, driver)
        worker = holder_pid(trial)
        os.kill(driver.pid, signal.SIGKILL)
        driver.communicate()
    finally:
        if driver.poll() is None:
            driver.kill()
    # The kernel ends the workers with their driver: the third epoch never finishes.
    wait_until(lambda: not pid_alive(worker), 30, "the worker's end")
    assert torch.load(trial / "checkpoint.pt", weights_only=True)["epoch"] == 2
    st = status_json(db)
    assert st["driver"] is None and st["running"] == 0 and st["live"] == []
    # Trial 0 was interrupted; under load trial 1 may still wait for its worker, or be done.
    assert st["interrupted"] >= 1 and st["interrupted"] + st["pending"] + st["done"] == 2
    left = st["interrupted"] + st["pending"]

    proc = run_cli("study", "run", str(study), "--db", str(db), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["attempts"] == left
    after = metrics_lines(trial)
    assert [json.loads(line)["epoch"] for line in after] == [1, 2, 3, 4, 5]
    assert after[:2] == before  # epochs 1 and 2 as the killed run wrote them: resumed at 3
    _same_as_reference(db, reference)
    assert all(t.attempts == 1 for t in read_study_db(db).trials)  # an interruption is no attempt
    assert not (trial / "checkpoint.pt").exists()  # a finished trial keeps no checkpoint


def test_a_worker_killed_mid_trial_resumes_from_its_checkpoint(
    tmp_path: Path, reference: dict[int, Any]
) -> None:
    study = write_study(tmp_path / "w.yaml", **RESUME)
    db, trial = tmp_path / "w.db", tmp_path / "w.runs" / "trial-00000"
    driver = start_cli("study", "run", str(study), "--db", str(db), "--json", cwd=tmp_path)
    try:
        before = _in_third_epoch(trial, driver)
        os.kill(holder_pid(trial), signal.SIGKILL)  # the worker training trial 0
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err
    assert json.loads(out)["attempts"] == 3  # trial 0 twice, trial 1 once
    after = metrics_lines(trial)
    assert [json.loads(line)["epoch"] for line in after] == [1, 2, 3, 4, 5]
    assert after[:2] == before
    _same_as_reference(db, reference)
    st = status_json(db)
    (retried,) = st["retried"]
    assert (retried["id"], retried["state"], retried["attempts"]) == (0, "done", 2)
    message = "worker process died: killed by signal 9 (out of memory?)"
    assert [h["message"] for h in retried["history"]] == [message]
    text = run_cli("study", "status", str(db), cwd=tmp_path).stdout
    assert f"retried: trial 0 (done after 2 attempt(s))\n  attempt 1: {message}" in text
