"""Shipped model names as pycls, timm, torchvision and Hugging Face spell them -> shipped specs.

The table is data (names.yaml beside this module); no peer library is imported. Names match
without regard to case; timm's pretrained tag (`regnety_040.ra3_in1k`) and hub prefix
(`timm/regnety_040`) are dropped, as `timm.create_model` does.
"""

from __future__ import annotations

import importlib.resources
import re
from functools import cache
from pathlib import Path

from ..infra.parsing import parse_yaml

LIBRARIES = ("paper", "timm", "torchvision", "hf")
_TIMM_TAG = re.compile(r"(regnet[a-z]_[0-9a-z_]+)\.[0-9a-z_]+")  # regnety_040.ra3_in1k
EXAMPLES = "y040, RegNetY-4.0GF, regnety_040, regnet_y_3_2gf, facebook/regnet-y-040"


@cache
def _rows() -> dict[str, dict[str, list[str]]]:
    """names.yaml: stem -> library -> its spellings."""
    text = importlib.resources.files(__package__).joinpath("names.yaml").read_text("utf-8")
    rows = parse_yaml(text, "names.yaml", "names table")
    return {
        stem: {k: [v] if isinstance(v, str) else list(v) for k, v in spellings.items()}
        for stem, spellings in rows.items()
    }


def spellings(stem: str) -> dict[str, list[str]]:
    """How each library spells the shipped spec `stem` (libraries without it are absent)."""
    return dict(_rows().get(stem, {}))


@cache
def names_table() -> dict[str, str]:
    """Every accepted name (lower case) -> the stem of its shipped spec file."""
    table: dict[str, str] = {}
    for stem, by_library in _rows().items():
        table[stem.lower()] = stem
        for library in LIBRARIES:
            for name in by_library.get(library, []):
                table[name.lower()] = stem
    return table


def specs_dir() -> Path:
    """The folder of the shipped specs: inside the package when installed, else the checkout's."""
    from .presets import presets_root

    root = presets_root()
    return (root if root is not None else Path(__file__).resolve().parents[2]) / "specs"


def _key(text: str) -> str:
    key = text.strip().lower()
    key = key.removeprefix("timm/")
    tagged = _TIMM_TAG.fullmatch(key)
    return tagged.group(1) if tagged else key


def resolve_name(text: str) -> Path | None:
    """The shipped spec file a model name stands for, or None if it names none."""
    stem = names_table().get(_key(text))
    return None if stem is None else specs_dir() / f"{stem}.yaml"


def suggest_name(text: str) -> str | None:
    """The closest known name, for a 'did you mean' hint (None when nothing is close)."""
    spelled = {n.lower(): n for row in _rows().values() for ns in row.values() for n in ns}
    spelled |= {stem.lower(): stem for stem in _rows()}
    import difflib  # only for a hint

    close = difflib.get_close_matches(_key(text), list(spelled), n=1, cutoff=0.8)
    return spelled[close[0]] if close else None
