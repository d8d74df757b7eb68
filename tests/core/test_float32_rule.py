"""timm's and torchvision's float32 width rule: the ties where it differs from pycls's float64.

The reference here is torchvision's `BlockParams.from_init_params` width step written again with
torch float32 tensors (timm's `generate_regnet` is the same arithmetic), line for line; the
block-compatibility rules are the plain-Python ones of those libraries.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from regnet_space import PlanError, load_spec, plan
from regnet_space.core.complexity import count_plan
from regnet_space.space.bulk import Body, RegNetParams, count_stages, regnet_stages

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def torch_block_widths(d: int, w0: int, wa: float, wm: float, q: int = 8) -> list[int]:
    """torchvision's block widths: torch float32 tensors, Python-float scalars."""
    widths_cont = torch.arange(d) * wa + w0
    block_capacity = torch.round(torch.log(widths_cont / w0) / math.log(wm))
    return (torch.round(torch.divide(w0 * torch.pow(wm, block_capacity), q)) * q).int().tolist()


def float64_block_widths(d: int, w0: int, wa: float, wm: float, q: int = 8) -> list[int]:
    """pycls's block widths (numpy float64)."""
    u = np.arange(d) * wa + w0
    s = np.round(np.log(u / w0) / np.log(wm))
    return (np.round(w0 * np.power(wm, s) / q) * q).astype(int).tolist()


def make_divisible(v: int, g: int) -> int:
    """torchvision's `_make_divisible` (and timm's `make_divisible`, round_limit 0.9)."""
    new_v = max(g, int(v + g / 2) // g * g)
    return new_v + g if new_v < 0.9 * v else new_v


def peer_stages(
    d: int, w0: int, wa: float, wm: float, g: int, rule: str
) -> tuple[list[int], list[int]]:
    """Stage widths and depths as timm (group_min_ratio 0) or torchvision build them (bm 1)."""
    blocks = torch_block_widths(d, w0, wa, wm)
    widths = sorted(set(blocks))
    depths = [blocks.count(w) for w in widths]
    out = []
    for w in widths:
        gw = min(g, w)
        out.append(make_divisible(w, gw) if rule == "torchvision" else round(w / gw) * gw)
    return out, depths


def spec(d: int, w0: int, wa: float, wm: float, g: int, rounding: str, block: str = "x"):
    return load_spec(
        {
            "name": "tie",
            "block": block,
            "depth": d,
            "w0": w0,
            "wa": wa,
            "wm": wm,
            "group_width": g,
            "rounding": rounding,
        }
    )


# (d, w0, wa, wm, group width) -> stage-2 width in timm and torchvision, and in pycls.
TABLE = [
    ((30, 120, 33.34, 2.1, 24), 240, 264),
    ((30, 200, 83.04, 2.18, 1), 432, 440),
    ((27, 120, 27.51, 2.1, 8), 248, 256),
    ((27, 240, 59.46, 2.05, 8), 496, 488),
    ((26, 240, 59.77, 2.05, 2), 496, 488),
]


@pytest.mark.parametrize(("design", "peers", "pycls"), TABLE)
def test_the_tie_table(design: tuple, peers: int, pycls: int) -> None:
    d, w0, wa, wm, g = design
    assert plan(spec(*design, "pycls")).widths[1] == pycls
    for rounding in ("timm", "torchvision"):
        p = plan(spec(*design, rounding))
        assert p.widths[1] == peers, rounding
        widths, depths = peer_stages(d, w0, wa, wm, g, rounding)
        assert (list(p.widths), list(p.depths)) == (widths, depths), rounding


def test_an_exponent_exactly_on_a_half() -> None:
    """u_2 / w0 = 1.7 and wm = 1.7**2: the exponent is 0.5, rounded to 0 in float32."""
    design = (9, 72, 25.2, 2.89, 8)
    p64 = plan(spec(*design, "pycls"))
    assert p64.generation.quantized_widths[2] == 208
    for rounding in ("timm", "torchvision"):
        p32 = plan(spec(*design, rounding))
        assert p32.generation.quantized_widths[2] == 72
        assert list(p32.generation.quantized_widths) == torch_block_widths(9, 72, 25.2, 2.89)


def _tie_pairs() -> list[tuple[int, float]]:
    """(w0, wm) with w0 * wm / 8 on a decimal half-integer: wm with 2 to 4 decimals."""
    pairs = []
    for w0 in range(8, 513, 8):
        for k in range(w0 // 8, 4 * w0 // 8):
            for decimals in (2, 3, 4):
                wm = round((k + 0.5) * 8 / w0, decimals)
                if 1.02 <= wm <= 4 and abs(w0 * wm / 8 - k - 0.5) < 1e-9:
                    pairs.append((w0, wm))
    return sorted(set(pairs))


TIE_PAIRS = _tie_pairs()


@st.composite
def near_ties(draw: st.DrawFn) -> tuple[int, int, float, float, int]:
    """Designs where w0 * wm / 8 is within 1e-6 of a half-integer."""
    w0, wm = draw(st.sampled_from(TIE_PAIRS))
    # on the decimal tie, or moved off it by less than 1e-6 in w0 * wm / 8
    wm += draw(st.sampled_from([0.0, 0.0, 1e-7, -1e-7, 5e-7, -5e-7])) * 8 / w0
    d = draw(st.integers(2, 40))
    # a slope that reaches exponent 1 within the depth, or lands exactly on u_j = w0 * wm
    j = draw(st.integers(1, d - 1))
    exact = round(w0 * (wm - 1) / j, 2)
    wa = draw(st.one_of(st.just(exact), st.floats(exact, 8 * w0).map(lambda x: round(x, 2))))
    g = draw(st.sampled_from([1, 2, 8, 16, 24, 56, 64]))
    return d, w0, wa, wm, g


@SETTINGS
@given(near_ties(), st.sampled_from(["timm", "torchvision"]))
def test_near_ties_follow_torch_float32(design: tuple, rounding: str) -> None:
    d, w0, wa, wm, g = design
    u = np.arange(d) * wa + w0
    quotient = np.log(u / w0) / np.log(wm)
    # Exponents themselves on a tie depend on the peer's vectorised log (see the README).
    assume(np.abs(quotient - np.floor(quotient) - 0.5).min() > 1e-4)
    expected = torch_block_widths(d, w0, wa, wm)
    try:
        p = plan(spec(*design, rounding))
    except PlanError:
        assert max(expected) > 1 << 20
        return
    assert list(p.generation.quantized_widths) == expected
    assert (list(p.widths), list(p.depths)) == peer_stages(d, w0, wa, wm, g, rounding)


def test_near_ties_do_differ_from_float64() -> None:
    """The property above is not vacuous: at such ties float32 and float64 often disagree."""
    differ = ties = 0
    for w0 in range(8, 513, 8):
        for k in range(w0 // 8, 3 * w0 // 8):
            for decimals in (2, 3):
                wm = round((k + 0.5) * 8 / w0, decimals)
                if wm > 1.02 and abs(w0 * wm / 8 - k - 0.5) < 1e-9:
                    ties += 1
                    design = (3, w0, round(w0 * (wm - 1), 2), wm)  # u_1 = w0 * wm
                    differ += torch_block_widths(*design) != float64_block_widths(*design)
                    s32 = spec(*design, 8, "timm")
                    assert list(plan(s32).generation.quantized_widths) == torch_block_widths(
                        *design
                    )
    assert ties > 500 and differ >= 30


@pytest.mark.parametrize("rounding", ["pycls", "timm", "torchvision"])
def test_bulk_follows_the_rule_of_each_rounding(rounding: str) -> None:
    """The bulk path on the table and 400 near-tie designs equals the one-design path."""
    rng = np.random.default_rng(12)
    designs = [t[0] for t in TABLE] + [(9, 72, 25.2, 2.89, 8)]
    while len(designs) < 400:
        w0 = 8 * int(rng.integers(1, 40))
        half = int(rng.integers(w0 // 8, 3 * w0 // 8)) + 0.5
        wm = round(half * 8 / w0, 3)
        if wm > 1.02:
            d = int(rng.integers(2, 30))
            designs.append((d, w0, round(float(rng.uniform(1, 200)), 2), wm, 8))
    arr = np.asarray(designs, dtype=np.float64)
    p = RegNetParams(
        depth=arr[:, 0].astype(np.int64),
        w0=arr[:, 1].astype(np.int64),
        wa=arr[:, 2],
        wm=arr[:, 3],
        group_width=arr[:, 4].astype(np.int64),
        bottleneck_multiplier=np.ones(len(arr)),
        q=8,
        rounding=rounding,  # type: ignore[arg-type]
    )
    body = Body(32, 3, 1000, 0.0, True, 224)
    stages = regnet_stages(p)
    counts = count_stages(stages, body)
    for i, design in enumerate(designs):
        try:
            one = plan(spec(*design, rounding))
        except PlanError:
            assert not stages.valid[i]
            continue
        a, b = stages.offsets[i], stages.offsets[i + 1]
        assert tuple(stages.width[a:b].tolist()) == one.widths, design
        assert tuple(stages.depth[a:b].tolist()) == one.depths, design
        assert int(counts.flops[i]) == count_plan(one).flops, design


def test_the_zoo_is_the_same_under_every_rule() -> None:
    """The published designs are not on ties: pycls's and timm's rules agree on all of them."""
    from pathlib import Path

    specs = Path(__file__).resolve().parents[2] / "specs"
    checked = 0
    for path in sorted(specs.glob("*.yaml")):
        s = load_spec(path)
        if getattr(s, "rounding", None) != "pycls":  # explicit specs have no width rule
            continue
        timm = s.model_copy(update={"rounding": "timm"})
        assert plan(timm).stages == plan(s).stages, path.stem
        checked += 1
    assert checked >= 24


def test_converters_refuse_a_rule_change_on_a_tie() -> None:
    """A pycls spec on a tie has no timm config (timm would build another network), and a
    timm spec on a tie no pycls one; off ties both convert."""
    from regnet_space.core.errors import InteropError
    from regnet_space.core.pycls import pycls_yaml_from_spec
    from regnet_space.interop.timm import timm_cfg_from_spec

    tie = (27, 120, 27.51, 2.1, 8)
    with pytest.raises(InteropError, match="rounding: timm's float32 width rule"):
        timm_cfg_from_spec(spec(*tie, "pycls"))
    assert timm_cfg_from_spec(spec(*tie, "timm")).group_min_ratio == 0.0
    assert timm_cfg_from_spec(spec(*tie, "torchvision")).group_min_ratio == 0.9
    with pytest.raises(InteropError, match="different network from rounding timm"):
        pycls_yaml_from_spec(spec(*tie, "timm"))
    off_tie = (22, 96, 31.41, 2.24, 64)  # RegNetY-4.0GF's design
    assert timm_cfg_from_spec(spec(*off_tie, "pycls")).group_min_ratio == 0.0
    assert "REGNET" in pycls_yaml_from_spec(spec(*off_tie, "timm"))
