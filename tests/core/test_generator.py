"""The generator: plan invariants over random designs (hypothesis), an independent reference
implementation of the quantized linear rule and of both block-compatibility rules, and the
known consequences of the rules on published models."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regnet_space import ParametricSpec, PlanError, load_spec, plan

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"

BMS = (0.25, 0.5, 1.0, 2.0, 4.0)
GROUP_WIDTHS = (1, 2, 4, 8, 16, 24, 32, 48, 64)

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


# ---------------------------------------------------------------------------------------------
# Independent reference: the paper, section 3.3, and pycls's generate_regnet, written from the text


def ref_quantized(d: int, w0: int, wa: float, wm: float, q: int):
    """Steps 1-3: continuous widths, exponents and quantized widths, one per block."""
    j = np.arange(d, dtype=np.float64)
    u = w0 + wa * j
    s = np.round(np.log(u / w0) / np.log(wm))  # numpy rounds half to even
    w = np.round(w0 * wm**s / q) * q
    return u, s.astype(int).tolist(), w.astype(int).tolist()


def ref_stages(quantized: list[int]) -> tuple[list[int], list[int]]:
    """Step 4: runs of equal widths -> stage widths and depths."""
    runs = [(w, len(list(grp))) for w, grp in itertools.groupby(quantized)]
    return [w for w, _ in runs], [n for _, n in runs]


def ref_pycls_compat(w: int, bm: float, g: int) -> tuple[int, int]:
    """Step 5 (pycls): returns (stage width, group width)."""
    v = int(max(1, w * bm))
    g = int(min(g, v))
    m = math.lcm(g, int(bm)) if bm > 1 else g
    v = max(m, int(round(v / m) * m))
    return int(v / bm), g


def ref_torchvision_compat(w: int, bm: float, g: int) -> tuple[int, int]:
    """Step 6 (torchvision "make divisible"): returns (stage width, group width)."""
    v = int(w * bm)
    g = min(g, v)
    v2 = max(g, int(v + g / 2) // g * g)
    if v2 < 0.9 * v:
        v2 += g
    return int(v2 / bm), g


def ref_design(d, w0, wa, wm, g, bm, rounding, q=8):
    """Widths, depths and group widths of a parametric design."""
    _, _, quantized = ref_quantized(d, w0, wa, wm, q)
    widths, depths = ref_stages(quantized)
    compat = ref_pycls_compat if rounding == "pycls" else ref_torchvision_compat
    out = [compat(w, bm, g) for w in widths]
    return [w for w, _ in out], depths, [gw for _, gw in out]


def _spec(d, w0, wa, wm, g, bm, rounding, block="x", **extra) -> ParametricSpec:
    data = {
        "name": "random",
        "block": block,
        "depth": d,
        "w0": w0,
        "wa": float(wa),
        "wm": float(wm),
        "group_width": g,
        "bottleneck_multiplier": float(bm),
        "rounding": rounding,
        **extra,
    }
    s = load_spec(data)
    assert isinstance(s, ParametricSpec)
    return s


# ---------------------------------------------------------------------------------------------
# The reference itself, on numbers stated in the facts (so that it can be trusted)


def test_reference_on_the_stated_examples():
    assert ref_pycls_compat(96, 1.0, 64) == (128, 64)  # RegNetY-4.0GF stage 1
    assert ref_pycls_compat(168, 1.0, 112) == (224, 112)  # RegNetX-12GF stage 1
    assert ref_pycls_compat(80, 1.0, 120) == (80, 80)  # RegNetX-8.0GF stage 1
    # RegNetX-400MF: pycls 384, torchvision 400 for the last stage (g = 16)
    assert ref_design(22, 24, 24.48, 2.54, 16, 1.0, "pycls")[0] == [32, 64, 160, 384]
    assert ref_design(22, 24, 24.48, 2.54, 16, 1.0, "torchvision")[0] == [32, 64, 160, 400]


# ---------------------------------------------------------------------------------------------
# Unit checks from the facts, through the library


def _stage0(stem: str):
    s = load_spec(SPECS_DIR / f"{stem}.yaml")
    p = plan(s)
    return p.generation.quantized_widths[0], p.stages[0]


def test_y040_stage1_96_becomes_128():
    q0, st0 = _stage0("y040")
    assert q0 == 96
    assert st0.width == 128
    assert st0.group_width == 64
    assert st0.groups == 2


def test_x120_stage1_168_becomes_224():
    q0, st0 = _stage0("x120")
    assert q0 == 168
    assert st0.width == 224
    assert st0.group_width == 112
    assert st0.groups == 2


def test_x080_stage1_group_width_is_clipped_to_80():
    q0, st0 = _stage0("x080")
    assert q0 == 80
    assert st0.width == 80
    assert st0.group_width == 80  # g = 120 is clipped to the bottleneck width
    assert st0.groups == 1
    p = plan(load_spec(SPECS_DIR / "x080.yaml"))
    assert p.group_widths == (80, 120, 120, 120)
    assert all(b.groups == 1 for b in p.stages[0].blocks())


def test_generation_diagnostics_of_a_published_model():
    # RegNetX-200MF: d=13, w0=24, wa=36.44, wm=2.49 -> 4 stages, no exponent skipped.
    p = plan(load_spec(SPECS_DIR / "x002.yaml"))
    g = p.generation
    assert g.num_stages == 4
    assert g.total_stages == 4
    assert not g.skipped_exponents
    assert g.continuous_widths[0] == 24.0
    assert g.continuous_widths[1] == pytest.approx(60.44)
    assert g.exponents == (0, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3)
    assert g.quantized_widths[0] == 24


def test_skipped_exponent_is_reported():
    # w0=8, wa=200, wm=2: u_1 = 208 -> s_1 = round(log2 26) = 5; exponents 1-4 are skipped.
    p = plan(_spec(3, 8, 200.0, 2.0, 8, 1.0, "pycls"))
    g = p.generation
    assert g.exponents[:2] == (0, 5)
    assert g.total_stages == max(g.exponents) + 1
    assert g.num_stages == len(p.stages) < g.total_stages
    assert g.skipped_exponents


@pytest.mark.parametrize(
    ("design", "exponents", "quantized"),
    [
        # wm = 4: log(2) / log(4) = 0.5 and log(32) / log(4) = 2.5 exactly; half to even
        ((4, 8, 8.0, 4.0), (0, 0, 1, 1), (8, 8, 32, 32)),
        ((2, 8, 248.0, 4.0), (0, 2), (8, 128)),
        ((2, 8, 56.0, 4.0), (0, 2), (8, 128)),  # 1.5 -> 2
        # step 3: 8 * 2.5 / 8 = 2.5 -> 2 (half to even) -> 16, not 24
        ((2, 8, 12.0, 2.5), (0, 1), (8, 16)),
    ],
)
def test_exact_halves_round_to_even(design, exponents, quantized):
    d, w0, wa, wm = design
    p = plan(_spec(d, w0, wa, wm, 8, 1.0, "pycls"))
    assert p.generation.exponents == exponents
    assert p.generation.quantized_widths == quantized
    _, ref_exps, ref_quantized_widths = ref_quantized(d, w0, wa, wm, 8)
    assert tuple(ref_exps) == exponents
    assert tuple(ref_quantized_widths) == quantized


def test_pycls_compat_rounds_half_to_even():
    # quantized 40 with g = 16: 40 / 16 = 2.5 -> 2 -> 32 (half up would give 48)
    p = plan(_spec(1, 40, 0.0, 2.0, 16, 1.0, "pycls"))
    assert p.widths == (32,)
    # torchvision: int(40 + 8) // 16 * 16 = 48
    p = plan(_spec(1, 40, 0.0, 2.0, 16, 1.0, "torchvision"))
    assert p.widths == (48,)


def test_wa_zero_is_one_stage():
    p = plan(_spec(7, 48, 0.0, 2.5, 16, 1.0, "pycls"))
    assert p.widths == (48,)
    assert p.depths == (7,)
    assert p.generation.exponents == (0,) * 7


# ---------------------------------------------------------------------------------------------
# Property tests over random valid parametric designs

designs = st.fixed_dictionaries(
    {
        "d": st.integers(1, 30),
        "w0": st.integers(1, 32).map(lambda k: 8 * k),
        "wa": st.floats(0, 256, allow_nan=False, allow_infinity=False),
        "wm": st.floats(1.5, 3.0, allow_nan=False, allow_infinity=False),
        "g": st.sampled_from(GROUP_WIDTHS),
        "bm": st.sampled_from(BMS),
        "rounding": st.sampled_from(("pycls", "torchvision")),
    }
)


@st.composite
def full_designs(draw):
    design = draw(designs)
    block = draw(st.sampled_from("xy"))
    extra = {
        "downsample_in_first_stage": draw(st.booleans()),
        "stem_width": draw(st.sampled_from((8, 16, 24, 32, 64))),
    }
    if block == "y":
        extra["se_ratio"] = draw(st.sampled_from((0.25, 0.5, 0.125, 1 / 3)))
    size = draw(
        st.one_of(
            st.integers(1, 64),
            st.integers(1, 400).map(lambda k: 2 * k + 1),
            st.sampled_from((224, 256, 288, 384)),
        )
    )
    return design, block, extra, size


@SETTINGS
@given(full_designs())
def test_plan_invariants(case):
    design, block, extra, size = case
    spec = _spec(**design, block=block, **extra)
    try:
        p = plan(spec, size)
    except PlanError:
        return  # an impossible design is refused, which is allowed
    bm = design["bm"]
    stages = p.stages
    gen = p.generation

    # Generation diagnostics
    assert gen is not None
    assert len(gen.continuous_widths) == design["d"]
    assert len(gen.exponents) == design["d"]
    assert len(gen.quantized_widths) == design["d"]
    assert gen.num_stages == len(stages)
    assert gen.total_stages == max(gen.exponents) + 1
    assert gen.skipped_exponents == (gen.num_stages != gen.total_stages)
    assert list(gen.quantized_widths) == sorted(gen.quantized_widths)  # non-decreasing
    assert all(w % 8 == 0 and w > 0 for w in gen.quantized_widths)
    assert gen.exponents[0] == 0
    assert list(gen.exponents) == sorted(gen.exponents)

    # Stages come from the runs of equal quantized widths
    runs = [(w, len(list(grp))) for w, grp in itertools.groupby(gen.quantized_widths)]
    assert [s.depth for s in stages] == [n for _, n in runs]
    assert sum(p.depths) == design["d"] == p.depth
    assert p.num_stages == len(stages) == len(runs)

    prev_width, prev_size = spec.stem_width, (size - 1) // 2 + 1
    assert p.stem_size == prev_size
    for i, s in enumerate(stages):
        assert s.index == i
        assert s.width > 0
        assert s.bottleneck_width == round(s.width * bm)
        assert s.bottleneck_width % s.group_width == 0
        assert s.groups * s.group_width == s.bottleneck_width
        assert 1 <= s.group_width <= s.bottleneck_width
        assert s.group_width <= design["g"]
        assert s.bottleneck_multiplier == bm
        assert s.in_width == prev_width
        stride = 2 if (i > 0 or spec.downsample_in_first_stage) else 1
        assert s.stride == stride
        assert s.in_size == prev_size
        assert s.out_size == (prev_size - 1) // stride + 1
        if block == "y":
            assert s.se_width_first == round(spec.se_ratio * prev_width)
            assert s.se_width == round(spec.se_ratio * s.width)
        else:
            assert s.se_width_first == s.se_width == 0
        blocks = s.blocks()
        assert len(blocks) == s.depth
        for j, b in enumerate(blocks):
            assert (b.stage, b.index) == (i, j)
            assert b.in_width == (prev_width if j == 0 else s.width)
            assert b.out_width == s.width
            assert b.stride == (stride if j == 0 else 1)
            assert b.in_size == (prev_size if j == 0 else s.out_size)
            assert b.out_size == s.out_size == (b.in_size - 1) // b.stride + 1
            assert b.se_width == (round(spec.se_ratio * b.in_width) if block == "y" else 0)
            assert b.has_projection == (b.in_width != b.out_width or b.stride != 1)
            assert b.groups * b.group_width == b.bottleneck_width
        prev_width, prev_size = s.width, s.out_size
    assert p.blocks == tuple(b for s in stages for b in s.blocks())
    assert len(p.blocks) == design["d"]
    assert p.out_width == stages[-1].width
    assert p.output_shape == (1, stages[-1].width, stages[-1].out_size, stages[-1].out_size)
    assert p.input_size == size


@SETTINGS
@given(designs)
def test_pycls_stage_widths_follow_the_quantized_widths(design):
    design = {**design, "rounding": "pycls"}
    try:
        p = plan(_spec(**design))
    except PlanError:
        return
    bm, g = design["bm"], design["g"]
    distinct = sorted(set(p.generation.quantized_widths))
    assert len(distinct) == len(p.stages)
    for w, s in zip(distinct, p.stages, strict=True):
        # The stage's bottleneck is the quantized bottleneck rounded to a multiple of the
        # (clipped) group width, and the clip is min(g, bottleneck).
        v = int(max(1, w * bm))
        assert s.group_width == min(g, v)
        assert (s.width * bm) % s.group_width == 0
        if bm > 1:
            assert (s.width * bm) % math.lcm(s.group_width, int(bm)) == 0
        # Rounding to the nearest multiple moves by at most half a quantum (or up to it).
        m = math.lcm(s.group_width, int(bm)) if bm > 1 else s.group_width
        assert abs(s.width * bm - v) <= max(m / 2, m - v)


@SETTINGS
@given(designs)
def test_torchvision_rule_keeps_90_percent(design):
    design = {**design, "rounding": "torchvision"}
    try:
        p = plan(_spec(**design))
    except PlanError:
        return
    bm = design["bm"]
    for w, s in zip(sorted(set(p.generation.quantized_widths)), p.stages, strict=True):
        v = int(w * bm)
        assert s.bottleneck_width >= 0.9 * v
        assert s.bottleneck_width % s.group_width == 0


@pytest.mark.parametrize("rounding", ["pycls", "torchvision"])
def test_reference_agreement(rounding):
    """Widths, depths and group widths equal the independent reference on 400 designs."""
    rng = np.random.default_rng(20200330 if rounding == "pycls" else 20210617)
    checked = refused = 0
    for n in range(400):
        d = int(rng.integers(1, 31))
        w0 = 8 * int(rng.integers(1, 33))
        # half the slopes with two decimals (like the published specs), half unrounded
        wa = float(rng.uniform(0, 256))
        wm = float(rng.uniform(1.5, 3.0))
        if n % 2:
            wa, wm = round(wa, 2), round(wm, 2)
        g = int(rng.choice(GROUP_WIDTHS))
        bm = float(rng.choice(BMS))
        design = (d, w0, wa, wm, g, bm, rounding)
        widths, depths, group_widths = ref_design(*design)
        try:
            p = plan(_spec(*design))
        except PlanError:
            refused += 1
            # Only a design the reference cannot give a network for may be refused.
            assert any(w < 1 for w in widths) or any(
                round(w * bm) % gw for w, gw in zip(widths, group_widths, strict=True)
            ), f"design {design} refused, reference gives {widths}"
            continue
        checked += 1
        assert list(p.widths) == widths, design
        assert list(p.depths) == depths, design
        assert list(p.group_widths) == group_widths, design
        _, exps, quantized = ref_quantized(d, w0, wa, wm, 8)
        assert list(p.generation.exponents) == exps, design
        assert list(p.generation.quantized_widths) == quantized, design
    assert checked >= 300, f"only {checked} designs checked ({refused} refused)"


# The X/Y zoo (the timm-named family presets, regnet*.yaml, have tests of their own).
ZOO_STEMS = sorted(p.stem for p in SPECS_DIR.glob("*.yaml") if not p.stem.startswith("regnet"))


@pytest.mark.parametrize("stem", ZOO_STEMS)
def test_reference_agreement_on_shipped_specs(stem):
    s = load_spec(SPECS_DIR / f"{stem}.yaml")
    widths, depths, group_widths = ref_design(
        s.depth, s.w0, s.wa, s.wm, s.group_width, s.bottleneck_multiplier, s.rounding, s.q
    )
    p = plan(s)
    assert list(p.widths) == widths
    assert list(p.depths) == depths
    assert list(p.group_widths) == group_widths


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 31, 32, 33, 97, 223, 224, 225, 383, 384, 385])
def test_output_sizes(size):
    p = plan(load_spec(SPECS_DIR / "y040.yaml"), size)
    h = (size - 1) // 2 + 1
    assert p.stem_size == h
    for s in p.stages:
        assert s.in_size == h
        h = (h - 1) // 2 + 1
        assert s.out_size == h
    assert p.output_shape == (1, 1088, h, h)


def test_downsample_in_first_stage_false_keeps_resolution():
    s = _spec(13, 24, 36.44, 2.49, 8, 1.0, "pycls", downsample_in_first_stage=False)
    p = plan(s, 224)
    assert p.strides == (1, 2, 2, 2)
    assert [st.out_size for st in p.stages] == [112, 56, 28, 14]


@pytest.mark.parametrize("size", [0, -1, -224, 10**9, 2**16 + 1])
def test_bad_input_size(size):
    with pytest.raises(PlanError):
        plan(load_spec(SPECS_DIR / "x002.yaml"), size)


# (None is not here: it means the spec's own input_size.)
@pytest.mark.parametrize("size", [224.0, "224", True])
def test_input_size_must_be_an_int(size):
    with pytest.raises(PlanError):
        plan(load_spec(SPECS_DIR / "x002.yaml"), size)


def test_width_rule_overflow_is_a_plan_error():
    # Valid fields, but w0 * wm**s far beyond any width: refused, not an overflow.
    s = _spec(1000, 8, 10**6, 1.001, 8, 1.0, "pycls")
    with pytest.raises(PlanError):
        plan(s)


def test_plan_is_frozen():
    p = plan(load_spec(SPECS_DIR / "x002.yaml"))
    with pytest.raises(AttributeError):
        p.input_size = 10  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.stages[0].width = 10  # type: ignore[misc]
