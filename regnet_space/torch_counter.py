"""A third flop counter: PyTorch's FlopCounterMode on the meta device (no weights allocated).

The model is built under `torch.device("meta")` and run on a meta input, so even RegNetY-10B
is counted without memory for its weights. FlopCounterMode's convention: 2 flops per
multiply-add of a conv or matmul, bias adds, BN, activations and pooling free; it equals
2 x the analytic `torchvision` convention of complexity.py, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .complexity import Complexity, count_plan
from .generator import Plan
from .generator import plan as make_plan
from .spec import ExplicitSpec, ParametricSpec

__all__ = ["TorchCheck", "TorchFlops", "torch_check", "torch_flop_counts", "torch_flops"]


@dataclass(frozen=True)
class TorchFlops:
    """FlopCounterMode's total and its split into stem, stage1..N and head (2 per MAC)."""

    total: int
    parts: tuple[tuple[str, int], ...]


def _plan(spec_or_plan: ParametricSpec | ExplicitSpec | Plan) -> Plan:
    return spec_or_plan if isinstance(spec_or_plan, Plan) else make_plan(spec_or_plan)


def torch_flop_counts(spec_or_plan: ParametricSpec | ExplicitSpec | Plan) -> TorchFlops:
    """Count one image at the plan's input size with FlopCounterMode, on the meta device."""
    from .model import build_model

    p = _plan(spec_or_plan)
    with torch.device("meta"):
        model = build_model(p, True, force=True).eval()
        x = torch.empty(1, p.num_channels, p.input_size, p.input_size)
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        model(x)
    by_module = counter.get_flop_counts()
    root = type(model).__name__
    parts = [("stem", _module_total(by_module, f"{root}.regnet.embedder"))]
    for i in range(p.num_stages):
        parts.append(
            (f"stage{i + 1}", _module_total(by_module, f"{root}.regnet.encoder.stages.{i}"))
        )
    parts.append(("head", _module_total(by_module, f"{root}.classifier")))
    total = int(counter.get_total_flops())
    return TorchFlops(total=total, parts=tuple(parts))


def _module_total(by_module: dict[str, dict[object, int]], name: str) -> int:
    return int(sum(by_module.get(name, {}).values()))


def torch_flops(spec_or_plan: ParametricSpec | ExplicitSpec | Plan) -> int:
    """FlopCounterMode's total for one image (2 per multiply-add), counted on the meta device."""
    return torch_flop_counts(spec_or_plan).total


@dataclass(frozen=True)
class TorchCheck:
    """FlopCounterMode's counts beside the analytic `torchvision` counts (x2 is expected)."""

    measured: TorchFlops
    analytic: Complexity  # torchvision convention

    @property
    def ok(self) -> bool:
        expected = tuple((p.name, 2 * p.flops) for p in self.analytic.parts)
        return self.measured.parts == expected and self.measured.total == 2 * self.analytic.flops

    def summary_line(self) -> str:
        """One line for people: the total, the analytic figure and the verdict."""
        verdict = "OK, exact" if self.ok else "MISMATCH: " + "; ".join(self.mismatches())
        return (
            f"FlopCounterMode (meta device, 2 flops per multiply-add): {self.measured.total:,}"
            f" = 2 x {self.analytic.flops:,} (torchvision convention): {verdict}"
        )

    def as_dict(self) -> dict[str, object]:
        """For JSON output: FlopCounterMode's total and parts, the analytic total, ok."""
        return {
            "ok": self.ok,
            "flop_counter_mode": self.measured.total,
            "parts": dict(self.measured.parts),
            "analytic_torchvision_x2": 2 * self.analytic.flops,
        }

    def mismatches(self) -> list[str]:
        """One line per part whose counts disagree (empty when ok)."""
        got = dict(self.measured.parts)
        return [
            f"{p.name}: FlopCounterMode {got.get(p.name)} != 2 x analytic {p.flops}"
            for p in self.analytic.parts
            if got.get(p.name) != 2 * p.flops
        ]


def torch_check(spec_or_plan: ParametricSpec | ExplicitSpec | Plan) -> TorchCheck:
    """Count with FlopCounterMode (meta device) and pair it with the analytic counts."""
    p = _plan(spec_or_plan)
    return TorchCheck(torch_flop_counts(p), count_plan(p, "torchvision"))
