"""Fitting d, w0, wa, wm to per-block widths: exact on the zoo, optimal-looking elsewhere."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from regnet_space import load_spec, plan, to_explicit
from regnet_space.core.spec import ParametricSpec
from regnet_space.space.fitting import FitError, block_widths, fit_spec, fit_widths, parse_widths

SPECS = Path(__file__).resolve().parents[2] / "specs"
ZOO = [f"{b}{m}" for b in "xy" for m in ("002", "004", "006", "008", "016", "032", "040")] + [
    f"{b}{m}" for b in "xy" for m in ("064", "080", "120", "160", "320")
]
TV = ["x004_tv", "y008_tv", "y080_tv"]


def per_block(spec: ParametricSpec) -> list[int]:
    """Per-block widths through the public plan (not the fitting module's own helper)."""
    return [s.width for s in plan(spec).stages for _ in range(s.depth)]


def refit_spec(spec: ParametricSpec, fit: object) -> ParametricSpec:
    data = spec.model_dump()
    data.update(depth=fit.depth, w0=fit.w0, wa=fit.wa, wm=fit.wm)  # type: ignore[attr-defined]
    return ParametricSpec.model_validate(data)


def test_zoo_has_24_models() -> None:
    assert len(ZOO) == 24 and all((SPECS / f"{n}.yaml").exists() for n in ZOO)


@pytest.mark.parametrize("name", ZOO + TV)
def test_zoo_widths_are_regenerated_exactly(name: str) -> None:
    spec = load_spec(SPECS / f"{name}.yaml")
    assert isinstance(spec, ParametricSpec)
    fit = fit_spec(spec)
    assert fit.error == 0.0 and fit.exact
    assert fit.depth == spec.depth
    assert fit.w0 % spec.q == 0 and fit.wm > 1 and fit.wa >= 0
    # The fitted parameters, put in the spec, give the same network widths and depths.
    refitted = refit_spec(spec, fit)
    assert per_block(refitted) == per_block(spec)
    assert plan(refitted).depths == plan(spec).depths


@pytest.mark.parametrize("name", ["x080", "y040", "x120"])
def test_explicit_form_fits_like_the_parametric_one(name: str) -> None:
    # x080 has a clipped group width in stage 1, y040/x120 widths moved by the group width.
    spec = load_spec(SPECS / f"{name}.yaml")
    fit = fit_spec(to_explicit(spec))
    assert fit.exact and fit.group_width == spec.group_width
    assert per_block(refit_spec(spec, fit)) == per_block(spec)


def test_random_regnets_are_recovered() -> None:
    rng = np.random.default_rng(7)
    done = 0
    while done < 12:
        d = int(rng.integers(12, 29))
        w0 = 8 * int(rng.integers(1, 33))
        wa = round(float(np.exp(rng.uniform(math.log(8), math.log(256)))), 1)
        wm = round(float(np.exp(rng.uniform(math.log(2), math.log(3)))), 3)
        g = int(rng.choice([8, 16, 24, 48]))
        spec = ParametricSpec(name="r", block="x", depth=d, w0=w0, wa=wa, wm=wm, group_width=g)
        target = per_block(spec)
        if max(target) > 4000:
            continue
        fit = fit_widths(target, group_width=g)
        assert fit.exact, (d, w0, wa, wm, g)
        done += 1


def test_error_is_the_mean_log_ratio_and_beats_random_search() -> None:
    # ResNet-50's stage widths: the depths (3, 4, 6, 3) are not a linear-rule partition.
    target = parse_widths("256x3,512x4,1024x6,2048x3")
    fit = fit_widths(target, group_width=64, bottleneck_multiplier=0.25)
    assert not fit.exact and 0 < fit.error < 0.1
    spec = ParametricSpec(
        name="f", block="x", depth=fit.depth, w0=fit.w0, wa=fit.wa, wm=fit.wm,
        group_width=64, bottleneck_multiplier=0.25,
    )  # fmt: skip
    fitted = per_block(spec)
    assert tuple(fitted) == fit.fitted
    expected = sum(abs(math.log(f / t)) for f, t in zip(fitted, target, strict=True)) / 16
    assert fit.error == pytest.approx(expected, abs=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(300):
        w0 = 8 * int(rng.integers(16, 48))
        wm, wa = float(rng.uniform(1.3, 3.5)), float(rng.uniform(10, 400))
        trial = ParametricSpec(
            name="t", block="x", depth=16, w0=w0, wa=wa, wm=wm,
            group_width=64, bottleneck_multiplier=0.25,
        )  # fmt: skip
        err = np.mean(np.abs(np.log(np.array(per_block(trial)) / np.array(target))))
        assert fit.error <= err + 1e-12


def test_plain_widths_default_to_no_compatibility_change() -> None:
    fit = fit_widths([24, 56, 152, 152, 152, 152, 368, 368, 368, 368, 368, 368, 368])
    assert fit.exact and fit.group_width == 8 and fit.depth == 13
    assert block_widths(load_spec(SPECS / "x002.yaml")) == fit.target


def test_single_block() -> None:
    fit = fit_widths([48])
    assert fit.exact and fit.w0 == 48 and fit.depth == 1


def test_parse_widths() -> None:
    assert parse_widths("24, 56x2,152") == (24, 56, 56, 152)
    for bad in ("", "a,b", "24,-8", "0", "8x", "8x0", "1.5", "8x2000", "²"):
        with pytest.raises(FitError):
            parse_widths(bad)


@pytest.mark.parametrize("bad", [[], [0], [8, -1], [8.5], [True], ["8"]])
def test_bad_widths(bad: list[object]) -> None:
    with pytest.raises(FitError):
        fit_widths(bad)  # type: ignore[arg-type]
