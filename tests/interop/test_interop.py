"""Config round trips: Hugging Face RegNetConfig, timm RegNetCfg kwargs, pycls YAML."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from regnet_space import count, load_spec, plan, to_explicit
from regnet_space.core.errors import BuildError, InteropError, SpecError
from regnet_space.core.hf import (
    HfRegNetConfig,
    hf_config_from_spec,
    spec_from_hf_config,
)
from regnet_space.core.pycls import pycls_yaml_from_spec, spec_from_pycls_yaml
from regnet_space.core.spec import ExplicitSpec, ParametricSpec, spec_from_dict
from regnet_space.interop.timm import TimmRegNetCfg, spec_from_timm_cfg, timm_cfg_from_spec
from regnet_space.nn.hf import transformers_config

ROOT = Path(__file__).resolve().parents[2]
# The X/Y zoo (the timm-named family presets, regnet*.yaml, have tests of their own).
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml") if not p.stem.startswith("regnet"))
PYCLS = ROOT / "tests" / "data" / "pycls"

# pycls model-zoo config (written in pycls's format in tests/data) -> the shipped spec.
ZOO = {
    "RegNetX-200MF_dds_8gpu.yaml": "x002",
    "RegNetX-8.0GF_dds_8gpu.yaml": "x080",
    "RegNetX-12GF_dds_8gpu.yaml": "x120",
    "RegNetY-200MF_dds_8gpu.yaml": "y002",
    "RegNetY-4.0GF_dds_8gpu.yaml": "y040",
    "RegNetY-32GF_dds_8gpu.yaml": "y320",
}


def same_network(a: Any, b: Any) -> bool:
    """Equal stage plans (widths, depths, groups, strides, SE widths) and stem/head."""
    pa, pb = plan(a), plan(b)
    keys = ("stages", "stem_width", "num_channels", "num_classes", "block", "activation")
    return all(getattr(pa, k) == getattr(pb, k) for k in keys)


# ---------------------------------------------------------------------------------------------
# Hugging Face


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_round_trips_through_a_hugging_face_config(path: Path) -> None:
    spec = load_spec(path)
    config = hf_config_from_spec(spec)
    back = spec_from_hf_config(dataclasses.asdict(config), name=spec.name)
    assert isinstance(back, ExplicitSpec)
    assert same_network(back, spec)


def test_hugging_face_config_fields_for_y040() -> None:
    config = hf_config_from_spec(load_spec(ROOT / "specs" / "y040.yaml"))
    assert config == HfRegNetConfig(
        hidden_sizes=(128, 192, 512, 1088),
        depths=(2, 6, 12, 2),
        groups_width=64,
        layer_type="y",
        num_labels=1000,
    )
    assert config.as_kwargs()["hidden_sizes"] == [128, 192, 512, 1088]


def test_transformers_config_objects_and_config_json(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    spec = load_spec(ROOT / "specs" / "x080.yaml")  # stage 1 clips its group width (80 < 120)
    config = transformers_config(hf_config_from_spec(spec))
    assert isinstance(config, transformers.RegNetConfig)
    assert same_network(spec_from_hf_config(config, name="x080"), spec)
    snapshot = tmp_path / "regnet-x-080"
    snapshot.mkdir()
    config.to_json_file(str(snapshot / "config.json"))
    from_file = load_spec(snapshot)
    assert from_file.name == "regnet-x-080"
    assert same_network(from_file, spec)
    assert load_spec(snapshot / "config.json") == from_file


def test_hugging_face_refusals(tmp_path: Path) -> None:
    bm = spec_from_dict(
        {"name": "bm", "block": "x", "depth": 8, "w0": 32, "wa": 16.0, "wm": 2.0}
        | {"group_width": 8, "bottleneck_multiplier": 0.5}
    )
    with pytest.raises(BuildError, match="bottleneck multiplier"):
        hf_config_from_spec(bm)
    base = {"hidden_sizes": [24, 56], "depths": [1, 1], "groups_width": 8, "layer_type": "x"}
    with pytest.raises(InteropError, match="model_type: expected regnet"):
        spec_from_hf_config(base | {"model_type": "resnet"})
    with pytest.raises(InteropError, match="depths: expected a list of positive integers"):
        spec_from_hf_config(base | {"depths": [1, "2"]})
    with pytest.raises(InteropError, match="groups_width: required field is missing"):
        spec_from_hf_config({k: v for k, v in base.items() if k != "groups_width"})
    with pytest.raises(InteropError, match=r"hidden_sizes\[1\]: 50 channels do not split"):
        spec_from_hf_config(base | {"hidden_sizes": [24, 50], "groups_width": 16})
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    # JSON syntax is no peer's rule: the reader's SpecError, which InteropError refines.
    with pytest.raises(SpecError, match="invalid JSON"):
        load_spec(bad)


def test_hugging_face_num_labels_from_id2label() -> None:
    data = {"hidden_sizes": [24], "depths": [1], "groups_width": 8, "layer_type": "y"}
    spec = spec_from_hf_config(data | {"id2label": {"0": "cat", "1": "dog", "2": "fox"}})
    assert spec.num_classes == 3
    assert spec.se_ratio == 0.25


# ---------------------------------------------------------------------------------------------
# timm


PARAMETRIC = [p for p in SPECS if isinstance(load_spec(p), ParametricSpec)]


@pytest.mark.parametrize("path", PARAMETRIC, ids=lambda p: p.stem)
def test_every_shipped_spec_round_trips_through_timm_kwargs(path: Path) -> None:
    spec = load_spec(path)
    cfg = timm_cfg_from_spec(spec)
    kwargs = cfg.as_kwargs()
    assert "in_chans" not in kwargs and "num_classes" not in kwargs
    # timm's width rule is float32: a pycls spec comes back as rounding timm, same network.
    back = spec.model_copy(update={"rounding": "timm"}) if spec.rounding == "pycls" else spec
    assert spec_from_timm_cfg(kwargs, name=spec.name) == back
    assert spec_from_timm_cfg(cfg, name=spec.name) == back
    assert plan(back).stages == plan(spec).stages


def test_timm_kwargs_of_the_torchvision_rounded_specs() -> None:
    # timm's regnetx_004_tv: RegNetCfg(w0=24, wa=24.48, wm=2.54, group_size=16, depth=22,
    # group_min_ratio=0.9)
    cfg = timm_cfg_from_spec(load_spec(ROOT / "specs" / "x004_tv.yaml"))
    expected = {"w0": 24, "wa": 24.48, "wm": 2.54, "group_size": 16, "depth": 22}
    assert {k: cfg.as_kwargs()[k] for k in expected} == expected
    assert cfg.group_min_ratio == 0.9 and cfg.se_ratio == 0
    y = timm_cfg_from_spec(load_spec(ROOT / "specs" / "y040.yaml"))
    assert (y.se_ratio, y.group_min_ratio, y.group_size) == (0.25, 0.0, 64)


def test_timm_refusals() -> None:
    explicit = load_spec("name: e\nblock: x\nstages:\n  - {width: 32, depth: 1, group_width: 8}\n")
    with pytest.raises(InteropError, match="no explicit-stage form"):
        timm_cfg_from_spec(explicit)
    three = spec_from_dict(
        {"name": "three", "block": "x", "depth": 6, "w0": 24, "wa": 24.0, "wm": 2.5}
        | {"group_width": 8}
    )
    assert plan(three).num_stages != 4
    with pytest.raises(InteropError, match="timm builds exactly 4"):
        timm_cfg_from_spec(three)
    base = dataclasses.asdict(TimmRegNetCfg(depth=13, w0=24, wa=36.44, wm=2.49, group_size=8))
    with pytest.raises(InteropError, match="downsample='maxpool'"):
        spec_from_timm_cfg(base | {"downsample": "maxpool"})
    with pytest.raises(InteropError, match=r"group_min_ratio=0\.5"):
        spec_from_timm_cfg(base | {"group_min_ratio": 0.5})
    with pytest.raises(InteropError, match="unknown field 'drop_rate'"):
        spec_from_timm_cfg(base | {"drop_rate": 0.1})


# ---------------------------------------------------------------------------------------------
# pycls


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


def test_load_any_spec_dispatches_on_content(tmp_path: Path) -> None:
    assert load_spec(ROOT / "specs" / "y040.yaml") == load_spec(ROOT / "specs" / "y040.yaml")
    zoo = load_spec(PYCLS / "RegNetY-4.0GF_dds_8gpu.yaml")
    assert count(zoo) == count(load_spec(ROOT / "specs" / "y040.yaml"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dataclasses.asdict(HfRegNetConfig((24, 56), (1, 2), 8, "x"))))
    assert plan(load_spec(config)).widths == (24, 56)


CIFAR = {"name": "c", "block": "y", "depth": 7, "w0": 24, "wa": 20.0, "wm": 2.5}
CIFAR |= {"group_width": 8, "stem_width": 16, "stem": "cifar", "num_classes": 10}


def test_cifar_stem_is_refused_by_hugging_face_and_timm_in_one_line() -> None:
    spec = spec_from_dict(CIFAR)
    with pytest.raises(BuildError, match=r"stem: cifar .*Hugging Face RegNet has only") as e:
        hf_config_from_spec(spec)
    assert "\n" not in str(e.value)
    with pytest.raises(InteropError, match="stem: timm's RegNet has only the stride-2") as e2:
        timm_cfg_from_spec(spec)
    assert "\n" not in str(e2.value)


def test_cifar_stem_round_trips_through_pycls_res_stem_cifar() -> None:
    spec = spec_from_dict(CIFAR)
    text = pycls_yaml_from_spec(spec)
    assert "STEM_TYPE: res_stem_cifar" in text
    back = spec_from_pycls_yaml(text, name="c")
    assert back.stem == "cifar" and plan(back, 32) == plan(spec, 32)
    explicit = pycls_yaml_from_spec(to_explicit(spec))
    assert "STEM_TYPE: res_stem_cifar" in explicit
    assert plan(spec_from_pycls_yaml(explicit), 32).stages == plan(spec, 32).stages
    # An imagenet-stem spec still writes no STEM_TYPE for REGNET (pycls's default)
    assert "STEM_TYPE" not in pycls_yaml_from_spec(spec_from_dict(CIFAR | {"stem": "imagenet"}))
