"""Across the peers' configs: load_spec tells them apart by content; the CIFAR stem is refused
by Hugging Face and timm in one line and round-trips through pycls."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from config_helpers import PYCLS, ROOT

from regnet_space import count, load_spec, plan, to_explicit
from regnet_space.core.errors import BuildError, InteropError
from regnet_space.core.hf import HfRegNetConfig, hf_config_from_spec
from regnet_space.core.pycls import pycls_yaml_from_spec, spec_from_pycls_yaml
from regnet_space.core.spec import spec_from_dict
from regnet_space.interop.timm import timm_cfg_from_spec


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
