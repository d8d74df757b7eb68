"""Shared pieces of the study tests: a tiny real design space and study files on digits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# A real RegNet space small enough to train in a second on one core at 16 px (shared with
# benchmarks/bench_study.py).
TINY_SPACE: dict[str, Any] = yaml.safe_load((ROOT / "tests/data/spaces/tiny.yaml").read_text())

TINY_RECIPE: dict[str, Any] = {
    "name": "tiny",
    "epochs": 1,
    "batch_size": 64,
    "base_lr": 0.4,
    "train_size": 16,
    "test_size": 16,
}


def study_dict(**overrides: Any) -> dict[str, Any]:
    """A 4-trial, 1-epoch digits study of the tiny space (local, 2 workers, 1 thread each)."""
    base: dict[str, Any] = {
        "name": "tiny-digits",
        "space": TINY_SPACE,
        "n": 4,
        "seed": 0,
        "recipe": TINY_RECIPE,
        "data": {"name": "digits"},
        "executor": {"kind": "local", "workers": 2, "threads": 1},
        "retries": 1,
    }
    base.update(overrides)
    return base


def write_study(path: Path, **overrides: Any) -> Path:
    """Write a study file (YAML) and return its path."""
    path.write_text(yaml.safe_dump(study_dict(**overrides), sort_keys=False))
    return path


def cli_env() -> dict[str, str]:
    """Environment for a `python -m regnet_space` subprocess using this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*argv: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "regnet_space", *argv],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the real command line in a subprocess (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "regnet_space", *argv],
        cwd=cwd,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(check: Any, limit: float, what: str, proc: Any = None) -> Any:
    """Poll `check()` every 10 ms until it returns something true; fail after `limit` s (or
    when `proc` has exited first)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"exited ({proc.returncode}) before {what}: {err}")
        time.sleep(0.01)
    raise AssertionError(f"no {what} within {limit} s")


def metrics_lines(folder: Path) -> list[str]:
    """A run folder's metrics.jsonl lines (none yet: [])."""
    try:
        return (folder / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []


def holder_pid(folder: Path) -> int:
    """The pid recorded in a run folder's lock by the process training into it."""
    return int(json.loads((folder / ".regnet-space-lock").read_text())["pid"])


def status_json(db: Path) -> dict[str, Any]:
    """`study status --json` of a database, from a subprocess."""
    proc = run_cli("study", "status", str(db), "--json", cwd=db.parent)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def pid_alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def in_read_only_mount(tmp: Path, script: str, setup: str = "true") -> subprocess.CompletedProcess:
    """Run a shell script with MNT a read-only tmpfs in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a mount namespace here")
    mnt = tmp / "mnt"
    mnt.mkdir()
    body = (
        f"set -e; export MNT={mnt}; mount -t tmpfs -o size=8m none {mnt}; {setup}; "
        f"mount -o remount,ro {mnt}; {script}"
    )
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", body],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
