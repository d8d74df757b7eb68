"""The README (issue 11, item 10): what `.ci/run` does, and speed figures from the benchmarks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_says_what_ci_run_does() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    said = " ".join(README[README.index("`.ci/run`") :].split("\n\n")[0].split())
    # Every tool the CI job runs is named where the README describes it.
    for step in ("ruff check", "ruff format --check", "lint-imports", "tests/system/test_peers.py"):
        assert step in ci and step in said, step
    assert "exactly these two commands" not in README


def test_speed_claims_name_their_benchmark() -> None:
    # A sentence with a speed figure (per second, s for N, ...) names the benchmark it came from.
    for paragraph in README.split("\n\n"):
        flat = " ".join(paragraph.split())
        if re.search(r"(designs/s|per second|\d s for|microseconds)", flat):
            assert "benchmarks/bench_" in flat, flat[:120]
