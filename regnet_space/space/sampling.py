"""Design-space sampling: draw designs from a space and keep those that meet the constraints.

Plain rejection sampling, so accepted designs follow the space's own distribution restricted
to the constraints (what design-space statistics need). Designs are drawn in batches of a
fixed size from numpy's PCG64 generator, generated and counted by the bulk path, and accepted
in draw order; the output depends only on the space, the seed and the options.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.generator import MAX_INPUT_SIZE
from ..infra.errors import RegNetSpaceError
from .bulk import RegNetParams, StageParams
from .evaluator import COMPLEXITY_CODE, METRICS, REASONS, Batch, Evaluator
from .feasibility import check_feasible, resolve_constraints
from .output import design_name, tried_name
from .records import DesignRecord, SampleProgress, SampleResult
from .space import Bounds, Space, SpaceError, load_space

BATCH = 4096  # draws per batch: fixed, so that the accepted designs never depend on timing
CHUNK = 4  # batches generated and counted by one call at most (results do not depend on it)
MIN_MAX_TRIES = 10_000_000  # default tries: max(this, TRIES_PER_DESIGN * n)
TRIES_PER_DESIGN = 50_000
MAX_DESIGNS = 1_000_000
# Repeats per distinct design found after which the space is taken as exhausted.
EXHAUSTED = 30
SMALL_SPACE = 100_000  # spaces with at most this many designs: every drawn design is tracked
CLOSEST = 5  # designs kept to show when the constraints cannot be met


class SampleError(RegNetSpaceError):
    """Fewer designs than asked met the constraints within the tries allowed."""

    def __init__(self, message: str, result: SampleResult) -> None:
        super().__init__(message)
        self.result = result


def default_max_tries(n: int) -> int:
    """Tries allowed by default for n designs: enough for one acceptance in 50,000 draws."""
    return max(MIN_MAX_TRIES, TRIES_PER_DESIGN * n)


def iter_designs(space: Space, n: int, seed: int = 0) -> Iterator[RegNetParams | StageParams]:
    """Bulk-path inputs of n designs, before any constraint, in batches drawn as sample() does."""
    evaluator = Evaluator(space, space.constraints, space.input_size)
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        params = evaluator.params(evaluator.draw(rng, BATCH), BATCH)
        yield params if n - start >= BATCH else params.take(np.arange(n - start))


@dataclass(frozen=True)
class _Near:
    """A design rejected for its complexity only, and how far it is from the bounds."""

    distance: float
    draw: int  # overall draw number (ties go to the earlier draw)
    key: tuple[Any, ...]
    record: DesignRecord


def _update_closest(
    evaluator: Evaluator, batch: Batch, cut: int, tries: int, closest: list[_Near]
) -> list[_Near]:
    """Keep the CLOSEST designs rejected only for their complexity, nearest first."""
    if all(getattr(evaluator.constraints, m) is None for m in METRICS):
        return closest  # no design can be rejected for its complexity
    complexity = COMPLEXITY_CODE[batch.reason[batch.index]]
    complexity[np.searchsorted(batch.index, cut) :] = False  # drawn past the cut
    mine = np.flatnonzero(complexity)
    if mine.size == 0:
        return closest
    # Once CLOSEST are kept, only designs nearer than the farthest of them can enter.
    farthest = closest[-1].distance if len(closest) == CLOSEST else math.inf
    mine = mine[evaluator.may_be_nearer(batch, mine, farthest)]
    dist = evaluator.distance(batch, mine)
    nearer = dist < farthest
    mine, dist = mine[nearer], dist[nearer]
    merged, added = list(closest), 0
    # Nearest first, earlier draws first among equals (a stable sort of draw order).
    order = np.argsort(dist, kind="stable")
    for j, d in zip(mine[order].tolist(), dist[order].tolist(), strict=True):
        i = int(batch.index[j])
        (key,) = evaluator.keys(batch, [i])
        if any(key == near.key for near in merged):  # a design drawn twice shows once
            continue
        name = tried_name(evaluator.space.space, tries + i)
        (record,) = evaluator.records(batch, [i], [-1], [name])
        merged.append(_Near(d, tries + i, key, record))
        added += 1
        if added == CLOSEST:  # later candidates are no nearer than these
            break
    merged.sort(key=lambda near: (near.distance, near.draw))
    return merged[:CLOSEST]


class _Run:
    """One sampling run under way: the designs accepted, the draws seen, tries and rejections."""

    def __init__(
        self,
        evaluator: Evaluator,
        n: int,
        max_tries: int,
        distinct: int,
        progress: Callable[[SampleProgress], None] | None,
    ) -> None:
        self.evaluator, self.name = evaluator, evaluator.space.space
        self.n, self.max_tries, self.distinct = n, max_tries, distinct
        self.progress = progress
        self.records: list[DesignRecord] = []
        self.seen: set[tuple[Any, ...]] = set()
        self.closest: list[_Near] = []
        # The last chunk's batch, held until the next one is made: its arrays keep glibc from
        # trimming the top of the heap between chunks, which would fault its pages in again.
        self.last: Batch | None = None
        self.rejected = dict.fromkeys((*REASONS, "duplicate"), 0)
        self.tries, self.started = 0, time.perf_counter()
        self.repeats = 0  # acceptable draws since the last new design
        self.exhausted = False
        # A small space is tracked whole: once every design was drawn, more draws cannot help.
        self.drawn: set[tuple[Any, ...]] | None = set() if distinct <= SMALL_SPACE else None

    @property
    def done(self) -> bool:
        return len(self.records) == self.n or self.tries >= self.max_tries or self.exhausted

    def chunk(self, rng: np.random.Generator, k: int) -> None:
        """Draw k batches, generate and count them at once, and take them in draw order."""
        # The random stream is that of BATCH-sized batches whatever k is; evaluating several
        # at once pays numpy's per-call cost once per chunk.
        draws = [self.evaluator.draw(rng, BATCH) for _ in range(k)]
        sampled = draws[0]
        if k > 1:
            sampled = {f: np.concatenate([d[f] for d in draws]) for f in sampled}
        batch = self.evaluator.evaluate(sampled, k * BATCH)
        accepted = np.flatnonzero(batch.reason == 0)
        start, end = self.tries, 0  # draws of this chunk used: batch.reason[:end]
        for b in range(k):
            end = self._take(batch, accepted, b * BATCH)
            if self.done:
                break
        for code, count in enumerate(np.bincount(batch.reason[:end], minlength=len(REASONS) + 1)):
            if code:
                self.rejected[REASONS[code - 1]] += int(count)
        self.closest = _update_closest(self.evaluator, batch, end, start, self.closest)
        self.last = batch

    def _take(self, batch: Batch, accepted: np.ndarray, lo: int) -> int:
        """Accept the new designs among one batch's acceptable draws (those from `lo` on, as
        far as tries allow); the end of the draws used."""
        cut = lo + min(BATCH, self.max_tries - self.tries)
        a, z = np.searchsorted(accepted, [lo, cut])
        candidates = accepted[a:z].tolist()
        picked: list[int] = []
        for i, key in zip(candidates, self.evaluator.keys(batch, candidates), strict=True):
            if key in self.seen:
                self.rejected["duplicate"] += 1
                self.repeats += 1
                continue
            self.repeats = 0
            self.seen.add(key)
            picked.append(i)
            if len(self.records) + len(picked) == self.n:
                cut = i + 1
                break
        ids = range(len(self.records), len(self.records) + len(picked))
        names = [design_name(self.name, self.n, sample_id) for sample_id in ids]
        self.records.extend(self.evaluator.records(batch, picked, ids, names))
        if self.drawn is not None:
            self.drawn.update(self.evaluator.keys(batch, range(lo, cut)))
            self.exhausted = len(self.drawn) >= self.distinct and len(self.records) < self.n
        self.tries += cut - lo
        # Only repeats for this long: almost surely every acceptable design is found (a
        # design not yet seen among k found would have shown up with probability
        # >= 1 - e**-EXHAUSTED).
        self.exhausted = self.exhausted or self.repeats >= EXHAUSTED * (len(self.seen) + 1)
        if self.progress is not None:
            elapsed = time.perf_counter() - self.started
            self.progress(
                SampleProgress(self.tries, len(self.records), self.n, self.max_tries, elapsed)
            )
        return cut

    def result(self, seed: int, input_size: int) -> SampleResult:
        """What the run found, complete or not."""
        return SampleResult(
            space=self.name,
            seed=seed,
            requested=self.n,
            input_size=input_size,
            constraints=self.evaluator.constraints,
            records=tuple(self.records),
            tries=self.tries,
            rejected=MappingProxyType(self.rejected),
            closest=tuple(near.record for near in self.closest),
        )

    def shortfall(self) -> str | None:
        """Why fewer designs than asked were found (None when all were)."""
        found = len(self.records)
        if found == self.n:
            return None
        if self.exhausted and self.drawn is not None and len(self.drawn) >= self.distinct:
            some = f"only {found}" if found else "none"
            advice = f"ask for at most {found}" if found else "relax the constraints"
            return (
                f"{self.name}: {some} of the space's {self.distinct:,} distinct designs meet "
                f"the constraints (every one of them was drawn); {advice}"
            )
        if self.exhausted:
            return (
                f"{self.name}: only {found} distinct designs meet the constraints (the last "
                f"{self.repeats:,} acceptable draws all repeated them); ask for at most {found}"
            )
        return (
            f"{self.name}: only {found} of {self.n} designs met the constraints in "
            f"{self.tries:,} tries; relax the constraints or allow more tries"
        )


def _checked(sp: Space, n: Any, seed: Any, max_tries: Any, input_size: Any) -> tuple[int, int]:
    """The tries allowed and the input size, once every argument is checked."""
    if max_tries is None and isinstance(n, int):
        max_tries = default_max_tries(n)
    for label, value, top in (("n", n, MAX_DESIGNS), ("max_tries", max_tries, 1 << 62)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise SpaceError(f"{label} must be an integer from 1 to {top:,}, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SpaceError(f"seed must be a non-negative integer, got {seed!r}")
    size = sp.input_size if input_size is None else input_size
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_INPUT_SIZE:
        raise SpaceError(f"input size must be an integer from 1 to {MAX_INPUT_SIZE}, got {size!r}")
    return max_tries, size


def sample(
    space: Space | str | Path | Mapping[str, Any],
    n: int,
    *,
    seed: int = 0,
    flops: Bounds | str | tuple[Any, Any] | None = None,
    params: Bounds | str | tuple[Any, Any] | None = None,
    acts: Bounds | str | tuple[Any, Any] | None = None,
    stages: Bounds | str | int | tuple[Any, Any] | None = None,
    input_size: int | None = None,
    max_tries: int | None = None,
    progress: Callable[[SampleProgress], None] | None = None,
) -> SampleResult:
    """Draw n distinct designs from `space` that meet its constraints and these overrides.

    Bounds are "LO:HI" strings (K/M/G suffixes, open sides allowed), (lo, hi) pairs or Bounds;
    None keeps the space file's constraint, ":" removes it. Raises SampleError (carrying the
    partial result and the closest designs) when fewer than n are found within max_tries
    (default: default_max_tries(n)).
    """
    sp = load_space(space)
    max_tries, size = _checked(sp, n, seed, max_tries, input_size)
    overrides = {"flops": flops, "params": params, "acts": acts, "stages": stages}
    evaluator = Evaluator(sp, resolve_constraints(sp, overrides), size)
    run = _Run(evaluator, n, max_tries, check_feasible(sp, evaluator, n), progress)
    rng = np.random.default_rng(seed)
    chunk = 1  # batches evaluated together; grows while designs are still missing
    while not run.done:
        run.chunk(rng, min(chunk, -(-(max_tries - run.tries) // BATCH)))
        chunk = min(2 * chunk, CHUNK)
    result = run.result(seed, size)
    shortfall = run.shortfall()
    if shortfall is not None:
        raise SampleError(shortfall, result)
    return result
