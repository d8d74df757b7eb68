"""Against the peer libraries themselves (optional: skipped where timm / torchvision / pycls are
not installed). Randomly initialised peer models convert and give the same outputs."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from regnet_space import PlanError, Spec, count, load_spec, plan
from regnet_space.core.errors import InteropError
from regnet_space.core.pycls import spec_from_pycls_dict
from regnet_space.interop.checkpoints import (
    ConvertError,
    Library,
    convert_state_dict,
    layout_of,
)
from regnet_space.interop.timm import spec_from_timm_cfg, timm_cfg_from_spec
from regnet_space.nn.backbone import feature_info
from regnet_space.nn.counters import verify
from regnet_space.nn.model import build_model

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
ATOL = 1e-5
SIZE = 64


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and statistics (timm zero-inits the last BN of blocks),
    random GroupNorm affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def assert_same_outputs(peer: nn.Module, library: Library, spec_file: str) -> None:
    """Convert the peer's state dict, load it strictly, compare logits; then the reverse."""
    p = plan(load_spec(SPECS / spec_file), SIZE)
    peer = randomised(peer)
    ours = build_model(p)
    ours.load_state_dict(convert_state_dict(peer.state_dict(), p, library), strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = peer(x)
        assert (ours.eval()(x).logits - expected).abs().max() <= ATOL
        # and back: our state dict in the peer's layout loads into the peer strictly
        back = convert_state_dict(ours.state_dict(), p, "hf", library)
        peer.load_state_dict(back, strict=True)
        assert (peer(x) - expected).abs().max() <= ATOL


# ---------------------------------------------------------------------------------------------
# torchvision

TORCHVISION = [
    # the three torchvision-rounded designs (torchvision's own figures), then two equal to pycls's
    ("regnet_x_400mf", "x004_tv.yaml"),
    ("regnet_y_800mf", "y008_tv.yaml"),
    ("regnet_y_8gf", "y080_tv.yaml"),
    ("regnet_y_400mf", "y004.yaml"),
    ("regnet_x_800mf", "x008.yaml"),
]


@pytest.mark.parametrize(("builder", "spec_file"), TORCHVISION)
def test_torchvision_models_convert_with_equal_outputs(builder: str, spec_file: str) -> None:
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    peer = getattr(models, builder)()
    assert_same_outputs(peer, "torchvision", spec_file)


# ---------------------------------------------------------------------------------------------
# timm

TIMM = [
    ("regnetx_002", "x002.yaml"),
    ("regnety_002", "y002.yaml"),
    ("regnetx_004_tv", "x004_tv.yaml"),
    ("regnety_008_tv", "y008_tv.yaml"),
    ("regnety_016", "y016.yaml"),
]


@pytest.mark.parametrize(("name", "spec_file"), TIMM)
def test_timm_models_convert_with_equal_outputs(name: str, spec_file: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    assert_same_outputs(timm.create_model(name), "timm", spec_file)


def _timm_presets() -> list[tuple[str, str]]:
    shipped = {p.stem for p in SPECS.glob("*.yaml")} - {"y10b"}  # SEER 10B: no timm preset
    pairs = []
    for model in ("x", "y"):
        for stem in sorted(shipped):
            if stem.startswith(model):
                pairs.append((f"regnet{model}_{stem[1:]}", stem))
    return pairs


@pytest.mark.parametrize(("name", "stem"), _timm_presets())
def test_timm_presets_import_as_the_shipped_specs(name: str, stem: str) -> None:
    regnet = pytest.importorskip("timm.models.regnet")
    spec = spec_from_timm_cfg(regnet.model_cfgs[name].__dict__, name=name)
    assert plan(spec).stages == plan(load_spec(SPECS / f"{stem}.yaml")).stages


@pytest.mark.parametrize("name", ["regnety_040_sgn", "regnetv_040", "regnetv_064", "regnetz_005"])
def test_timm_family_configs_import_as_the_shipped_presets(name: str) -> None:
    """timm's GroupNorm, pre-activation and RegNetZ configs import (they were refused before)."""
    regnet = pytest.importorskip("timm.models.regnet")
    spec = spec_from_timm_cfg(regnet.model_cfgs[name].__dict__, name=name)
    shipped = load_spec(SPECS / f"{name}.yaml")
    assert plan(spec).stages == plan(shipped).stages
    assert plan(spec).options == plan(shipped).options
    assert count(spec) == count(shipped.model_copy(update={"input_size": 224}))


def test_timm_configs_outside_the_family_are_refused() -> None:
    regnet = pytest.importorskip("timm.models.regnet")
    layers = pytest.importorskip("timm.layers")
    cfg = regnet.model_cfgs["regnety_040"].__dict__
    with pytest.raises(InteropError, match="norm_layer"):
        spec_from_timm_cfg(cfg | {"norm_layer": layers.LayerNorm2d})


@pytest.mark.parametrize("stem", ["x002", "x080", "y040", "y008_tv", "y1280", "y10b"])
def test_timm_builds_our_kwargs_with_the_same_parameter_count(stem: str) -> None:
    regnet = pytest.importorskip("timm.models.regnet")
    spec = load_spec(SPECS / f"{stem}.yaml")
    cfg = timm_cfg_from_spec(spec)
    model = regnet.RegNet(
        regnet.RegNetCfg(**cfg.as_kwargs()), in_chans=cfg.in_chans, num_classes=cfg.num_classes,
        device="meta",
    )  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) == count(spec).params


# ---------------------------------------------------------------------------------------------
# pycls (the 2020 PyPI release; its global config is restored after each test)


@pytest.fixture
def pycls_cfg() -> Iterator[object]:
    config = pytest.importorskip("pycls.core.config")
    saved = config.cfg.clone()
    yield config.cfg
    config.cfg.merge_from_other_cfg(saved)


@pytest.mark.parametrize(
    ("yaml_file", "spec_file"),
    [("RegNetX-200MF_dds_8gpu.yaml", "x002.yaml"), ("RegNetY-200MF_dds_8gpu.yaml", "y002.yaml")],
)
def test_pycls_models_convert_with_equal_outputs(
    pycls_cfg: object, yaml_file: str, spec_file: str
) -> None:
    from pycls.models.regnet import RegNet

    path = ROOT / "tests" / "data" / "pycls" / yaml_file
    pycls_cfg.merge_from_file(str(path))  # type: ignore[attr-defined]
    torch.manual_seed(0)
    peer = RegNet()
    assert count(load_spec(path)).params == sum(p.numel() for p in peer.parameters())
    assert_same_outputs(peer, "pycls", spec_file)


def test_pycls_bgr_checkpoint_gives_equal_outputs_on_rgb_input(pycls_cfg: object) -> None:
    from pycls.models.regnet import RegNet

    path = ROOT / "tests" / "data" / "pycls" / "RegNetY-200MF_dds_8gpu.yaml"
    pycls_cfg.merge_from_file(str(path))  # type: ignore[attr-defined]
    torch.manual_seed(0)
    peer = randomised(RegNet())
    p = plan(load_spec(path), SIZE)
    ours = build_model(p)
    state = convert_state_dict(peer.state_dict(), p, "pycls", bgr_to_rgb=True)
    ours.load_state_dict(state, strict=True)
    rgb = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert (ours.eval()(rgb).logits - peer(rgb.flip(1))).abs().max() <= ATOL


# ---------------------------------------------------------------------------------------------
# float32 ties: timm's generate_regnet and torchvision's BlockParams, on the designs where
# pycls's float64 rule rounds the other way (d, w0, wa, wm, group width)

TIES = [
    (30, 120, 33.34, 2.1, 24),
    (30, 200, 83.04, 2.18, 1),
    (27, 120, 27.51, 2.1, 8),
    (27, 240, 59.46, 2.05, 8),
    (26, 240, 59.77, 2.05, 2),
    (9, 72, 25.2, 2.89, 8),  # an exponent exactly on .5 (u_2 / w0 = 1.7, wm = 1.7**2)
]


def _tie_spec(design: tuple, rounding: str, block: str = "x") -> Spec:
    d, w0, wa, wm, g = design
    data = {"name": "tie", "block": block, "depth": d, "w0": w0, "wa": wa, "wm": wm}
    return load_spec(data | {"group_width": g, "rounding": rounding})


def _torchvision_stages(design: tuple) -> tuple[list[int], list[int], list[int]]:
    from torchvision.models.regnet import BlockParams

    d, w0, wa, wm, g = design
    bp = BlockParams.from_init_params(depth=d, w_0=w0, w_a=wa, w_m=wm, group_width=g)
    return list(bp.widths), list(bp.depths), list(bp.group_widths)


def _timm_stages(design: tuple, group_min_ratio: float) -> tuple[list[int], list[int], list[int]]:
    from timm.models.regnet import RegNet, RegNetCfg

    d, w0, wa, wm, g = design
    cfg = RegNetCfg(depth=d, w0=w0, wa=wa, wm=wm, group_size=g, group_min_ratio=group_min_ratio)
    stages, _ = RegNet._get_stage_args(None, cfg)  # type: ignore[arg-type]
    return (
        [s["out_chs"] for s in stages],
        [s["depth"] for s in stages],
        [s["group_size"] for s in stages],
    )


def _ours(spec: Spec) -> tuple[list[int], list[int], list[int]]:
    p = plan(spec)
    return list(p.widths), list(p.depths), list(p.group_widths)


@pytest.mark.parametrize("design", TIES, ids=lambda d: "-".join(map(str, d)))
def test_ties_against_torchvision_and_timm(design: tuple) -> None:
    pytest.importorskip("torchvision")
    pytest.importorskip("timm")
    assert _ours(_tie_spec(design, "torchvision")) == _torchvision_stages(design)
    assert _ours(_tie_spec(design, "torchvision")) == _timm_stages(design, 0.9)
    assert _ours(_tie_spec(design, "timm")) == _timm_stages(design, 0.0)
    # and the 4-stage ones through the config converters, into models of equal size
    spec = _tie_spec(design, "timm", block="y")
    if plan(spec).num_stages == 4:
        regnet = pytest.importorskip("timm.models.regnet")
        cfg = timm_cfg_from_spec(spec)
        model = regnet.RegNet(
            regnet.RegNetCfg(**cfg.as_kwargs()), in_chans=3, num_classes=1000, device="meta"
        )
        assert sum(p.numel() for p in model.parameters()) == count(spec).params


def test_the_table_differs_from_pycls() -> None:
    pytest.importorskip("torchvision")
    differ = [d for d in TIES if _ours(_tie_spec(d, "pycls")) != _torchvision_stages(d)]
    assert differ == TIES


@st.composite
def _near_ties(draw: st.DrawFn) -> tuple:
    """w0 * wm / 8 on a decimal half-integer (or 1e-7 off it), a slope reaching it."""
    w0 = 8 * draw(st.integers(1, 64))
    half = draw(st.integers(w0 // 8, 3 * w0 // 8)) + 0.5
    wm = round(half * 8 / w0, draw(st.integers(2, 4)))
    assume(1.05 <= wm <= 3.5 and abs(w0 * wm / 8 - half) < 1e-6)
    d = draw(st.integers(2, 30))
    wa = round(w0 * (wm - 1) / draw(st.integers(1, d - 1)), 2)
    assume(wa > 0)
    return d, w0, wa, wm, draw(st.sampled_from([1, 8, 16, 24, 64]))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])  # fmt: skip
@given(_near_ties())
def test_near_ties_against_torchvision_and_timm(design: tuple) -> None:
    pytest.importorskip("torchvision")
    pytest.importorskip("timm")
    try:
        ours = _ours(_tie_spec(design, "torchvision"))
    except PlanError:
        return
    assert ours == _torchvision_stages(design)
    assert _ours(_tie_spec(design, "timm")) == _timm_stages(design, 0.0)


# ---------------------------------------------------------------------------------------------
# The names table against the libraries' own builders and presets


def _names(library: str) -> list[tuple[str, str]]:
    from regnet_space.core.names import names_table, spellings

    stems = sorted(set(names_table().values()))
    return [(n, s) for s in stems for n in spellings(s).get(library, [])]


@pytest.mark.parametrize(("name", "stem"), _names("torchvision"))
def test_torchvision_names_build_torchvisions_models(
    name: str, stem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = pytest.importorskip("torchvision.models")
    spec = load_spec(name)
    assert spec == load_spec(SPECS / f"{stem}.yaml")
    # The builder's own BlockParams (read where it hands them to the model constructor) ...
    from torchvision.models import regnet as tv_regnet

    seen = []
    build = tv_regnet._regnet
    monkeypatch.setattr(tv_regnet, "_regnet", lambda params, *a, **k: seen.append(params))
    getattr(models, name)()
    (params,) = seen
    p = plan(spec)
    assert list(params.widths) == list(p.widths)
    assert list(params.depths) == list(p.depths)
    assert list(params.group_widths) == list(p.group_widths)
    # ... and, for the models that fit in memory here, the model's parameter count.
    if count(spec).params < 50_000_000:
        peer = build(params, None, False)
        assert sum(q.numel() for q in peer.parameters()) == count(spec).params


# timm's ByobNet RegNetZs have no RegNetCfg (their presets are pinned to the models below).
BYOBNET = {"regnetz_b16", "regnetz_c16", "regnetz_d8", "regnetz_d32", "regnetz_e8"}


@pytest.mark.parametrize(("name", "stem"), [n for n in _names("timm") if n[1] not in BYOBNET])
def test_timm_names_are_timms_presets(name: str, stem: str) -> None:
    regnet = pytest.importorskip("timm.models.regnet")
    from_timm = spec_from_timm_cfg(regnet.model_cfgs[name].__dict__, name=name)
    # at one input size: timm's RegNetCfg has none (the presets carry timm's)
    assert plan(from_timm, 224).stages == plan(load_spec(name), 224).stages


# ---------------------------------------------------------------------------------------------
# benchmarks/bench_forward.py's timm column


def test_forward_benchmark_times_timm_beside_hugging_face(
    capsys: pytest.CaptureFixture[str], bench_forward: Any
) -> None:
    pytest.importorskip("timm")
    pytest.importorskip("transformers")
    bench = bench_forward
    argv = ["--models", "y002", "--batches", "1", "--threads", "1", "--input-size", "32"]
    bench.main([*argv, "--rounds", "1", "--min-time", "0", "--no-gpu"])
    out = capsys.readouterr().out
    assert "eager/timm  form/timm" in out and "goals against timm: eager " in out
    # timm's model holds our weights: its logits count in the largest difference from HF's
    assert "outputs within 0.0001 met" in out


# ---------------------------------------------------------------------------------------------
# timm's RegNet family beyond X and Y: the shipped presets against timm's own models

FAMILY = [
    "regnetz_b16",
    "regnetz_c16",
    "regnetz_d8",
    "regnetz_d32",
    "regnetz_e8",
    "regnetz_005",
    "regnetz_040",
    "regnetz_040_h",
    "regnetv_040",
    "regnetv_064",
    "regnety_040_sgn",
]


def _byobnet(p: Any) -> bool:
    return layout_of(p, "timm") == "timm-byobnet"


@pytest.mark.parametrize("name", FAMILY)
def test_family_preset_is_timms_model(name: str) -> None:
    """Parameters, weights key by key (both ways, strict) with logits within 1e-5, fvcore
    against our fvcore convention, and the feature pyramid, against timm's model."""
    timm = pytest.importorskip("timm")
    spec = load_spec(name)  # by timm's name, from the names table
    torch.manual_seed(0)
    peer = timm.create_model(name)
    assert sum(q.numel() for q in peer.parameters()) == count(spec).params
    assert_same_outputs(peer, "timm", f"{name}.yaml")
    p = plan(spec, SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert verify(build_model(p), p).mismatches() == []
    levels = feature_info(p, head_conv=_byobnet(p))
    assert [(f.channels, f.stride) for f in levels] == [
        (f["num_chs"], f["reduction"]) for f in peer.feature_info
    ]


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("output_stride", [16, 8])
def test_family_output_stride_gives_timms_shapes(name: str, output_stride: int) -> None:
    timm = pytest.importorskip("timm")
    spec = load_spec(name).model_copy(update={"output_stride": output_stride})
    p = plan(spec, SIZE)
    peer = timm.create_model(name, output_stride=output_stride, device="meta")
    with torch.device("meta"):
        ours = build_model(p)
        x = torch.empty(1, 3, SIZE, SIZE)
        assert ours.regnet(x).last_hidden_state.shape == peer.forward_features(x).shape
    levels = feature_info(p, head_conv=_byobnet(p))
    assert [(f.channels, f.stride) for f in levels] == [
        (f["num_chs"], f["reduction"]) for f in peer.feature_info
    ]


@pytest.mark.parametrize("name", ["regnetv_064", "regnetz_d8"])
def test_family_output_stride_8_gives_timms_logits(name: str) -> None:
    """Dilation, and timm's AvgPool2dSame in regnetv_064's dilated avg shortcut, exactly."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    peer = randomised(timm.create_model(name, output_stride=8))
    p = plan(load_spec(name).model_copy(update={"output_stride": 8}), SIZE)
    ours = build_model(p)
    ours.load_state_dict(convert_state_dict(peer.state_dict(), p, "timm"), strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert (ours.eval()(x).logits - peer(x)).abs().max() <= ATOL


def test_regnety_2560_has_timms_parameters() -> None:
    timm = pytest.importorskip("timm")
    peer = timm.create_model("regnety_2560", device="meta")
    assert sum(q.numel() for q in peer.parameters()) == count(load_spec("regnety_2560")).params
    cfg = pytest.importorskip("timm.models.regnet").model_cfgs["regnety_2560"]
    from_timm = spec_from_timm_cfg(cfg.__dict__)
    assert plan(load_spec("regnety_2560"), 224).stages == plan(from_timm).stages


# ---------------------------------------------------------------------------------------------
# The SE activation: timm and torchvision use the block's (the defect: ours was always ReLU)


def test_a_silu_y_from_a_timm_config_gives_timms_logits() -> None:
    regnet = pytest.importorskip("timm.models.regnet")
    for act in ("silu", "gelu"):
        cfg = regnet.RegNetCfg(depth=13, w0=24, wa=36.44, wm=2.49, group_size=8, se_ratio=0.25)
        cfg.act_layer = act
        torch.manual_seed(0)
        peer = randomised(regnet.RegNet(cfg, num_classes=10))
        p = plan(spec_from_timm_cfg(cfg.__dict__, num_classes=10), SIZE)
        assert p.options.se_activation == act
        ours = build_model(p)
        ours.load_state_dict(convert_state_dict(peer.state_dict(), p, "timm"), strict=True)
        x = torch.randn(2, 3, SIZE, SIZE)
        with torch.no_grad():
            assert (ours.eval()(x).logits - peer(x)).abs().max() <= ATOL


def test_a_silu_y_from_torchvision_gives_torchvisions_logits() -> None:
    tv = pytest.importorskip("torchvision.models.regnet")
    params = tv.BlockParams.from_init_params(
        depth=13, w_0=24, w_a=36.44, w_m=2.49, group_width=8, se_ratio=0.25
    )
    torch.manual_seed(0)
    peer = randomised(tv.RegNet(params, num_classes=10, activation=nn.SiLU))
    data = {"name": "tv", "block": "y", "depth": 13, "w0": 24, "wa": 36.44, "wm": 2.49}
    data |= {"group_width": 8, "rounding": "torchvision", "num_classes": 10}
    spec = load_spec(data | {"activation": "silu", "se_activation": "silu"})
    p = plan(spec, SIZE)
    ours = build_model(p)
    ours.load_state_dict(convert_state_dict(peer.state_dict(), p, "torchvision"), strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert (ours.eval()(x).logits - peer(x)).abs().max() <= ATOL
    with pytest.raises(ConvertError, match="se_activation: relu"):  # the default, ReLU
        convert_state_dict(
            peer.state_dict(), plan(load_spec(data | {"activation": "silu"})), "torchvision"
        )


# ---------------------------------------------------------------------------------------------
# pycls's AnyNet block types and stems, on random designs (pycls 0.1.1; its
# res_bottleneck_linear_block, from pycls's later code, is added over 0.1.1's transform)


def _linear_block() -> type:
    from pycls.models import anynet

    class ResBottleneckLinearBlock(nn.Module):
        """pycls's res_bottleneck_linear_block: x + f(x) where the shape stays, else f(x)."""

        def __init__(self, w_in, w_out, stride, bm=1.0, gw=1, se_r=None):
            super().__init__()
            self.has_skip = (w_in == w_out) and (stride == 1)
            self.f = anynet.BottleneckTransform(w_in, w_out, stride, bm, gw, se_r)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.f(x) if self.has_skip else self.f(x)

        @staticmethod
        def complexity(cx, w_in, w_out, stride, bm=1.0, gw=1, se_r=None):
            return anynet.BottleneckTransform.complexity(cx, w_in, w_out, stride, bm, gw, se_r)

    return ResBottleneckLinearBlock


@st.composite
def _pycls_anynets(draw: st.DrawFn) -> dict:
    block = draw(st.sampled_from(
        ["vanilla_block", "res_basic_block", "res_bottleneck_block", "res_bottleneck_linear_block"]
    ))  # fmt: skip
    n = draw(st.integers(1, 3))
    anynet: dict[str, Any] = {
        "STEM_TYPE": draw(st.sampled_from(["res_stem_cifar", "res_stem_in", "simple_stem_in"])),
        "STEM_W": draw(st.sampled_from([8, 16])),
        "BLOCK_TYPE": block,
        "DEPTHS": [draw(st.integers(1, 2)) for _ in range(n)],
        "WIDTHS": [8 * draw(st.integers(1, 4)) for _ in range(n)],
        "STRIDES": [draw(st.sampled_from([1, 2])) for _ in range(n)],
    }
    if "bottleneck" in block:
        anynet["BOT_MULS"] = [draw(st.sampled_from([0.5, 1.0, 2.0])) for _ in range(n)]
        anynet["GROUP_WS"] = [4] * n
        anynet["SE_ON"] = draw(st.booleans())
    return {"MODEL": {"TYPE": "anynet", "NUM_CLASSES": 7}, "ANYNET": anynet}


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[*HealthCheck])  # fmt: skip
@given(_pycls_anynets())
def test_pycls_anynet_blocks_and_stems_count_and_convert_exactly(config: dict) -> None:
    config_mod = pytest.importorskip("pycls.core.config")
    from pycls.models import anynet
    from yacs.config import CfgNode

    saved = config_mod.cfg.clone()
    blocks = anynet.get_block_fun
    anynet.get_block_fun = lambda name: (  # type: ignore[assignment]
        _linear_block() if name == "res_bottleneck_linear_block" else blocks(name)
    )
    try:
        config_mod.cfg.merge_from_other_cfg(CfgNode(config))
        spec = spec_from_pycls_dict(config, "random anynet")
        p = plan(spec, 32)
        cx = anynet.AnyNet.complexity({"h": 32, "w": 32, "flops": 0, "params": 0, "acts": 0})
        c = count(p)
        assert (c.flops, c.params, c.acts) == (cx["flops"], cx["params"], cx["acts"])
        torch.manual_seed(0)
        peer = randomised(anynet.AnyNet())
        assert sum(q.numel() for q in peer.parameters()) == c.params
        ours = build_model(p)
        ours.load_state_dict(convert_state_dict(peer.state_dict(), p, "pycls"), strict=True)
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert (ours.eval()(x).logits - peer(x)).abs().max() <= ATOL
            back = convert_state_dict(ours.state_dict(), p, "hf", "pycls")
            peer.load_state_dict(back, strict=True)
    finally:
        anynet.get_block_fun = blocks
        config_mod.cfg.merge_from_other_cfg(saved)


def test_forward_benchmark_times_family_models_against_timm_alone(
    capsys: pytest.CaptureFixture[str], bench_forward: Any
) -> None:
    pytest.importorskip("timm")
    argv = ["--models", "regnetz_d8,regnetv_040", "--batches", "1", "--threads", "1"]
    bench_forward.main(
        [*argv, "--input-size", "32", "--rounds", "1", "--min-time", "0", "--no-gpu"]
    )
    out = capsys.readouterr().out
    assert "against timm alone" in out and "regnetz_d8" in out and "regnetv_040" in out
    assert "outputs within 0.0001 of timm's" in out  # timm's logits from our weights


@pytest.mark.parametrize("name", ["regnetz_b16", "regnetv_064"])
def test_convert_command_from_timm_gives_timms_logits(name: str, tmp_path: Path) -> None:
    """The command line: a timm checkpoint file of a family model, converted by its name."""
    timm = pytest.importorskip("timm")
    from regnet_space.cli import main
    from regnet_space.interop.checkpoints import read_checkpoint

    torch.manual_seed(0)
    peer = randomised(timm.create_model(name))
    torch.save({"state_dict": peer.state_dict()}, tmp_path / "peer.pth")
    out = tmp_path / "ours.safetensors"
    argv = ["convert", str(tmp_path / "peer.pth"), "--from", "timm", "--spec", name, "-o", str(out)]
    assert main(argv) == 0
    p = plan(load_spec(name), SIZE)
    ours = build_model(p)
    ours.load_state_dict(read_checkpoint(out), strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert (ours.eval()(x).logits - peer(x)).abs().max() <= ATOL
