"""The inference form (BatchNorm folded, channels-last, fused kernels) equals eager within 1e-4."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from regnet_space.core.errors import BuildError
from regnet_space.core.generator import Plan, make_plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.nn import inference as inference_mod
from regnet_space.nn.inference import (
    InferenceRegNet,
    fold_conv_bn,
    fused_kernels_available,
    inference_model,
)
from regnet_space.nn.model import build_model

ATOL = 1e-4


def design(block: str = "y", **fields: Any) -> Plan:
    """Projection and identity blocks, a bottleneck multiplier, a clipped group width."""
    stages = [
        {"width": 16, "depth": 2, "group_width": 8},
        {"width": 32, "depth": 2, "group_width": 8, "bottleneck_multiplier": 0.5},
        {"width": 48, "depth": 1, "group_width": 64},
    ]
    data = {"name": "t", "block": block, "num_classes": 6, "stages": stages}
    return make_plan(spec_from_dict(data | fields))


def eager(p: Plan, head: bool = True, seed: int = 0) -> nn.Module:
    """A model in eval mode with random BN affine parameters and running statistics."""
    torch.manual_seed(seed)
    model = build_model(p, head)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


# (channels_last, fused_kernels); fused kernels are used with channels-last only
MODES = [(False, False), (True, False)] + ([(True, True)] if fused_kernels_available() else [])


def test_fold_conv_bn_equals_conv_then_bn() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=2, bias=False)
    bn = nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 3)
    x = torch.randn(2, 8, 9, 9)
    fused = fold_conv_bn(conv, bn)
    with torch.no_grad():
        assert torch.allclose(fused(x), bn(conv(x)), atol=1e-5)
    assert conv.bias is None  # the original conv is not modified


@pytest.mark.parametrize(("channels_last", "fused"), MODES)
@pytest.mark.parametrize("block", ["x", "y"])
@pytest.mark.parametrize("head", [True, False])
def test_inference_form_equals_eager(
    block: str, head: bool, channels_last: bool, fused: bool
) -> None:
    p = design(block)
    model = eager(p, head)
    fast = inference_model(model, channels_last=channels_last, fused_kernels=fused)
    assert isinstance(fast, InferenceRegNet) and fast.fused == fused
    x = torch.randn(3, 3, 45, 45)
    with torch.inference_mode():
        out = fast(x)
    ref = reference(model, x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= ATOL


@pytest.mark.parametrize("activation", ["silu", "gelu"])
def test_other_activations_and_a_stride_one_first_stage(activation: str) -> None:
    p = design("y", activation=activation, downsample_in_first_stage=False)
    model = eager(p)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (inference_model(model)(x) - reference(model, x)).abs().max() <= ATOL


def test_the_shipped_y002_with_224_inputs() -> None:
    from regnet_space import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "specs" / "y002.yaml")
    model = eager(make_plan(spec))
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert (inference_model(model)(x) - reference(model, x)).abs().max() <= ATOL


def test_the_eager_model_is_left_unchanged_and_the_form_is_frozen() -> None:
    model = eager(design())
    before = copy.deepcopy(model.state_dict())
    fast = inference_model(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not fast.training
    assert not any(p.requires_grad for p in fast.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    conv = fast.blocks[0].a.conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_output_is_channels_last_for_the_last_hidden_state() -> None:
    model = eager(design(), head=False)
    with torch.inference_mode():
        out = inference_model(model, fused_kernels=False)(torch.randn(1, 3, 32, 32))
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not fused_kernels_available(), reason="no oneDNN in this PyTorch build")
def test_fused_weights_are_packed_per_input_shape_and_stay_exact() -> None:
    model = eager(design())
    fast = inference_model(model, fused_kernels=True)
    conv = fast.blocks[0].a
    shapes = [(1, 3, 32, 32), (3, 3, 45, 45), (2, 3, 40, 36), (1, 3, 32, 32)]
    shapes += [(b, 3, 33, 33) for b in range(1, 6)]
    with torch.inference_mode():
        for shape in shapes:
            x = torch.randn(shape)
            assert (fast(x) - reference(model, x)).abs().max() <= ATOL
    # one packing per input shape seen by this conv, the oldest dropped past the bound
    assert len(conv.packed) == inference_mod.MAX_PACKED_SHAPES
    assert all(s[0] in (2, 3, 4, 5) and s[2:4] == (17, 17) for s in conv.packed)


@pytest.mark.skipif(not fused_kernels_available(), reason="no oneDNN in this PyTorch build")
def test_fused_weights_are_packed_per_thread_count_too() -> None:
    model = eager(design())
    fast = inference_model(model, fused_kernels=True)
    x = torch.randn(2, 3, 32, 32)
    before = torch.get_num_threads()
    try:
        for threads in (2, 1, 2):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                assert (fast(x) - reference(model, x)).abs().max() <= ATOL
    finally:
        torch.set_num_threads(before)
    assert sorted(s[-1] for s in fast.blocks[0].a.packed) == [1, 2]


@pytest.mark.skipif(not fused_kernels_available(), reason="no oneDNN in this PyTorch build")
def test_fused_form_shared_by_threads_on_many_shapes_stays_exact() -> None:
    from concurrent.futures import ThreadPoolExecutor

    model = eager(design())
    fast = inference_model(model, fused_kernels=True)
    inputs = [torch.randn(1 + i % 3, 3, 30 + i, 30 + i) for i in range(12)]
    expected = [reference(model, x) for x in inputs]

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fast(x)

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(run, inputs))
    assert all((o - e).abs().max() <= ATOL for o, e in zip(outs, expected, strict=True))
    assert len(fast.blocks[0].a.packed) <= inference_mod.MAX_PACKED_SHAPES


@pytest.mark.skipif(not fused_kernels_available(), reason="no oneDNN in this PyTorch build")
def test_the_default_times_both_kernels_per_shape_and_either_is_exact() -> None:
    model = eager(design())
    fast = inference_model(model)
    assert fast.fused and fast.auto
    assert not inference_model(model, fused_kernels=True).auto
    shapes = [(1, 3, 32, 32), (3, 3, 45, 45), (1, 3, 32, 32)]
    with torch.inference_mode():
        for shape in shapes:
            x = torch.randn(shape)
            assert (fast(x) - reference(model, x)).abs().max() <= ATOL
            for fused in (True, False):  # whichever the timing picks
                assert (fast._body(x, fused) - fast._body(x, not fused)).abs().max() <= ATOL
    threads = torch.get_num_threads()
    assert set(fast.choices) == {(1, 3, 32, 32, threads), (3, 3, 45, 45, threads)}


def test_fused_kernels_refused_where_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference_mod, "fused_kernels_available", lambda: False)
    model = eager(design())
    assert not inference_model(model).fused  # the default falls back quietly
    with pytest.raises(BuildError, match="oneDNN"):
        inference_model(model, fused_kernels=True)


def test_bad_inputs() -> None:
    fast = inference_model(eager(design()))
    with pytest.raises(ValueError, match="pixel_values must have shape"):
        fast(torch.randn(1, 4, 32, 32))
    with pytest.raises(BuildError, match="expected a RegNet model"):
        inference_model(nn.Linear(2, 2))  # type: ignore[arg-type]


def test_forward_benchmark_runs_and_prints_the_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bench_forward: Any
) -> None:
    pytest.importorskip("transformers")
    bench = bench_forward
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\nblock: y\nstages:\n  - {width: 16, depth: 1, group_width: 8}\n"
        "  - {width: 32, depth: 2, group_width: 8}\n"
    )
    argv = ["--models", str(spec), "--batches", "1,2", "--threads", "1", "--input-size", "32"]
    assert bench.main([*argv, "--rounds", "2", "--min-time", "0", "--no-gpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("worst: inference form ")
    assert "goals: eager >= 1.00x HF" in out and "outputs within 0.0001 met" in out
    assert len([ln for ln in out.splitlines() if ln.startswith(str(spec))]) == 2
