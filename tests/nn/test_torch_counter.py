"""PyTorch's FlopCounterMode on the meta device agrees with the analytic counts (2 per MAC)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from regnet_space import count, load_spec, plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.nn.counters import (
    TorchCheck,
    TorchFlops,
    torch_check,
    torch_flop_counts,
    torch_flops,
)

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_agrees_with_the_torchvision_convention_times_two(path: Path) -> None:
    spec = load_spec(path)
    counted = torch_flop_counts(spec)
    analytic = count(spec, convention="torchvision")
    assert counted.total == 2 * analytic.flops
    assert counted.parts == tuple((p.name, 2 * p.flops) for p in analytic.parts)


def test_y10b_is_counted_without_allocating_its_weights() -> None:
    spec = load_spec(ROOT / "specs" / "y10b.yaml")
    params = count(spec).params
    assert params * 4 > 30e9  # its float32 weights would not fit this machine's memory
    assert torch_flops(spec) == 2 * count(spec, convention="torchvision").flops


def test_torchvision_published_figure_for_y128gf() -> None:
    # torchvision: RegNetY-128GF is 127.518 GF at 224 and 374.57 GF at 384 (its convention)
    spec = load_spec(ROOT / "specs" / "y1280.yaml")
    assert round(torch_flops(spec) / 2e9, 3) == 127.518
    assert round(torch_flops(plan(spec, 384)) / 2e9, 2) == 374.57


@pytest.mark.parametrize(
    "fields",
    [
        {"block": "x", "bottleneck_multiplier": 0.25, "group_width": 8},
        {"block": "y", "bottleneck_multiplier": 2.0, "group_width": 16},
        {"block": "y", "downsample_in_first_stage": False, "num_classes": 0},
        {"block": "x", "num_channels": 1, "stem_width": 24, "num_classes": 3},
        {"block": "x", "stem": "cifar", "stem_width": 16, "num_classes": 10},
        {"block": "y", "stem": "cifar", "downsample_in_first_stage": False},
    ],
)
def test_other_designs_and_odd_input_sizes(fields: dict[str, Any]) -> None:
    data = {"name": "d", "depth": 9, "w0": 24, "wa": 20.0, "wm": 2.3, "group_width": 8} | fields
    spec = spec_from_dict(data)
    for size in (33, 225):
        p = plan(spec, size)
        assert torch_flops(p) == 2 * count(p, convention="torchvision").flops


def test_nothing_is_left_on_the_meta_device_context() -> None:
    load = ROOT / "specs" / "x002.yaml"
    torch_flops(load_spec(load))
    assert torch.empty(1).device.type == "cpu"


def test_torch_check_reports_agreement_and_names_a_mismatching_part() -> None:
    check = torch_check(load_spec(ROOT / "specs" / "y040.yaml"))
    assert check.ok and not check.mismatches()
    assert "7,946,576,896 = 2 x 3,973,288,448" in check.summary_line()
    assert check.as_dict()["ok"] is True
    parts = tuple((n, f + 2 if n == "stage2" else f) for n, f in check.measured.parts)
    bad = TorchCheck(TorchFlops(check.measured.total + 2, parts), check.analytic)
    assert not bad.ok
    assert len(bad.mismatches()) == 1 and bad.mismatches()[0].startswith("stage2:")
    assert "MISMATCH: stage2" in bad.summary_line()
