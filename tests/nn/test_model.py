"""The PyTorch model built from a plan: shapes, parameter counts, options, outputs and losses."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from regnet_space.core.errors import BuildError, PlanError, SpecError
from regnet_space.core.generator import Plan, make_plan
from regnet_space.core.hf import hf_config_kwargs
from regnet_space.core.spec import spec_from_dict
from regnet_space.nn import model as model_mod
from regnet_space.nn.model import (
    MAX_BUILD_PARAMS,
    RegNetClassifierOutput,
    RegNetForImageClassification,
    RegNetModel,
    RegNetModelOutput,
    RegNetSELayer,
    RegNetXLayer,
    RegNetYLayer,
    _plan_param_count,
    build_model,
)

Y040 = {
    "name": "RegNetY-4.0GF",
    "block": "y",
    "depth": 22,
    "w0": 96,
    "wa": 31.41,
    "wm": 2.24,
    "group_width": 64,
}


def explicit(stages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "test", "block": "y", "num_classes": 10, "stages": stages}
    data.update(fields)
    return data


SMALL_STAGES = [
    {"width": 16, "depth": 1, "group_width": 8},
    {"width": 24, "depth": 2, "group_width": 8},
    {"width": 48, "depth": 1, "group_width": 8},
    {"width": 64, "depth": 2, "group_width": 8},
]


def small(**fields: Any) -> Plan:
    return make_plan(spec_from_dict(explicit(SMALL_STAGES, **fields)))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def blocks(m: RegNetModel) -> list[nn.Module]:
    return [b for stage in m.encoder.stages for b in stage.layers]


# ---------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("size", [32, 33, 45])
@pytest.mark.parametrize("block", ["x", "y"])
def test_hidden_state_shapes_follow_the_plan(size: int, block: str) -> None:
    spec = spec_from_dict(explicit(SMALL_STAGES, block=block))
    p = make_plan(spec, input_size=size)
    m = build_model(spec, with_head=False).eval()
    assert isinstance(m, RegNetModel)
    with torch.no_grad():
        out = m(torch.randn(2, 3, size, size), output_hidden_states=True)
    assert isinstance(out, RegNetModelOutput)
    side = p.stages[-1].out_size
    assert out.last_hidden_state.shape == (2, 64, side, side)
    assert out.pooler_output.shape == (2, 64, 1, 1)
    assert out.hidden_states is not None
    expected = [(2, p.stem_width, p.stem_size, p.stem_size)] + [
        (2, s.width, s.out_size, s.out_size) for s in p.stages
    ]
    assert [tuple(h.shape) for h in out.hidden_states] == expected
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    # odd sizes: 45 -> 23 -> 12 -> 6 -> 3 -> 2
    if size == 45:
        assert [h.shape[-1] for h in out.hidden_states] == [23, 12, 6, 3, 2]


def test_y040_documented_shapes_and_published_param_count() -> None:
    spec = spec_from_dict(Y040)
    p = make_plan(spec)
    m = build_model(spec)
    assert isinstance(m, RegNetForImageClassification)
    assert n_params(m) == 20_646_656 == _plan_param_count(p)
    assert n_params(m.regnet) == _plan_param_count(p, with_head=False)
    m.eval()
    with torch.no_grad():
        out = m(torch.randn(1, 3, 224, 224), output_hidden_states=True)
    assert out.logits.shape == (1, 1000)
    assert [tuple(h.shape[1:]) for h in out.hidden_states] == [
        (32, 112, 112),
        (128, 56, 56),
        (192, 28, 28),
        (512, 14, 14),
        (1088, 7, 7),
    ]
    assert tuple(out.hidden_states[-1].shape) == p.output_shape == (1, 1088, 7, 7)


# ---------------------------------------------------------------------------------------------
# Parameter counts and structure


def test_module_tree_has_the_hugging_face_names() -> None:
    keys = set(build_model(small()).state_dict())
    for key in [
        "regnet.embedder.embedder.convolution.weight",
        "regnet.embedder.embedder.normalization.running_var",
        "regnet.encoder.stages.0.layers.0.shortcut.convolution.weight",
        "regnet.encoder.stages.0.layers.0.shortcut.normalization.bias",
        "regnet.encoder.stages.0.layers.0.layer.0.convolution.weight",
        "regnet.encoder.stages.0.layers.0.layer.1.normalization.weight",
        "regnet.encoder.stages.0.layers.0.layer.2.attention.0.weight",
        "regnet.encoder.stages.0.layers.0.layer.2.attention.2.bias",
        "regnet.encoder.stages.3.layers.1.layer.3.normalization.weight",
        "classifier.1.weight",
        "classifier.1.bias",
    ]:
        assert key in keys, key
    # identity shortcut inside a stage: no projection parameters
    assert not any(k.startswith("regnet.encoder.stages.1.layers.1.shortcut") for k in keys)


@st.composite
def stage_st(draw: st.DrawFn) -> dict[str, Any]:
    """A valid explicit stage: bottleneck width a multiple of the group width, any bm."""
    bm = draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]))
    group_width = draw(st.sampled_from([4, 8, 16]))
    wb = group_width * draw(st.integers(1, 4))
    width = int(wb / bm)
    clip = draw(st.sampled_from([1, 1, 2]))  # sometimes a group width above the bottleneck
    return {
        "width": width,
        "depth": draw(st.integers(1, 2)),
        "group_width": group_width * clip,
        "bottleneck_multiplier": bm,
        "stride": draw(st.sampled_from([1, 2])),
    }


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stages=st.lists(stage_st(), min_size=1, max_size=5),
    block=st.sampled_from(["x", "y"]),
    stem_width=st.sampled_from([8, 16, 32]),
    num_classes=st.sampled_from([0, 1, 7]),
    num_channels=st.integers(1, 4),
    with_head=st.booleans(),
)
def test_plan_param_count_equals_module_param_count(
    stages: list[dict[str, Any]],
    block: str,
    stem_width: int,
    num_classes: int,
    num_channels: int,
    with_head: bool,
) -> None:
    data = explicit(
        stages,
        block=block,
        stem_width=stem_width,
        num_classes=num_classes,
        num_channels=num_channels,
    )
    try:
        p = make_plan(spec_from_dict(data))
    except (SpecError, PlanError):
        # clipping the group width can leave a bottleneck that is not a multiple of it
        assume(False)
    if block == "y" and min(b.se_width for b in p.blocks) < 1:
        assume(False)
    m = build_model(p, with_head=with_head)
    assert n_params(m) == _plan_param_count(p, with_head=with_head)


def test_bottleneck_multiplier_shapes_and_forward() -> None:
    stages = [
        {"width": 32, "depth": 2, "group_width": 8, "bottleneck_multiplier": 0.25},
        {"width": 16, "depth": 1, "group_width": 16, "bottleneck_multiplier": 4.0},
    ]
    p = make_plan(spec_from_dict(explicit(stages, block="y")))
    assert p.bottleneck_widths == (8, 64)
    m = build_model(p, with_head=False)
    b00, b01, b10 = blocks(m)
    assert isinstance(b00, RegNetYLayer)
    # 1x1 a: in -> bottleneck; 3x3: bottleneck -> bottleneck, grouped; 1x1 c: bottleneck -> out
    assert b00.layer[0].convolution.weight.shape == (8, 32, 1, 1)
    assert b00.layer[1].convolution.weight.shape == (8, 8, 3, 3)
    assert b00.layer[1].convolution.groups == 1
    assert b00.layer[3].convolution.weight.shape == (32, 8, 1, 1)
    # SE width from the block input width (stem 32 for the first block, 32 after)
    assert b00.layer[2].attention[0].weight.shape == (8, 8, 1, 1)
    assert b01.layer[2].attention[0].weight.shape == (8, 8, 1, 1)
    # inverted bottleneck: 16 -> 64 (4 groups of 16) -> 16; SE width round(0.25 * 32) = 8
    assert b10.layer[0].convolution.weight.shape == (64, 32, 1, 1)
    assert b10.layer[1].convolution.weight.shape == (64, 16, 3, 3)
    assert b10.layer[1].convolution.groups == 4
    assert b10.layer[2].attention[0].weight.shape == (8, 64, 1, 1)
    assert b10.layer[3].convolution.weight.shape == (16, 64, 1, 1)
    assert n_params(m) == _plan_param_count(p, with_head=False)
    out = m.eval()(torch.randn(1, 3, 33, 33))
    assert out.last_hidden_state.shape == (1, 16, 5, 5)


@pytest.mark.parametrize("n_stages", [3, 5])
def test_three_and_five_stage_designs(n_stages: int) -> None:
    widths = [16, 32, 48, 64, 96][:n_stages]
    stages = [{"width": w, "depth": 1, "group_width": 16} for w in widths]
    p = make_plan(spec_from_dict(explicit(stages, block="x")), input_size=64)
    m = build_model(p).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 3, 64, 64), output_hidden_states=True)
    assert len(m.regnet.encoder.stages) == n_stages
    assert len(out.hidden_states) == n_stages + 1
    assert [h.shape[1] for h in out.hidden_states[1:]] == widths
    assert [h.shape[-1] for h in out.hidden_states[1:]] == [s.out_size for s in p.stages]
    assert out.logits.shape == (1, 10)


def test_stride_one_first_stage_and_per_stage_strides() -> None:
    p = small(downsample_in_first_stage=False)
    assert p.strides == (1, 2, 2, 2)
    m = build_model(p).eval()
    with torch.no_grad():
        hs = m(torch.randn(1, 3, 32, 32), output_hidden_states=True).hidden_states
    assert [h.shape[-1] for h in hs] == [16, 16, 8, 4, 2]
    assert m.regnet.encoder.stages[0].layers[0].layer[1].convolution.stride == (1, 1)
    # an explicit stride-1 stage in the middle keeps the resolution; width change -> projection
    stages = [dict(s) for s in SMALL_STAGES]
    stages[2]["stride"] = 1
    p2 = make_plan(spec_from_dict(explicit(stages)))
    m2 = build_model(p2).eval()
    with torch.no_grad():
        hs2 = m2(torch.randn(1, 3, 32, 32), output_hidden_states=True).hidden_states
    assert [h.shape[-1] for h in hs2] == [16, 8, 4, 4, 2]
    assert m2.regnet.encoder.stages[2].layers[0].shortcut.convolution.stride == (1, 1)


def test_identity_shortcut_when_width_and_resolution_are_kept() -> None:
    stages = [{"width": 32, "depth": 2, "group_width": 8, "stride": 1}]
    m = build_model(make_plan(spec_from_dict(explicit(stages, block="x"))), with_head=False)
    first, second = blocks(m)
    assert isinstance(first, RegNetXLayer) and isinstance(second, RegNetXLayer)
    assert isinstance(first.shortcut, nn.Identity)  # stem 32 -> 32, stride 1
    assert isinstance(second.shortcut, nn.Identity)
    assert len(first.layer) == 3


def test_clipped_group_width() -> None:
    stages = [
        {"width": 80, "depth": 1, "group_width": 120},
        {"width": 240, "depth": 1, "group_width": 120},
    ]
    m = build_model(make_plan(spec_from_dict(explicit(stages, block="x"))), with_head=False)
    b0, b1 = blocks(m)
    assert b0.layer[1].convolution.groups == 1
    assert b1.layer[1].convolution.groups == 2


@pytest.mark.parametrize(("name", "cls"), [("relu", nn.ReLU), ("silu", nn.SiLU), ("gelu", nn.GELU)])
def test_activation_from_plan(name: str, cls: type[nn.Module]) -> None:
    m = build_model(small(activation=name), with_head=False)
    blk = blocks(m)[0]
    assert isinstance(m.embedder.embedder.activation, cls)
    assert isinstance(blk.activation, cls)
    assert isinstance(blk.layer[0].activation, cls)
    assert isinstance(blk.layer[1].activation, cls)
    assert isinstance(blk.layer[3].activation, nn.Identity)
    se = blk.layer[2]
    assert isinstance(se, RegNetSELayer)
    assert isinstance(se.attention[1], nn.ReLU)  # SE's inner activation is always ReLU
    assert isinstance(se.attention[3], nn.Sigmoid)


def test_num_classes_zero_has_no_linear() -> None:
    m = build_model(small(num_classes=0)).eval()
    assert isinstance(m.classifier[1], nn.Identity)
    assert not any(isinstance(x, nn.Linear) for x in m.modules())
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 64)


# ---------------------------------------------------------------------------------------------
# Initialisation


def test_initialisation_and_zero_init_last_bn() -> None:
    torch.manual_seed(0)
    m = build_model(small())
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert all(torch.all(bn.weight == 1) and torch.all(bn.bias == 0) for bn in bns)
    # kaiming normal, fan_out, relu: std sqrt(2 / (out * k * k))
    conv = blocks(m.regnet)[-1].layer[0].convolution  # 1x1, 64 -> 64 (4096 weights)
    assert conv.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.1)
    stem = m.regnet.embedder.embedder.convolution  # 3x3, 3 -> 32
    assert stem.weight.std().item() == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.2)

    z = build_model(small(), zero_init_last_bn=True)
    last = [b.layer[-1].normalization for b in blocks(z.regnet)]
    assert len(last) == 6
    assert all(torch.all(bn.weight == 0) for bn in last)
    others = [
        x for x in z.modules() if isinstance(x, nn.BatchNorm2d) and all(x is not bn for bn in last)
    ]
    assert others and all(torch.all(bn.weight == 1) for bn in others)
    # with every residual branch zeroed, a block whose shortcut is the identity passes act(x)
    blk = blocks(z.regnet)[2]  # stage 1, block 1: identity shortcut
    assert isinstance(blk.shortcut, nn.Identity)
    x = torch.randn(1, 24, 5, 5)
    assert torch.equal(blk.eval()(x), torch.relu(x))


# ---------------------------------------------------------------------------------------------
# Outputs


def test_tuple_and_dict_outputs_agree() -> None:
    torch.manual_seed(1)
    m = build_model(small()).eval()
    x = torch.randn(2, 3, 33, 33)
    labels = torch.tensor([3, 7])
    with torch.no_grad():
        d = m(x, labels=labels, output_hidden_states=True)
        t = m(x, labels=labels, output_hidden_states=True, return_dict=False)
        t_plain = m(x, return_dict=False)
        base_d = m.regnet(x, output_hidden_states=True)
        base_t = m.regnet(x, output_hidden_states=True, return_dict=False)
        base_plain = m.regnet(x, return_dict=False)
    assert isinstance(d, RegNetClassifierOutput)
    assert isinstance(t, tuple) and len(t) == 3
    assert torch.equal(t[0], d.loss) and torch.equal(t[1], d.logits)
    assert all(torch.equal(a, b) for a, b in zip(t[2], d.hidden_states, strict=True))
    # None fields are dropped: no labels, no hidden states -> (logits,)
    assert isinstance(t_plain, tuple) and len(t_plain) == 1
    assert torch.equal(t_plain[0], d.logits)
    assert d.to_tuple()[0] is d.loss and d[0] is d.loss and d["logits"] is d.logits

    assert isinstance(base_t, tuple) and len(base_t) == 3
    assert torch.equal(base_t[0], base_d.last_hidden_state)
    assert torch.equal(base_t[1], base_d.pooler_output)
    assert len(base_t[2]) == 5
    assert len(base_plain) == 2
    assert torch.equal(d.logits, m.classifier(base_d.pooler_output))


def test_channel_mismatch_raises_a_clear_error() -> None:
    m = build_model(small(num_channels=1)).eval()
    assert m(torch.randn(1, 1, 32, 32)).logits.shape == (1, 10)
    with pytest.raises(ValueError, match=r"3 channels .*num_channels=1"):
        m(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        m(torch.randn(1, 32, 32))


# ---------------------------------------------------------------------------------------------
# Losses


def logits_and_model(num_classes: int, problem_type: str | None = None) -> Any:
    torch.manual_seed(2)
    m = build_model(small(num_classes=num_classes), problem_type=problem_type).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = m(x).logits
    return m, x, logits


def test_regression_loss_single_label_squeezes() -> None:
    m, x, logits = logits_and_model(1)
    labels = torch.randn(3)  # shape (3,) vs logits (3, 1): squeezed, no broadcasting
    with torch.no_grad():
        loss = m(x, labels=labels).loss
    expected = ((logits[:, 0] - labels) ** 2).mean()
    assert torch.allclose(loss, expected, rtol=1e-6, atol=1e-7)
    assert m.problem_type is None  # never remembered on the model


def test_single_label_classification_loss() -> None:
    m, x, logits = logits_and_model(10)
    for dtype in (torch.long, torch.int):
        labels = torch.tensor([0, 9, 4], dtype=dtype)
        with torch.no_grad():
            loss = m(x, labels=labels).loss
        expected = -torch.log_softmax(logits, dim=-1)[torch.arange(3), labels.long()].mean()
        assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)
    assert m.problem_type is None


def test_multi_label_classification_loss() -> None:
    m, x, logits = logits_and_model(10)
    labels = (torch.rand(3, 10) > 0.5).float()
    with torch.no_grad():
        loss = m(x, labels=labels).loss
    expected = -(
        labels * torch.nn.functional.logsigmoid(logits)
        + (1 - labels) * torch.nn.functional.logsigmoid(-logits)
    ).mean()
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)
    assert m.problem_type is None
    # inference happens per call: the same model then does single-label with integer labels
    with torch.no_grad():
        ce = m(x, labels=torch.tensor([1, 2, 3])).loss
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2, 3])))


def test_explicit_problem_type_wins_over_inference() -> None:
    m, x, logits = logits_and_model(10, problem_type="regression")
    labels = torch.randn(3, 10)
    with torch.no_grad():
        loss = m(x, labels=labels).loss
    assert torch.allclose(loss, ((logits - labels) ** 2).mean(), rtol=1e-6)
    assert m.problem_type == "regression"
    with pytest.raises(BuildError, match="problem_type"):
        build_model(small(), problem_type="ranking")
    with pytest.raises(BuildError, match="head"):
        build_model(small(), with_head=False, problem_type="regression")


# ---------------------------------------------------------------------------------------------
# Build guard and entry points


def test_too_large_design_is_refused_without_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model must not be constructed")

    monkeypatch.setattr(model_mod, "RegNetForImageClassification", no_build)
    monkeypatch.setattr(model_mod, "RegNetModel", no_build)
    huge = spec_from_dict(explicit([{"width": 65536, "depth": 4, "group_width": 65536}], block="x"))
    count = _plan_param_count(make_plan(huge))
    assert count > MAX_BUILD_PARAMS
    with pytest.raises(BuildError) as info:
        build_model(huge)
    msg = str(info.value)
    assert (
        "\n" not in msg and f"{count:,}" in msg and "--allow-large" in msg and "force=True" in msg
    )
    with pytest.raises(BuildError):
        build_model(huge, with_head=False)


def test_force_skips_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    p = small()
    monkeypatch.setattr(model_mod, "MAX_BUILD_PARAMS", _plan_param_count(p) - 1)
    with pytest.raises(BuildError, match="force"):
        build_model(p)
    assert build_model(p, with_head=False) is not None  # the bare model is below the limit
    m = build_model(p, force=True)
    assert n_params(m) == _plan_param_count(p)


def test_spec_and_plan_build_the_same_tree() -> None:
    spec = spec_from_dict(explicit(SMALL_STAGES))
    a = build_model(spec)
    b = build_model(make_plan(spec))
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()
    }
    assert a.plan == make_plan(spec)
    with pytest.raises(TypeError):
        build_model({"name": "not a spec"})  # type: ignore[arg-type]


def test_y_block_with_zero_se_width_is_refused() -> None:
    stages = [{"width": 8, "depth": 1, "group_width": 8}]
    p = make_plan(spec_from_dict(explicit(stages, stem_width=1, se_ratio=0.25)))
    assert p.blocks[0].se_width == 0
    with pytest.raises(BuildError, match="SE width"):
        build_model(p)


# ---------------------------------------------------------------------------------------------
# hf_config_kwargs (the transformers round trip itself is in test_hf_compat.py)


def test_hf_config_kwargs_for_y040() -> None:
    assert hf_config_kwargs(make_plan(spec_from_dict(Y040))) == {
        "num_channels": 3,
        "embedding_size": 32,
        "hidden_sizes": [128, 192, 512, 1088],
        "depths": [2, 6, 12, 2],
        "groups_width": 64,
        "layer_type": "y",
        "hidden_act": "relu",
        "downsample_in_first_stage": True,
        "num_labels": 1000,
    }


def test_hf_config_kwargs_uses_the_largest_group_width() -> None:
    stages = [
        {"width": 80, "depth": 1, "group_width": 120},
        {"width": 240, "depth": 1, "group_width": 120},
    ]
    kw = hf_config_kwargs(make_plan(spec_from_dict(explicit(stages, block="x"))))
    assert kw["groups_width"] == 120 and kw["layer_type"] == "x"
    kw = hf_config_kwargs(small(downsample_in_first_stage=False, activation="silu"))
    assert kw["downsample_in_first_stage"] is False and kw["hidden_act"] == "silu"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({2: {"bottleneck_multiplier": 0.5}}, "bottleneck multiplier"),
        ({2: {"stride": 1}}, "stride 1"),
        ({0: {"group_width": 16}}, "group width"),
    ],
)
def test_hf_config_kwargs_refuses_what_hugging_face_cannot_express(
    change: dict[int, dict[str, Any]], reason: str
) -> None:
    stages = [dict(s) for s in SMALL_STAGES]
    for i, upd in change.items():
        stages[i].update(upd)
    p = make_plan(spec_from_dict(explicit(stages)))
    with pytest.raises(BuildError, match=reason):
        hf_config_kwargs(p)


def test_hf_config_kwargs_refuses_other_se_ratios() -> None:
    with pytest.raises(BuildError, match="se_ratio"):
        hf_config_kwargs(small(se_ratio=0.5))


def test_cifar_stem_keeps_the_input_resolution() -> None:
    # pycls's res_stem_cifar: 3x3 conv, stride 1; 32 px stays 32 px after the stem.
    data = {"name": "c", "block": "y", "depth": 6, "w0": 16, "wa": 16.0, "wm": 2.5}
    data |= {"group_width": 8, "stem_width": 16, "stem": "cifar", "num_classes": 10}
    p = make_plan(spec_from_dict(data), 32)
    model = build_model(p).eval()
    conv = model.regnet.embedder.embedder.convolution
    assert conv.stride == (1, 1) and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model.regnet(x, output_hidden_states=True)
    assert out.hidden_states[0].shape == (2, 16, 32, 32)
    assert tuple(out.last_hidden_state.shape[1:]) == p.output_shape[1:]
    imagenet = make_plan(spec_from_dict(data | {"stem": "imagenet"}), 32)
    assert p.stages[-1].out_size == 2 * imagenet.stages[-1].out_size
    with pytest.raises(BuildError, match="stem: cifar"):
        hf_config_kwargs(p)
