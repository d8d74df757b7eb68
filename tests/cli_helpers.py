"""Shared pieces of the command-line tests: the shipped specs and the CLI run in-process or
as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from regnet_space.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
Y040 = str(SPECS / "y040.yaml")
TINY = "name: tiny\nblock: x\ndepth: 3\nw0: 16\nwa: 8.0\nwm: 2.0\ngroup_width: 8\nnum_classes: 10\n"
SMALL = "name: tiny\nblock: y\ndepth: 4\nw0: 16\nwa: 12.0\nwm: 2.0\ngroup_width: 8\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse usage errors, --help, --version
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def cli(*argv: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m regnet_space` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "regnet_space", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def spec_file(folder: Path, name: str, text: str) -> Path:
    """folder/name holding text."""
    path = folder / name
    path.write_text(text)
    return path
