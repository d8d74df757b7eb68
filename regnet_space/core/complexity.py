"""Analytic flops, params and activations of a plan, without building the model.

Counting conventions (named options; pycls, fvcore and torchvision):

- ``paper`` (default, pycls): one flop = one multiply-add of a conv or linear layer, plus one
  per output channel for a bias; BN, activations, pooling, the SE multiply and the residual
  add count 0.
- ``fvcore``: what fvcore's default ``FlopCountAnalysis`` reports for the model in eval mode:
  conv and linear multiply-adds without bias, plus 2 per element for every (affine) BN and
  1 per input element for every adaptive average pool.
- ``torchvision``: conv and linear multiply-adds only, no bias adds (torchvision's published
  "GFLOPS" metadata). PyTorch's FlopCounterMode reports exactly twice this.

In both: params = weights + biases + 2 per norm channel (running stats are buffers); acts =
output elements of every conv and linear layer (the SE 1x1 convs included). GroupNorm counts
like BatchNorm but for fvcore, which counts it 5 per element. Pooling in shortcuts and stems
(average and max) costs no flops in any convention (fvcore and FlopCounterMode have none);
the ``paper`` convention counts the resnet stem's max-pool output as acts, as pycls does.

The layers counted are the block definitions' (core.blocks), the same objects the model is
built from.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .blocks import (
    DEFINITIONS,
    BlockLayers,
    ConvLayer,
    Definition,
    NormAct,
    Pool,
    SqueezeExcite,
    Unit,
    head_layers,
    stem_layers,
)
from .errors import PlanError
from .generator import BlockOptions, Plan, StagePlan, make_plan
from .limits import CONVENTIONS, Convention
from .spec import Spec


@dataclass(frozen=True)
class PartCount:
    """Counts of one part of the network: the stem, one stage, or the head."""

    name: str
    flops: int
    params: int
    acts: int


@dataclass(frozen=True)
class Complexity:
    """Totals and per-part rows (stem, stage1..N, head) under one convention."""

    convention: Convention
    input_size: int
    parts: tuple[PartCount, ...]

    @property
    def flops(self) -> int:
        return sum(p.flops for p in self.parts)

    @property
    def params(self) -> int:
        return sum(p.params for p in self.parts)

    @property
    def acts(self) -> int:
        return sum(p.acts for p in self.parts)

    @property
    def stages(self) -> tuple[PartCount, ...]:
        """Only the stage rows, in order."""
        return tuple(p for p in self.parts if p.name.startswith("stage"))


class _Tally:
    """Accumulates one part's counts layer by layer under a convention."""

    def __init__(self, convention: Convention, norm: str = "batch") -> None:
        self.fvcore = convention == "fvcore"
        self.bias_flops = convention == "paper"
        # fvcore: eval-mode batch_norm 2 per element, group_norm (affine) 5
        self.norm_flops = 5 if norm == "group" else 2
        self.flops = 0
        self.params = 0
        self.acts = 0

    def conv(
        self, c_in: int, c_out: int, k: int, h_out: int, groups: int = 1, bias: bool = False
    ) -> None:
        """k x k conv producing c_out x h_out x h_out."""
        macs = k * k * c_in * c_out * h_out * h_out // groups
        self.flops += macs + (c_out if bias and self.bias_flops else 0)
        self.params += k * k * c_in * c_out // groups + (c_out if bias else 0)
        self.acts += c_out * h_out * h_out

    def bn(self, c: int, h: int) -> None:
        """A norm over c x h x h: 2 params per channel; fvcore counts 2 (batch) or 5 (group)
        per element."""
        self.params += 2 * c
        if self.fvcore:
            self.flops += self.norm_flops * c * h * h

    def max_pool(self, c: int, h_out: int) -> None:
        """A max-pool to c x h_out x h_out: pycls counts its outputs as acts."""
        if self.bias_flops:  # the paper (pycls) convention
            self.acts += c * h_out * h_out

    def pool(self, c: int, h: int) -> None:
        """Global average pool of c x h x h; fvcore counts 1 per input element."""
        if self.fvcore:
            self.flops += c * h * h

    def linear(self, c_in: int, c_out: int) -> None:
        """Linear layer with bias on a vector."""
        self.flops += c_in * c_out + (c_out if self.bias_flops else 0)
        self.params += c_in * c_out + c_out
        self.acts += c_out

    def part(self, name: str) -> PartCount:
        return PartCount(name, self.flops, self.params, self.acts)


def _units(t: _Tally, units: tuple[Unit, ...]) -> None:
    """Convs (with their norms), norms, and SE (pool, 1x1 convs with bias); pools count 0."""
    for u in units:
        if isinstance(u, ConvLayer):
            c = u.conv
            t.conv(c.c_in, c.c_out, c.kernel, c.h_out, groups=c.groups)
            if u.norm:
                t.bn(c.c_out, c.h_out)
        elif isinstance(u, NormAct):
            if u.norm:
                t.bn(u.channels, u.side)
        elif isinstance(u, SqueezeExcite):
            t.pool(u.channels, u.side)
            t.conv(u.channels, u.width, 1, 1, bias=True)
            t.conv(u.width, u.channels, 1, 1, bias=True)
        elif isinstance(u, Pool) and u.kind == "max":
            t.max_pool(u.channels, u.h_out)


def _block(t: _Tally, layers: BlockLayers) -> None:
    """The block's pre-activation, branch and shortcut units."""
    _units(t, (layers.preact,) if layers.preact is not None else ())
    _units(t, layers.layer)
    _units(t, layers.shortcut or ())


# A stage's counts are a function of its plan, its kind's definition (the function itself, so
# a definition registered anew is counted anew), the switches and the convention, all frozen
# and hashable: stages met again (a spec counted again, specs that share designs, a model's
# size guard after its report) are counted once.
@functools.lru_cache(maxsize=4096)
def _stage_counts(
    definition: Definition, s: StagePlan, options: BlockOptions, convention: Convention
) -> tuple[int, int, int]:
    """Flops, params and acts of a stage: its first block, and the others, all alike, counted
    once and multiplied."""
    t = _Tally(convention, options.norm)
    _block(t, definition(s.block(0), options))
    later = s.depth - 1
    if later:
        one = _Tally(convention, options.norm)
        _block(one, definition(s.block(1), options))
        t.flops += one.flops * later
        t.params += one.params * later
        t.acts += one.acts * later
    return t.flops, t.params, t.acts


def count_plan(p: Plan, convention: Convention = "paper") -> Complexity:
    """Counts of a resolved plan (its own input size) under `convention`."""
    if convention not in CONVENTIONS:
        raise PlanError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    parts = []
    norm = p.options.norm
    stem = _Tally(convention, norm)
    _units(stem, stem_layers(p).units)
    parts.append(stem.part("stem"))
    for s in p.stages:
        flops, params, acts = _stage_counts(DEFINITIONS[p.block], s, p.options, convention)
        parts.append(PartCount(f"stage{s.index + 1}", flops, params, acts))
    head = _Tally(convention, norm)
    _units(head, head_layers(p))
    head.pool(p.out_width, p.stages[-1].out_size)
    if p.num_classes:
        head.linear(p.out_width, p.num_classes)
    parts.append(head.part("head"))
    return Complexity(convention, p.input_size, tuple(parts))


def count(
    spec: Spec | Plan, input_size: int | None = None, convention: Convention = "paper"
) -> Complexity:
    """Analytic flops, params and acts of a spec (at input_size, default the spec's) or a plan."""
    if isinstance(spec, Plan):
        if input_size is not None and input_size != spec.input_size:
            raise PlanError(
                f"the plan was resolved at input size {spec.input_size}, not {input_size}"
            )
        return count_plan(spec, convention)
    return count_plan(make_plan(spec, input_size), convention)
