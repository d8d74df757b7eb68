"""Shared pieces of the study tests: a tiny real design space and study files on digits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
