"""Hugging Face RegNet configs (core.hf): the shipped specs round-trip, the fields, transformers'
own config objects and config.json, refusals, num_labels from id2label."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from config_helpers import ROOT, SPECS, same_network

from regnet_space import load_spec
from regnet_space.core.errors import BuildError, InteropError, SpecError
from regnet_space.core.hf import HfRegNetConfig, hf_config_from_spec, spec_from_hf_config
from regnet_space.core.spec import ExplicitSpec, spec_from_dict
from regnet_space.nn.hf import transformers_config


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
