"""The block family from one definition (core.blocks): every kind and switch combination
builds, counts and folds alike; the four consumers read the same definition objects; bad
combinations are one line; the SE activation is the block definition's, never silently ReLU."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regnet_space as rs
from regnet_space.cli import main
from regnet_space.core import blocks, complexity
from regnet_space.core.complexity import count_plan
from regnet_space.core.errors import BuildError, PlanError, SpecError
from regnet_space.core.hf import hf_config_from_spec, spec_from_hf_config
from regnet_space.core.spec import BLOCK_KINDS, dump_spec, spec_from_dict
from regnet_space.interop.checkpoints import ConvertError, convert_state_dict, key_pairs
from regnet_space.interop.timm import spec_from_timm_cfg, timm_cfg_from_spec
from regnet_space.nn.backbone import build_backbone, feature_info
from regnet_space.nn.counters import torch_check, verify
from regnet_space.nn.inference import fused_kernels_available, inference_model
from regnet_space.nn.model import RegNetDropPath, build_model

ROOT = Path(__file__).resolve().parents[2]
BOTTLENECK_KINDS = [k for k, v in BLOCK_KINDS.items() if v.bottleneck]


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random norm affine parameters and BatchNorm statistics, so that folding is not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


@st.composite
def family_designs(draw: st.DrawFn, block: str) -> dict[str, Any]:
    """Small explicit designs of one block kind with every stem and switch combination."""
    kind = BLOCK_KINDS[block]
    data: dict[str, Any] = {
        "name": "random",
        "block": block,
        "stem": draw(st.sampled_from(["imagenet", "cifar", "resnet", "tiered"])),
        "stem_width": draw(st.sampled_from([8, 16])),
        "activation": draw(st.sampled_from(["relu", "silu", "gelu"])),
        "head_width": draw(st.sampled_from([0, 0, 16])),
        "num_classes": draw(st.sampled_from([0, 3])),
        "input_size": draw(st.integers(9, 40)),
        "output_stride": draw(st.sampled_from([0, 0, 8, 16])),
    }
    if draw(st.booleans()):
        data |= draw(st.sampled_from([{"norm_groups": 2}, {"norm_group_size": 4}])) | {
            "norm": "group"
        }
    if kind.residual:
        data["shortcut"] = draw(st.sampled_from(["avg", "conv", "none"]))
        data["linear_out"] = draw(st.booleans())
        data["drop_path"] = draw(st.sampled_from([0.0, 0.2]))
        data["final_activation"] = draw(st.booleans())
    if kind.bottleneck:
        data["preact"] = draw(st.booleans())
        data["bottleneck_in"] = draw(st.booleans())
        data["se_from"] = draw(st.sampled_from(["input", "bottleneck"]))
        data["se_activation"] = draw(st.sampled_from(["relu", "silu", "gelu"]))
        if block != "x":
            data["se_ratio"] = draw(st.sampled_from([0.25, 0.5] + ([0.0] if block != "y" else [])))
    stages = []
    for _ in range(draw(st.integers(1, 4))):
        stage: dict[str, Any] = {
            "width": 8 * draw(st.integers(1, 4)),
            "depth": draw(st.integers(1, 2)),
            "stride": draw(st.sampled_from([1, 2, 2])),
        }
        if kind.bottleneck:
            stage["group_width"] = 4
            stage["bottleneck_multiplier"] = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0]))
        stages.append(stage)
    return data | {"stages": stages}


def _plan(data: dict[str, Any]) -> rs.Plan | None:
    try:
        return rs.plan(spec_from_dict(data))
    except (SpecError, PlanError):
        return None


@pytest.mark.parametrize("block", sorted(BLOCK_KINDS))
def test_every_kind_counts_builds_and_folds_alike(block: str) -> None:
    """analytic = fvcore = FlopCounterMode = module counts; the inference form equals the
    eager model; our state-dict keys are the definition's; the pyramid is feature_info's."""
    check = settings(
        max_examples=6, deadline=None, derandomize=True, suppress_health_check=[*HealthCheck]
    )(given(family_designs(block))(_counts_build_and_fold))
    check()


def _counts_build_and_fold(data: dict[str, Any]) -> None:
    p = _plan(data)
    if p is None:
        return
    torch.manual_seed(0)  # weights and inputs: the same whatever ran before
    model = randomised(build_model(p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checked = verify(model, p)
    assert checked.mismatches() == []
    assert count_plan(p, "paper").params == sum(q.numel() for q in model.parameters())
    assert torch_check(p).ok
    assert {k.ours for k in key_pairs(p, "hf")} == set(model.state_dict())
    x = torch.randn(2, p.num_channels, p.input_size, p.input_size)
    with torch.no_grad():
        expected = model(x).logits  # the pooled features without a classifier
        for fused in [False] + ([True] if fused_kernels_available() else []):
            got = inference_model(model, fused_kernels=fused)(x)
            assert (got - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max())
        features = build_backbone(p, out_indices=list(range(p.num_stages + 1)))(x)
    for level, tensor in zip(feature_info(p), features.values(), strict=True):
        assert tensor.shape[1:] == (level.channels, level.size, level.size)


def test_the_four_consumers_read_the_same_definition_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model builder, the counter, the inference form and the checkpoint mapper each call
    the kind's registered definition (a spy put in its place), not a copy of it."""
    p = rs.plan(rs.load_spec(ROOT / "specs" / "y002.yaml"), 32)
    calls: list[str] = []
    definition = blocks.DEFINITIONS["y"]

    def spy(b: Any, o: Any) -> blocks.BlockLayers:
        calls.append("y")
        return definition(b, o)

    monkeypatch.setitem(blocks.DEFINITIONS, "y", spy)
    # The counter's stage cache would answer the count after the model's size guard without a
    # call: count uncached here.
    monkeypatch.setattr(complexity, "_stage_counts", complexity._stage_counts.__wrapped__)
    seen = []
    model = build_model(p)
    seen.append(len(calls))
    count_plan(p)
    seen.append(len(calls))
    inference_model(model, fused_kernels=False)
    seen.append(len(calls))
    key_pairs(p, "timm")
    seen.append(len(calls))
    steps = [b - a for a, b in zip([0, *seen], seen, strict=False)]
    assert all(n > 0 for n in steps), steps
    assert len(p.blocks) <= steps[0]  # the model: every block from the definition


def test_a_new_kind_is_one_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering a definition under a kind changes all four consumers at once: y blocks
    defined without SE are counted, built, folded and mapped as x blocks."""

    def no_se(b: Any, o: Any) -> blocks.BlockLayers:
        layers = blocks.bottleneck(b, o)
        kept = [u for u in layers.layer if not isinstance(u, blocks.SqueezeExcite)]
        return blocks.BlockLayers(
            layers.preact,
            tuple(dataclasses.replace(u, path=f"layer.{i}") for i, u in enumerate(kept)),
            layers.shortcut,
            layers.act_out,
        )

    y = rs.plan(rs.load_spec(ROOT / "specs" / "y002.yaml"), 32)
    x = rs.plan(rs.load_spec(ROOT / "specs" / "x002.yaml"), 32)
    monkeypatch.setitem(blocks.DEFINITIONS, "y", no_se)
    assert count_plan(y) == count_plan(x)
    model = build_model(y)
    assert set(model.state_dict()) == set(build_model(x).state_dict())
    assert {k.theirs for k in key_pairs(y, "timm")} == {k.theirs for k in key_pairs(x, "timm")}
    inference_model(model, fused_kernels=False)(torch.randn(1, 3, 32, 32))


# ---------------------------------------------------------------------------------------------
# Switches: drop path, output stride, presets by name


def test_drop_path_rises_linearly_and_acts_in_training_only() -> None:
    spec = spec_from_dict(
        {"name": "dp", "block": "y", "drop_path": 0.3}
        | {"stages": [{"width": 16, "depth": 2, "group_width": 8}] * 2}
    )
    model = build_model(spec)
    rates = [m.rate for m in model.modules() if isinstance(m, RegNetDropPath)]
    assert rates == torch.linspace(0, 0.3, 4).tolist()[1:]  # the first block's rate is 0
    plain = build_model(spec.model_copy(update={"drop_path": 0.0}))
    plain.load_state_dict(model.state_dict())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).logits, plain.eval()(x).logits)
        torch.manual_seed(0)
        trained = model.train()(x).logits
        assert not torch.allclose(trained, plain.train()(x).logits)


@pytest.mark.parametrize(("stride", "side"), [(0, 2), (32, 2), (16, 4), (8, 8)])
def test_output_stride_dilates_the_last_stages(stride: int, side: int) -> None:
    spec = rs.load_spec(ROOT / "specs" / "regnetz_005.yaml")
    p = rs.plan(spec.model_copy(update={"output_stride": stride}), 64)
    assert p.stages[-1].out_size == side
    assert [s.dilation for s in p.stages] == {
        0: [1, 1, 1, 1], 32: [1, 1, 1, 1], 16: [1, 1, 1, 2], 8: [1, 1, 2, 4]
    }[stride]  # fmt: skip
    levels = feature_info(p)
    assert levels[-1].stride == 64 // side


@pytest.mark.parametrize(
    "name", ["regnetz_d8", "timm/regnetv_040.ra3_in1k", "regnetz_040_h", "regnety_040_sgn"]
)
def test_family_presets_report_by_timm_name_from_any_folder(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", name, "--format", "json"]) == 0
    assert '"params"' in capsys.readouterr().out


def test_preset_switches_dump_and_read_back() -> None:
    for path in sorted((ROOT / "specs").glob("regnet*.yaml")):
        spec = rs.load_spec(path)
        assert rs.load_spec(dump_spec(spec)) == spec, path.stem


# ---------------------------------------------------------------------------------------------
# One line, exit 2


BAD = [
    ("norm: group\nnorm_group_size: 3\n", "norm_group_size: 3 does not divide"),
    ("norm: group\nnorm_groups: 2\nnorm_group_size: 4\n", "not both"),
    ("norm_groups: 4\n", "norm_groups: only with norm: group"),
    ("drop_path: 1.0\n", "drop_path: Input should be less than 1"),
    ("drop_path: -0.1\n", "drop_path: Input should be greater than or equal to 0"),
    ("output_stride: 4\n", "output_stride: Input should be 0, 8, 16 or 32"),
    ("shortcut: maxpool\n", "shortcut: Input should be 'conv', 'avg' or 'none'"),
    ("head_width: -1\n", "head_width: Input should be greater than or equal to 0"),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_ill_defined_switches_are_one_line_exit_2(
    extra: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nblock: y\n" + extra + "stages:\n  - {width: 8, depth: 1, group_width: 8}\n"
    )
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"block": "vanilla", "drop_path": 0.1}, "drop_path: vanilla blocks have no residual"),
        ({"block": "basic", "preact": True}, "preact: basic blocks"),
        ({"block": "vanilla", "shortcut": "conv"}, "shortcut: vanilla blocks have no residual"),
        ({"block": "x", "se_ratio": 0.25}, "se_ratio: x blocks have no SE"),
    ],
)
def test_blocks_without_the_parts_refuse_the_switch(data: dict, message: str) -> None:
    stage = {"width": 8, "depth": 1} | ({"group_width": 8} if data["block"] == "x" else {})
    with pytest.raises(SpecError, match=message):
        spec_from_dict({"name": "b", **data, "stages": [stage]})


def test_head_width_without_a_classifier_is_refused_where_pycls_needs_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = tmp_path / "h.yaml"
    spec.write_text(
        "name: h\nblock: x\nhead_width: 16\nnum_classes: 0\n"
        "stages:\n  - {width: 8, depth: 1, group_width: 8}\n"
    )
    ckpt = tmp_path / "h.pt"
    torch.save(build_model(rs.load_spec(spec)).state_dict(), ckpt)
    argv = ["convert", str(ckpt), "--from", "hf", "--to", "pycls", "--spec", str(spec)]
    assert main([*argv, "-o", str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "head_width: 16" in err and "classifier" in err and err.count("\n") == 1
    # timm keeps its head conv without a classifier: the same spec converts
    assert main([*argv[:5], "timm", *argv[6:], "-o", str(tmp_path / "t.pt")]) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("preact", True),
        ("linear_out", True),
        ("shortcut", "avg"),
        ("norm", "group"),
        ("head_width", 16),
        ("drop_path", 0.1),
        ("output_stride", 16),
        ("se_activation", "silu"),
        ("se_from", "bottleneck"),
        ("bottleneck_in", True),
    ],
)
def test_hugging_face_conversion_refuses_what_its_regnet_cannot_express(
    field: str, value: Any
) -> None:
    data = {"name": "h", "block": "y", field: value, "stages": [{"width": 16, "depth": 1}]}
    data["stages"][0]["group_width"] = 8
    data |= {"norm_group_size": 8} if field == "norm" else {}
    spec = spec_from_dict(data)
    with pytest.raises(BuildError, match=f"h: {field}: ") as err:
        hf_config_from_spec(spec)
    assert "\n" not in str(err.value) and "Hugging Face" in str(err.value)
    with pytest.raises(BuildError, match=f"{field}: "):
        build_model(spec).save_pretrained(Path("/nonexistent-never-written"))


# ---------------------------------------------------------------------------------------------
# The SE activation: part of the block definition, what each source library does


def test_a_timm_config_with_silu_gives_silu_inside_se() -> None:
    cfg = {"depth": 13, "w0": 24, "wa": 36.44, "wm": 2.49, "group_size": 8, "se_ratio": 0.25}
    spec = spec_from_timm_cfg(cfg | {"act_layer": "silu"})
    assert (spec.activation, spec.se_activation) == ("silu", "silu")
    se = next(m for m in build_model(spec).modules() if type(m).__name__ == "RegNetSELayer")
    assert isinstance(se.attention[1], torch.nn.SiLU)
    assert timm_cfg_from_spec(spec).act_layer == "silu"


def test_hugging_face_configs_keep_relu_inside_se() -> None:
    config = {"hidden_sizes": [16, 32], "depths": [1, 1], "groups_width": 8}
    spec = spec_from_hf_config(config | {"layer_type": "y", "hidden_act": "silu"})
    assert (spec.activation, spec.se_activation) == ("silu", "relu")


@pytest.mark.parametrize("library", ["timm", "torchvision", "pycls"])
def test_converting_a_silu_y_whose_se_is_relu_is_refused(library: str) -> None:
    """timm, torchvision and pycls use the block's activation inside SE: a silu y spec
    with a ReLU SE would give other features from the same weights."""
    data = {"name": "s", "block": "y", "activation": "silu", "depth": 4, "w0": 16, "wa": 8.0}
    spec = spec_from_dict(data | {"wm": 2.0, "group_width": 8})
    assert spec.se_activation == "relu"  # Hugging Face's, our x/y default
    p = rs.plan(spec, 32)
    state = build_model(p).state_dict()
    with pytest.raises(ConvertError, match=r"se_activation: relu: .* set se_activation: silu"):
        convert_state_dict(state, p, "hf", library)
    fixed = rs.plan(spec.model_copy(update={"se_activation": "silu"}), 32)
    assert convert_state_dict(state, fixed, "hf", library)


# ---------------------------------------------------------------------------------------------
# Export: torch.export and ONNX of the new kinds, eager and folded


FAMILY_SMALL = {
    "z": {
        "block": "z",
        "activation": "silu",
        "bottleneck_in": True,
        "se_from": "bottleneck",
        "stem": "tiered",
        "stem_width": 16,
        "head_width": 32,
        "stages": [
            {"width": 16, "depth": 2, "group_width": 8, "bottleneck_multiplier": 2.0},
            {"width": 24, "depth": 1, "group_width": 8, "bottleneck_multiplier": 2.0},
        ],
    },
    "v": {
        "block": "v",
        "activation": "silu",
        "shortcut": "avg",
        "norm": "group",
        "norm_group_size": 8,
        "output_stride": 8,
        "stages": [{"width": 16, "depth": 1, "group_width": 8}] * 3,
    },
}


@pytest.mark.parametrize("kind", sorted(FAMILY_SMALL))
def test_family_models_export_with_equal_outputs(kind: str, tmp_path: Path) -> None:
    from regnet_space.nn.export import (
        export_onnx,
        export_program,
        onnx_max_abs_diff,
        program_max_abs_diff,
    )

    spec = spec_from_dict({"name": kind, "num_classes": 5, "input_size": 32, **FAMILY_SMALL[kind]})
    model = randomised(build_model(spec))
    x = torch.randn(3, 3, 32, 32)
    for module in (model, inference_model(model, fused_kernels=False)):
        assert program_max_abs_diff(export_program(module, input_size=32), module, x) <= 1e-5
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = export_onnx(model, tmp_path / f"{kind}.onnx", input_size=32)
    assert onnx_max_abs_diff(target, model, x) <= 1e-4
