"""Shipped presets (issue 11, item 3): zoo specs, spaces and example data inside the package.

The wheel test builds a real wheel from a copy of the repository (pip, setup.py's build step),
unpacks it and runs the command from another folder with only the unpacked wheel on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from regnet_space.core.presets import presets, resolve

ROOT = Path(__file__).resolve().parents[2]


def test_names_resolve_to_shipped_files_only_when_no_such_path_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve("y040", "spec") == ROOT / "specs" / "y040.yaml"
    assert resolve("y040.yaml", "spec") == ROOT / "specs" / "y040.yaml"
    assert resolve("regnety", "space") == ROOT / "specs" / "spaces" / "regnety.yaml"
    assert resolve("regnety", "spec") == Path("regnety")  # not a spec: left as given
    assert resolve("sub/y040", "spec") == Path("sub/y040")  # a path is never a name
    (tmp_path / "y040").write_text("name: mine\n")
    assert resolve("y040", "spec") == Path("y040")  # a file here wins


def test_presets_are_the_repository_files() -> None:
    # One copy of each file: in a checkout the presets are the repository's own files.
    files = {p.path.resolve() for p in presets()}
    assert ROOT.joinpath("specs", "y040.yaml").resolve() in files
    assert not (ROOT / "regnet_space" / "presets").exists()


def test_a_wheel_ships_the_presets_and_answers_from_any_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", str(src), "--no-deps"),
            *("--no-build-isolation", "-q", "-w", str(wheels)),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("regnet_space-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("specs/y040.yaml", "specs/spaces/regnety.yaml", "examples/zoo_errors.csv"):
        assert f"regnet_space/presets/{shipped}" in names
    assert len([n for n in names if n.startswith("regnet_space/presets/specs/")]) == len(
        list((ROOT / "specs").glob("*.yaml")) + list((ROOT / "specs" / "spaces").glob("*.yaml"))
    )
    unpacked, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(unpacked))

    def cli(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "regnet_space", *argv],
            capture_output=True,
            text=True,
            cwd=elsewhere,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    (row,) = json.loads(cli("report", "y040", "--json"))
    assert row["name"] == "RegNetY-4.0GF" and row["spec"].startswith(str(unpacked))
    assert len(cli("sample", "regnety", "-n", "3", "-o", "-", "--quiet").splitlines()) == 3
    assert str(unpacked) in cli("list")
