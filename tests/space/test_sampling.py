"""Sampling: distributions as designed, constraints respected, plain rejection, reproducibility."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from regnet_space.core.complexity import count
from regnet_space.core.generator import make_plan
from regnet_space.core.reader import load_spec
from regnet_space.core.spec import ExplicitSpec, dump_spec
from regnet_space.space.distributions import draw
from regnet_space.space.output import records_to_csv, records_to_jsonl
from regnet_space.space.records import SampleProgress
from regnet_space.space.sampling import SampleError, sample
from regnet_space.space.space import Bounds, QuantizedDist, SpaceError, ValuesDist, load_space

SPACES = Path(__file__).resolve().parents[2] / "specs" / "spaces"
REGNETX, REGNETY = SPACES / "regnetx.yaml", SPACES / "regnety.yaml"
N_DRAWS = 200_000


# ---------------------------------------------------------------------------------------------
# Distributions


def _freqs(values: np.ndarray) -> dict[float, int]:
    keys, counts = np.unique(values, return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist(), strict=True))


def _check_frequencies(values: np.ndarray, expected: dict[float, float]) -> None:
    """Every value is an expected one, each seen as often as designed (6 sigma, fixed seed)."""
    seen = _freqs(values)
    assert set(seen) <= set(expected), set(seen) - set(expected)
    assert math.isclose(sum(expected.values()), 1.0, rel_tol=1e-9)
    n = len(values)
    for value, p in expected.items():
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(seen.get(value, 0) - n * p) <= 6 * sigma + 1, (value, seen.get(value), n * p)


def _log_uniform_probs(low: float, high: float, q: float) -> dict[float, float]:
    """pycls's log_uniform: a log-uniform draw in (low - min(q, low/2), high], rounded up to q."""
    floor = low - min(q, low / 2)
    total = math.log(high) - math.log(floor)
    ks = range(math.ceil(low / q - 1e-9), math.floor(high / q + 1e-9) + 1)
    return {
        k * q: (math.log(min(k * q, high)) - math.log(max((k - 1) * q, floor))) / total for k in ks
    }


def _draw(spec: dict, integer: bool, seed: int = 0) -> np.ndarray:
    dist = ValuesDist(**spec) if "values" in spec else QuantizedDist(**spec)
    return draw(np.random.default_rng(seed), dist, N_DRAWS, integer)


def test_uniform_depth() -> None:
    values = _draw({"dist": "uniform", "low": 12, "high": 28, "quantum": 1}, integer=True)
    assert values.dtype == np.int64
    _check_frequencies(values, {d: 1 / 17 for d in range(12, 29)})


def test_uniform_float_on_its_quantum() -> None:
    values = _draw({"dist": "uniform", "low": 0.5, "high": 2.0, "quantum": 0.25}, integer=False)
    _check_frequencies(values, {0.5 + 0.25 * i: 1 / 7 for i in range(7)})


def test_log_uniform_w0() -> None:
    values = _draw({"dist": "log_uniform", "low": 8, "high": 256, "quantum": 8}, integer=True)
    _check_frequencies(values, _log_uniform_probs(8, 256, 8))


def test_log_uniform_wa_cdf_and_decimals() -> None:
    """2,481 possible values: check the CDF at multiples of q, and that each value is a decimal."""
    values = _draw({"dist": "log_uniform", "low": 8, "high": 256, "quantum": 0.1}, integer=False)
    assert values.min() >= 8 and values.max() <= 256
    # Each float is exactly the decimal with one digit after the point (reloads as itself).
    assert all(float(f"{v:.1f}") == v for v in values[:5000].tolist())
    floor = 8 - 0.1
    for x in (8.0, 9.5, 16.0, 32.0, 64.0, 100.0, 200.0, 255.9):
        p = (math.log(x) - math.log(floor)) / (math.log(256) - math.log(floor))
        sigma = math.sqrt(p * (1 - p) / N_DRAWS)
        assert abs(np.mean(values <= x + 1e-9) - p) <= 6 * sigma + 1e-6, x


def test_log_uniform_wm_three_decimals() -> None:
    values = _draw({"dist": "log_uniform", "low": 2, "high": 3, "quantum": 0.001}, integer=False)
    assert values.min() >= 2 and values.max() <= 3
    assert all(float(f"{v:.3f}") == v for v in values[:5000].tolist())
    # Log-uniform: P(wm <= 2.449) = log(2.449 / 1.999) / log(3 / 1.999).
    p = math.log(2.449 / 1.999) / math.log(3 / 1.999)
    assert abs(np.mean(values <= 2.449) - p) < 0.01


def test_power2_uniform() -> None:
    values = _draw({"dist": "power2_uniform", "low": 1, "high": 32, "quantum": 1}, integer=True)
    _check_frequencies(values, {2**e: 1 / 6 for e in range(6)})
    floats = _draw({"dist": "power2_uniform", "low": 0.25, "high": 4, "quantum": 0.25}, False)
    _check_frequencies(floats, {2.0**e: 1 / 5 for e in range(-2, 3)})


def test_power2_or_log_uniform() -> None:
    """Powers of two below q keep their power2 share; the rest is log-uniform on multiples of q."""
    values = _draw(
        {"dist": "power2_or_log_uniform", "low": 1, "high": 32, "quantum": 8}, integer=True
    )
    expected = {1: 1 / 6, 2: 1 / 6, 4: 1 / 6}
    expected |= {v: p / 2 for v, p in _log_uniform_probs(8, 32, 8).items()}
    _check_frequencies(values, expected)
    # pycls's group-width range: every draw is a log-uniform multiple of 8.
    gw = _draw({"dist": "power2_or_log_uniform", "low": 8, "high": 128, "quantum": 8}, True)
    _check_frequencies(gw, _log_uniform_probs(8, 128, 8))


def test_values() -> None:
    values = _draw({"values": [1.0, 0.5, 0.25]}, integer=False)
    _check_frequencies(values, {1.0: 1 / 3, 0.5: 1 / 3, 0.25: 1 / 3})


# ---------------------------------------------------------------------------------------------
# Constraints and records


def _recount(rec) -> None:
    """A record's spec, planned and counted one by one, gives the record's plan and counts."""
    spec = rec.to_spec()
    p = make_plan(spec, rec.input_size)
    c = count(p)
    assert (p.widths, p.depths, p.group_widths) == (rec.widths, rec.depths, rec.group_widths)
    assert (c.flops, c.params, c.acts) == (rec.flops, rec.params, rec.acts)


def test_regnety_flop_band() -> None:
    result = sample(REGNETY, 200, seed=3, flops="396M:404M")
    assert result.complete and result.accepted == 200
    assert [r.id for r in result.records] == list(range(200))
    # About one draw in a thousand lands in the band (plus the 4-stage rule).
    assert 1e-4 < result.acceptance_rate < 1e-2
    for rec in result.records:
        assert 396_000_000 <= rec.flops <= 404_000_000
        assert rec.spec["block"] == "y" and rec.spec["se_ratio"] == 0.25
        assert len(rec.widths) == 4
        gen = make_plan(rec.to_spec()).generation
        assert gen is not None and gen.num_stages == gen.total_stages == 4
        _recount(rec)


def test_params_and_acts_constraints() -> None:
    result = sample(
        REGNETX, 50, seed=1, flops="300M:800M", params=":3M", acts=(2_000_000, 4_000_000)
    )
    for rec in result.records:
        assert 300e6 <= rec.flops <= 800e6 and rec.params <= 3e6 and 2e6 <= rec.acts <= 4e6
        _recount(rec)


def test_anynet_rules() -> None:
    e = sample(SPACES / "anynetx_e.yaml", 30, seed=0, flops="360M:400M")
    for rec in e.records:
        stages = rec.spec["stages"]
        for field in ("width", "depth"):
            assert [s[field] for s in stages] == sorted(s[field] for s in stages)
        for field in ("group_width", "bottleneck_multiplier"):
            assert len({s[field] for s in stages}) == 1
        assert isinstance(rec.to_spec(), ExplicitSpec)
        _recount(rec)
    assert e.rejected["not_monotone"] > 0
    a = sample(SPACES / "anynetx_a.yaml", 200, seed=0)
    assert a.rejected["invalid"] > 0  # group widths that do not divide the bottleneck
    assert any(len({s["group_width"] for s in r.spec["stages"]}) > 1 for r in a.records)
    for rec in a.records:
        _recount(rec)


def test_rejection_keeps_the_space_distribution() -> None:
    """Constrained samples are exactly the unconstrained draws that meet the constraint."""
    band = Bounds(lo=396_000_000, hi=404_000_000)
    constrained = sample(REGNETY, 15, seed=5, flops=band)
    free = sample(REGNETY, 6000, seed=5)
    assert free.tries >= constrained.tries
    kept = [r for r in free.records if band.contains(r.flops)][:15]

    def strip(rec) -> dict:
        return {k: v for k, v in rec.to_dict().items() if k not in ("id", "name")}

    assert [strip(r) for r in kept] == [strip(r) for r in constrained.records]


def test_stage_constraint_and_skipped_exponents() -> None:
    space = load_space(REGNETX).model_dump()
    free = sample(space, 300, seed=2, stages=":")
    counts = {len(r.widths) for r in free.records}
    assert len(counts) > 1 and 4 in counts
    for rec in free.records:
        gen = make_plan(rec.to_spec()).generation
        assert gen.num_stages == gen.total_stages
    space["constraints"] = {"allow_skipped_exponents": True}
    skipping = sample(space, 300, seed=2)
    assert any(make_plan(r.to_spec()).generation.skipped_exponents for r in skipping.records), (
        "some designs of the pycls ranges skip an exponent"
    )
    five = sample(REGNETX, 20, seed=2, stages=5)
    assert all(len(r.widths) == 5 for r in five.records)


def test_input_size_override() -> None:
    result = sample(REGNETY, 10, seed=0, input_size=160)
    for rec in result.records:
        assert rec.input_size == 160
        c = count(rec.to_spec(), 160)
        assert (c.flops, c.params, c.acts) == (rec.flops, rec.params, rec.acts)


def test_records_round_trip_through_spec_files(tmp_path: Path) -> None:
    for rec in sample(REGNETX, 5, seed=9).records:
        path = tmp_path / f"{rec.spec['name']}.yaml"
        path.write_text(dump_spec(rec.to_spec()))
        assert load_spec(path) == rec.to_spec()
        assert rec.to_dict()["wa"] == round(rec.to_dict()["wa"], 1)


# ---------------------------------------------------------------------------------------------
# Reproducibility, duplicates, failure


def test_same_seed_same_output_other_seed_other_output() -> None:
    a = sample(REGNETY, 30, seed=11, flops="390M:410M")
    b = sample(str(REGNETY), 30, seed=11, flops="390M:410M", max_tries=50_000_000)
    c = sample(REGNETY, 30, seed=12, flops="390M:410M")
    assert records_to_jsonl(a.records) == records_to_jsonl(b.records)
    assert records_to_csv(a.records) == records_to_csv(b.records)
    assert a.tries == b.tries and dict(a.rejected) == dict(b.rejected)
    assert records_to_jsonl(a.records) != records_to_jsonl(c.records)


def test_sources_text_mapping_and_model_agree() -> None:
    text = REGNETX.read_text()
    outs = {
        records_to_jsonl(sample(src, 5, seed=4).records)
        for src in (
            REGNETX,
            str(REGNETX),
            text,
            load_space(REGNETX),
            load_space(REGNETX).model_dump(),
        )
    }
    assert len(outs) == 1


def _tiny_space() -> dict:
    return {
        "space": "tiny",
        "family": "regnet",
        "spec": {"block": "x"},
        "sample": {
            "depth": {"values": [12, 13]},
            "w0": {"values": [8, 16]},
            "wa": {"values": [20.0]},
            "wm": {"values": [2.5]},
            "group_width": {"values": [8]},
        },
        "constraints": {"allow_skipped_exponents": True},
    }


def test_duplicates_are_dropped() -> None:
    result = sample(_tiny_space(), 4, seed=0)
    keys = {(r.spec["depth"], r.spec["w0"]) for r in result.records}
    assert len(keys) == 4
    # Fewer distinct designs than asked: refused before drawing, with the count.
    with pytest.raises(SpaceError, match="at most 4 distinct designs, fewer than the 5"):
        sample(_tiny_space(), 5, seed=0, max_tries=20_000)


def test_unmet_constraints_report_the_closest_designs() -> None:
    with pytest.raises(SampleError, match="only 0 of 3 designs") as info:
        sample(REGNETX, 3, seed=0, flops="10M:11M", max_tries=100_000)
    result = info.value.result
    assert not result.complete and result.tries == 100_000
    assert sum(result.rejected.values()) == 100_000
    assert 1 <= len(result.closest) <= 5
    flops = [r.flops for r in result.closest]
    assert flops == sorted(flops) and flops[0] > 11_000_000
    assert all(len(r.widths) == 4 for r in result.closest)
    # The closest seen is the smallest 4-stage design of all draws.
    assert flops[0] < 40_000_000


def test_progress_is_reported() -> None:
    seen: list[SampleProgress] = []
    sample(REGNETY, 20, seed=0, flops="396M:404M", progress=seen.append)
    assert seen and seen[-1].accepted == 20
    assert [p.tries for p in seen] == sorted(p.tries for p in seen)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be"),
        ({"n": 2.5}, "n must be"),
        ({"seed": -1}, "seed must be"),
        ({"max_tries": 0}, "max_tries must be"),
        ({"input_size": 0}, "input size"),
        ({"flops": "5M:1M"}, "empty range"),
        ({"params": "lots"}, "LO:HI"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"n": 3, **kwargs}
    with pytest.raises(SpaceError, match=message):
        sample(REGNETX, **args)


def test_anynet_stage_count_mismatch_is_refused_early() -> None:
    with pytest.raises(SpaceError, match="every design has 4 stages"):
        sample(SPACES / "anynetx_a.yaml", 3, stages="5:6")


def test_csv_reads_back() -> None:
    records = sample(SPACES / "anynetx_c.yaml", 5, seed=0).records
    rows = list(csv.DictReader(io.StringIO(records_to_csv(records))))
    for row, rec in zip(rows, records, strict=True):
        expected = rec.to_dict()
        assert row.keys() == expected.keys()
        for key, value in row.items():
            assert (value if isinstance(expected[key], str) else json.loads(value)) == expected[key]


# ---------------------------------------------------------------------------------------------
# The sampling loop against a plain one-draw-at-a-time reading of its rules

_PLAIN = ("id", "name")  # fields that name a record rather than describe the design


def _plain(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in _PLAIN} for r in records]


def _reference(space_src: Path, n: int, seed: int, flops: str, max_tries: int) -> dict:
    """sample()'s rules applied draw by draw to the same draws, evaluated all at once."""
    from regnet_space.space import sampling as s
    from regnet_space.space.evaluator import REASONS, Evaluator
    from regnet_space.space.feasibility import resolve_constraints

    sp = load_space(space_src)
    sampler = Evaluator(sp, resolve_constraints(sp, {"flops": flops}), sp.input_size)
    rng = np.random.default_rng(seed)
    batches = -(-max_tries // s.BATCH)
    draws = [sampler.draw(rng, s.BATCH) for _ in range(batches)]
    sampled = {f: np.concatenate([d[f] for d in draws]) for f in draws[0]}
    every = sampler.evaluate(sampled, batches * s.BATCH)
    seen, accepted, rejected, tries = set(), [], {}, 0
    for i in range(max_tries):
        tries = i + 1
        reason = REASONS[every.reason[i] - 1] if every.reason[i] else None
        (key,) = sampler.keys(every, [i])
        if reason is None and key in seen:
            reason = "duplicate"
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        seen.add(key)
        (record,) = sampler.records(every, [i], [len(accepted)], ["x"])
        accepted.append(record.to_dict())
        if len(accepted) == n:
            break
    # Closest: the distinct designs rejected for their flops alone, nearest first, the
    # earlier draw first among equals.
    near = []
    for i in range(tries):
        if every.reason[i] and REASONS[every.reason[i] - 1] == "flops":
            j = np.searchsorted(every.index, i)
            near.append((float(sampler.distance(every, np.array([j]))[0]), i))
    closest, keys = [], set()
    for _, i in sorted(near):
        (key,) = sampler.keys(every, [i])
        if key not in keys and len(closest) < s.CLOSEST:
            keys.add(key)
            (record,) = sampler.records(every, [i], [-1], ["x"])
            closest.append(record.to_dict())
    return {
        "tries": tries,
        "records": _plain(accepted),
        "rejected": rejected,
        "closest": _plain(closest),
    }


def _outcome(space_src: Path, n: int, seed: int, flops: str, max_tries: int) -> dict:
    try:
        result = sample(space_src, n, seed=seed, flops=flops, max_tries=max_tries)
    except SampleError as error:
        result = error.result
    return {
        "tries": result.tries,
        "records": _plain([r.to_dict() for r in result]),
        "rejected": {k: v for k, v in result.rejected.items() if v},
        "closest": _plain([r.to_dict() for r in result.closest]),
    }


@pytest.mark.parametrize(
    ("space", "n", "seed", "flops", "max_tries"),
    [
        (REGNETY, 40, 3, "396M:404M", 400_000),  # many batches, accepted in several chunks
        (REGNETX, 5, 1, "10M:11M", 30_000),  # none found: the closest; tries stop mid-batch
        (SPACES / "anynetx_b.yaml", 25, 2, "300M:500M", 100_000),
    ],
)
def test_loop_matches_the_draw_by_draw_rules(
    space: Path, n: int, seed: int, flops: str, max_tries: int
) -> None:
    assert _outcome(space, n, seed, flops, max_tries) == _reference(
        space, n, seed, flops, max_tries
    )


def test_closest_designs_are_distinct_even_when_one_design_fills_a_batch() -> None:
    # Four distinct designs, none in the band: each batch repeats them over and over, so the
    # nearest five draws of a batch are one design five times; all four must still show.
    with pytest.raises(SampleError) as info:
        sample(_tiny_space(), 1, seed=0, flops="100G:101G")
    closest = info.value.result.closest
    keys = [(r.spec["depth"], r.spec["w0"]) for r in closest]
    assert sorted(keys) == sorted({(12, 8), (12, 16), (13, 8), (13, 16)})
    flops = [r.flops for r in closest]
    assert flops == sorted(flops, reverse=True)  # below the band: the largest is nearest


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_chunk_size_does_not_change_the_result(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from regnet_space.space import sampling

    args = (REGNETY, 60, 5, "396M:404M", 2_000_000)
    default = _outcome(*args)
    monkeypatch.setattr(sampling, "CHUNK", chunk)
    assert _outcome(*args) == default


def test_a_band_below_the_cifar_stem_is_refused_before_drawing() -> None:
    # The CIFAR stem keeps the full 32x32 side (stride 1): 9 x 3 x 16 x 32 x 32 flops.
    stem = 9 * 3 * 16 * 32 * 32
    with pytest.raises(SpaceError, match=f"the stem alone has {stem} flops at input size 32"):
        sample(SPACES / "regnetx-cifar.yaml", 1, flops=f"0:{stem - 1}")


def test_sample_result_has_len_iteration_and_a_short_repr() -> None:
    import regnet_space as rs

    result = rs.sample(rs.load_space(SPACES / "regnetx.yaml"), 5, seed=1)
    assert len(result) == 5 and list(result) == list(result.records)
    assert len(repr(result)) < 200 and "5/5 designs" in repr(result)
