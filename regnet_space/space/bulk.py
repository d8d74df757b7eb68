"""The bulk path: generate and count whole arrays of designs at once, exactly as one by one.

Every step repeats the operations of generator.py in the same order (numpy's log, power and
half-even round, in float64 for pycls's rule and through generator's float32 helpers for timm's
and torchvision's), so stage plans match `generator.make_plan` bit for bit, and the
paper-convention counts match `complexity.count_plan` as exact int64 sums (guarded against
overflow). Stage plans of many designs are kept ragged, CSR-style: design i owns the stage
entries offsets[i]:offsets[i + 1] of the flat per-stage arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..core.errors import PlanError
from ..core.generator import (
    FLOAT32_ROUNDINGS,
    BlockOptions,
    block_options,
    quantize_widths,
    quantized_linear,
    stem_widths,
    width_exponents,
)
from ..core.limits import MAX_INPUT_SIZE
from ..core.spec import MAX_WIDTH, STEM_STRIDES, ExplicitSpec, ParametricSpec, Rounding, Spec

_INT64_LIMIT = 1 << 62  # keep a factor-two margin below int64's maximum


@dataclass(frozen=True)
class RegNetParams:
    """Parameters of n parametric designs: one array entry per design; q and rounding shared."""

    depth: np.ndarray  # int64
    w0: np.ndarray  # int64
    wa: np.ndarray  # float64
    wm: np.ndarray  # float64
    group_width: np.ndarray  # int64
    bottleneck_multiplier: np.ndarray  # float64
    q: int
    rounding: Rounding

    def take(self, index: np.ndarray) -> RegNetParams:
        """The designs at `index` (an index array or a boolean mask)."""
        return RegNetParams(
            depth=self.depth[index],
            w0=self.w0[index],
            wa=self.wa[index],
            wm=self.wm[index],
            group_width=self.group_width[index],
            bottleneck_multiplier=self.bottleneck_multiplier[index],
            q=self.q,
            rounding=self.rounding,
        )


@dataclass(frozen=True)
class StageParams:
    """Explicit stages of n designs with up to S stages each: (n, S) arrays; design i has
    its first num_stages[i] stages (all S when num_stages is None)."""

    width: np.ndarray  # int64
    depth: np.ndarray  # int64
    group_width: np.ndarray  # int64 (as in the spec, before clipping to the bottleneck)
    bottleneck_multiplier: np.ndarray  # float64
    num_stages: np.ndarray | None = None  # (n,) int64, each from 1 to S

    def take(self, index: np.ndarray) -> StageParams:
        """The designs at `index` (an index array or a boolean mask)."""
        return StageParams(
            width=self.width[index],
            depth=self.depth[index],
            group_width=self.group_width[index],
            bottleneck_multiplier=self.bottleneck_multiplier[index],
            num_stages=None if self.num_stages is None else self.num_stages[index],
        )


@dataclass(frozen=True)
class Body:
    """What the counts need besides the stages: stem, head, SE ratio, input size, and the
    block switches (the plan's BlockOptions) with the head width and output stride."""

    stem_width: int
    num_channels: int
    num_classes: int
    se_ratio: float
    downsample_in_first_stage: bool
    input_size: int
    stem_stride: int = 2  # 1 for the CIFAR stem, 4 for the resnet and tiered stems
    stem: str = "imagenet"  # the stem's kind (cifar counts as imagenet: one 3x3 conv)
    options: BlockOptions = BlockOptions()  # noqa: RUF009 - frozen, shared safely
    head_width: int = 0
    output_stride: int = 0


def body_of(spec: Spec, input_size: int) -> Body:
    """What the bulk counts need from a spec's fields besides its stages (its block kind's
    switches included), at `input_size`."""
    return Body(
        stem_width=spec.stem_width,
        num_channels=spec.num_channels,
        num_classes=spec.num_classes,
        se_ratio=spec.se_ratio,
        downsample_in_first_stage=spec.downsample_in_first_stage,
        input_size=input_size,
        stem_stride=STEM_STRIDES[spec.stem],
        stem=spec.stem,
        options=block_options(spec),
        head_width=spec.head_width,
        output_stride=spec.output_stride,
    )


@dataclass(frozen=True)
class Stages:
    """Stage plans of n designs, ragged: design i owns entries offsets[i]:offsets[i + 1]."""

    offsets: np.ndarray  # (n + 1,) int64
    width: np.ndarray  # flat int64, final (block-compatible) stage widths
    depth: np.ndarray  # flat int64
    group_width: np.ndarray  # flat int64, clipped to the bottleneck width (as Plan has it)
    bottleneck_width: np.ndarray  # flat int64
    bottleneck_multiplier: np.ndarray  # flat float64
    total_stages: np.ndarray  # (n,) max exponent + 1 (regnet); the stage count (explicit)
    valid: np.ndarray  # (n,) False where the one-design path refuses it (PlanError, SpecError)
    spec_group_width: np.ndarray | None = None  # flat int64, before clipping (bottleneck_in)

    @property
    def num_stages(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class Counts:
    """Paper-convention flops, params and acts of n designs (int64)."""

    flops: np.ndarray
    params: np.ndarray
    acts: np.ndarray


# ---------------------------------------------------------------------------------------------
# Steps 1-4: the quantized linear rule, per design


@dataclass(frozen=True)
class _Rule:
    """The per-entry parameters the exponent needs, and whether the rule runs in float32."""

    w0: np.ndarray
    wa: np.ndarray
    wm: np.ndarray
    log_wm: np.ndarray  # float64 log(wm), computed once (pycls's rule)
    float32: bool

    def take(self, index: np.ndarray) -> _Rule:
        w0, wa, wm, lw = self.w0[index], self.wa[index], self.wm[index], self.log_wm[index]
        return _Rule(w0, wa, wm, lw, self.float32)


def _exponent(j: np.ndarray, r: _Rule) -> np.ndarray:
    """s_j = round(log(u_j / w0) / log(wm)) with generator.quantized_linear's float operations."""
    if r.float32:
        return width_exponents(j, r.w0, r.wa, r.wm, True)
    u = j * r.wa + r.w0
    return np.round(np.log(u / r.w0) / r.log_wm)


def _rule(p: RegNetParams) -> _Rule:
    return _Rule(p.w0, p.wa, p.wm, np.log(p.wm), p.rounding in FLOAT32_ROUNDINGS)


def last_exponent(p: RegNetParams) -> np.ndarray:
    """Exponent of the last block, s_(d-1); it is the largest since widths never decrease."""
    return _exponent(p.depth - 1, _rule(p)).astype(np.int64)


@dataclass(frozen=True)
class _Runs:
    """One entry per design and exponent k that owns blocks, in design then k order."""

    row: np.ndarray  # design index
    width: np.ndarray  # float64 quantized width round(w0 * wm**k / q) * q
    blocks: np.ndarray  # number of blocks with exponent k
    per_design: np.ndarray  # (n,) entries of each design
    num_k: np.ndarray  # (n,) max exponent + 1


def _exponent_starts(
    rule: _Rule,
    k: np.ndarray,
    power: np.ndarray,
    d: np.ndarray,
    zero: np.ndarray,
    row: np.ndarray,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The first block of each entry's exponent k: the closed-form guess moved until exact;
    and the designs whose exponents are seen to step back (to resolve one by one).

    `power` is wm**k, `d` the depth per entry, `zero` the k = 0 entries, `row` the designs.
    """
    w0, wa, wm = rule.w0, rule.wa, rule.wm
    with np.errstate(divide="ignore", invalid="ignore"):  # k = 0 entries are set apart
        guess = np.ceil(w0 * (power / np.sqrt(wm) - 1) / wa)
        # Exponent k >= 1 is at most s_(d-1), so it starts in [1, d-1].
        start = np.clip(guess, 1, d - 1, out=guess).astype(np.int64)
        start[zero] = 0
        later = _exponent(start, rule) < k
        earlier = _exponent(start - 1, rule) >= k
    earlier[zero] = False
    start += later
    start -= earlier
    both = later & earlier
    odd = [row[both]] if both.any() else []
    todo = np.flatnonzero(later ^ earlier)
    while todo.size:
        j, kk, sub = start[todo], k[todo], rule.take(todo)
        later = _exponent(j, sub) < kk
        earlier = _exponent(j - 1, sub) >= kk
        start[todo] = j + later - earlier
        odd.append(row[todo[later & earlier]])
        todo = todo[later ^ earlier]
    return start, odd


def _exponent_runs(p: RegNetParams, num_k: np.ndarray | None) -> _Runs:
    """Quantized width and block count of each exponent k = 0..s_(d-1) of every design.

    Rather than evaluating all d exponents, find where each exponent k starts: a closed-form
    guess (u_j = w0 * wm**(k - 1/2)) checked with the exact expression at the guess and the
    block before it, moved until exact. This relies on s_j never decreasing, which holds when
    consecutive widths differ by more than float error; designs near that limit (relative
    slope under 1e-9, or a non-monotone step seen) are resolved by the generator itself.
    """
    n = len(p.depth)
    log_wm = np.log(p.wm)
    if num_k is None:
        num_k = last_exponent(p) + 1
    first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(num_k, out=first[1:])
    # Per-entry copies of the design's parameters (np.repeat is cheaper than gathers).
    row = np.repeat(np.arange(n), num_k)
    k = (np.arange(len(row)) - np.repeat(first[:-1], num_k)).astype(np.float64)
    w0, wa, wm = np.repeat(p.w0, num_k), np.repeat(p.wa, num_k), np.repeat(p.wm, num_k)
    lw, d = np.repeat(log_wm, num_k), np.repeat(p.depth, num_k)
    rule = _Rule(w0, wa, wm, lw, p.rounding in FLOAT32_ROUNDINGS)
    power = np.power(wm, k)  # as in generator: np.power(wm, s), s a float

    start, odd = _exponent_starts(rule, k, power, d, first[:-1], row)
    blocks = np.empty_like(start)
    blocks[:-1] = start[1:] - start[:-1]
    blocks[first[1:] - 1] = p.depth - start[first[1:] - 1]

    steep = (p.wa > 0) & (num_k > 1) & (p.wa * 1e9 < p.w0 + p.wa * (p.depth - 1))
    resolve = np.union1d(np.flatnonzero(steep), np.concatenate(odd)) if odd else steep.nonzero()[0]
    for i in resolve.astype(int).tolist():
        gen = quantized_linear(
            int(p.depth[i]), int(p.w0[i]), float(p.wa[i]), float(p.wm[i]), p.q, rule.float32
        )
        exact = np.bincount(np.asarray(gen.exponents), minlength=int(num_k[i]))
        if len(exact) != num_k[i]:
            raise PlanError(f"design {i}: exponents are not monotone; raise wa")
        blocks[first[i] : first[i + 1]] = exact
    # As in generator.quantized_linear; pycls's float64 expression with the power at hand.
    w = quantize_widths(w0, wm, k, p.q, True) if rule.float32 else np.round(w0 * power / p.q) * p.q
    if not blocks.all():  # skipped exponents own no block
        keep = blocks > 0
        return _Runs(row[keep], w[keep], blocks[keep], np.bincount(row[keep], minlength=n), num_k)
    return _Runs(row, w, blocks, num_k, num_k)


def _adjust_pycls(w: np.ndarray, bm: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """generator.adjust_pycls on arrays."""
    v = np.maximum(w * bm, 1.0).astype(np.int64)
    g = np.minimum(g, v)
    m = np.where(bm > 1, np.lcm(g, bm.astype(np.int64)), g) if (bm > 1).any() else g
    v = np.maximum(m, np.round(v / m).astype(np.int64) * m)
    return (v / bm).astype(np.int64), g


def _adjust_torchvision(
    w: np.ndarray, bm: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """generator.adjust_torchvision on arrays, with the rows it refuses (g < 1) flagged."""
    v = (w * bm).astype(np.int64)
    g = np.minimum(g, v)
    ok = g >= 1
    gs = np.maximum(g, 1)  # keep the division defined where the design is refused anyway
    new_v = np.maximum(gs, (v + gs / 2).astype(np.int64) // gs * gs)
    new_v = np.where(new_v < 0.9 * v, new_v + gs, new_v)
    return (new_v / bm).astype(np.int64), g, ok


def regnet_stages(p: RegNetParams, *, num_exponents: np.ndarray | None = None) -> Stages:
    """Stage plans of parametric designs, as generator.make_plan resolves them.

    num_exponents: last_exponent(p) + 1, when the caller has it already.
    """
    n = len(p.depth)
    if n == 0:
        return _empty_stages()
    runs = _exponent_runs(p, num_exponents)
    row, w, blocks, per_design = runs.row, runs.width, runs.blocks, runs.per_design
    valid = np.ones(n, dtype=bool)
    bad = ~(w <= MAX_WIDTH) | (w < 1)  # NaN-safe
    if bad.any():
        valid[row[bad]] = False
        w[bad] = 0.0
    w = w.astype(np.int64)
    # A stage is a run of equal quantized widths (exponents can share one).
    same = (w[1:] == w[:-1]) & (row[1:] == row[:-1])
    if same.any():
        starts = np.flatnonzero(np.r_[True, ~same])
        row, w, blocks = row[starts], w[starts], np.add.reduceat(blocks, starts)
        per_design = np.bincount(row, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_design, out=offsets[1:])

    bm = np.repeat(p.bottleneck_multiplier, per_design)
    g = np.repeat(p.group_width, per_design)
    if p.rounding != "torchvision":  # pycls's and timm's (group_min_ratio 0) rule
        width, g = _adjust_pycls(w, bm, g)
        ok = None
    else:
        width, g, ok = _adjust_torchvision(w, bm, g)
    stages, stage_ok = _finish(offsets, width, blocks, g, bm, runs.num_k)
    ok = stage_ok if ok is None else ok & stage_ok
    if not ok.all():
        valid[row[~ok]] = False
    return replace(stages, valid=valid)


def explicit_stages(p: StageParams) -> Stages:
    """Stage plans of explicit designs (each with its own stage count, if p gives them)."""
    n, s = p.width.shape
    if n == 0:
        return _empty_stages()
    if p.num_stages is None:
        offsets = np.arange(0, n * s + 1, s, dtype=np.int64)
        total = np.full(n, s, dtype=np.int64)
        stages, ok = _finish(
            offsets,
            p.width.ravel(),
            p.depth.ravel(),
            p.group_width.ravel(),
            p.bottleneck_multiplier.ravel(),
            total,
        )
        return replace(stages, valid=ok.reshape(n, s).all(axis=1))
    total = p.num_stages.astype(np.int64)
    own = np.arange(s) < total[:, None]  # row-major: each design's stages stay together
    offsets = np.concatenate([[0], np.cumsum(total)]).astype(np.int64)
    stages, ok = _finish(
        offsets,
        p.width[own],
        p.depth[own],
        p.group_width[own],
        p.bottleneck_multiplier[own],
        total,
    )
    return replace(stages, valid=np.logical_and.reduceat(ok, offsets[:-1]))


def _finish(
    offsets: np.ndarray,
    width: np.ndarray,
    depth: np.ndarray,
    g: np.ndarray,
    bm: np.ndarray,
    total: np.ndarray,
) -> tuple[Stages, np.ndarray]:
    """Bottleneck and clipped group widths as generator.make_plan has them; per-stage validity."""
    wb = np.round(width * bm).astype(np.int64)
    clipped = np.minimum(g, wb)
    ok = (width >= 1) & (width <= MAX_WIDTH) & (wb >= 1) & (clipped >= 1)
    ok &= wb % np.maximum(clipped, 1) == 0
    stages = Stages(
        offsets=offsets,
        width=width,
        depth=depth,
        group_width=np.minimum(g, wb),
        bottleneck_width=wb,
        bottleneck_multiplier=bm,
        total_stages=total,
        valid=np.ones(len(offsets) - 1, dtype=bool),
        spec_group_width=g,
    )
    return stages, ok


def _empty_stages() -> Stages:
    i = np.zeros(0, dtype=np.int64)
    stages, _ = _finish(np.zeros(1, dtype=np.int64), i, i, i, np.zeros(0), i)
    return stages


# ---------------------------------------------------------------------------------------------
# Counting (paper convention: the block definitions of core.blocks, each stage in closed form)


def _stage_geometry(body: Body, num_stages: int) -> tuple[np.ndarray, ...]:
    """Per stage index: squared input and output side of its first block, and whether that
    block projects whatever its widths (stride or dilation change)."""
    h = (body.input_size - 1) // body.stem_stride + 1
    net, dilation = body.stem_stride, 1
    h_in, h_out, moves = [], [], []
    first = 2 if body.downsample_in_first_stage else 1
    for i in range(num_stages):
        stride = first if i == 0 else 2
        if body.output_stride and net >= body.output_stride and stride > 1:
            dilation, stride = dilation * stride, 1  # as generator.make_plan
        net *= stride
        h_in.append(h * h)
        h = (h - 1) // stride + 1
        h_out.append(h * h)
        moves.append(stride != 1 or dilation > 1)  # first dilation 1 or 2 differs from it
    as_array = np.asarray
    return (
        as_array(h_in, dtype=np.int64),
        as_array(h_out, dtype=np.int64),
        as_array(moves, dtype=bool),
    )


def count_bound(max_width: int, max_bottleneck: int, max_blocks: int, body: Body) -> int:
    """An upper bound of any count of a design with these largest widths and block count."""
    w = max(max_width, body.stem_width, body.num_channels, body.head_width)
    b = max(max_bottleneck, w if not body.options.bottleneck else 1)
    h2 = ((body.input_size - 1) // (min(body.stem_stride, 2)) + 1) ** 2
    per_block = (3 * w * b + 9 * b * b + 19 * w * w) * h2 + 3 * b * w + w + b
    return (max_blocks + 2) * per_block + 2 * (w + 1) * (body.num_classes + 1)


def fits_int64(bound: int) -> bool:
    """Whether counts bounded by `bound` are exact in int64 (with a factor-two margin)."""
    return bound < _INT64_LIMIT


def check_overflow(stages: Stages, body: Body) -> None:
    """Refuse designs whose counts could overflow int64 (bound from the largest values)."""
    if len(stages) == 0:
        return
    bound = count_bound(
        int(stages.width.max()),
        int(stages.bottleneck_width.max()),
        int(stages.depth.max()) * int(stages.num_stages.max()),  # blocks of a design, at most
        body,
    )
    if not fits_int64(bound):
        raise PlanError("designs this large could overflow 64-bit counts; narrow the ranges")


def _segment_sums(values: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Sums of values[last[i - 1] + 1 : last[i] + 1] (the stages of each design)."""
    # An int64 cumsum may wrap around; the differences are still exact (modulo 2**64).
    return np.diff(np.cumsum(values)[last], prepend=0)


def _segment_all(values: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Whether every stage of each design holds values (a boolean per stage)."""
    return _segment_sums((~values).astype(np.int64), last) == 0


def _where(mask: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    """values where mask holds, else 0; a None mask holds everywhere."""
    return values if mask is None else values * mask


def _se_costs(se: np.ndarray, wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flops (= params) and acts of the SE convs of width se on wb channels (0 if se = 0)."""
    cost, acts = wb * (2 * se + 1) + se, se + wb  # wb -> se -> wb, 1x1 convs with bias
    if se.min() < 1:
        on = se > 0
        cost, acts = cost * on, acts * on
    return cost, acts


def _se_widths(body: Body, width: np.ndarray, bottleneck: np.ndarray) -> np.ndarray:
    """SE widths as generator's _se_width: round(ratio * block input width), or a multiple
    of 8 (at least 8) of ratio * bottleneck width (se_from bottleneck)."""
    r = body.se_ratio
    if body.options.se_from == "bottleneck":
        return np.maximum(8, (r * bottleneck + 4).astype(np.int64) // 8 * 8)
    return np.round(r * width).astype(np.int64)


@dataclass(frozen=True)
class _Block:
    """One block of every stage (arrays over stages): widths, squared sides, SE width, and
    whether it projects (None: everywhere)."""

    w_in: np.ndarray
    w: np.ndarray
    wb: np.ndarray
    g: np.ndarray
    hi2: np.ndarray
    ho2: np.ndarray
    se: np.ndarray | None
    proj: np.ndarray | bool | None


def _block_costs(b: _Block, o: BlockOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paper-convention flops, params and acts of a block, as core.blocks defines it:
    a bottleneck (post- or pre-activation, [SE], [projection]) or two 3x3 convs."""
    w_in, w, wb, ho2 = b.w_in, b.w, b.wb, b.ho2
    wo = w * ho2
    if o.bottleneck:
        wbo = wb * ho2
        flops = wb * w_in * b.hi2 + wbo * (9 * b.g + w)
        norms = 2 * w_in + 4 * wb if o.preact else 4 * wb + 2 * w
        params = wb * (w_in + 9 * b.g + w) + norms
        acts = wb * b.hi2 + wbo + wo
        if b.se is not None:
            cost, se_acts = _se_costs(b.se, wb)
            flops, params, acts = flops + cost, params + cost, acts + se_acts
    else:  # vanilla and basic: 3x3 (stride) w_in -> w, 3x3 w -> w, each with a norm
        flops = 9 * w * ho2 * (w_in + w)
        params = 9 * w * (w_in + w) + 4 * w
        acts = 2 * wo
    if b.proj is not False and o.residual and o.shortcut != "none":
        # 1x1 conv + norm (none in pre-activation blocks), after an average pool for avg
        flops = flops + _where(b.proj, w_in * wo)
        params = params + _where(b.proj, w * (w_in + (0 if o.preact else 2)))
        acts = acts + _where(b.proj, wo)
    return flops, params, acts


def _bottleneck_stages(
    b: _Block, d: np.ndarray, o: BlockOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_block_costs of a stage's bottleneck blocks without SE, in closed form: depth x a later
    block (stride 1, identity shortcut) plus what the first costs more (the previous stage's
    width and side, its projection), where its bottleneck is the later blocks' own."""
    w_in, w, wb, ho2 = b.w_in, b.w, b.wb, b.ho2
    wbo, wo = wb * ho2, w * ho2
    inner = 2 * w + 9 * b.g  # per bottleneck channel: 1x1 in, 3x3 grouped (9 * g), 1x1 out
    flops = wbo * inner * d + wb * (w_in * b.hi2 - wo)
    params = (wb * (inner + 4) + 2 * w) * d + wb * (w_in - w)  # weights, 2 per norm channel
    if o.preact:  # the first block's input norm is on w_in channels, not w
        params += 2 * (w_in - w)
    acts = (2 * wbo + wo) * d + wb * (b.hi2 - ho2)
    if o.residual and o.shortcut != "none":
        flops += _where(b.proj, w_in * wo)
        params += _where(b.proj, w * (w_in + (0 if o.preact else 2)))
        acts += _where(b.proj, wo)
    return flops, params, acts


def stem_counts(body: Body) -> tuple[int, int, int]:
    """Paper-convention flops, params and acts of the stem (core.blocks.stem_layers): 3x3
    conv(s), or the 7x7 conv and its max-pool (whose outputs pycls counts as acts)."""
    side = (body.input_size - 1) // body.stem_stride + 1
    c, k, plain = body.num_channels, body.stem_width, body.options.preact
    last_norm = 0 if plain else 2 * k  # pre-activation: the last conv has no norm
    if body.stem == "tiered":
        half = ((body.input_size - 1) // 2 + 1) ** 2
        k1, k2, _ = stem_widths("tiered", k)
        flops = 9 * (c * k1 + k1 * k2) * half + 9 * k2 * k * side * side
        return (
            flops,
            9 * (c * k1 + k1 * k2 + k2 * k) + 2 * (k1 + k2) + last_norm,
            ((k1 + k2) * half + k * side * side),
        )
    if body.stem == "resnet":
        half = ((body.input_size - 1) // 2 + 1) ** 2
        return 49 * c * k * half, 49 * c * k + last_norm, k * half + k * side * side
    return 9 * c * k * side * side, 9 * c * k + last_norm, k * side * side


def valid_designs(stages: Stages, body: Body) -> np.ndarray:
    """Per design, whether generator.make_plan resolves it: the stages' own rules (only the widths
    for blocks without a bottleneck, whose group widths are not used), the first blocks'
    bottleneck widths (bottleneck_in) divisible by their group widths, every GroupNorm's
    groups dividing its width."""
    n = len(stages)
    o = body.options
    if o.bottleneck:
        ok = stages.valid
    else:
        w, last = stages.width, stages.offsets[1:] - 1
        ok = stages.valid | _segment_all((w >= 1) & (w <= MAX_WIDTH), last)
    if n == 0 or not (o.bottleneck_in or o.norm == "group"):
        return ok
    starts, last = stages.offsets[:-1], stages.offsets[1:] - 1
    w = stages.width
    w_in = np.empty_like(w)
    w_in[1:] = w[:-1]
    w_in[starts] = body.stem_width
    wb1, _ = _first_bottleneck(stages, body, w_in)
    stage_ok = np.ones(len(w), dtype=bool)
    if o.bottleneck_in:
        g1 = np.minimum(_spec_group_width(stages), wb1)
        stage_ok &= (wb1 >= 1) & (wb1 % np.maximum(g1, 1) == 0)
    if o.norm == "group":
        fixed = [*stem_widths(body.stem, body.stem_width), body.head_width or body.stem_width]
        for widths in (w, stages.bottleneck_width, wb1, w_in):
            stage_ok &= _divides(o, widths)
        if not _divides(o, np.asarray(fixed)).all():
            return np.zeros(n, dtype=bool)
    return ok & _segment_all(stage_ok, last)


def _divides(o: BlockOptions, widths: np.ndarray) -> np.ndarray:
    if o.norm_group_size:
        return widths % o.norm_group_size == 0
    return widths % max(o.norm_groups, 1) == 0


def _spec_group_width(stages: Stages) -> np.ndarray:
    g = stages.spec_group_width
    return stages.group_width if g is None else g


def _first_bottleneck(
    stages: Stages, body: Body, w_in: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The first blocks' bottleneck and group widths (bottleneck_in: from the input width)."""
    if not body.options.bottleneck_in:
        return stages.bottleneck_width, stages.group_width
    wb1 = np.round(w_in * stages.bottleneck_multiplier).astype(np.int64)
    return wb1, np.maximum(np.minimum(_spec_group_width(stages), wb1), 1)


def count_stages(stages: Stages, body: Body) -> Counts:
    """Paper-convention flops, params and acts of every design, as complexity.count_plan.

    Per stage in closed form: its first block (input width and side of the previous stage,
    the projection) plus depth - 1 times a later block (stride 1, identity shortcut), both
    from _block_costs; then per design, the stages plus stem and head.
    """
    n = len(stages)
    check_overflow(stages, body)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return Counts(z, z, z)
    offsets, num = stages.offsets, stages.num_stages
    starts, last = offsets[:-1], offsets[1:] - 1
    hi2_of, ho2_of, moves_of = _stage_geometry(body, int(num.max()))
    pos = np.arange(len(stages.width)) - np.repeat(starts, num)
    hi2, ho2 = hi2_of[pos], ho2_of[pos]
    w, d, g, wb = stages.width, stages.depth, stages.group_width, stages.bottleneck_width
    w_in = np.empty_like(w)
    w_in[1:] = w[:-1]
    w_in[starts] = body.stem_width
    wb1, g1 = _first_bottleneck(stages, body, w_in)
    # Projection shortcut of the first block: every one when each stage strides.
    proj = None if moves_of.all() else (w_in != w) | moves_of[pos]
    se = se1 = None
    if body.se_ratio and body.options.bottleneck:
        # SE width as generator.make_plan: a later block's from its own width (or bottleneck),
        # a first block's from the previous stage's (or the stem's).
        se, se1 = _se_widths(body, w, wb), _se_widths(body, w_in, wb1)
    o = body.options
    more = d - 1
    if o.bottleneck and not o.bottleneck_in:
        flops, params, acts = _bottleneck_stages(_Block(w_in, w, wb, g, hi2, ho2, se, proj), d, o)
        if se is not None and se1 is not None:
            (cost, se_acts), (cost1, se_acts1) = _se_costs(se, wb), _se_costs(se1, wb)
            flops = flops + cost * more + cost1  # an SE conv's flops equal its params
            params = params + cost * more + cost1
            acts = acts + se_acts * more + se_acts1
    else:
        first = _block_costs(_Block(w_in, w, wb1, g1, hi2, ho2, se1, proj), o)
        later = _block_costs(_Block(w, w, wb, g, ho2, ho2, se, False), o)
        flops, params, acts = (a + b * more for a, b in zip(first, later, strict=True))

    c_flops, c_params, c_acts = stem_counts(body)
    nc, out = body.num_classes, w[last]
    head_flops = head_params = head_acts = 0
    if body.head_width:  # 1x1 conv + norm at the last side, then the classifier on it
        side2 = ho2_of[num - 1]
        hw = body.head_width
        head_flops, head_params, head_acts = out * hw * side2, out * hw + 2 * hw, hw * side2
        out = np.full_like(out, hw)
    head = out * nc + nc  # linear layer with bias (none if nc = 0)
    return Counts(
        flops=_segment_sums(flops, last) + c_flops + head_flops + head,
        params=_segment_sums(params, last) + c_params + head_params + head,
        acts=_segment_sums(acts, last) + c_acts + head_acts + nc,
    )


# ---------------------------------------------------------------------------------------------
# Counting many specs


def count_specs(specs: Sequence[Spec], input_sizes: Sequence[int]) -> Counts:
    """Paper-convention counts of many specs, each at its input size, as complexity.count.

    Specs are counted a group at a time (parametric ones sharing q, rounding and the body,
    explicit ones the body and their stage count). -1 marks a design the bulk path leaves to
    complexity.count: an explicit stride other than the defaults, an input size out of
    range, a plan the one-design path refuses, or counts that could overflow int64.
    """
    out = [np.full(len(specs), -1, dtype=np.int64) for _ in range(3)]
    regnet: dict[tuple[int, Rounding, Body], list[int]] = {}
    explicit: dict[tuple[int, Body], list[int]] = {}
    for i, (spec, size) in enumerate(zip(specs, input_sizes, strict=True)):
        if not (type(size) is int and 1 <= size <= MAX_INPUT_SIZE):
            continue
        if isinstance(spec, ParametricSpec):
            regnet.setdefault((spec.q, spec.rounding, body_of(spec, size)), []).append(i)
            continue
        strides = spec.strides()
        if all(s == 2 for s in strides[1:]):
            body = replace(body_of(spec, size), downsample_in_first_stage=strides[0] == 2)
            explicit.setdefault((len(strides), body), []).append(i)
    batches = [
        (members, body, _regnet_group([specs[i] for i in members], q, rounding))
        for (q, rounding, body), members in regnet.items()
    ]
    batches += [
        (members, body, _explicit_group([specs[i] for i in members]))
        for (_, body), members in explicit.items()
    ]
    for members, body, stages in batches:
        try:
            counts = count_stages(stages, body)
        except PlanError:  # could overflow int64: complexity.count's Python ints instead
            continue
        index = np.asarray(members, dtype=np.int64)[stages.valid]
        for target, values in zip(out, (counts.flops, counts.params, counts.acts), strict=True):
            target[index] = values[stages.valid]
    return Counts(*out)


def _columns(rows: Sequence[object], fields: Sequence[tuple[str, type]]) -> dict[str, np.ndarray]:
    """One array per field of `rows` (objects with those attributes)."""
    return {name: np.array([getattr(r, name) for r in rows], dtype=kind) for name, kind in fields}


def _regnet_group(specs: Sequence[Spec], q: int, rounding: Rounding) -> Stages:
    """Stage plans of parametric specs sharing q and rounding."""
    ints, floats = ("depth", "w0", "group_width"), ("wa", "wm", "bottleneck_multiplier")
    fields = [(f, np.int64) for f in ints] + [(f, np.float64) for f in floats]
    return regnet_stages(RegNetParams(**_columns(specs, fields), q=q, rounding=rounding))


def _explicit_group(specs: Sequence[Spec]) -> Stages:
    """Stage plans of explicit specs with the same number of stages."""
    rows = [st for s in specs if isinstance(s, ExplicitSpec) for st in s.stages]
    ints = ("width", "depth", "group_width")
    fields = [(f, np.int64) for f in ints] + [("bottleneck_multiplier", np.float64)]
    flat = _columns(rows, fields)
    return explicit_stages(StageParams(**{k: v.reshape(len(specs), -1) for k, v in flat.items()}))
