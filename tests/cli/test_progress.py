"""Progress (issue 11, item 8): an ETA line on a terminal, nothing in a pipe.

The terminal is a real pseudo-terminal (the `pty` module): the command's stderr is its slave
end, and what the command wrote is read back from the master end.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import TINY

from regnet_space.cli.progress import Progress


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the slave end is closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def on_terminal(*argv: str, cwd: Path) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal; (status, stdout, terminal text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "regnet_space", *argv],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
    os.close(slave)
    terminal = _read_all(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    os.close(master)
    return proc.wait(timeout=300), out, terminal


def in_pipe(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "regnet_space", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def specs(tmp_path: Path) -> list[str]:
    names = []
    for i in range(3):
        path = tmp_path / f"t{i}.yaml"
        path.write_text(TINY.replace("depth: 3", f"depth: {3 + i}"))
        names.append(str(path))
    return names


def test_report_counter_torch_shows_count_and_eta_on_a_terminal_only(
    specs: list[str], tmp_path: Path
) -> None:
    status, out, terminal = on_terminal("report", *specs, "--counter", "torch", cwd=tmp_path)
    assert status == 0 and "3/3 agree" in out
    assert "report --counter torch: 1/3" in terminal and "ETA" in terminal
    assert terminal.rstrip("\r\n").endswith("\x1b[K")  # the line is erased at the end
    piped = in_pipe("report", *specs, "--counter", "torch", cwd=tmp_path)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == out


def test_sample_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    argv = ("sample", "regnety", "-n", "20", "-o", "s.jsonl")
    status, _, terminal = on_terminal(*argv, cwd=tmp_path)
    assert status == 0 and "\rsample: " in terminal and "/20 designs" in terminal
    (tmp_path / "s.jsonl").unlink()
    piped = in_pipe(*argv, cwd=tmp_path)
    assert piped.returncode == 0 and "\r" not in piped.stderr and "/20 designs" not in piped.stderr
    assert piped.stderr.startswith("sample: 20 designs from RegNetY")


def test_build_verify_names_its_steps_on_a_terminal(specs: list[str], tmp_path: Path) -> None:
    status, out, terminal = on_terminal("build", specs[0], "--verify", cwd=tmp_path)
    assert status == 0 and "OK, exact" in out
    assert "build: cross-checking the counts with fvcore" in terminal
    piped = in_pipe("build", specs[0], cwd=tmp_path)  # its steps, without the slow one
    assert piped.returncode == 0 and piped.stderr == ""


def test_progress_eta_on_a_real_terminal() -> None:
    master, slave = pty.openpty()
    with os.fdopen(slave, "w", encoding="utf-8") as stream:
        bar = Progress("job", total=4, stream=stream)
        bar.update(1)
        bar.done()
    text = _read_all(master)
    os.close(master)
    assert text.startswith("\rjob: 1/4, ") and ", ETA " in text and text.endswith("\r\x1b[K")


def test_progress_is_silent_off_a_terminal(tmp_path: Path) -> None:
    with (tmp_path / "log").open("w") as stream:
        bar = Progress("job", total=4, stream=stream)
        bar.update(1)
        bar.step("working")
        bar.done()
    assert (tmp_path / "log").read_text() == ""


def test_export_names_its_steps_on_a_terminal(specs: list[str], tmp_path: Path) -> None:
    status, out, terminal = on_terminal("export", specs[0], "-o", "t.pt2", cwd=tmp_path)
    assert status == 0 and "exported t.pt2 (pt2" in out
    assert "export: exporting to pt2" in terminal and "export: checking the outputs" in terminal
    (tmp_path / "t.pt2").unlink()
    piped = in_pipe("export", specs[0], "-o", "t.pt2", "--no-check", cwd=tmp_path)
    assert piped.returncode == 0 and piped.stderr == ""
