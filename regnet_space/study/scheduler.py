"""Early stopping of a study's trials: Ray Tune's ASHA and median stopping rules, as data.

The driver shows a scheduler every finished epoch of every trial, in the order the reports
reach it (`observe`), and acts on the answer: a trial told to stop ends after that epoch and
is recorded `stopped`. Given the same order of reports the decisions are the same; each is
recorded in the study database, and a resumed driver replays the recorded reports in their
order to rebuild the scheduler's state (the recorded decisions are kept, never made again).
Time is the epoch; the metric is the test error (lower is better). numpy only.

- ASHA (`AsyncHyperBandScheduler`, one bracket, `stop_last_trials`): rungs at
  grace_epochs x reduction_factor^k epochs below the recipe's epochs. A trial reaching a
  rung it has not been judged at is compared with the trials recorded there before it: it
  stops when its reward (minus the error) is below the (1 - 1 / reduction_factor) percentile
  of theirs (numpy's linear interpolation), i.e. when its error is worse than the best
  1 / reduction_factor of them; the first trial at a rung always goes on. Its reward is then
  recorded at that rung.
- Median stopping (`MedianStoppingRule`, hard stop): from grace_epochs on, a trial stops when
  its best error so far is strictly worse than the median, over the other trials that
  reached this epoch (running, finished or stopped), of their mean error over epochs
  grace_epochs..this one; with fewer than min_samples such trials it goes on. Ray appends a
  finished trial's last result a second time; here every epoch counts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class NoScheduler(BaseModel):
    """Every trial trains to the end (the default)."""

    model_config = _CONFIG

    kind: Literal["none"]


class AshaConfig(BaseModel):
    """Asynchronous successive halving (Ray Tune's ASHAScheduler defaults)."""

    model_config = _CONFIG

    kind: Literal["asha"]
    grace_epochs: int = Field(1, ge=1, le=1_000_000, description="first rung, in epochs")
    reduction_factor: int | float = Field(4, gt=1, le=1000, description="rung spacing and cut")


class MedianConfig(BaseModel):
    """The median stopping rule (Ray Tune's MedianStoppingRule with hard stops)."""

    model_config = _CONFIG

    kind: Literal["median"]
    grace_epochs: int = Field(1, ge=1, le=1_000_000, description="epochs before any stop")
    min_samples: int = Field(3, ge=1, le=1_000_000, description="other trials needed")


SchedulerConfig = Annotated[NoScheduler | AshaConfig | MedianConfig, Field(discriminator="kind")]
NONE = NoScheduler(kind="none")


@dataclass(frozen=True)
class Decision:
    """What a scheduler says after one epoch of one trial, and why (None: nothing to say)."""

    stop: bool
    reason: str | None = None


GO_ON = Decision(False)


class Scheduler(Protocol):
    """Sees each finished epoch in order and answers stop or go on."""

    def observe(self, trial: int, epoch: int, error: float) -> Decision: ...


def _pct(x: float) -> str:
    return f"{x:.2f} %"


class Asha:
    """One ASHA bracket over a recipe of `epochs` epochs."""

    def __init__(self, config: AshaConfig, epochs: int) -> None:
        self.rf = float(config.reduction_factor)
        self.epochs = epochs
        milestones = []
        m = float(config.grace_epochs)
        while m < epochs:  # a rung at the last epoch would never stop anything
            milestones.append(m)
            m *= self.rf
        # Highest first, as Ray walks them: a trial is judged at the highest rung it reached.
        self.rungs: list[tuple[float, dict[int, float]]] = [(m, {}) for m in reversed(milestones)]

    def observe(self, trial: int, epoch: int, error: float) -> Decision:
        """Judge `trial` at the highest rung it reached and was not judged at yet."""
        if epoch >= self.epochs:
            return GO_ON  # the trial ends here anyway
        reward = -float(error)
        for milestone, recorded in self.rungs:
            if epoch < milestone or trial in recorded:
                continue
            cutoff = (
                float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100))
                if recorded
                else None
            )
            n = len(recorded)
            recorded[trial] = reward
            where = f"rung {milestone:g}"
            if cutoff is None:
                return Decision(False, f"{where}: the first trial there")
            kept = f"the best 1/{self.rf:g} of the {n} trial(s) there before it"
            if reward < cutoff:
                return Decision(True, f"{where}: error {_pct(error)} worse than {_pct(-cutoff)}, "
                                      f"the cut to {kept}")  # fmt: skip
            return Decision(False, f"{where}: error {_pct(error)} within {_pct(-cutoff)}, "
                                   f"the cut to {kept}")  # fmt: skip
        return GO_ON


class MedianStopping:
    """The median stopping rule over a recipe of `epochs` epochs."""

    def __init__(self, config: MedianConfig, epochs: int) -> None:
        self.grace = config.grace_epochs
        self.min_samples = config.min_samples
        self.epochs = epochs
        self.results: dict[int, list[tuple[int, float]]] = {}

    def observe(self, trial: int, epoch: int, error: float) -> Decision:
        """Record the epoch; stop when the trial's best is worse than the others' median."""
        mine = self.results.setdefault(trial, [])
        mine.append((epoch, float(error)))
        if epoch < self.grace or epoch >= self.epochs:
            return GO_ON
        means = []
        for other, results in self.results.items():
            if other == trial or results[-1][0] < epoch:
                continue
            scoped = [e for t, e in results if self.grace <= t <= epoch]
            if scoped and np.isfinite(mean := float(np.mean(scoped))):
                means.append(mean)
        if len(means) < self.min_samples:
            return GO_ON
        median = float(np.median(means))
        best = min(e for _, e in mine)
        against = (f"the median {_pct(median)} of {len(means)} other trial(s)' mean error over "
                   f"epochs {self.grace}..{epoch}")  # fmt: skip
        if median < best:
            return Decision(True, f"best error {_pct(best)} worse than {against}")
        return Decision(False, f"best error {_pct(best)} within {against}")


def make_scheduler(
    config: NoScheduler | AshaConfig | MedianConfig, epochs: int
) -> Scheduler | None:
    """The scheduler of a study whose recipe trains `epochs` epochs; None for `none`."""
    if isinstance(config, AshaConfig):
        return Asha(config, epochs)
    if isinstance(config, MedianConfig):
        return MedianStopping(config, epochs)
    return None
