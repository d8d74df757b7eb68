"""The generator: spec -> frozen stage plan (paper section 3.3; pycls, timm, torchvision rules).

Pure functions of numbers; numpy only (no torch), so design-space tools start fast.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from pydantic import ValidationError

from .errors import PlanError, SpecError
from .limits import MAX_INPUT_SIZE
from .spec import (
    BLOCK_KINDS,
    MAX_WIDTH,
    STEM_STRIDES,
    ExplicitSpec,
    ParametricSpec,
    Spec,
    StageSpec,
    dump_spec,
    spec_from_text,
)
from .validation import format_errors


@dataclass(frozen=True)
class Generation:
    """Steps 1-4 of the quantized linear rule, kept for diagnostics (parametric specs only)."""

    continuous_widths: tuple[float, ...]  # u_j = w0 + wa * j
    exponents: tuple[int, ...]  # s_j = round(log(u_j / w0) / log(wm))
    quantized_widths: tuple[int, ...]  # w_j = round(w0 * wm**s_j / q) * q
    num_stages: int  # distinct quantized widths
    total_stages: int  # max(s_j) + 1

    @property
    def skipped_exponents(self) -> bool:
        """True when an exponent was skipped (the stage count differs from max(s) + 1)."""
        return self.num_stages != self.total_stages


@dataclass(frozen=True)
class BlockOptions:
    """A plan's block switches (the spec's, with its block kind's defaults filled in)."""

    preact: bool = False
    linear_out: bool = False
    bottleneck_in: bool = False
    shortcut: str = "conv"  # where the shape changes: conv, avg or none
    residual: bool = True  # False: no residual add at all (vanilla blocks)
    bottleneck: bool = True  # False: two full 3x3 convs (vanilla and basic blocks)
    se_activation: str = "relu"
    se_from: str = "input"
    norm: str = "batch"
    norm_groups: int = 0  # GroupNorm: a fixed group count, or
    norm_group_size: int = 0  # channels per group
    drop_path: float = 0.0
    final_activation: bool = False  # without a head conv: the activation after the last stage

    def norm_groups_of(self, channels: int) -> int:
        """GroupNorm's group count on `channels` channels (PlanError if it does not divide)."""
        if self.norm_group_size:
            if channels % self.norm_group_size:
                raise PlanError(
                    f"norm_group_size: {self.norm_group_size} does not divide a norm of "
                    f"{channels} channels"
                )
            return channels // self.norm_group_size
        groups = self.norm_groups or 1
        if channels % groups:
            raise PlanError(
                f"norm_groups: {groups} groups do not divide a norm of {channels} channels"
            )
        return groups


@dataclass(frozen=True)
class BlockPlan:
    """One block: 1x1 (in -> bottleneck), 3x3 grouped (stride) [+SE], 1x1 (-> out)."""

    stage: int
    index: int
    in_width: int
    out_width: int
    bottleneck_width: int
    group_width: int
    groups: int
    stride: int
    se_width: int  # round(se_ratio * in_width); 0 for X blocks
    in_size: int
    out_size: int
    dilation: int = 1  # of the 3x3 conv (the stage's first dilation in its first block)
    stage_dilation: int = 1

    @property
    def has_projection(self) -> bool:
        """Whether the shortcut needs a projection: the width, resolution or dilation changes
        (a 1x1 conv + norm, an average pool and the conv, or no shortcut at all)."""
        return (
            self.in_width != self.out_width
            or self.stride != 1
            or self.dilation != self.stage_dilation
        )


@dataclass(frozen=True)
class StagePlan:
    """One stage: `depth` blocks of width `width`; the first one has stride `stride`."""

    index: int
    in_width: int
    width: int
    depth: int
    group_width: int  # effective group width (clipped to the bottleneck width)
    groups: int
    bottleneck_width: int
    bottleneck_multiplier: float
    stride: int
    se_width_first: int  # SE width of the first block (from the previous stage's width)
    se_width: int  # SE width of the other blocks
    in_size: int
    out_size: int
    # The first block's bottleneck (bottleneck_in: from the previous stage's width).
    bottleneck_width_first: int = 0
    group_width_first: int = 0
    groups_first: int = 0
    dilation: int = 1  # of the 3x3 convs of the blocks after the first
    first_dilation: int = 1  # of the first block's

    def blocks(self) -> tuple[BlockPlan, ...]:
        """The stage's blocks, first (strided, from in_width) to last."""
        return tuple(self.block(j) for j in range(self.depth))

    def block(self, j: int) -> BlockPlan:
        """Block j of the stage (0: the first, strided, from in_width; the others alike)."""
        first = j == 0
        return BlockPlan(
            stage=self.index,
            index=j,
            in_width=self.in_width if first else self.width,
            out_width=self.width,
            bottleneck_width=self.bottleneck_width_first if first else self.bottleneck_width,
            group_width=self.group_width_first if first else self.group_width,
            groups=self.groups_first if first else self.groups,
            stride=self.stride if first else 1,
            se_width=self.se_width_first if first else self.se_width,
            in_size=self.in_size if first else self.out_size,
            out_size=self.out_size,
            dilation=self.first_dilation if first else self.dilation,
            stage_dilation=self.dilation,
        )


@dataclass(frozen=True)
class Plan:
    """The resolved network: stem, stages and head, at one input resolution."""

    name: str
    block: str
    se_ratio: float
    activation: str
    num_channels: int
    num_classes: int
    stem_width: int
    input_size: int
    stem_size: int
    stages: tuple[StagePlan, ...]
    generation: Generation | None
    stem_stride: int = 2  # 2: the ImageNet stem; 1: the CIFAR stem; 4: resnet and tiered
    stem: str = "imagenet"
    options: BlockOptions = BlockOptions()
    head_width: int = 0  # a 1x1 conv + norm + activation before pooling; 0 for none
    output_stride: int = 0  # 0: every stage strides as given

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def group_widths(self) -> tuple[int, ...]:
        return tuple(s.group_width for s in self.stages)

    @property
    def bottleneck_widths(self) -> tuple[int, ...]:
        return tuple(s.bottleneck_width for s in self.stages)

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(s.stride for s in self.stages)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def depth(self) -> int:
        return sum(self.depths)

    @cached_property
    def blocks(self) -> tuple[BlockPlan, ...]:
        return tuple(b for s in self.stages for b in s.blocks())

    @property
    def out_width(self) -> int:
        """Channels the classifier sees: the head conv's, else the last stage's."""
        return self.head_width or self.stages[-1].width

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """Shape of the last hidden state for one square image of side input_size."""
        side = self.stages[-1].out_size
        return (1, self.out_width, side, side)


# ---------------------------------------------------------------------------------------------
# Steps 1-4: the quantized linear rule


# The rules whose width step runs in float32, as timm's `generate_regnet` and torchvision's
# `BlockParams.from_init_params` compute it with torch tensors (pycls uses numpy float64).
FLOAT32_ROUNDINGS = frozenset({"timm", "torchvision"})
_F32 = np.float32


def _log_f32(x: np.ndarray) -> np.ndarray:
    """float32 natural log, correctly rounded (float64 log rounded once to float32)."""
    return np.log(np.asarray(x, dtype=np.float64)).astype(_F32)


def width_exponents(
    j: np.ndarray, w0: np.ndarray, wa: np.ndarray, wm: np.ndarray, float32: bool
) -> np.ndarray:
    """s_j = round(log(u_j / w0) / log(wm)), u_j = w0 + wa * j, half to even (float64 array).

    float64 is pycls's numpy arithmetic. float32 is torch's: every operand a float32 (the
    Python scalars w0, wa and math.log(wm) converted once), every operation rounded to float32.
    """
    if not float32:
        u = j * wa + w0
        return np.round(np.log(u / w0) / np.log(wm))
    w0f = np.asarray(w0, dtype=np.float64).astype(_F32)
    u = np.asarray(j, dtype=np.float64).astype(_F32) * np.asarray(wa, dtype=_F32) + w0f
    log_wm = np.log(np.asarray(wm, dtype=np.float64)).astype(_F32)
    return np.round(_log_f32(u / w0f) / log_wm).astype(np.float64)


def quantize_widths(
    w0: np.ndarray, wm: np.ndarray, s: np.ndarray, q: int, float32: bool
) -> np.ndarray:
    """w = round(w0 * wm**s / q) * q (float64 array), in pycls's float64 or torch's float32."""
    if not float32:
        return np.round(w0 * np.power(wm, s) / q) * q
    wm32 = np.asarray(wm, dtype=np.float64).astype(_F32).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # too wide: inf, refused by the caller
        power = np.power(wm32, s).astype(_F32)  # torch.pow(wm, s), correctly rounded
        w0f = np.asarray(w0, dtype=np.float64).astype(_F32)
        w = np.round(w0f * power / _F32(q)) * _F32(q)
    return w.astype(np.float64)


def quantized_linear(
    depth: int, w0: int, wa: float, wm: float, q: int, float32: bool = False
) -> Generation:
    """Per-block continuous widths, exponents and quantized widths (half to even).

    float32=False is pycls's numpy float64; True is timm's and torchvision's torch float32,
    which rounds the other way where a product or exponent lands on a decimal .5.
    """
    j = np.arange(depth)
    u = j * wa + w0
    if float32:
        u = (j.astype(_F32) * _F32(wa) + _F32(w0)).astype(np.float64)
    s = width_exponents(j, w0, wa, wm, float32)
    w = quantize_widths(w0, wm, s, q, float32)
    if not np.all(np.isfinite(w)) or w.max() > MAX_WIDTH:
        raise PlanError(f"the width rule gives widths above {MAX_WIDTH}; lower wa or wm")
    widths = w.astype(np.int64)
    if widths.min() < 1:
        raise PlanError("the width rule gives a zero width; raise w0 or q")
    exps = s.astype(np.int64)
    quantized = widths.tolist()
    return Generation(
        continuous_widths=tuple(u.tolist()),
        exponents=tuple(exps.tolist()),
        quantized_widths=tuple(quantized),
        num_stages=len(set(quantized)),
        total_stages=int(exps.max()) + 1,
    )


# ---------------------------------------------------------------------------------------------
# Step 5/6: make each stage's width compatible with its group width and bottleneck


def adjust_pycls(width: int, bm: float, group_width: int) -> tuple[int, int]:
    """pycls rule: round the bottleneck width to a multiple of g (lcm with bm when bm > 1)."""
    v = int(max(1, width * bm))
    g = int(min(group_width, v))
    m = math.lcm(g, int(bm)) if bm > 1 else g
    v = max(m, int(round(v / m) * m))
    return int(v / bm), g


def adjust_torchvision(width: int, bm: float, group_width: int) -> tuple[int, int]:
    """torchvision rule ("make divisible"): round half up to g, then add g if it lost > 10 %."""
    v = int(width * bm)
    g = min(group_width, v)
    if g < 1:
        raise PlanError(f"bottleneck width int({width} * {bm}) is 0")
    new_v = max(g, int(v + g / 2) // g * g)
    if new_v < 0.9 * v:
        new_v += g
    return int(new_v / bm), g


def adjust_timm(width: int, bm: float, group_width: int) -> tuple[int, int]:
    """timm rule (group_min_ratio 0): pycls's for bm <= 1; for bm > 1, the bottleneck width
    int(width * bm) rounded to a multiple of g alone (pycls also makes it one of int(bm))."""
    if bm <= 1:
        return adjust_pycls(width, bm, group_width)
    v = int(width * bm)
    g = min(group_width, v)
    v = int(round(v / g) * g)
    return int(v / bm), g


# timm's group_min_ratio 0 is pycls's rule but for the lcm with bm > 1, 0.9 torchvision's
# make-divisible.
ADJUST = {"pycls": adjust_pycls, "timm": adjust_timm, "torchvision": adjust_torchvision}


def stage_specs(spec: ParametricSpec) -> tuple[tuple[StageSpec, ...], Generation]:
    """Stages of a parametric spec after the width rule and block compatibility."""
    float32 = spec.rounding in FLOAT32_ROUNDINGS
    gen = quantized_linear(spec.depth, spec.w0, spec.wa, spec.wm, spec.q, float32)
    # pycls's np.unique(ws, return_counts=True): distinct widths in increasing order, each with
    # its block count (in plain Python: np.unique's first call imports numpy.ma, which the
    # start-up of a command counting one spec would pay).
    runs = sorted(Counter(gen.quantized_widths).items())
    adjust = ADJUST[spec.rounding]
    stages = []
    for i, (w, d) in enumerate(runs):
        width, g = adjust(int(w), spec.bottleneck_multiplier, spec.group_width)
        if width < 1:
            raise PlanError(
                f"stage {i}: width rounds to {width}; raise w0 or bottleneck_multiplier"
            )
        if width > MAX_WIDTH or g > MAX_WIDTH:
            raise PlanError(f"stage {i}: width rounds to {max(width, g)}, above {MAX_WIDTH}")
        stride = (2 if spec.downsample_in_first_stage else 1) if i == 0 else 2
        stages.append(
            StageSpec(
                width=width,
                depth=int(d),
                group_width=g,
                bottleneck_multiplier=spec.bottleneck_multiplier,
                stride=stride,
            )
        )
    return tuple(stages), gen


def _out_size(size: int, stride: int) -> int:
    # 3x3 conv, padding 1 (and 1x1, padding 0): (h - 1) // stride + 1
    return (size - 1) // stride + 1


def make_plan(spec: Spec, input_size: int | None = None) -> Plan:
    """Resolve a spec to its frozen stage plan at a square input of side `input_size`.

    Without `input_size`, the spec's own (its `input_size` field, default 224).
    """
    if input_size is None:
        input_size = spec.input_size
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise PlanError(f"input size must be an integer, got {input_size!r}")
    if not 1 <= input_size <= MAX_INPUT_SIZE:
        raise PlanError(f"input size must be between 1 and {MAX_INPUT_SIZE}, got {input_size}")
    if isinstance(spec, ParametricSpec):
        stage_list, generation = stage_specs(spec)
        strides = tuple(st.stride or 2 for st in stage_list)
    else:
        stage_list, generation = spec.stages, None
        strides = spec.strides()
    options = block_options(spec)
    stem_stride = STEM_STRIDES[spec.stem]
    stem_size = _out_size(input_size, stem_stride)
    stages = _stage_plans(spec, stage_list, strides, options, stem_size)
    if options.norm == "group":
        widths = {*stem_widths(spec.stem, spec.stem_width), spec.head_width}
        widths |= {w for s in stages for w in (s.bottleneck_width_first, s.bottleneck_width)}
        widths |= {w for s in stages for w in (s.width, s.in_width)}
        for w in widths - {0}:
            options.norm_groups_of(w)
    return Plan(
        name=spec.name,
        block=spec.block,
        se_ratio=spec.se_ratio,
        activation=spec.activation,
        num_channels=spec.num_channels,
        num_classes=spec.num_classes,
        stem_width=spec.stem_width,
        input_size=input_size,
        stem_size=stem_size,
        stages=stages,
        generation=generation,
        stem_stride=stem_stride,
        stem=spec.stem,
        options=options,
        head_width=spec.head_width,
        output_stride=spec.output_stride,
    )


def _stage_plans(
    spec: Spec,
    stage_list: Sequence[StageSpec],
    strides: Sequence[int],
    options: BlockOptions,
    stem_size: int,
) -> tuple[StagePlan, ...]:
    """Each stage resolved: widths, groups, SE widths, sizes and dilation, in order."""
    stages: list[StagePlan] = []
    in_width, size = spec.stem_width, stem_size
    net_stride, dilation = STEM_STRIDES[spec.stem], 1
    for i, (st, stride) in enumerate(zip(stage_list, strides, strict=True)):
        # timm's output_stride: a strided stage past it keeps the resolution, dilating instead.
        if spec.output_stride and net_stride >= spec.output_stride and stride > 1:
            dilation, stride = dilation * stride, 1
        net_stride *= stride
        wb, g = _bottleneck(i, st, st.width, options)
        wb1, g1 = _bottleneck(i, st, in_width, options) if options.bottleneck_in else (wb, g)
        out = _out_size(size, stride)
        stages.append(
            StagePlan(
                index=i,
                in_width=in_width,
                width=st.width,
                depth=st.depth,
                group_width=g,
                groups=wb // g,
                bottleneck_width=wb,
                bottleneck_multiplier=st.bottleneck_multiplier,
                stride=stride,
                se_width_first=_se_width(spec.se_ratio, in_width, wb1, options),
                se_width=_se_width(spec.se_ratio, st.width, wb, options),
                in_size=size,
                out_size=out,
                bottleneck_width_first=wb1,
                group_width_first=g1,
                groups_first=wb1 // g1,
                dilation=dilation,
                first_dilation=1 if dilation in (1, 2) else 2,
            )
        )
        in_width, size = st.width, out
    return tuple(stages)


def stem_widths(stem: str, width: int) -> tuple[int, ...]:
    """Output channels of each stem conv: timm's tiered stem has three, 3/8, 1/2 and all."""
    return (3 * width // 8, width // 2, width) if stem == "tiered" else (width,)


def block_options(spec: Spec) -> BlockOptions:
    """The block switches of a spec (its kind's defaults are filled in by the spec)."""
    kind = BLOCK_KINDS[spec.block]
    return BlockOptions(
        preact=spec.preact,
        linear_out=spec.linear_out,
        bottleneck_in=spec.bottleneck_in,
        shortcut=spec.shortcut,
        residual=kind.residual,
        bottleneck=kind.bottleneck,
        se_activation=spec.se_activation,
        se_from=spec.se_from,
        norm=spec.norm,
        norm_groups=spec.norm_groups,
        norm_group_size=spec.norm_group_size,
        drop_path=spec.drop_path,
        final_activation=spec.final_activation,
    )


def _bottleneck(i: int, st: StageSpec, width: int, options: BlockOptions) -> tuple[int, int]:
    """Bottleneck width round(width * bm) and the group width clipped to it (PlanError if it
    does not divide); blocks without a bottleneck: the width itself, in one group."""
    if not options.bottleneck:
        return st.width, st.width
    wb = round(width * st.bottleneck_multiplier)
    g = min(st.group_width or 1, wb)
    if wb < 1 or wb % g:
        raise PlanError(
            f"stage {i}: bottleneck width {wb} is not a positive multiple of group width {g}"
        )
    return wb, g


def make_divisible(value: float, divisor: int = 8) -> int:
    """timm's make_divisible with round_limit 0: the nearest multiple of divisor, at least it."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def _se_width(ratio: float, width: int, bottleneck: int, options: BlockOptions) -> int:
    """SE width: round(ratio * block input width), or (se_from bottleneck) ratio * bottleneck
    width rounded to a multiple of 8; 0 without SE."""
    if not ratio:
        return 0
    if options.se_from == "bottleneck":
        return make_divisible(ratio * bottleneck)
    return round(ratio * width)


def to_explicit(spec: Spec) -> ExplicitSpec:
    """The explicit-stage spec that builds the same network (the resolved spec)."""
    if isinstance(spec, ExplicitSpec):
        return spec
    stage_list, _ = stage_specs(spec)
    data = spec.model_dump(
        exclude=set(ParametricSpec.model_fields) - set(ExplicitSpec.model_fields)
    )
    try:
        return ExplicitSpec.model_validate({**data, "stages": stage_list})
    except ValidationError as exc:  # e.g. more stages than a spec may list
        why = format_errors(exc, ExplicitSpec)
        raise PlanError(f"{spec.name}: its resolved explicit form is invalid: {why}") from None


def resolved_spec_text(spec: Spec) -> str:
    """The explicit spec as YAML, checked to read back to the same network (PlanError if not)."""
    resolved = to_explicit(spec)
    text = dump_spec(resolved)
    try:
        again = spec_from_text(text, "resolved spec")
    except SpecError as exc:
        raise PlanError(f"{spec.name}: the resolved spec does not read back: {exc}") from None
    if make_plan(again) != make_plan(resolved):
        raise PlanError(f"{spec.name}: the resolved spec does not read back to the same design")
    return text
