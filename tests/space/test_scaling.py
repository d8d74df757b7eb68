"""Model scaling: pycls's factors and rounding, the flop factor reached on the zoo, builds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from regnet_space import count, load_spec, plan, to_explicit
from regnet_space.core.spec import ExplicitSpec, ParametricSpec
from regnet_space.space.scaling import (
    ScaleError,
    parse_weights,
    round_group_width,
    scale_input_size,
    scale_spec,
    scaled_spec_text,
    scaling_factors,
)

SPECS = Path(__file__).resolve().parents[2] / "specs"
ZOO = [f"{b}{m}" for b in "xy" for m in ("002", "004", "006", "008", "016", "032", "040")] + [
    f"{b}{m}" for b in "xy" for m in ("064", "080", "120", "160", "320")
]


def test_fast_compound_scaling_factors() -> None:
    f, label = scaling_factors(2)
    assert label == "d1_w8_g8_r1"
    assert f.depth == pytest.approx(2**0.1)
    assert f.width == pytest.approx(2**0.4) == f.group_width
    assert f.resolution == pytest.approx(2**0.05)
    assert f.flops == pytest.approx(2)


def test_other_weights_and_alpha() -> None:
    f, _ = scaling_factors(4, "dw")
    assert (f.depth, f.width, f.group_width, f.resolution) == pytest.approx((2, 2**0.5, 1, 1))
    f, _ = scaling_factors(4, "w")
    assert (f.depth, f.width) == pytest.approx((1, 2))
    f, label = scaling_factors(16, alpha=0.8)
    assert label == "alpha=0.8"
    assert (f.depth, f.width, f.resolution) == pytest.approx((16**0.1, 16**0.4, 16**0.05))
    assert parse_weights("d1_w2") == {"d": 1, "w": 2, "g": 0, "r": 0}


@pytest.mark.parametrize("bad", ["", "x1", "d1_d2", "dd", "d1__w2", "d-1"])
def test_bad_weights(bad: str) -> None:
    with pytest.raises(ScaleError):
        parse_weights(bad)


def test_bad_requests() -> None:
    spec = load_spec(SPECS / "x002.yaml")
    for factor in (0, -2, math.inf, math.nan, 1e9):
        with pytest.raises(ScaleError):
            scale_spec(spec, factor)
    with pytest.raises(ScaleError):
        scale_spec(spec, 2, weights="dw", alpha=0.5)
    with pytest.raises(ScaleError):
        scale_spec(spec, 2, alpha=1.5)


def test_pycls_roundings() -> None:
    got = [round_group_width(g) for g in (0.2, 1, 2, 3, 5, 6, 11, 12, 120 * 1.3195)]
    assert got == [1, 1, 2, 4, 4, 8, 8, 16, 160]
    assert scale_input_size(224, 2**0.05) == 232  # 231.8 -> multiple of 4
    assert scale_input_size(224, 16**0.05) == 256


@pytest.mark.parametrize("name", ZOO)
def test_zoo_scales_within_ten_percent_and_builds(name: str) -> None:
    spec = load_spec(SPECS / f"{name}.yaml")
    assert isinstance(spec, ParametricSpec)
    base = count(spec).flops
    for factor in (2, 4, 16):
        s = scale_spec(spec, factor)
        assert isinstance(s.spec, ParametricSpec)
        assert abs(s.achieved / factor - 1) <= 0.10, (factor, s.achieved)
        # The achieved factor is the counts' own ratio, at the new input size.
        assert s.flops == count(s.spec, s.input_size).flops and s.flops_before == base
        assert s.spec.wm == spec.wm and s.spec.w0 % spec.q == 0
        g = s.spec.group_width
        assert g in (1, 2, 4) or g % 8 == 0
        assert s.input_size % 4 == 0 and s.input_size > 224
        assert s.spec.depth >= spec.depth and s.spec.w0 >= spec.w0
        p = plan(s.spec, s.input_size)  # resolves into a valid network
        assert p.num_stages >= 1 and p.output_shape[1] == p.out_width


def test_explicit_specs_scale_stage_by_stage() -> None:
    spec = to_explicit(load_spec(SPECS / "y040.yaml"))
    s = scale_spec(spec, 4)
    assert isinstance(s.spec, ExplicitSpec) and len(s.spec.stages) == 4
    assert abs(s.achieved / 4 - 1) <= 0.10
    for old, new in zip(spec.stages, s.spec.stages, strict=True):
        assert new.width > old.width and new.depth >= old.depth


def test_without_correction_it_is_the_plain_rule() -> None:
    spec = load_spec(SPECS / "y040.yaml")
    s = scale_spec(spec, 4, correct=False)
    f = s.factors
    assert s.spec.depth == round(22 * f.depth) == 25
    assert s.spec.w0 == round(96 * f.width / 8) * 8 == 168
    assert s.spec.wa == pytest.approx(31.41 * f.width * 22 / 25, abs=0.005)
    assert s.spec.group_width == round_group_width(64 * f.group_width) == 112
    assert s.input_size == 240


def test_factor_one_keeps_the_zoo_design() -> None:
    for name in ZOO:
        spec = load_spec(SPECS / f"{name}.yaml")
        s = scale_spec(spec, 1)
        assert s.spec.model_dump(exclude={"name"}) == spec.model_dump(exclude={"name"})
        assert s.input_size == 224 and s.achieved == 1


def test_scaling_down() -> None:
    s = scale_spec(load_spec(SPECS / "y160.yaml"), 0.25)
    assert abs(s.achieved / 0.25 - 1) <= 0.10 and s.input_size < 224


def test_written_spec_loads_back_with_its_input_size_as_a_field() -> None:
    s = scale_spec(load_spec(SPECS / "x016.yaml"), 4)
    text = scaled_spec_text(s)
    assert text.startswith("# ") and f"\ninput_size: {s.input_size}\n" in text
    assert load_spec(text) == s.spec and s.spec.input_size == s.input_size == 240


def test_scaled_zoo_models_build_and_run() -> None:
    torch = pytest.importorskip("torch")
    from regnet_space import build_model

    for name, factor in (("x002", 2), ("y002", 4)):
        s = scale_spec(load_spec(SPECS / f"{name}.yaml"), factor)
        model = build_model(s.spec, with_head=False).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, 3, s.input_size, s.input_size)).last_hidden_state
        assert tuple(out.shape) == plan(s.spec, s.input_size).output_shape
        assert sum(p.numel() for p in model.parameters()) < s.params  # no classifier here
