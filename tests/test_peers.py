"""Against the peer libraries themselves (optional: skipped where timm / torchvision / pycls are
not installed). Randomly initialised peer models convert and give the same outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from regnet_space import PlanError, Spec, count, load_spec, plan
from regnet_space.interop.checkpoints import Library, convert_state_dict
from regnet_space.interop.common import InteropError
from regnet_space.interop.pycls import load_pycls_yaml
from regnet_space.interop.timm import spec_from_timm_cfg, timm_cfg_from_spec
from regnet_space.nn.model import build_model

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ATOL = 1e-5
SIZE = 64


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and statistics (timm zero-inits the last BN of blocks)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
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


def test_timm_presets_outside_regnet_x_y_are_refused() -> None:
    regnet = pytest.importorskip("timm.models.regnet")
    with pytest.raises(InteropError, match="norm_layer"):
        spec_from_timm_cfg(regnet.model_cfgs["regnety_040_sgn"].__dict__)


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
    assert count(load_pycls_yaml(path)).params == sum(p.numel() for p in peer.parameters())
    assert_same_outputs(peer, "pycls", spec_file)


def test_pycls_bgr_checkpoint_gives_equal_outputs_on_rgb_input(pycls_cfg: object) -> None:
    from pycls.models.regnet import RegNet

    path = ROOT / "tests" / "data" / "pycls" / "RegNetY-200MF_dds_8gpu.yaml"
    pycls_cfg.merge_from_file(str(path))  # type: ignore[attr-defined]
    torch.manual_seed(0)
    peer = randomised(RegNet())
    p = plan(load_pycls_yaml(path), SIZE)
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


@pytest.mark.parametrize(("name", "stem"), _names("timm"))
def test_timm_names_are_timms_presets(name: str, stem: str) -> None:
    regnet = pytest.importorskip("timm.models.regnet")
    from_timm = spec_from_timm_cfg(regnet.model_cfgs[name].__dict__, name=name)
    assert plan(from_timm).stages == plan(load_spec(name)).stages


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
