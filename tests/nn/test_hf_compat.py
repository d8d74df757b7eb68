"""Hugging Face compatibility: state dicts load both ways with strict=True, outputs are equal."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from regnet_space.core.generator import Plan, make_plan
from regnet_space.core.hf import hf_config_kwargs
from regnet_space.core.spec import spec_from_dict
from regnet_space.nn.model import (
    RegNetForImageClassification,
    RegNetModel,
    build_model,
)

transformers = pytest.importorskip("transformers")

ATOL = 1e-6


def explicit(stages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "hf", "block": "y", "num_classes": 7, "stages": stages}
    data.update(fields)
    return data


DESIGNS: dict[str, dict[str, Any]] = {
    # X-200MF-like stages, shortened
    "x-small": explicit(
        [
            {"width": 24, "depth": 1, "group_width": 8},
            {"width": 56, "depth": 1, "group_width": 8},
            {"width": 152, "depth": 2, "group_width": 8},
            {"width": 368, "depth": 1, "group_width": 8},
        ],
        block="x",
    ),
    # X-8.0GF-like clip: stage width 80 with group width 120 -> one group of 80
    "x-clipped": explicit(
        [
            {"width": 80, "depth": 1, "group_width": 120},
            {"width": 240, "depth": 2, "group_width": 120},
            {"width": 360, "depth": 1, "group_width": 120},
        ],
        block="x",
        num_classes=5,
    ),
    # Y with SiLU, no downsampling in the first stage, 3 stages, 1 input channel
    "y-silu": explicit(
        [
            {"width": 48, "depth": 2, "group_width": 16},
            {"width": 96, "depth": 1, "group_width": 16},
            {"width": 64, "depth": 1, "group_width": 16},
        ],
        activation="silu",
        downsample_in_first_stage=False,
        num_channels=1,
        stem_width=24,
    ),
    # Y with GELU, 5 stages, no classifier
    "y-gelu-headless": explicit(
        [{"width": w, "depth": 1, "group_width": 8} for w in (16, 24, 32, 48, 64)],
        activation="gelu",
        num_classes=0,
    ),
    # a parametric Y design through the generator (widths 32, 64, 160 with g 16)
    "y-parametric": {
        "name": "y-param",
        "block": "y",
        "depth": 5,
        "w0": 24,
        "wa": 20.0,
        "wm": 2.5,
        "group_width": 16,
        "num_classes": 3,
    },
}


def randomize(module: nn.Module, seed: int) -> None:
    """Random weights and BN statistics/affine, so equal outputs mean equal computations."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (1.5 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 100, (1,), generator=gen)))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))


def hf_model(p: Plan, **config: Any) -> nn.Module:
    """transformers' RegNetForImageClassification; its `.regnet` is a RegNetModel."""
    cfg = transformers.RegNetConfig(**hf_config_kwargs(p), **config)
    return transformers.RegNetForImageClassification(cfg).eval()


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert torch.isfinite(a).all()
    assert (a - b).abs().max().item() <= ATOL


def assert_same_states(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert_same(x, y)


def check_design(p: Plan, size: int, seed: int) -> None:
    hf_cls = hf_model(p)
    hf_base = hf_cls.regnet
    assert isinstance(hf_base, transformers.RegNetModel)
    ours_cls = build_model(p).eval()
    ours_base = build_model(p, with_head=False).eval()
    assert isinstance(ours_cls, RegNetForImageClassification)
    assert isinstance(ours_base, RegNetModel)
    torch.manual_seed(seed)
    x = torch.randn(2, p.num_channels, size, size)

    # Hugging Face -> ours
    randomize(hf_cls, seed)
    ours_cls.load_state_dict(hf_cls.state_dict(), strict=True)
    ours_base.load_state_dict(hf_base.state_dict(), strict=True)
    with torch.no_grad():
        a = hf_cls(x, output_hidden_states=True)
        b = ours_cls(x, output_hidden_states=True)
        assert_same(a.logits, b.logits)
        assert_same_states(a.hidden_states, b.hidden_states)
        a = hf_base(x, output_hidden_states=True)
        b = ours_base(x, output_hidden_states=True)
        assert_same(a.last_hidden_state, b.last_hidden_state)
        assert_same(a.pooler_output, b.pooler_output)
        assert_same_states(a.hidden_states, b.hidden_states)
        # tuple outputs in the same order
        ta = hf_base(x, output_hidden_states=True, return_dict=False)
        tb = ours_base(x, output_hidden_states=True, return_dict=False)
        assert len(ta) == len(tb) == 3
        assert_same(ta[0], tb[0])
        assert_same(ta[1], tb[1])
        assert_same_states(ta[2], tb[2])
    # the outputs depend on the randomized weights (a meaningful comparison)
    assert a.last_hidden_state.std() > 0

    # ours -> Hugging Face
    randomize(ours_cls, seed + 2)
    hf_cls.load_state_dict(ours_cls.state_dict(), strict=True)
    with torch.no_grad():
        a = hf_cls(x, output_hidden_states=True, return_dict=False)
        b = ours_cls(x, output_hidden_states=True, return_dict=False)
    assert len(a) == len(b) == 2
    assert_same(a[0], b[0])
    assert_same_states(a[1], b[1])


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_hugging_face_state_dicts_load_both_ways_with_equal_outputs(name: str) -> None:
    p = make_plan(spec_from_dict(DESIGNS[name]))
    check_design(p, size=45 if name != "x-small" else 33, seed=len(name))


def test_clipped_design_has_one_group_in_both() -> None:
    p = make_plan(spec_from_dict(DESIGNS["x-clipped"]))
    assert p.group_widths == (80, 120, 120)
    hf_cls = hf_model(p)
    ours = build_model(p)
    for key in (
        "regnet.encoder.stages.0.layers.0.layer.1",
        "regnet.encoder.stages.1.layers.0.layer.1",
    ):
        hf_conv = hf_cls.get_submodule(key).convolution
        our_conv = ours.get_submodule(key).convolution
        assert hf_conv.groups == our_conv.groups
    assert ours.get_submodule("regnet.encoder.stages.0.layers.0.layer.1").convolution.groups == 1


@st.composite
def hf_designs(draw: st.DrawFn) -> dict[str, Any]:
    """Small random designs that Hugging Face's config can express (bm 1, one group width)."""
    g = draw(st.sampled_from([8, 16, 24]))
    n = draw(st.integers(1, 4))
    widths = [g * draw(st.integers(1, 4)) for _ in range(n)]
    block = draw(st.sampled_from(["x", "y"]))
    stages = [{"width": w, "depth": draw(st.integers(1, 2)), "group_width": g} for w in widths]
    return explicit(
        stages,
        block=block,
        activation=draw(st.sampled_from(["relu", "silu", "gelu"])),
        downsample_in_first_stage=draw(st.booleans()),
        stem_width=draw(st.sampled_from([8, 16, 32])),
        num_channels=draw(st.integers(1, 4)),
        num_classes=draw(st.sampled_from([0, 1, 5])),
    )


@settings(max_examples=2, deadline=None)
@given(data=hf_designs(), size=st.integers(17, 40), seed=st.integers(0, 1000))
def test_random_designs_match_hugging_face(data: dict[str, Any], size: int, seed: int) -> None:
    check_design(make_plan(spec_from_dict(data)), size=size, seed=seed)


# ---------------------------------------------------------------------------------------------
# Losses


LOSS_CASES = [
    # (num_classes, problem_type given to both, labels)
    (1, None, lambda: torch.randn(3)),
    (5, None, lambda: torch.tensor([0, 4, 2])),
    (5, None, lambda: (torch.rand(3, 5) > 0.5).float()),
    (5, "regression", lambda: torch.randn(3, 5)),
    (5, "multi_label_classification", lambda: (torch.rand(3, 5) > 0.5).float()),
    (5, "single_label_classification", lambda: torch.tensor([1, 1, 3])),
]


@pytest.mark.parametrize(("num_classes", "problem_type", "make_labels"), LOSS_CASES)
def test_losses_match_hugging_face(
    num_classes: int, problem_type: str | None, make_labels: Any
) -> None:
    data = explicit(
        [{"width": 16, "depth": 1, "group_width": 8}, {"width": 32, "depth": 1, "group_width": 8}],
        num_classes=num_classes,
    )
    p = make_plan(spec_from_dict(data))
    # a fresh Hugging Face model per case: it stores the inferred problem type in its config
    hf_cls = hf_model(p, problem_type=problem_type)
    randomize(hf_cls, 3)
    ours = build_model(p, problem_type=problem_type).eval()
    ours.load_state_dict(hf_cls.state_dict(), strict=True)
    torch.manual_seed(4)
    x = torch.randn(3, 3, 32, 32)
    labels = make_labels()
    with torch.no_grad():
        a = hf_cls(x, labels=labels)
        b = ours(x, labels=labels)
        tb = ours(x, labels=labels, return_dict=False)
    assert a.loss is not None and b.loss is not None
    assert_same(a.loss, b.loss)
    assert_same(a.logits, b.logits)
    assert len(tb) == 2 and torch.equal(tb[0], b.loss)
    assert ours.problem_type == problem_type  # ours never stores an inferred problem type
