"""Ctrl-C (a real SIGINT to a real process) at the moments that used to go wrong.

During start-up no traceback shows a line of this package; during a commit the command finishes
(or rolls back) the commit, then prints `regnet-space: interrupted` and exits 130; an interrupt
that lands in a weakref callback (where Python swallows it) still ends the command with 130;
after the command has returned, a Ctrl-C during Python's own shutdown changes nothing.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_helpers import COMMAND, start_command, temps

ROOT = Path(__file__).resolve().parents[2]
ZOO = str(ROOT / "examples" / "zoo_errors.csv")
SPEC = "name: mid\nblock: x\nstages:\n  - {width: 64, depth: 2, group_width: 8}\n"
INTERRUPTED = "regnet-space: interrupted\n"

# The console script pip writes for `regnet-space = regnet_space._startup:main` (a file named
# regnet-space), with an exit handler that shows when the command has returned and Python's
# shutdown has begun.
SCRIPT = """\
import re
import sys
from regnet_space._startup import main
if __name__ == '__main__':
    import atexit, time

    pause = float(sys.argv.pop())

    def shutting_down():
        sys.stderr.write("shutting down\\n")
        sys.stderr.flush()
        time.sleep(pause)

    atexit.register(shutting_down)
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def _start(*argv: str, cwd: Path, script: Path | None = None) -> subprocess.Popen[str]:
    head = (sys.executable, str(script)) if script else COMMAND
    return start_command(*argv, cwd=cwd, head=head)


def test_ctrl_c_during_start_up_shows_no_line_of_the_package(tmp_path: Path) -> None:
    # Every moment of the first 60 ms (the interpreter, then the package's imports).
    tracebacks = []
    for i in range(48):
        proc = _start("scale", "y002", "--flops-factor", "2", cwd=tmp_path)
        time.sleep(0.00125 * i)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        if "Traceback" in err or "Exception ignored" in err:
            tracebacks.append(err)  # (Python may even swallow it in importlib and go on)
        else:
            assert proc.returncode in (130, -signal.SIGINT), err
            assert err in (INTERRUPTED, ""), err
    # What Python prints of an interrupt before the command's start-up handler is in place is
    # out of the command's reach: site and .pth files, finding the package, running its root
    # (which imports nothing), loading the entry module and its main() up to the handler;
    # nothing after.
    for err in tracebacks:
        frames = [f for f in err.splitlines() if f.startswith(f'  File "{ROOT / "regnet_space"}')]
        assert set(frames) <= _BEFORE_HANDLER, err


def _frames(name: str, last: int | None = None) -> set[str]:
    """Traceback lines of module `name` of the package, from line 1 to `last` (or its end)."""
    path = ROOT / "regnet_space" / name
    lines = path.read_text().splitlines()
    return {
        f'  File "{path}", line {i}, in {scope}'
        for i in range(1, (last or len(lines)) + 1)
        for scope in ("<module>", "main")
    }


_HANDLER_LINE = next(
    i
    for i, line in enumerate((ROOT / "regnet_space" / "_startup.py").read_text().splitlines(), 1)
    if line.strip() == "_signal.signal(_signal.SIGINT, quiet_exit)"
)
_BEFORE_HANDLER = (
    _frames("__init__.py") | _frames("__main__.py") | _frames("_startup.py", _HANDLER_LINE)
)


def _blocked_on_flock(pid: int) -> bool:
    """Whether process `pid` waits for an flock (a `->` line of /proc/locks)."""
    return any(
        "->" in line and " FLOCK " in line and f" {pid} " in line
        for line in Path("/proc/locks").read_text().splitlines()
    )


COMMITS = {
    "fit -o": (["fit", "--widths", "24,56", "-o", "out/f.yaml"], ["f.yaml"]),
    "analyze -o": (["analyze", ZOO, "-o", "out/report"], ["report/report.html"]),
    "build --save": (
        ["build", "mid.yaml", "--input-size", "32", "--save", "out/w.pt"],
        ["w.pt", "w.resolved.yaml"],
    ),
    "convert -o": (
        ["convert", "w.pt", "--from", "hf", "--to", "timm", "--spec", "mid.yaml", "-o", "out/c.pt"],
        ["c.pt"],
    ),
}


@pytest.mark.parametrize("case", COMMITS)
def test_ctrl_c_during_a_commit_finishes_it_then_says_interrupted(
    tmp_path: Path, case: str
) -> None:
    argv, made = COMMITS[case]
    (tmp_path / "mid.yaml").write_text(SPEC)
    out = tmp_path / "out"
    out.mkdir()
    if case == "convert -o":
        build = _start("build", "mid.yaml", "--input-size", "32", "--save", "w.pt", cwd=tmp_path)
        assert build.wait(timeout=120) == 0
        build.communicate()
    # The commit takes the folder's lock first: holding it keeps the command there, inside
    # its commit, until the signal has arrived.
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = _start(*argv, cwd=tmp_path)
        end = time.monotonic() + 120
        while not _blocked_on_flock(proc.pid):
            assert proc.poll() is None and time.monotonic() < end, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)  # the handler has run by now (the command is still held)
        assert proc.poll() is None
    finally:
        os.close(fd)  # drops the lock: the commit goes on
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (130, INTERRUPTED)
    for name in made:  # committed whole
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert temps(tmp_path) == []


HARNESS_MPL = """\
import os, signal, sys
import matplotlib.cbook as cbook
from regnet_space.cli import main

real, done = cbook.CallbackRegistry._remove_proxy, []


def remove_proxy(self, *args, **kwargs):
    # Called by a weakref's callback: Python swallows what is raised there.
    if not done:
        done.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here, inside the callback
            pass
    return real(self, *args, **kwargs)


cbook.CallbackRegistry._remove_proxy = remove_proxy
sys.exit(main(sys.argv[1:]))
"""


def test_an_interrupt_swallowed_in_a_matplotlib_callback_still_ends_the_command(
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS_MPL)
    proc = _start("analyze", ZOO, "-o", "report", cwd=tmp_path, script=harness)
    _, err = proc.communicate(timeout=300)
    # The swallowed interrupt is noticed when the command returns: what the finished command
    # printed (analyze's small-n warning on the 12-model zoo) comes first, then the one line.
    lines = err.splitlines(keepends=True)
    assert proc.returncode == 130 and lines[-1] == INTERRUPTED, err
    assert all(line.startswith("analyze: warning: n < 100") for line in lines[:-1]), err
    report = tmp_path / "report"
    if report.exists():  # the interrupt came during the commit: complete, else nothing
        assert (report / "report.html").is_file() and (report / "results.json").is_file()
    assert temps(tmp_path) == []


def test_ctrl_c_during_pythons_shutdown_changes_nothing(tmp_path: Path) -> None:
    script = tmp_path / "regnet-space"
    script.write_text(SCRIPT)
    proc = _start("fit", "--widths", "24,56", "-o", "f.yaml", "1.0", cwd=tmp_path, script=script)
    assert proc.stderr is not None
    assert proc.stderr.readline() == "shutting down\n"  # main() has returned
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, ""), err
    assert "wrote f.yaml" in out and (tmp_path / "f.yaml").is_file()
