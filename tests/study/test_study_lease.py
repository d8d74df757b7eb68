"""One driver per database, on any machine: the lease, live progress and what `status` says
of a driver that died (real drivers, killed with kill -9; a driver on "another machine" is a
real process in a UTS namespace of its own, with its own host name)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from study_helpers import (
    TINY_RECIPE,
    cli_env,
    run_cli,
    start_cli,
    status_json,
    wait_until,
    write_study,
)

from regnet_space.study.monitor import read_status
from regnet_space.study.tables import LEASE_SECONDS

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")

# One trial of short epochs (8 px): what it learns does not matter here, only that it runs.
LONG: dict[str, Any] = {
    "n": 1,
    "recipe": {**TINY_RECIPE, "epochs": 6, "train_size": 8, "test_size": 8, "batch_size": 128},
}


def _live(db: Path) -> dict[str, Any] | None:
    """The status (read in this process: polling) once a trial reports an epoch."""
    if not db.exists():
        return None
    st = read_status(db, 5)
    return st if st["live"] else None


def _refused(study: Path, db: Path) -> str:
    proc = run_cli("study", "run", str(study), "--db", str(db), cwd=db.parent)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "another `study run` is using this database" in proc.stderr
    return proc.stderr


def test_live_status_the_lease_and_a_takeover_after_kill_9(tmp_path: Path) -> None:
    study = write_study(tmp_path / "l.yaml", **LONG, executor={"kind": "local", "workers": 1})
    db = tmp_path / "l.db"
    holder = start_cli("study", "run", str(study), "--db", str(db), cwd=tmp_path)
    try:
        st = wait_until(lambda: _live(db), 240, "a live trial", holder)
        host = socket.gethostname()
        assert st["driver"]["pid"] == holder.pid and st["driver"]["host"] == host
        (live,) = st["live"]
        assert live["id"] == 0 and 1 <= live["epoch"] < 6 and live["epochs"] == 6
        assert 0 <= live["error"] <= 100 and live["seconds"] > 0 and live["host"] == host
        assert st["running"] == 1 and st["interrupted"] == 0
        text = run_cli("study", "status", str(db), cwd=tmp_path).stdout
        assert f"driver: pid {holder.pid} on {host}" in text and "running:" in text
        # A second driver is refused, naming the holder.
        assert f"pid {holder.pid} on {host}, since " in _refused(study, db)
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate()
    finally:
        if holder.poll() is None:
            holder.kill()
    # A dead holder on this machine holds nothing: status says so at once.
    st = status_json(db)
    assert st["driver"] is None and st["interrupted"] == 1 and st["running"] == 0
    assert st["live"] == [] and st["eta_seconds"] is None
    text = run_cli("study", "status", str(db), cwd=tmp_path).stdout
    assert "no driver; 1 trials were interrupted" in text
    # And the next run takes the database over and finishes the study.
    proc = run_cli("study", "run", str(study), "--db", str(db), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["done"] == 1
    assert status_json(db)["driver"] is None  # given back at the end


def _other_machine() -> list[str]:
    """A command prefix running a process under another host name (a UTS namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    if subprocess.run(["unshare", "-u", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a UTS namespace here")
    return ["unshare", "-u", "sh", "-c", 'hostname other-machine && exec "$@"', "sh"]


def test_a_lease_of_another_machine_expires_then_is_taken_over(tmp_path: Path) -> None:
    prefix = _other_machine()
    study = write_study(tmp_path / "x.yaml", **LONG, executor={"kind": "local", "workers": 1})
    db = tmp_path / "x.db"
    argv = [sys.executable, "-m", "regnet_space", "study", "run", str(study), "--db", str(db)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    holder = subprocess.Popen([*prefix, *argv], cwd=tmp_path, env=cli_env(), **pipes)
    try:
        st = wait_until(lambda: _live(db), 240, "a live trial", holder)
        assert st["driver"]["host"] == "other-machine"
        os.kill(holder.pid, signal.SIGKILL)  # exec'd: the driver itself
        holder.communicate()
    finally:
        if holder.poll() is None:
            holder.kill()
    killed = time.monotonic()
    # This machine cannot see whether a process of another machine lives: its lease holds
    # until its heartbeat is older than LEASE_SECONDS.
    assert "on other-machine, since " in _refused(study, db)
    st = status_json(db)
    assert st["driver"]["host"] == "other-machine" and st["running"] == 1
    wait_until(lambda: read_status(db, 1)["driver"] is None, LEASE_SECONDS + 30, "its expiry")
    assert time.monotonic() - killed < 60  # the bound
    st = status_json(db)
    assert st["interrupted"] == 1 and st["running"] == 0
    proc = run_cli("study", "run", str(study), "--db", str(db), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["done"] == 1
