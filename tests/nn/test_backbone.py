"""Feature pyramids: levels, channels, strides, out_indices, and equality with hidden states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from regnet_space import load_spec, plan
from regnet_space.core.errors import BuildError
from regnet_space.core.spec import spec_from_dict
from regnet_space.nn.backbone import (
    FeatureInfo,
    RegNetBackbone,
    backbone_from_model,
    build_backbone,
    feature_info,
)
from regnet_space.nn.model import build_model

ROOT = Path(__file__).resolve().parents[2]


def tiny(**fields: Any) -> Any:
    stages = [
        {"width": 16, "depth": 1, "group_width": 8},
        {"width": 24, "depth": 2, "group_width": 8},
        {"width": 32, "depth": 1, "group_width": 8},
    ]
    return plan(spec_from_dict({"name": "t", "block": "y", "stages": stages} | fields), 64)


def test_y040_levels_match_the_seed_documentation() -> None:
    # seed: 32@112, 128@56, 192@28, 512@14 and 1088@7 for a 224x224 image
    levels = feature_info(plan(load_spec(ROOT / "specs" / "y040.yaml")))
    assert [(f.name, f.channels, f.size, f.stride) for f in levels] == [
        ("stem", 32, 112, 2),
        ("stage1", 128, 56, 4),
        ("stage2", 192, 28, 8),
        ("stage3", 512, 14, 16),
        ("stage4", 1088, 7, 32),
    ]


def test_default_levels_are_the_stages_and_equal_the_hidden_states() -> None:
    p = tiny()
    model = build_model(p, False).eval()
    backbone = backbone_from_model(model)
    assert backbone.out_indices == (1, 2, 3)
    assert backbone.channels == (16, 24, 32)
    assert backbone.strides == (4, 8, 16)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = backbone(x)
        hidden = model(x, output_hidden_states=True).hidden_states
    assert list(feats) == ["stage1", "stage2", "stage3"]
    for i, (name, t) in enumerate(feats.items(), start=1):
        assert torch.equal(t, hidden[i]), name
        assert t.shape[1] == backbone.channels[i - 1]
        assert t.shape[-1] == 64 // backbone.strides[i - 1]


def test_out_indices_choose_levels_and_negative_ones_count_from_the_end() -> None:
    backbone = build_backbone(tiny(), out_indices=[-1, 0])
    assert backbone.out_indices == (0, 3)
    assert [f.name for f in backbone.feature_info] == ["stem", "stage3"]
    out = backbone(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "stem": (1, 32, 32, 32),
        "stage3": (1, 32, 4, 4),
    }


def test_stops_after_the_deepest_requested_level(monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = build_backbone(tiny(), out_indices=[1])
    last = backbone.encoder.stages[2]

    def fail(*args: Any) -> None:
        raise AssertionError("the last stage ran")

    monkeypatch.setattr(last, "forward", fail)
    out = backbone(torch.randn(1, 3, 64, 64))
    assert list(out) == ["stage1"]


def test_backbone_shares_weights_with_the_classification_model() -> None:
    model = build_model(tiny(num_classes=3))
    backbone = backbone_from_model(model, [3])
    with torch.no_grad():
        model.regnet.embedder.embedder.convolution.weight.zero_()
    assert backbone.embedder.embedder.convolution.weight.abs().sum() == 0
    assert set(backbone.state_dict()) == set(model.regnet.state_dict())


def test_strides_follow_the_plan_with_a_stride_one_first_stage() -> None:
    p = tiny(downsample_in_first_stage=False)
    levels = feature_info(p)
    assert [f.stride for f in levels] == [2, 2, 4, 8]
    assert levels[1] == FeatureInfo(1, "stage1", 16, 2, 32)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([4], "out_indices: 4 is out of range; levels are 0 (stem) to 3"),
        ([-5], "out_indices: -5 is out of range"),
        ([1, -3], "names a level twice"),
        ([], "choose at least one level"),
        (["1"], "expected integers"),
    ],
)
def test_bad_out_indices_are_refused(indices: list[Any], message: str) -> None:
    with pytest.raises(BuildError) as err:
        build_backbone(tiny(), out_indices=indices)
    assert message in str(err.value)


def test_only_regnet_models_wrap() -> None:
    with pytest.raises(BuildError, match="expected a RegNet model"):
        backbone_from_model(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    assert isinstance(build_backbone(tiny()), RegNetBackbone)


def test_cifar_stem_levels_start_at_stride_one() -> None:
    p = tiny(stem="cifar")
    levels = feature_info(p)
    assert [f.stride for f in levels] == [1, 2, 4, 8]
    backbone = build_backbone(p, out_indices=[0, 1, 2, 3])
    x = torch.randn(1, p.num_channels, p.input_size, p.input_size)
    with torch.no_grad():
        maps = backbone(x)
    for info, (name, fmap) in zip(levels, maps.items(), strict=True):
        assert name == info.name and fmap.shape[-1] == info.size == p.input_size // info.stride
