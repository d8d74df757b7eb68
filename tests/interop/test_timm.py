"""timm's RegNetCfg (interop.timm): the shipped specs round-trip through its kwargs, the
torchvision-rounded ones, refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from config_helpers import PARAMETRIC, ROOT

from regnet_space import load_spec, plan
from regnet_space.core.errors import InteropError
from regnet_space.core.spec import spec_from_dict
from regnet_space.interop.timm import TimmRegNetCfg, spec_from_timm_cfg, timm_cfg_from_spec


@pytest.mark.parametrize("path", PARAMETRIC, ids=lambda p: p.stem)
def test_every_shipped_spec_round_trips_through_timm_kwargs(path: Path) -> None:
    spec = load_spec(path)
    cfg = timm_cfg_from_spec(spec)
    kwargs = cfg.as_kwargs()
    assert "in_chans" not in kwargs and "num_classes" not in kwargs
    # timm's width rule is float32: a pycls spec comes back as rounding timm, same network.
    back = spec.model_copy(update={"rounding": "timm"}) if spec.rounding == "pycls" else spec
    assert spec_from_timm_cfg(kwargs, name=spec.name) == back
    assert spec_from_timm_cfg(cfg, name=spec.name) == back
    assert plan(back).stages == plan(spec).stages


def test_timm_kwargs_of_the_torchvision_rounded_specs() -> None:
    # timm's regnetx_004_tv: RegNetCfg(w0=24, wa=24.48, wm=2.54, group_size=16, depth=22,
    # group_min_ratio=0.9)
    cfg = timm_cfg_from_spec(load_spec(ROOT / "specs" / "x004_tv.yaml"))
    expected = {"w0": 24, "wa": 24.48, "wm": 2.54, "group_size": 16, "depth": 22}
    assert {k: cfg.as_kwargs()[k] for k in expected} == expected
    assert cfg.group_min_ratio == 0.9 and cfg.se_ratio == 0
    y = timm_cfg_from_spec(load_spec(ROOT / "specs" / "y040.yaml"))
    assert (y.se_ratio, y.group_min_ratio, y.group_size) == (0.25, 0.0, 64)


def test_timm_refusals() -> None:
    explicit = load_spec("name: e\nblock: x\nstages:\n  - {width: 32, depth: 1, group_width: 8}\n")
    with pytest.raises(InteropError, match="no explicit-stage form"):
        timm_cfg_from_spec(explicit)
    three = spec_from_dict(
        {"name": "three", "block": "x", "depth": 6, "w0": 24, "wa": 24.0, "wm": 2.5}
        | {"group_width": 8}
    )
    assert plan(three).num_stages != 4
    with pytest.raises(InteropError, match="timm builds exactly 4"):
        timm_cfg_from_spec(three)
    base = dataclasses.asdict(TimmRegNetCfg(depth=13, w0=24, wa=36.44, wm=2.49, group_size=8))
    with pytest.raises(InteropError, match="downsample='maxpool'"):
        spec_from_timm_cfg(base | {"downsample": "maxpool"})
    with pytest.raises(InteropError, match=r"group_min_ratio=0\.5"):
        spec_from_timm_cfg(base | {"group_min_ratio": 0.5})
    with pytest.raises(InteropError, match="unknown field 'drop_rate'"):
        spec_from_timm_cfg(base | {"drop_rate": 0.1})
