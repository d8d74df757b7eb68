"""Shared pieces of the peer-config tests: the shipped X/Y zoo and equality of networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regnet_space import load_spec, plan
from regnet_space.core.spec import ParametricSpec

ROOT = Path(__file__).resolve().parents[1]
# The X/Y zoo (the timm-named family presets, regnet*.yaml, have tests of their own).
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml") if not p.stem.startswith("regnet"))
PARAMETRIC = [p for p in SPECS if isinstance(load_spec(p), ParametricSpec)]
PYCLS = ROOT / "tests" / "data" / "pycls"


def same_network(a: Any, b: Any) -> bool:
    """Equal stage plans (widths, depths, groups, strides, SE widths) and stem/head."""
    pa, pb = plan(a), plan(b)
    keys = ("stages", "stem_width", "num_channels", "num_classes", "block", "activation")
    return all(getattr(pa, k) == getattr(pb, k) for k in keys)
