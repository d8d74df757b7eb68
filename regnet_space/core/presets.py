"""The shipped zoo specs, design spaces and example data, and resolving their short names.

A wheel carries them under `regnet_space/presets/` (copied there from the repository's
`specs/` and `examples/` by setup.py's build step, so the repository holds one copy of each);
a source checkout reads them from the repository itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Preset:
    """One shipped file: its short name, kind (spec, space or example) and where it is."""

    name: str
    kind: str
    path: Path


def presets_root() -> Path | None:
    """The folder holding `specs/` and `examples/`: in the installed package, else the checkout."""
    shipped = Path(str(resources.files("regnet_space"))) / "presets"
    if (shipped / "specs").is_dir():
        return shipped
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "specs").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return None


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in suffixes and p.is_file())


def presets() -> list[Preset]:
    """Every shipped spec, space and example file, in that order, by name."""
    root = presets_root()
    if root is None:
        return []
    out = [Preset(p.stem, "spec", p) for p in _files(root / "specs", SPEC_SUFFIXES)]
    out += [Preset(p.stem, "space", p) for p in _files(root / "specs" / "spaces", SPEC_SUFFIXES)]
    out += [Preset(p.stem, "example", p) for p in _files(root / "examples", (".csv", ".jsonl"))]
    return out


def resolve(argument: str, kind: str) -> Path:
    """A path as given when it exists; else the shipped file of that kind and name; else as given.

    `y040` finds the shipped spec y040.yaml and `regnety` the shipped space regnety.yaml, from
    any folder; a path that exists always wins, and a missing one is left for the reader to
    report (naming the path the user gave).
    """
    given = Path(argument)
    if os.path.exists(given) or "/" in argument or "\\" in argument:
        return given
    stem = given.stem if given.suffix in (*SPEC_SUFFIXES, ".csv", ".jsonl") else argument
    for preset in presets():
        if preset.kind == kind and preset.name == stem:
            return preset.path
    return given
