"""Sampling output pinned byte for byte: the same space, seed and options give the same bytes.

Digests (sha256) of the JSONL and CSV output, the tries and rejection counts and the closest
designs of an unmet request, over shipped spaces (regnet and anynet, quantized, power-of-two
and list distributions), a space drawing choices and stage counts, several seeds and bands;
and of a study file's per-trial `search` draws (uniform, log-uniform, integer, list). Any
change to what a seed draws, in which order, or how a record is written, changes a digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from regnet_space.space.output import records_to_csv, records_to_jsonl
from regnet_space.space.sampling import SampleError, sample
from regnet_space.space.space import space_from_text
from regnet_space.study.studyfile import SearchChoice, SearchRange, draw_search

SPACES = Path(__file__).resolve().parents[2] / "specs" / "spaces"

MIXED = """\
space: mixed
family: anynet
input_size: 32
num_stages: {values: [2, 3]}
spec: {stem: cifar, num_classes: 10}
choices:
  block: [basic, x, y]
per_stage:
  depth: {dist: uniform, low: 1, high: 4, quantum: 1}
  width: {dist: log_uniform, low: 8, high: 256, quantum: 8}
  bottleneck_multiplier: {values: [0.25, 0.5, 1.0]}
  group_width: {dist: power2_or_log_uniform, low: 1, high: 32, quantum: 8}
shared: [bottleneck_multiplier]
non_decreasing: [width]
"""


def _digest(result: Any) -> dict[str, Any]:
    """What a sample call produced, reduced to short digests and counts."""
    jsonl, csv = records_to_jsonl(result.records), records_to_csv(result.records)
    return {
        "jsonl": hashlib.sha256(jsonl.encode()).hexdigest()[:16],
        "csv": hashlib.sha256(csv.encode()).hexdigest()[:16],
        "closest": hashlib.sha256(records_to_jsonl(result.closest).encode()).hexdigest()[:16],
        "tries": result.tries,
        "rejected": {k: v for k, v in result.rejected.items() if v},
    }


CASES: dict[str, tuple[Any, int, dict[str, Any]]] = {
    "regnety-band-0": (SPACES / "regnety.yaml", 40, {"seed": 0, "flops": "396M:404M"}),
    "regnety-band-7": (SPACES / "regnety.yaml", 40, {"seed": 7, "flops": "396M:404M"}),
    "regnetx-free-3": (SPACES / "regnetx.yaml", 300, {"seed": 3}),
    "regnetx-cifar-stages-1": (
        SPACES / "regnetx-cifar.yaml",
        60,
        {"seed": 1, "stages": "3:3", "params": ":2M"},
    ),
    "anynetx-e-5": (SPACES / "anynetx_e.yaml", 30, {"seed": 5, "flops": "360M:400M"}),
    "anynetx-cifar-a-2": (SPACES / "anynetx-cifar-a.yaml", 50, {"seed": 2, "acts": ":500K"}),
    "mixed-0": (MIXED, 200, {"seed": 0, "flops": ":20M"}),
    "mixed-11": (MIXED, 200, {"seed": 11}),
}

# sha256 prefixes of the output of the code this refactor started from.
EXPECTED: dict[str, Any] = {
    "regnety-band-0": {
        "jsonl": "e300e2a1e9557e5d",
        "csv": "a652b12212206159",
        "closest": "df6110b07b6fd87c",
        "tries": 45243,
        "rejected": {"stages": 35038, "flops": 10165},
    },
    "regnety-band-7": {
        "jsonl": "b4cd2374e701961a",
        "csv": "959fa038eb38e0d4",
        "closest": "0f3490554d9c6beb",
        "tries": 41334,
        "rejected": {"stages": 31976, "flops": 9318},
    },
    "regnetx-free-3": {
        "jsonl": "0659c87edaf50024",
        "csv": "fb0cf693e1c9b1da",
        "closest": "e3b0c44298fc1c14",
        "tries": 1357,
        "rejected": {"stages": 1057},
    },
    "regnetx-cifar-stages-1": {
        "jsonl": "f13174d8b1b9b2c4",
        "csv": "15e2caf4b91200b2",
        "closest": "530e00f50f345c42",
        "tries": 462,
        "rejected": {"stages": 347, "params": 55},
    },
    "anynetx-e-5": {
        "jsonl": "86a7c0bd54f5b315",
        "csv": "12dd9fd58e0b2d03",
        "closest": "d64ad2cdebdd2c34",
        "tries": 614253,
        "rejected": {"invalid": 1152, "not_monotone": 611552, "flops": 1519},
    },
    "anynetx-cifar-a-2": {
        "jsonl": "7a79d4b684bad07f",
        "csv": "9aa10d85b5d5d82a",
        "closest": "e8ff0c4a855fa4eb",
        "tries": 124,
        "rejected": {"invalid": 47, "acts": 27},
    },
    "mixed-0": {
        "jsonl": "6f3a4d9a14ea4ccf",
        "csv": "ff7c4a8a34552a25",
        "closest": "22247f0762af9ce6",
        "tries": 897,
        "rejected": {"invalid": 76, "not_monotone": 566, "flops": 55},
    },
    "mixed-11": {
        "jsonl": "ae058837ffa2e094",
        "csv": "13c4f9d6808b7c2d",
        "closest": "e3b0c44298fc1c14",
        "tries": 629,
        "rejected": {"invalid": 51, "not_monotone": 378},
    },
    "unmet": {
        "jsonl": "229bf844b4d7a66e",
        "csv": "0a082fbd3fc99008",
        "closest": "64199b90e97f3a3c",
        "tries": 40000,
        "rejected": {"stages": 30836, "flops": 9161},
    },
    "search-0": "26b623d0680ec4e4",
    "search-5": "e6f0305176f1200e",
}


@pytest.mark.parametrize("case", CASES)
def test_sample_output_is_pinned(case: str) -> None:
    source, n, options = CASES[case]
    space = space_from_text(source) if isinstance(source, str) else source
    assert _digest(sample(space, n, **options)) == EXPECTED[case]


def test_closest_designs_of_an_unmet_band_are_pinned() -> None:
    with pytest.raises(SampleError) as info:
        sample(SPACES / "regnety.yaml", 5, seed=4, flops="1000M:1001M", max_tries=40_000)
    assert _digest(info.value.result) == EXPECTED["unmet"]


def test_search_draws_are_pinned() -> None:
    search = {
        "base_lr": SearchRange(dist="log_uniform", low=0.01, high=1.0),
        "weight_decay": SearchRange(dist="uniform", low=1e-5, high=1e-3),
        "epochs": SearchRange(dist="uniform", low=1, high=9),
        "batch_size": SearchRange(dist="log_uniform", low=16, high=512),
        "label_smoothing": SearchChoice(values=[0.0, 0.1, 0.2]),
        "optimizer": SearchChoice(values=["sgd", "adamw"]),
    }
    for seed in (0, 5):
        text = json.dumps(draw_search(search, 64, seed), sort_keys=True)
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == EXPECTED[f"search-{seed}"]
