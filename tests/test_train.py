"""The trainer: real learning on digits, determinism, resume after a real kill, the command."""

from __future__ import annotations

from typing import Any

import pytest

from regnet_space.core.spec import load_spec
from regnet_space.study.data import DataSpec
from regnet_space.study.recipe import load_recipe
from regnet_space.study.trainer import TrainResult, train

TINY: dict[str, Any] = {
    "name": "tiny",
    "block": "x",
    "stem_width": 16,
    "stages": [
        {"width": 16, "depth": 1, "group_width": 8, "stride": 1},
        {"width": 32, "depth": 2, "group_width": 8},
    ],
}


def tiny_recipe(**changes: Any) -> Any:
    """A short digits recipe at 16 px."""
    base = {"epochs": 4, "batch_size": 64, "base_lr": 0.4, "warmup_epochs": 0.5}
    return load_recipe({**base, "train_size": 16, "test_size": 16, **changes})


@pytest.fixture(scope="module")
def learned() -> TrainResult:
    return train(load_spec(TINY), tiny_recipe(), DataSpec(name="digits"), threads=1)


def test_tiny_design_learns_digits(learned: TrainResult) -> None:
    # Chance is 90 %; a model or optimizer that does not learn stays near it.
    assert learned.error < 15.0
    assert learned.epochs == 4 and len(learned.curve) == 4
    assert learned.curve[-1].train_loss < learned.curve[0].train_loss / 3
    assert not learned.synthetic and learned.device == "cpu"
    assert learned.images_per_second > 0 and learned.peak_memory_bytes > 0
