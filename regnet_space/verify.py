"""fvcore cross-check: count a built model with fvcore and compare with the analytic counts.

fvcore is run with its default operator handles on the model in eval mode (the ``fvcore``
convention of complexity.py). Its warnings about ops it skips (sigmoid, mul, add) and
TorchScript's deprecation warnings are silenced: they are expected and carry no news.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .complexity import Complexity, count_plan
from .generator import Plan


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


def fvcore_counts(model: nn.Module, num_channels: int, input_size: int) -> FvcoreCounts:
    """Run fvcore's flop, activation and parameter counters on one image (batch 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import uses deprecated torch.jit.script
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis, parameter_count

    was_training = model.training
    model.eval()
    traced = _TupleOutput(model)
    x = torch.zeros(1, num_channels, input_size, input_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("fvcore").setLevel(logging.ERROR)
            flops = FlopCountAnalysis(traced, x)
            flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            acts = ActivationCountAnalysis(traced, x)
            acts.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total_flops, total_acts = int(flops.total()), int(acts.total())
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
