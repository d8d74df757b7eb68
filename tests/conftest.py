"""Test-wide settings."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

# The tests live in one folder per side (tests/core, tests/cli, ..., tests/system); the helpers
# they share (cli_helpers, config_helpers, spec_helpers, study_helpers) live here, importable
# from every folder. Test file names stay unique across folders: pytest's default import mode
# imports each test file by its bare name, with its folder put on sys.path (no packages).
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: with a busy neighbour, two threads on two cores crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def patient_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's head waits 30 s for its GCS server to bind a port, then fails: a loaded machine
    (these tests on 2 busy cores) can take longer. Every Ray cluster a test starts, in this
    process or a subprocess, waits up to 120 s (Ray's own setting for slow GCS back-ends)."""
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "120")


@pytest.fixture(scope="session")
def ray_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home for every Ray cluster this test process starts: Ray keeps its token under
    ~/.ray (not the home of whoever runs the tests), and a process that has started one
    cluster looks for the token there again when it starts the next."""
    return tmp_path_factory.mktemp("ray-home")


@pytest.fixture
def bench_forward(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/bench_forward.py loaded as the module `bench_forward` (for this test only)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_forward.py"
    module_spec = importlib.util.spec_from_file_location("bench_forward", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    monkeypatch.setitem(sys.modules, "bench_forward", module)  # its dataclasses look it up
    module_spec.loader.exec_module(module)
    return module
