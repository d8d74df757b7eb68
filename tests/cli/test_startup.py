"""Start-up (issue 11): `--help`, `--version` and `import regnet_space` load no heavy package.

Times are measured by benchmarks/bench_startup.py, never asserted; what is asserted is which
modules a fresh interpreter has loaded after each command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "pydantic", "yaml", "torch", "matplotlib", "fvcore", "transformers")

PROBE = """
import json, sys
from regnet_space.cli import main
try:
    status = main(sys.argv[2:])
except SystemExit as exc:
    status = exc.code
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1].split(",")))
print(json.dumps({"status": status, "loaded": loaded}), file=sys.stderr)
"""


def _loaded(*argv: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(done.stderr.strip().splitlines()[-1])
    return int(data["status"] or 0), data["loaded"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["build", "--help"],
        ["report", "--help"],
        ["sample", "--help"],
        ["analyze", "--help"],
        ["export", "--help"],
        ["list", "--help"],
        ["report"],  # a usage error
    ],
)
def test_parsing_imports_no_heavy_package(argv: list[str]) -> None:
    status, loaded = _loaded(*argv)
    assert status in (0, 2) and loaded == []


def test_report_loads_what_counting_needs_and_no_more() -> None:
    status, loaded = _loaded("report", str(ROOT / "specs" / "y040.yaml"))
    assert status == 0 and loaded == ["numpy", "pydantic", "yaml"]


def test_import_regnet_space_is_light_until_a_name_is_used() -> None:
    code = (
        "import sys, regnet_space as rs; a = sorted({m.split('.')[0] for m in sys.modules} & "
        f"set({HEAVY!r})); rs.load_spec; b = 'pydantic' in sys.modules; print(a, b)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[] True"
