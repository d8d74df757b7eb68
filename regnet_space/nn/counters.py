"""The two torch-side counters beside the analytic one: fvcore and PyTorch's FlopCounterMode.

fvcore is run with its default operator handles on the model in eval mode (the ``fvcore``
convention of core.complexity). Its warnings about ops it skips (sigmoid, mul, add) and
TorchScript's deprecation warnings are silenced: they are expected and carry no news.

FlopCounterMode runs on the meta device (no weights allocated).
The model is built under `torch.device("meta")` and run on a meta input, so even RegNetY-10B
is counted without memory for its weights. FlopCounterMode's convention: 2 flops per
multiply-add of a conv or matmul, bias adds, BN, activations and pooling free; it equals
2 x the analytic `torchvision` convention of complexity.py, exactly.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from numbers import Number
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..core.complexity import Complexity, count_plan
from ..core.generator import Plan, make_plan
from ..core.spec import ExplicitSpec, ParametricSpec

__all__ = [
    "FvcoreCounts",
    "TorchCheck",
    "TorchFlops",
    "Verification",
    "fvcore_counts",
    "torch_check",
    "torch_flop_counts",
    "torch_flops",
    "verify",
]


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
    head = _module_total(by_module, f"{root}.regnet.final")  # the head conv, if any
    parts.append(("head", head + _module_total(by_module, f"{root}.classifier")))
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


# ---------------------------------------------------------------------------------------------
# fvcore


@dataclass(frozen=True)
class FvcoreCounts:
    """What fvcore measures on the built model, and the module's own parameter count."""

    flops: int  # FlopCountAnalysis total, default handles (fvcore convention)
    acts: int  # ActivationCountAnalysis total
    params: int  # fvcore parameter_count
    module_params: int  # sum of p.numel() over model.parameters()


@dataclass(frozen=True)
class Verification:
    """Analytic counts beside fvcore's, with the comparison under each convention."""

    measured: FvcoreCounts
    analytic_fvcore: Complexity
    analytic_paper: Complexity

    @property
    def ok(self) -> bool:
        m, a = self.measured, self.analytic_fvcore
        return m.flops == a.flops and m.acts == a.acts and m.params == m.module_params == a.params

    def mismatches(self) -> list[str]:
        """Human-readable list of the counts that disagree (empty when ok)."""
        m, a = self.measured, self.analytic_fvcore
        pairs = [
            ("flops (fvcore convention)", m.flops, a.flops),
            ("acts", m.acts, a.acts),
            ("params (fvcore)", m.params, a.params),
            ("params (module)", m.module_params, a.params),
        ]
        return [f"{n}: fvcore {x} != analytic {y}" for n, x, y in pairs if x != y]


class _TupleOutput(nn.Module):
    """Wraps a model so that it returns tuples: TorchScript tracing rejects dataclass outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model(x, return_dict=False)


def _fvcore_totals(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """fvcore's flop and activation totals from one trace of the model.

    FlopCountAnalysis and ActivationCountAnalysis are the same JitModelAnalysis with
    different op handles, and each traces the model. One analysis holding, for every op,
    a handle that returns both counts under two keys traces once and sums the same numbers.
    """
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis
    from fvcore.nn.jit_analysis import JitModelAnalysis

    by_op: dict[str, dict[str, Any]] = {}
    for key, analysis in (
        ("flops", FlopCountAnalysis(model, x)),  # neither traces until asked for counts
        ("acts", ActivationCountAnalysis(model, x)),
    ):
        for op, handle in analysis._op_handles.items():
            by_op.setdefault(op, {})[key] = handle
    both = JitModelAnalysis(model, x)
    both.set_op_handle(**{op: _both_counts(handles) for op, handles in by_op.items()})
    both.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    totals = both.by_operator()
    return int(totals["flops"]), int(totals["acts"])


def _both_counts(handles: dict[str, Any]) -> Any:
    """One fvcore op handle returning each handle's count under its key (flops, acts)."""

    def count(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        out: Counter[str] = Counter()
        for key, handle in handles.items():
            value = handle(inputs, outputs)
            out[key] += value if isinstance(value, Number) else sum(value.values())
        return out

    return count


def fvcore_counts(model: nn.Module, num_channels: int, input_size: int) -> FvcoreCounts:
    """Run fvcore's flop, activation and parameter counters on one image (batch 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import uses deprecated torch.jit.script
        from fvcore.nn import parameter_count

    was_training = model.training
    model.eval()
    traced = _TupleOutput(model)
    x = torch.zeros(1, num_channels, input_size, input_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("fvcore").setLevel(logging.ERROR)
            total_flops, total_acts = _fvcore_totals(traced, x)
    finally:
        model.train(was_training)
    return FvcoreCounts(
        flops=total_flops,
        acts=total_acts,
        params=int(parameter_count(model)[""]),
        module_params=sum(p.numel() for p in model.parameters()),
    )


def verify(model: nn.Module, p: Plan) -> Verification:
    """Cross-check a model built from plan `p` (with its head) against the analytic counts."""
    measured = fvcore_counts(model, p.num_channels, p.input_size)
    return Verification(measured, count_plan(p, "fvcore"), count_plan(p, "paper"))
