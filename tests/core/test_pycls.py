"""pycls configs (core.pycls): the model zoo's YAML files import with identical counts, AnyNet as
explicit stages, round trips, pycls's defaults, refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import PARAMETRIC, PYCLS, ROOT, same_network

from regnet_space import count, load_spec, plan
from regnet_space.core.errors import InteropError, SpecError
from regnet_space.core.pycls import pycls_yaml_from_spec, spec_from_pycls_yaml
from regnet_space.core.spec import ExplicitSpec, ParametricSpec, spec_from_dict

# pycls model-zoo config (written in pycls's format in tests/data) -> the shipped spec.
ZOO = {
    "RegNetX-200MF_dds_8gpu.yaml": "x002",
    "RegNetX-8.0GF_dds_8gpu.yaml": "x080",
    "RegNetX-12GF_dds_8gpu.yaml": "x120",
    "RegNetY-200MF_dds_8gpu.yaml": "y002",
    "RegNetY-4.0GF_dds_8gpu.yaml": "y040",
    "RegNetY-32GF_dds_8gpu.yaml": "y320",
}


@pytest.mark.parametrize(("file", "shipped"), sorted(ZOO.items()))
def test_pycls_zoo_configs_import_with_identical_counts(file: str, shipped: str) -> None:
    spec = load_spec(PYCLS / file)
    reference = load_spec(ROOT / "specs" / f"{shipped}.yaml")
    assert spec.name == file.removesuffix(".yaml")
    assert plan(spec).stages == plan(reference).stages
    for convention in ("paper", "fvcore", "torchvision"):
        assert count(spec, convention=convention) == count(reference, convention=convention)


def test_pycls_y040_fields() -> None:
    spec = load_spec(PYCLS / "RegNetY-4.0GF_dds_8gpu.yaml")
    assert isinstance(spec, ParametricSpec)
    assert (spec.depth, spec.w0, spec.wa, spec.wm, spec.group_width) == (22, 96, 31.41, 2.24, 64)
    assert (spec.block, spec.se_ratio, spec.num_classes) == ("y", 0.25, 1000)
    assert count(spec).params == 20_646_656


def test_pycls_anynet_imports_as_explicit_stages() -> None:
    spec = load_spec(PYCLS / "AnyNetX-tiny.yaml")
    assert isinstance(spec, ExplicitSpec)
    p = plan(spec)
    assert p.widths == (32, 64, 160, 384) and p.depths == (1, 2, 4, 2)
    assert p.bottleneck_widths == (32, 64, 80, 96)
    assert (spec.block, spec.num_classes) == ("x", 10)


@pytest.mark.parametrize(
    "path", [p for p in PARAMETRIC if load_spec(p).rounding == "pycls"], ids=lambda p: p.stem
)
def test_pycls_yaml_round_trip_of_shipped_specs(path: Path) -> None:
    spec = load_spec(path)
    assert spec_from_pycls_yaml(pycls_yaml_from_spec(spec), name=spec.name) == spec


def test_pycls_yaml_round_trip_of_other_options() -> None:
    spec = spec_from_dict(
        {"name": "odd", "block": "y", "depth": 10, "w0": 32, "wa": 20.0, "wm": 2.2}
        | {"group_width": 16, "bottleneck_multiplier": 0.5, "se_ratio": 0.125}
        | {"stem_width": 24, "activation": "silu", "se_activation": "silu", "num_classes": 7}
    )
    text = pycls_yaml_from_spec(spec)
    assert "BOT_MUL: 0.5" in text and "SE_R: 0.125" in text and "ACTIVATION_FUN: silu" in text
    assert spec_from_pycls_yaml(text, name="odd") == spec
    explicit = load_spec(PYCLS / "AnyNetX-tiny.yaml")
    again = spec_from_pycls_yaml(pycls_yaml_from_spec(explicit), name=explicit.name)
    assert same_network(again, explicit)


def test_pycls_defaults_follow_pycls() -> None:
    spec = spec_from_pycls_yaml("MODEL:\n  TYPE: regnet\n")
    # pycls/core/config.py: DEPTH 10, W0 32, WA 5.0, WM 2.5, GROUP_W 16, NUM_CLASSES 10
    assert isinstance(spec, ParametricSpec)
    assert (spec.depth, spec.w0, spec.wa, spec.wm, spec.group_width) == (10, 32, 5.0, 2.5, 16)
    assert (spec.num_classes, spec.block, spec.name) == (10, "x", "pycls-regnet")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("MODEL:\n  TYPE: resnet\n", "MODEL.TYPE: 'resnet' is not a RegNet"),
        ("MODEL:\n  TYPE: effnet\n", "MODEL.TYPE: 'effnet' is not a RegNet"),
        ("TRAIN:\n  IM_SIZE: 224\n", "not a pycls config (no MODEL section)"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  DEPHT: 12\n", "REGNET.DEPHT: unknown"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  WA: fast\n", "REGNET.WA: expected a number"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  DEPTH: 12.5\n", "REGNET.DEPTH: expected an integer"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  SE_ON: 1\n", "REGNET.SE_ON: expected True or False"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  STEM_TYPE: res_stem_x\n", "REGNET.STEM_TYPE"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  BLOCK_TYPE: res_basic_block\n", "BLOCK_TYPE"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  HEAD_W: -8\n", "REGNET.HEAD_W: expected"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  STRIDE: 1\n", "REGNET.STRIDE: 1"),
        ("MODEL:\n  TYPE: regnet\n  ACTIVATION_FUN: tanh\n", "MODEL.ACTIVATION_FUN"),
        ("MODEL:\n  TYPE: regnet\nBN:\n  EPS: 0.001\n", "BN.EPS"),
        ("MODEL:\n  TYPE: anynet\nANYNET:\n  DEPTHS: [1]\n  WIDTHS: [8, 16]\n", "ANYNET.WIDTHS"),
    ],
)
def test_pycls_refusals_name_the_key(text: str, message: str) -> None:
    with pytest.raises(InteropError) as err:
        spec_from_pycls_yaml(text, source="cfg.yaml")
    msg = str(err.value)
    assert msg.startswith("cfg.yaml: ") and message in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("MODEL: [1, 2\n", "invalid YAML"),
        ("MODEL:\n  TYPE: regnet\nREGNET:\n  W0: 20\n", "w0: must be a positive multiple"),
    ],
)
def test_pycls_configs_breaking_the_spec_rules_are_spec_errors(text: str, message: str) -> None:
    # YAML syntax and the spec's own rules are no peer's: the reader's SpecError.
    with pytest.raises(SpecError) as err:
        spec_from_pycls_yaml(text, source="cfg.yaml")
    msg = str(err.value)
    assert msg.startswith("cfg.yaml: ") and message in msg and "\n" not in msg


def test_pycls_export_refusals() -> None:
    with pytest.raises(InteropError, match="rounding"):
        pycls_yaml_from_spec(load_spec(ROOT / "specs" / "y008_tv.yaml"))
    spec = spec_from_dict(
        {"name": "q", "block": "x", "depth": 8, "w0": 32, "wa": 16.0, "wm": 2.0}
        | {"group_width": 8, "q": 16}
    )
    with pytest.raises(InteropError, match="q: pycls quantizes widths to 8"):
        pycls_yaml_from_spec(spec)
