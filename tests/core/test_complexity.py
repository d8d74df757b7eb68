"""Analytic counting against an independent re-implementation of the counting rules
(pycls, fvcore, torchvision), per part and in total, under the three conventions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regnet_space import ParametricSpec, PlanError, count, load_spec, plan, to_explicit
from regnet_space.core.complexity import CONVENTIONS

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
BMS = (0.25, 0.5, 1.0, 2.0, 4.0)
GROUP_WIDTHS = (1, 2, 4, 8, 16, 24, 32, 48, 64)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


# ---------------------------------------------------------------------------------------------
# Independent reference: layers of the network, counted by the rules of the facts


@dataclass
class RefPart:
    """One part's layers: convs/linears (macs, bias outputs, params, outputs), BNs, pools."""

    macs: int = 0
    bias_adds: int = 0
    weights: int = 0
    outputs: int = 0
    bn_channels: int = 0
    bn_elements: int = 0
    pooled: int = 0
    layers: list = field(default_factory=list)

    def conv(self, k, cin, cout, h, w, groups=1, bias=False):
        # flops k*k*cin*cout*h*w//groups (+ cout*h*w if bias); params k*k*cin*cout//groups
        self.macs += k * k * cin * cout * h * w // groups
        self.weights += k * k * cin * cout // groups + (cout if bias else 0)
        self.bias_adds += cout * h * w if bias else 0
        self.outputs += cout * h * w
        self.layers.append(("conv", k, cin, cout, h, groups, bias))

    def linear(self, cin, cout):
        self.macs += cin * cout
        self.weights += cin * cout + cout
        self.bias_adds += cout
        self.outputs += cout

    def bn(self, c, h, w):
        self.bn_channels += c
        self.bn_elements += c * h * w

    def pool(self, c, h, w):
        self.pooled += c * h * w

    def flops(self, convention):
        if convention == "paper":
            return self.macs + self.bias_adds
        if convention == "torchvision":
            return self.macs
        if convention == "fvcore":
            return self.macs + 2 * self.bn_elements + self.pooled
        raise AssertionError(convention)

    @property
    def params(self):
        return self.weights + 2 * self.bn_channels

    @property
    def acts(self):
        return self.outputs


def conv_out(h: int, stride: int) -> int:
    return (h - 1) // stride + 1


def ref_network(
    stages,  # [(width, depth, group_width, bottleneck_multiplier, stride)]
    *,
    se_ratio: float,
    stem_width: int,
    num_channels: int,
    num_classes: int,
    size: int,
    stem_stride: int = 2,
) -> list[tuple[str, RefPart]]:
    """The RegNet of the facts, section 2, as parts: stem, stage1..N, head."""
    parts = []
    stem = RefPart()
    h = conv_out(size, stem_stride)
    stem.conv(3, num_channels, stem_width, h, h)
    stem.bn(stem_width, h, h)
    parts.append(("stem", stem))
    w_in = stem_width
    for i, (w_out, depth, g, bm, stride) in enumerate(stages):
        part = RefPart()
        for j in range(depth):
            s = stride if j == 0 else 1
            wb = round(w_out * bm)
            gw = min(g, wb)
            groups = wb // gw
            h_out = conv_out(h, s)
            # 1x1 a at the input resolution
            part.conv(1, w_in, wb, h, h)
            part.bn(wb, h, h)
            # 3x3 b grouped, strided
            part.conv(3, wb, wb, h_out, h_out, groups=groups)
            part.bn(wb, h_out, h_out)
            # SE on the bottleneck, its width from the block's input width
            if se_ratio:
                w_se = round(se_ratio * w_in)
                if w_se:
                    part.pool(wb, h_out, h_out)
                    part.conv(1, wb, w_se, 1, 1, bias=True)
                    part.conv(1, w_se, wb, 1, 1, bias=True)
            # 1x1 c
            part.conv(1, wb, w_out, h_out, h_out)
            part.bn(w_out, h_out, h_out)
            # shortcut
            if w_in != w_out or s != 1:
                part.conv(1, w_in, w_out, h_out, h_out)
                part.bn(w_out, h_out, h_out)
            w_in, h = w_out, h_out
        parts.append((f"stage{i + 1}", part))
    head = RefPart()
    head.pool(w_in, h, h)
    if num_classes:
        head.linear(w_in, num_classes)
    parts.append(("head", head))
    return parts


def ref_for(spec, size: int):
    """Reference parts for a spec, from its stage-level structure (widths, depths, g, bm)."""
    p = plan(spec, size)
    n = len(p.stages)
    default = [2 if (i > 0 or spec.downsample_in_first_stage) else 1 for i in range(n)]
    if isinstance(spec, ParametricSpec):
        bms = [spec.bottleneck_multiplier] * n
        strides = default
    else:
        bms = [st.bottleneck_multiplier for st in spec.stages]
        strides = [st.stride or d for st, d in zip(spec.stages, default, strict=True)]
    stages = list(zip(p.widths, p.depths, p.group_widths, bms, strides, strict=True))
    return ref_network(
        stages,
        se_ratio=spec.se_ratio,
        stem_width=spec.stem_width,
        num_channels=spec.num_channels,
        num_classes=spec.num_classes,
        size=size,
        # pycls's res_stem_cifar: the same 3x3 conv with stride 1
        stem_stride=1 if spec.stem == "cifar" else 2,
    )


def assert_matches_reference(spec, size: int):
    ref = ref_for(spec, size)
    for convention in CONVENTIONS:
        c = count(spec, size, convention)
        assert c.convention == convention
        assert c.input_size == size
        assert [pc.name for pc in c.parts] == [name for name, _ in ref]
        for pc, (name, r) in zip(c.parts, ref, strict=True):
            assert (pc.flops, pc.params, pc.acts) == (r.flops(convention), r.params, r.acts), (
                f"{convention} {name} at {size}"
            )
        assert c.flops == sum(r.flops(convention) for _, r in ref)
        assert c.params == sum(r.params for _, r in ref)
        assert c.acts == sum(r.acts for _, r in ref)
        # per-part rows sum to the totals
        assert c.flops == sum(pc.flops for pc in c.parts)
        assert c.params == sum(pc.params for pc in c.parts)
        assert c.acts == sum(pc.acts for pc in c.parts)
        assert [pc.name for pc in c.stages] == [f"stage{i + 1}" for i in range(len(c.stages))]
    return ref


def _spec(**kw) -> ParametricSpec:
    data = {"name": "random", "block": "x", **kw}
    s = load_spec(data)
    assert isinstance(s, ParametricSpec)
    return s


# ---------------------------------------------------------------------------------------------
# Reference on hand-checkable numbers (so that it can be trusted)


def test_reference_by_hand():
    # One X stage: width 16, depth 1, g 8, bm 1, stride 2; stem 8; 1 channel; 8x8 input; 10 classes.
    parts = dict(
        ref_network(
            [(16, 1, 8, 1.0, 2)], se_ratio=0, stem_width=8, num_channels=1, num_classes=10, size=8
        )
    )
    # stem: 3x3, 1 -> 8 at 4x4: 9*1*8*16 = 1152 macs; 72 weights + 16 BN; 128 outputs
    assert (parts["stem"].flops("paper"), parts["stem"].params, parts["stem"].acts) == (
        1152,
        88,
        128,
    )
    # block: a 1x1 8->16 at 4x4 = 2048; b 3x3 16->16 g=2 at 2x2 = 9*16*16*4//2 = 4608;
    # c 1x1 16->16 at 2x2 = 1024; projection 1x1 8->16 at 2x2 = 512
    s1 = parts["stage1"]
    assert s1.flops("paper") == 2048 + 4608 + 1024 + 512
    assert s1.params == 128 + 9 * 16 * 16 // 2 + 256 + 128 + 2 * (16 + 16 + 16 + 16)
    assert s1.acts == 16 * 16 + 16 * 4 + 16 * 4 + 16 * 4
    assert s1.flops("fvcore") == s1.flops("paper") + 2 * (16 * 16 + 16 * 4 + 16 * 4 + 16 * 4)
    head = parts["head"]
    assert (head.flops("paper"), head.flops("torchvision"), head.params, head.acts) == (
        170,
        160,
        170,
        10,
    )
    assert head.flops("fvcore") == 160 + 16 * 4


def test_reference_se_by_hand():
    # Y block, se_ratio 0.25, w_in = stem 32 -> w_se = 8 (from the input width, not 64)
    parts = dict(
        ref_network(
            [(64, 1, 64, 1.0, 2)],
            se_ratio=0.25,
            stem_width=32,
            num_channels=3,
            num_classes=0,
            size=4,
        )
    )
    s1 = parts["stage1"]
    se_layers = [lay for lay in s1.layers if lay[6]]
    assert se_layers == [("conv", 1, 64, 8, 1, 1, True), ("conv", 1, 8, 64, 1, 1, True)]
    assert s1.bias_adds == 8 + 64
    assert parts["head"].params == 0


# ---------------------------------------------------------------------------------------------
# The library against the reference


# The X/Y zoo (the timm-named family presets, regnet*.yaml, have tests of their own).
ZOO_STEMS = sorted(p.stem for p in SPECS_DIR.glob("*.yaml") if not p.stem.startswith("regnet"))


@pytest.mark.parametrize("stem", ZOO_STEMS)
@pytest.mark.parametrize("size", [224, 225, 97])
def test_shipped_specs_match_reference(stem, size):
    assert_matches_reference(load_spec(SPECS_DIR / f"{stem}.yaml"), size)


sizes = st.one_of(
    st.integers(1, 48),
    st.integers(0, 200).map(lambda k: 2 * k + 1),
    st.sampled_from((224, 256, 320, 384)),
)


@st.composite
def random_specs(draw):
    block = draw(st.sampled_from("xy"))
    data = {
        "block": block,
        "depth": draw(st.integers(1, 30)),
        "w0": 8 * draw(st.integers(1, 32)),
        "wa": draw(st.floats(0, 256, allow_nan=False)),
        "wm": draw(st.floats(1.5, 3.0, allow_nan=False)),
        "group_width": draw(st.sampled_from(GROUP_WIDTHS)),
        "bottleneck_multiplier": draw(st.sampled_from(BMS)),
        "rounding": draw(st.sampled_from(("pycls", "torchvision"))),
        "stem_width": draw(st.sampled_from((8, 16, 32, 48))),
        "num_channels": draw(st.sampled_from((1, 3, 4))),
        "num_classes": draw(st.sampled_from((0, 1, 10, 1000))),
        "downsample_in_first_stage": draw(st.booleans()),
        "stem": draw(st.sampled_from(("imagenet", "cifar"))),
    }
    if block == "y":
        data["se_ratio"] = draw(st.sampled_from((0.25, 0.5, 1 / 3)))
    return data


@SETTINGS
@given(random_specs(), sizes)
def test_random_designs_match_reference(data, size):
    spec = _spec(**data)
    try:
        plan(spec, size)
    except PlanError:
        return
    assert_matches_reference(spec, size)


@SETTINGS
@given(random_specs(), sizes)
def test_convention_differences(data, size):
    spec = _spec(**data)
    try:
        p = plan(spec, size)
    except PlanError:
        return
    paper, fv, tv = (count(p, convention=c) for c in ("paper", "fvcore", "torchvision"))
    # Parameters and activations do not depend on the flop convention.
    assert paper.params == fv.params == tv.params
    assert paper.acts == fv.acts == tv.acts

    # Bias adds: two SE 1x1 convs per Y block (w_se + w_b) and the classifier's outputs.
    bias_adds = spec.num_classes
    bn_elements = spec.stem_width * p.stem_size**2
    pooled = p.out_width * p.stages[-1].out_size ** 2
    for b in p.blocks:
        if b.se_width:
            bias_adds += b.se_width + b.bottleneck_width
            pooled += b.bottleneck_width * b.out_size**2
        bn_elements += b.bottleneck_width * b.in_size**2  # after the 1x1 a
        bn_elements += b.bottleneck_width * b.out_size**2  # after the 3x3 b
        bn_elements += b.out_width * b.out_size**2  # after the 1x1 c
        if b.in_width != b.out_width or b.stride != 1:
            bn_elements += b.out_width * b.out_size**2  # after the projection
    assert paper.flops - tv.flops == bias_adds
    assert fv.flops - tv.flops == 2 * bn_elements + pooled
    for pp, pt in zip(paper.parts, tv.parts, strict=True):
        assert pp.flops >= pt.flops
        assert pp.params == pt.params


@SETTINGS
@given(random_specs(), sizes)
def test_count_plan_equals_count_spec(data, size):
    spec = _spec(**data)
    try:
        p = plan(spec, size)
    except PlanError:
        return
    for convention in CONVENTIONS:
        assert count(p, convention=convention) == count(spec, size, convention)
        assert count(p, size, convention) == count(spec, size, convention)
    explicit = to_explicit(spec)
    assert count(explicit, size) == count(spec, size)


@st.composite
def random_explicit_specs(draw):
    """Explicit specs: per-stage widths, group widths, multipliers and strides."""
    stages = []
    for _ in range(draw(st.integers(1, 5))):
        width = 8 * draw(st.integers(1, 64))
        bm = draw(st.sampled_from(BMS))
        wb = round(width * bm)
        g = draw(st.sampled_from([g for g in (*GROUP_WIDTHS, wb) if wb % g == 0]))
        stage = {"width": width, "depth": draw(st.integers(1, 4)), "group_width": g}
        if bm != 1.0:
            stage["bottleneck_multiplier"] = bm
        stride = draw(st.sampled_from((None, 1, 2)))
        if stride is not None and stages:
            stage["stride"] = stride
        stages.append(stage)
    block = draw(st.sampled_from("xy"))
    data = {
        "name": "explicit",
        "block": block,
        "stages": stages,
        "stem_width": draw(st.sampled_from((8, 32))),
        "num_classes": draw(st.sampled_from((0, 7, 1000))),
        "downsample_in_first_stage": draw(st.booleans()),
        "stem": draw(st.sampled_from(("imagenet", "cifar"))),
    }
    if block == "y":
        data["se_ratio"] = draw(st.sampled_from((0.25, 0.5)))
    return data


@SETTINGS
@given(random_explicit_specs(), sizes)
def test_random_explicit_designs_match_reference(data, size):
    spec = load_spec(data)
    assert_matches_reference(spec, size)
    p = plan(spec, size)
    expected = [
        st_.get("stride", 2 if (i > 0 or data["downsample_in_first_stage"]) else 1)
        for i, st_ in enumerate(data["stages"])
    ]
    assert list(p.strides) == expected


def test_count_default_input_size_is_224():
    s = load_spec(SPECS_DIR / "y040.yaml")
    assert count(s) == count(s, 224) == count(plan(s)) == count(plan(s, 224))
    assert count(s).input_size == 224
    assert count(plan(s, 97)).input_size == 97


def test_count_plan_refuses_another_size():
    p = plan(load_spec(SPECS_DIR / "x002.yaml"), 224)
    with pytest.raises(PlanError):
        count(p, 225)


def test_x_block_has_no_bias_adds_but_the_classifier():
    s = load_spec(SPECS_DIR / "x002.yaml")
    assert count(s, convention="paper").flops - count(s, convention="torchvision").flops == 1000


def test_counts_are_exact_integers():
    s = load_spec(SPECS_DIR / "y1280.yaml")
    for convention in CONVENTIONS:
        c = count(s, 384, convention)
        for value in (c.flops, c.params, c.acts):
            assert isinstance(value, int) and not isinstance(value, bool)
            assert not isinstance(value, np.integer)


def test_resolution_scales_flops_not_params():
    s = load_spec(SPECS_DIR / "x004.yaml")
    a, b = count(s, 224), count(s, 448)
    assert a.params == b.params
    assert b.flops > 3.5 * a.flops


@pytest.mark.parametrize("convention", ["", "pycls", "Paper", "fvcore ", None, "flops"])
def test_invalid_convention(convention):
    s = load_spec(SPECS_DIR / "x002.yaml")
    with pytest.raises(PlanError):
        count(s, 224, convention)  # type: ignore[arg-type]
    with pytest.raises(PlanError):
        count(plan(s), convention=convention)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -1, 10**9])
def test_invalid_input_size(size):
    s = load_spec(SPECS_DIR / "x002.yaml")
    with pytest.raises(PlanError):
        count(s, size)
    for convention in CONVENTIONS:
        with pytest.raises(PlanError):
            count(s, size, convention)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_tiny_inputs_count(size):
    s = load_spec(SPECS_DIR / "y040.yaml")
    ref = assert_matches_reference(s, size)
    assert plan(s, size).output_shape == (1, 1088, 1, 1)
    assert count(s, size).acts == sum(r.acts for _, r in ref)


def test_cifar_stem_by_hand():
    # pycls's res_stem_cifar: 3x3 conv stride 1, 3 -> 16 channels, on 32x32 (no bias), BN.
    data = {"depth": 2, "w0": 16, "wa": 0.0, "wm": 2.0, "group_width": 8, "stem_width": 16}
    cifar = count(_spec(**data, stem="cifar", num_classes=10), 32)
    imagenet = count(_spec(**data, num_classes=10), 32)
    stem = cifar.parts[0]
    assert (stem.flops, stem.params, stem.acts) == (
        9 * 3 * 16 * 32 * 32,
        9 * 3 * 16 + 32,
        16 * 1024,
    )
    assert imagenet.parts[0].flops == 9 * 3 * 16 * 16 * 16
    assert plan(_spec(**data, stem="cifar"), 32).stem_size == 32
    # Everything after the stem runs at twice the side: four times the flops, same params.
    assert cifar.parts[1].flops == 4 * imagenet.parts[1].flops
    assert cifar.params == imagenet.params
