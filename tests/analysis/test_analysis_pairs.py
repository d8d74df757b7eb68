"""Pair statistics of `analyze`: KS plain and normalized, percentile intervals, EDF bands,
resolved good ranges, the small-n warning, the pooled correlation column; --filter, --split."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from regnet_space.analysis.compare import (
    Comparison,
    compare_pair,
    dkw_band,
    effective_n,
    few_models_warning,
    ks_gap,
)
from regnet_space.analysis.filters import FilterError, parse_filter
from regnet_space.analysis.results import load_study, study_from_records
from regnet_space.analysis.stats import analyze, complexity_bins, correlation_table, range_table
from regnet_space.cli import main

pytest.importorskip("scipy")

SEED = 20240  # every random draw below starts from this seed (or SEED + k, stated where used)


def design(depth: int = 16, w0: int = 48, wa: float = 30.0, wm: float = 2.3, **kw: object) -> dict:
    return {"block": "x", "depth": depth, "w0": w0, "wa": wa, "wm": wm, "group_width": 16, **kw}


def pair(a: np.ndarray, b: np.ndarray, seed: int, resamples: int = 1000) -> Comparison:
    return compare_pair(("a", "b"), (a, b), None, np.random.default_rng(seed), resamples)


# ---------------------------------------------------------------------------------------------
# Two-sample tests


def test_a_known_shift_is_detected_at_n_200() -> None:
    rng = np.random.default_rng(SEED)
    a = rng.normal(30.0, 3.0, 200)  # errors in percent
    b = rng.normal(28.5, 3.0, 200)  # 1.5 points better: half a standard deviation
    c = pair(a, b, SEED)
    assert (c.n_a, c.n_b) == (200, 200)
    assert c.p_value < 0.01 and c.ks_statistic > 0.15
    med = c.median
    assert med.difference == pytest.approx(np.median(a) - np.median(b))
    assert 0 < med.low < 1.5 < med.high  # the interval excludes 0 and holds the true shift
    assert [d.percentile for d in c.differences] == [10.0, 25.0, 50.0]
    for d in c.differences:
        assert d.low <= d.difference <= d.high and d.low > 0
    again = pair(a, b, SEED)
    assert again == c  # seeded


def test_two_draws_of_one_distribution_mostly_pass() -> None:
    # Seeds SEED .. SEED + 19; at the 5 % level about one in twenty may fail.
    p = [pair(*np.random.default_rng(SEED + k).normal(30, 3, (2, 200)), SEED).p_value
         for k in range(20)]  # fmt: skip
    assert sum(x > 0.05 for x in p) >= 17
    covered = 0
    for k in range(20):
        a, b = np.random.default_rng(SEED + k).normal(30, 3, (2, 200))
        m = pair(a, b, SEED, resamples=400).median
        covered += m.low <= 0 <= m.high  # the true difference is 0
    assert covered >= 17


def test_the_normalized_test_sees_through_a_complexity_confound() -> None:
    # Both spaces follow one error-vs-flops law; B was sampled at larger flops. Plainly B is
    # better (p tiny); at equal complexity there is no difference.
    rng = np.random.default_rng(SEED)
    recs = {}
    for label, (lo, hi) in {"A": (2e8, 6e8), "B": (4e8, 8e8)}.items():
        flops = np.exp(rng.uniform(np.log(lo), np.log(hi), 200))
        err = 40 - 2 * np.log(flops / 1e8) + rng.normal(0, 0.3, 200)
        recs[label] = [
            design(flops=f, params=1e6, acts=1e6, error=e) for f, e in zip(flops, err, strict=True)
        ]
    (c,) = analyze(study_from_records(recs), resamples=1000, seed=SEED).comparisons
    assert c.p_value < 1e-6
    assert c.normalized_p_value is not None and c.normalized_p_value > 0.05
    assert c.normalized_ks_statistic < c.ks_statistic / 2
    assert 0 < c.normalized_n_a < 200 and 0 < c.normalized_n_b < 200  # outside the overlap: out


def test_the_normalized_test_detects_a_shift_at_equal_complexity() -> None:
    rng = np.random.default_rng(SEED + 1)
    flops = [np.exp(rng.uniform(np.log(2e8), np.log(8e8), 200)) for _ in range(2)]
    a = 40 - 2 * np.log(flops[0] / 1e8) + rng.normal(0, 1, 200)
    b = 39 - 2 * np.log(flops[1] / 1e8) + rng.normal(0, 1, 200)  # one point better throughout
    weights, bins, edges, _ = complexity_bins(flops)
    assert len(edges) > 1
    c = compare_pair(
        ("a", "b"), (a, b), (tuple(weights), tuple(bins)), np.random.default_rng(SEED), 1000
    )
    assert c.normalized_p_value is not None and c.normalized_p_value < 0.01


def test_ks_gap_is_scipys_statistic_with_equal_weights_and_handles_ties() -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(SEED)
    a, b = rng.integers(0, 12, 40).astype(float), rng.integers(2, 14, 30).astype(float)
    signed = np.concatenate([np.full(40, 1 / 40), np.full(30, -1 / 30)])
    got = ks_gap(np.concatenate([a, b])[None, :], signed[None, :])[0]
    assert got == pytest.approx(ks_2samp(a, b).statistic)


def test_dkw_band_and_effective_n() -> None:
    assert dkw_band(100) == pytest.approx(math.sqrt(math.log(40) / 200))
    assert effective_n(np.full(10, 0.1)) == pytest.approx(10)
    assert effective_n(np.array([0.5, 0.5, 0.0, 0.0])) == pytest.approx(2)
    # The band holds the true (uniform) CDF everywhere in at least 95 % of draws (4.4 % miss
    # at n = 50: DKW is conservative; 4,000 draws put 5.5 % over three standard errors away).
    n, draws = 50, 4000
    x = np.sort(np.random.default_rng(SEED).random((draws, n)), axis=1)
    i = np.arange(1, n + 1)
    gap = np.maximum(i / n - x, x - (i - 1) / n).max(axis=1)
    assert (gap > dkw_band(n)).mean() <= 0.055


def test_small_n_warning_and_analysis_fields() -> None:
    assert few_models_warning([("A", 100), ("B", 500)]) is None
    line = few_models_warning([("A", 16), ("B", 120)])
    assert line is not None and "A (16)" in line and "B" not in line.split(":")[0]
    assert "\n" not in line
    rng = np.random.default_rng(SEED)
    recs = {k: [design(error=float(e)) for e in rng.normal(30, 2, 16)] for k in "AB"}
    a = analyze(study_from_records(recs), resamples=200)
    assert len(a.warnings) == 1 and "A (16), B (16)" in a.warnings[0]
    data = a.to_dict()
    (c,) = data["comparisons"]
    assert set(c) >= {"a", "b", "n_a", "n_b", "ks_statistic", "p_value"}
    assert set(c) >= {"median_difference", "median_difference_ci"}
    assert (c["a"], c["b"], c["n_a"], c["n_b"]) == ("A", "B", 16, 16)
    assert data["spaces"][0]["edf_band"] == pytest.approx(dkw_band(16))


# ---------------------------------------------------------------------------------------------
# Good ranges, pooled correlations


def test_good_ranges_are_shown_only_where_resolved() -> None:
    rng = np.random.default_rng(SEED)
    depth = rng.integers(12, 29, 300)
    err = np.abs(depth - 18) + rng.normal(0, 0.1, 300)  # best at depth 18
    strong = [design(depth=int(d), error=float(e)) for d, e in zip(depth, err, strict=True)]
    noise = [design(depth=int(d), error=float(e)) for d, e in
             zip(depth[:16], rng.normal(30, 2, 16), strict=True)]  # fmt: skip
    a = analyze(study_from_records({"S": strong, "N": noise}), resamples=500, seed=SEED)
    g = {(r.space, r.parameter): r for r in a.good_ranges}
    assert g["S", "depth"].resolved and g["S", "depth"].low <= 18 <= g["S", "depth"].high
    assert not g["N", "depth"].resolved and g["N", "depth"].share > 0.5
    rows = {(r[0], r[1]): r for r in range_table(a)[1]}
    assert rows["N", "depth"][2] == "not resolved at n = 16" and rows["N", "depth"][3] == ""
    low, high = (int(x) for x in rows["S", "depth"][2].split(" .. "))
    assert low <= 18 <= high


def test_pooled_correlations_only_for_variables_every_space_has() -> None:
    # A RegNet space has depth; an AnyNet-style space has per-stage d1, d2 instead. Pooling
    # depth would give the RegNet space's own rho under the name "all".
    rng = np.random.default_rng(SEED)
    regnet = [design(depth=int(d), error=float(30 - 0.5 * d + rng.normal()))
              for d in rng.integers(12, 29, 40)]  # fmt: skip
    stages = [
        {"block": "x", "error": float(e),
         "stages": [{"width": 32, "depth": int(d1), "group_width": 8},
                    {"width": 64, "depth": int(d2), "group_width": 8}]}
        for d1, d2, e in zip(rng.integers(1, 5, 40), rng.integers(1, 5, 40),
                             rng.normal(30, 1, 40), strict=True)
    ]  # fmt: skip
    a = analyze(study_from_records({"R": regnet, "A": stages}), resamples=50)
    rho = {(c.space, c.variable): c.rho for c in a.correlations}
    assert ("R", "depth") in rho and ("all", "depth") not in rho
    assert ("all", "d1") not in rho and ("all", "flops") in rho
    headers, rows = correlation_table(a)
    depth_row = next(r for r in rows if r[0] == "depth")
    assert depth_row[headers.index("all")] == "n/a"


# ---------------------------------------------------------------------------------------------
# --filter and --split


def _records(tmp_path: Path) -> Path:
    rows = []
    for i, depth in enumerate(range(13, 25)):
        extra = {"epochs": 10 + 40 * (i % 2), "recipe.base_lr": 0.1 * (1 + i % 3)}
        rows.append(design(depth=depth, name=f"m{i}", error=30 - 0.3 * depth, **extra))
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_filter_on_flops_and_on_recipe_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _records(tmp_path)
    everything = load_study([path])
    flops = np.asarray(everything.spaces[0].complexity["flops"])
    cut = float(np.median(flops))
    argv = ["analyze", str(path), "--json", "--resamples", "20"]
    assert main([*argv, "--filter", f"flops<{cut!r}"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spaces"][0]["n"] == int((flops < cut).sum()) == 6
    assert data["filters"] == [f"flops<{cut!r}"]
    assert main([*argv, "--filter", "epochs==10", "--filter", "base_lr <= 0.2"]) == 0
    data = json.loads(capsys.readouterr().out)
    # epochs 10: even i; base_lr <= 0.2: i % 3 in (0, 1) -> i in 0, 4, 6, 10
    assert data["spaces"][0]["n"] == 4
    assert data["inputs"][0]["records"] == 12
    study = load_study([path], filters=["recipe.base_lr>0.25", "space==runs"])
    assert study.spaces[0].n == 4 and study.filters == ("recipe.base_lr>0.25", "space==runs")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("flops<<4e8", "neither a number nor a word"),
        ("__import__('os').system('true')", "expected FIELD OP VALUE"),
        ("flops < 1e999", "not a finite number"),
        ("depth", "expected FIELD OP VALUE"),
        ("nosuchfield<3", "no record has a field 'nosuchfield'"),
        ("name<3", "holds 'm0', not a number"),
        ("space<RegNetX", "needs a number"),
        ("error==(1)", "neither a number nor a word"),
        ("depth>1000", "no record of 12 passes the filters"),
    ],
)
def test_bad_filters_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expression: str, message: str
) -> None:
    path = _records(tmp_path)
    assert main(["analyze", str(path), "--filter", expression, "--no-plots"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err


def test_filter_parser_values() -> None:
    f = parse_filter(" flops >= 400M ")
    assert (f.field, f.op, f.value) == ("flops", ">=", 4e8)
    assert parse_filter("space=RegNetX-CIFAR").value == "RegNetX-CIFAR"
    assert parse_filter("name != 'a b'").value == "a b"
    assert parse_filter("recipe.base_lr<.5").value == 0.5
    assert parse_filter("synthetic==false").matches({"synthetic": False}, "synthetic")
    assert not parse_filter("epochs==10").matches({"epochs": None}, "epochs")
    with pytest.raises(FilterError, match="longer than"):
        parse_filter("x<" + "1" * 300)


def test_split_divides_spaces_by_a_field(tmp_path: Path) -> None:
    path = _records(tmp_path)
    study = load_study([path], split="epochs")
    assert [(s.label, s.n) for s in study.spaces] == [("runs epochs=10", 6), ("runs epochs=50", 6)]
    study = load_study([path], split="base_lr", filters=["epochs==50"])
    assert [s.label for s in study.spaces] == [
        "runs base_lr=0.1",
        "runs base_lr=0.2",
        "runs base_lr=0.3",
    ]
    a = analyze(study, resamples=20)
    assert len(a.comparisons) == 3  # every pair
    with pytest.raises(FilterError, match="no record has a field 'lr'"):
        load_study([path], split="lr")


def test_json_has_no_nan_for_constant_parameters_and_empty_normalizations() -> None:
    # B's depth is constant (no good range to judge); inside the shared flops range A has
    # models in the first and last of 3 bins, B in the middle one only: no bin is shared, the
    # normalized EDFs are empty. Every such number is null in JSON, never NaN.
    recs = {
        "A": [design(depth=12 + i, error=30.0 - i, flops=f, params=1, acts=1)
              for i, f in enumerate((1e8, 1e8, 1e8, 9e8))],
        "B": [design(depth=20, error=25.0 + i, flops=f, params=1, acts=1)
              for i, f in enumerate((5e7, 3e8, 3e8, 2e9))],
    }  # fmt: skip
    a = analyze(study_from_records(recs), resamples=20, bins=3)
    data = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    (b_depth,) = [g for g in data["good_ranges"] if (g["space"], g["parameter"]) == ("B", "depth")]
    assert b_depth["share"] is None and b_depth["verdict"] == "constant"
    assert not b_depth["resolved"]
    for space in data["spaces"]:
        assert space["normalized_n"] == 0 and space["normalized_edf_band"] is None
        assert space["normalized_median"] is None
    (c,) = data["comparisons"]
    assert c["normalized"]["ks_statistic"] is None and c["p_value"] is not None


def test_without_scipy_analyze_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _records(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    assert main(["analyze", str(path), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "need scipy" in err and "regnet-space[analysis]" in err
