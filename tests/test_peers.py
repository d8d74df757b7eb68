"""Against the peer libraries themselves (optional: skipped where timm / torchvision / pycls are
not installed). Randomly initialised peer models convert and give the same outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from regnet_space import count, load_spec, plan
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
