"""Analytic counts equal fvcore's and the module's own parameter count, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regnet_space import PlanError, build_model, count, load_spec, plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.nn.counters import fvcore_counts, verify

SPECS = Path(__file__).resolve().parents[2] / "specs"
# Up to y320 every shipped spec is built and measured; the larger ones are counted only.
LARGE = {"y640", "y1280", "y10b"}
# The X/Y zoo; the timm-named family presets (regnet*.yaml) are checked in test_peers.py.
ZOO = {p.stem for p in SPECS.glob("*.yaml") if not p.stem.startswith("regnet")}
MEASURED = sorted(ZOO - LARGE)


@pytest.mark.parametrize("name", MEASURED)
def test_shipped_spec_counts_equal_fvcore(name: str) -> None:
    p = plan(load_spec(SPECS / f"{name}.yaml"))
    model = build_model(p)
    v = verify(model, p)
    assert v.mismatches() == []
    assert v.ok
    # the paper convention differs from fvcore's only by bias adds, BN and pooling
    assert v.analytic_paper.params == v.measured.params
    assert v.analytic_paper.acts == v.measured.acts


def test_every_shipped_spec_is_covered() -> None:
    assert len(MEASURED) == 27
    assert set(MEASURED) | LARGE == ZOO


@st.composite
def small_designs(draw: st.DrawFn) -> dict:
    """Random valid parametric designs, small enough to build and trace quickly."""
    q = 8
    return {
        "name": "random",
        "block": draw(st.sampled_from(["x", "y"])),
        "depth": draw(st.integers(1, 8)),
        "w0": q * draw(st.integers(1, 6)),
        "wa": draw(st.floats(0, 48).map(lambda v: round(v, 1))),
        "wm": draw(st.floats(1.5, 3.0).map(lambda v: round(v, 3))),
        "group_width": draw(st.sampled_from([1, 2, 4, 8, 16, 24])),
        "bottleneck_multiplier": draw(st.sampled_from([0.25, 0.5, 1.0, 2.0])),
        "rounding": draw(st.sampled_from(["pycls", "torchvision"])),
        "stem_width": draw(st.sampled_from([8, 16, 32])),
        "num_classes": draw(st.sampled_from([0, 1, 10])),
        "downsample_in_first_stage": draw(st.booleans()),
        "stem": draw(st.sampled_from(["imagenet", "cifar"])),
    }


@settings(max_examples=25, deadline=None)
@given(design=small_designs(), size=st.integers(9, 70))
def test_random_designs_analytic_equals_fvcore_and_module(design: dict, size: int) -> None:
    try:
        p = plan(spec_from_dict(design), size)
    except PlanError:
        return  # an impossible design is refused with a clear error; nothing to count
    model = build_model(p)
    measured = fvcore_counts(model, p.num_channels, size)
    analytic = count(p, convention="fvcore")
    assert measured.flops == analytic.flops
    assert measured.acts == analytic.acts
    assert measured.params == measured.module_params == analytic.params
    assert count(p).params == analytic.params and count(p).acts == analytic.acts


@pytest.mark.parametrize("block", ["x", "y"])
def test_cifar_stem_designs_equal_fvcore(block: str) -> None:
    # The CIFAR-stem space's kind of design: stride-1 stem of width 16, two stages, 32 px.
    data = {"name": "c", "block": block, "depth": 7, "w0": 24, "wa": 20.0, "wm": 2.5}
    spec = spec_from_dict(data | {"group_width": 8, "stem_width": 16, "stem": "cifar"})
    p = plan(spec, 32)
    assert p.stem_stride == 1 and p.stem_size == 32
    v = verify(build_model(p), p)
    assert v.ok and v.mismatches() == []
