"""One fvcore trace gives exactly the flops and activations of fvcore's two analyses."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from regnet_space import build_model, load_spec, plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.nn.counters import _TupleOutput, fvcore_counts

SPECS = Path(__file__).resolve().parents[2] / "specs"

SMALL = {
    "x-bm-groups": {
        "name": "a", "block": "x", "depth": 5, "w0": 16, "wa": 12.0, "wm": 2.2,
        "group_width": 8, "bottleneck_multiplier": 0.5,
    },
    "y-silu-no-head": {
        "name": "b", "block": "y", "depth": 4, "w0": 24, "wa": 20.0, "wm": 2.0,
        "group_width": 8, "activation": "silu", "num_classes": 0,
    },
    "y-gelu-stride-one": {
        "name": "c", "block": "y", "depth": 3, "w0": 8, "wa": 8.0, "wm": 2.5,
        "group_width": 4, "activation": "gelu", "downsample_in_first_stage": False,
    },
}  # fmt: skip


def two_traces(model: torch.nn.Module, channels: int, size: int) -> tuple[int, int]:
    """fvcore's FlopCountAnalysis and ActivationCountAnalysis, each tracing on its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

        model.eval()
        wrapped, x = _TupleOutput(model), torch.zeros(1, channels, size, size)
        flops = FlopCountAnalysis(wrapped, x)
        acts = ActivationCountAnalysis(wrapped, x)
        for a in (flops, acts):
            a.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(flops.total()), int(acts.total())


@pytest.mark.parametrize(("name", "size"), [("y002", 224), ("x004", 96), ("y008_tv", 64)])
def test_shipped_specs_one_trace_equals_two(name: str, size: int) -> None:
    p = plan(load_spec(SPECS / f"{name}.yaml"), size)
    model = build_model(p)
    one = fvcore_counts(model, p.num_channels, size)
    assert (one.flops, one.acts) == two_traces(model, p.num_channels, size)
    assert one.flops > 0 and one.acts > 0


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("size", [32, 57])
def test_other_activations_heads_and_strides_one_trace_equals_two(name: str, size: int) -> None:
    p = plan(spec_from_dict(SMALL[name]), size)
    model = build_model(p)
    one = fvcore_counts(model, p.num_channels, size)
    assert (one.flops, one.acts) == two_traces(model, p.num_channels, size)
