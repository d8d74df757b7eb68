"""The analysis report in a real headless Chromium: it renders (a screenshot of the right size
with the pictures' colours in it), its tables are in the DOM and its sorting script runs.

Skips where no Chromium is installed (Debian: `apt-get install chromium`; .ci/run installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from regnet_space.cli import main

ROOT = Path(__file__).resolve().parents[2]
ZOO_CSV = ROOT / "examples" / "zoo_errors.csv"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WIDTH, HEIGHT = 1280, 2400


def browser() -> str:
    found = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if found is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    return found


def run_browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One fresh headless Chromium (its own profile and home), waited for."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    argv = [browser(), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)


class _Dom(HTMLParser):
    """Tables by id (or position), and the trial table's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, str | None]] = []
        self.rows: list[list[str]] = []
        self._in_trials = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append(a)
            self._in_trials = a.get("id") == "trials"
        elif tag == "tr" and self._in_trials:
            self.rows.append([])
        elif tag == "td" and self._in_trials:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_trials = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("matplotlib")
    pytest.importorskip("scipy")
    out = tmp_path_factory.mktemp("browser") / "report"
    argv = ["analyze", str(ZOO_CSV), "-o", str(out), "--resamples", "200"]
    assert main([*argv, "--filter", "flops>1e8"]) == 0
    return out / "report.html"


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    shot = tmp_path / "shot.png"
    proc = run_browser(
        tmp_path,
        f"--window-size={WIDTH},{HEIGHT}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        report.as_uri(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with image.open(shot) as im:
        assert im.size == (WIDTH, HEIGHT)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    ink = int((rgb.min(axis=-1) < 235).sum())  # anything not (near) white
    assert ink > 0.05 * WIDTH * HEIGHT
    # The embedded pictures were decoded and drawn: both spaces' colours (matplotlib's C0 blue
    # and the report's red) appear in the EDF and complexity plots near the top.
    blue = int(((abs(r - 31) < 30) & (abs(g - 119) < 30) & (b > 150)).sum())
    red = int(((r > 180) & (g < 80) & (b < 80)).sum())
    assert blue > 500 and red > 500


def test_report_dom_has_the_tables_and_the_sort_runs(report: Path, tmp_path: Path) -> None:
    # #sort=trials:2:desc asks the page's script to sort the trial table by error, worst first.
    proc = run_browser(tmp_path, "--dump-dom", report.as_uri() + "#sort=trials:2:desc")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _Dom()
    dom.feed(proc.stdout)
    # inputs, EDF summary, pair tests, pair differences, good ranges, correlations, models
    assert len(dom.tables) == 7
    (trials,) = [t for t in dom.tables if t.get("id") == "trials"]
    assert trials.get("data-sortable") == "ready"  # the script ran in the browser
    rows = [r for r in dom.rows if r]
    assert len(rows) == 24
    errors = [float(r[2]) for r in rows]
    assert errors == sorted(errors, reverse=True) and errors[0] == 31.1
    assert {r[0] for r in rows} == {"RegNetX", "RegNetY"}
    # Unsorted, the page keeps its order: best first within each space.
    proc = run_browser(tmp_path, "--dump-dom", report.as_uri())
    plain = _Dom()
    plain.feed(proc.stdout)
    first = next(r for r in plain.rows if r)
    assert first[0] == "RegNetX" and float(first[2]) == 19.5
