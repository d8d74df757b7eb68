"""Design-space analysis: EDFs, complexity normalization, good ranges, rank correlations, inputs."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from regnet_space import count, load_spec
from regnet_space.analysis.results import AnalysisError, load_study, study_from_records
from regnet_space.analysis.stats import (
    analyze,
    bootstrap_best,
    complexity_weights,
    edf,
    rankdata,
    spearman,
)
from regnet_space.cli import main

ROOT = Path(__file__).resolve().parents[2]
ZOO_CSV = ROOT / "examples" / "zoo_errors.csv"

# Published top-1 errors (pycls model zoo), transcribed by hand.
ZOO_ERRORS = {
    "RegNetX-200MF": 31.1, "RegNetX-400MF": 27.4, "RegNetX-600MF": 25.9, "RegNetX-800MF": 24.8,
    "RegNetX-1.6GF": 23.0, "RegNetX-3.2GF": 21.7, "RegNetX-4.0GF": 21.4, "RegNetX-6.4GF": 20.8,
    "RegNetX-8.0GF": 20.7, "RegNetX-12GF": 20.3, "RegNetX-16GF": 20.0, "RegNetX-32GF": 19.5,
    "RegNetY-200MF": 29.7, "RegNetY-400MF": 25.9, "RegNetY-600MF": 24.5, "RegNetY-800MF": 23.7,
    "RegNetY-1.6GF": 22.1, "RegNetY-3.2GF": 21.1, "RegNetY-4.0GF": 20.6, "RegNetY-6.4GF": 20.1,
    "RegNetY-8.0GF": 20.1, "RegNetY-12GF": 19.7, "RegNetY-16GF": 19.6, "RegNetY-32GF": 19.1,
}  # fmt: skip


def design(depth: int = 16, w0: int = 48, wa: float = 30.0, wm: float = 2.3, **kw: object) -> dict:
    return {"block": "x", "depth": depth, "w0": w0, "wa": wa, "wm": wm, "group_width": 16, **kw}


# ---------------------------------------------------------------------------------------------
# EDF and normalization


def test_edf_plain_weighted_and_higher_is_better() -> None:
    e = edf([3.0, 1.0, 2.0, 2.0])
    assert e.values == (1.0, 2.0, 2.0, 3.0) and e.fractions == (0.25, 0.5, 0.75, 1.0)
    assert e.at(2.0) == 0.75 and e.at(0.5) == 0.0 and e.at(9) == 1.0
    w = edf([1.0, 2.0, 3.0], weights=[0.0, 1.0, 3.0])
    assert w.values == (2.0, 3.0) and w.fractions == (0.25, 1.0)
    h = edf([70.0, 75.0, 72.0], lower_is_better=False)
    assert h.values == (75.0, 72.0, 70.0) and h.at(72.0, lower_is_better=False) == pytest.approx(
        2 / 3
    )


def test_weights_equalize_complexity_histograms() -> None:
    rng = np.random.default_rng(0)
    a = np.exp(rng.uniform(np.log(2e8), np.log(4e8), 300))  # mostly small
    b = np.exp(rng.uniform(np.log(3e8), np.log(8e8), 200))  # mostly large
    weights, edges, _ = complexity_weights([a, b], bins=5)
    assert len(edges) == 6
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    assert edges[0] == pytest.approx(lo) and edges[-1] == pytest.approx(hi)
    hists = [
        np.histogram(x, bins=edges, weights=w)[0] for x, w in zip((a, b), weights, strict=True)
    ]
    np.testing.assert_allclose(hists[0], hists[1], atol=1e-12)
    np.testing.assert_allclose(hists[0], 0.2, atol=1e-12)  # uniform over the 5 bins
    assert all(w.sum() == pytest.approx(1) for w in weights)
    assert (weights[0][a < lo] == 0).all() and (weights[1][b > hi] == 0).all()


def test_weights_edge_cases() -> None:
    same, edges, notes = complexity_weights([np.full(4, 4e8), np.full(3, 4e8)])
    assert [w.tolist() for w in same] == [[0.25] * 4, [1 / 3] * 3] and len(edges) == 2
    apart, edges, notes = complexity_weights([np.array([1e8, 2e8]), np.array([5e8, 9e8])])
    assert len(edges) == 0 and "do not overlap" in notes[0]
    assert [w.tolist() for w in apart] == [[0.5, 0.5], [0.5, 0.5]]


def test_normalization_removes_a_complexity_confound() -> None:
    # Both spaces follow the same error-vs-flops law; B was sampled at larger flops.
    rng = np.random.default_rng(1)
    recs = {}
    for label, (lo, hi) in {"A": (2e8, 6e8), "B": (4e8, 8e8)}.items():
        flops = np.exp(rng.uniform(np.log(lo), np.log(hi), 400))
        err = 40 - 2 * np.log(flops / 1e8) + rng.normal(0, 0.05, 400)
        recs[label] = [
            design(flops=f, params=1e6, acts=1e6, error=e) for f, e in zip(flops, err, strict=True)
        ]
    a = analyze(study_from_records(recs), bins=8)
    plain = [np.asarray(s.edf.values) for s in a.spaces]
    norm = [s.normalized_edf for s in a.spaces]
    assert abs(np.median(plain[0]) - np.median(plain[1])) > 0.8  # B looks better plainly
    grid = np.linspace(34, 40, 61)
    gap = max(abs(norm[0].at(x) - norm[1].at(x)) for x in grid)
    assert gap < 0.12  # after normalization the two spaces agree
    assert abs(a.spaces[0].normalized_median - a.spaces[1].normalized_median) < 0.2


# ---------------------------------------------------------------------------------------------
# Bootstrap, ranks


def test_bootstrap_best_is_the_best_of_each_resample() -> None:
    metric = np.random.default_rng(3).normal(size=40)
    got = bootstrap_best(metric, np.random.default_rng(5), resamples=50, fraction=0.25)
    idx = np.random.default_rng(5).integers(0, 40, size=(50, 10))  # same draws: 25 % of 40
    for row, best in zip(idx, got, strict=True):
        assert best in row and metric[best] == metric[row].min()
    high = bootstrap_best(metric, np.random.default_rng(5), 50, 0.25, lower_is_better=False)
    assert all(metric[b] == metric[r].max() for r, b in zip(idx, high, strict=True))


def test_good_range_finds_the_optimum_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 10, 300)
    noise = rng.normal(0, 0.1, len(p))
    recs = [
        design(depth=int(12 + x), flops=1e8, params=1, acts=1, error=abs(x - 6) + e)
        for x, e in zip(p, noise, strict=True)
    ]
    study = study_from_records({"S": recs})
    a = analyze(study, seed=4)
    (g,) = [g for g in a.good_ranges if g.parameter == "depth"]
    assert g.low <= 18 <= g.high and g.high - g.low <= 3 and g.median in (17, 18, 19)
    assert analyze(study, seed=4).good_ranges == a.good_ranges
    other = analyze(study, seed=5, resamples=100)
    assert other.resamples == 100 and other.seed == 5


def test_rankdata_and_spearman() -> None:
    assert rankdata(np.array([10, 20, 20, 5])).tolist() == [2, 3.5, 3.5, 1]
    x = np.array([1.0, 2, 3, 4, 5])
    assert spearman(x, np.exp(x)) == (1.0, 5)
    assert spearman(x, -(x**3)) == (-1.0, 5)
    assert spearman(x, np.ones(5)) == (None, 5)
    assert spearman(x[:2], x[:2]) == (None, 2)
    # Hand-computed: ranks (1,2,3,4) vs (2,1,4,3): rho = 1 - 6*4/(4*15) = 0.6
    rho, n = spearman(np.array([1.0, 2, 3, 4]), np.array([20.0, 10, 40, 30]))
    assert rho == pytest.approx(0.6) and n == 4
    rho, n = spearman(np.array([1.0, np.nan, 3, 4, 5]), np.array([1.0, 2, 3, 5, 4]))
    assert n == 4 and rho == pytest.approx(0.8)


# ---------------------------------------------------------------------------------------------
# The zoo example


def test_zoo_csv_holds_the_published_errors_and_exact_counts() -> None:
    with ZOO_CSV.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24
    assert {r["name"]: float(r["error"]) for r in rows} == ZOO_ERRORS
    for r in rows:
        spec = load_spec(ROOT / r["spec"])
        assert spec.name == r["name"] and r["space"] == r["name"].split("-")[0]
        c = count(spec)
        assert (int(r["flops"]), int(r["params"]), int(r["acts"])) == (c.flops, c.params, c.acts)
        assert (int(r["depth"]), int(r["w0"]), float(r["wa"])) == (spec.depth, spec.w0, spec.wa)


def test_zoo_analysis() -> None:
    a = analyze(load_study([ZOO_CSV]))
    assert [s.label for s in a.spaces] == ["RegNetX", "RegNetY"]
    assert [s.n for s in a.spaces] == [12, 12]
    x, y = a.spaces
    assert (x.best, y.best, x.worst, y.worst) == (19.5, 19.1, 31.1, 29.7)
    assert y.median < x.median
    rho = {(c.space, c.variable): c.rho for c in a.correlations}
    assert rho["RegNetX", "flops"] == -1.0  # error falls strictly with flops
    assert -1.0 < rho["RegNetY", "flops"] < -0.99  # Y-6.4GF and Y-8.0GF tie at 20.1
    assert rho["all", "flops"] < -0.95
    assert set(a.parameters) == {"depth", "w0", "wa", "wm", "group_width"}
    json.dumps(a.to_dict())


# ---------------------------------------------------------------------------------------------
# Inputs


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_join_results_with_samples_and_count_missing_complexity(tmp_path: Path) -> None:
    samples = [
        design(depth=13 + i, name=f"m{i}", id=i, widths=[48, 96, 240, 528]) for i in range(4)
    ]
    s = write(tmp_path / "s.jsonl", "".join(json.dumps(r) + "\n" for r in samples))
    r = write(tmp_path / "r.csv", "id,top1\n2,25.5\n0,27\n3,24.25\n")
    study = load_study([r], samples=[s], metric="top1")
    (space,) = study.spaces
    assert space.label == "r" and space.names == ("m2", "m0", "m3")
    assert space.metric == (25.5, 27.0, 24.25)
    assert space.parameters["depth"] == (15.0, 13.0, 16.0)
    spec = load_spec(design(depth=15, name="x"))
    assert space.complexity["flops"][0] == count(spec).flops


def test_labels_space_column_and_json_list(tmp_path: Path) -> None:
    recs = [design(depth=12 + i, error=30 - i, space="A" if i % 2 else "B") for i in range(6)]
    f = write(tmp_path / "all.json", json.dumps(recs))
    study = load_study([f])
    assert [s.label for s in study.spaces] == ["B", "A"]
    g = write(tmp_path / "g.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
    study = load_study([f, g], labels=["one", "two"])
    assert [(s.label, s.n) for s in study.spaces] == [("one", 6), ("two", 6)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no records"),
        ("name,error\n", "no records"),
        ("depth,w0,wa,wm,group_width,top1\n16,48,30,2.3,16,20\n", "no column 'error'"),
        ("depth,w0,wa,wm,group_width,error\n16,48,30,2.3,16,abc\n", "line 2: error: not a number"),
        ("depth,w0,wa,wm,group_width,error\n16,48,30,2.3,16,nan\n", "not a finite number"),
        ("depth,w0,wa,wm,group_width,error\n16,48,30,2.3,16,\n", "not a number"),
        ("depth,w0,wa,wm,group_width,error\n16,48,30,2.3,16\n", "line 2: 5 cells"),
        ("depth,w0,wa,wm,group_width,error\n16,44,30,2.3,16,1\n", "cannot count the design"),
        ("id,error\n1,20\n", "give the sample file with --samples"),
        ('{"depth": 1\n', "line 1: invalid JSON"),
        ("[1, 2]", "JSON list of objects"),
    ],
)
def test_bad_inputs(tmp_path: Path, content: str, message: str) -> None:
    f = write(tmp_path / ("r.jsonl" if content[:1] in "[{" else "r.csv"), content)
    with pytest.raises(AnalysisError, match=message):
        load_study([f])


def test_bad_joins_and_arguments(tmp_path: Path) -> None:
    s = write(tmp_path / "s.jsonl", json.dumps(design(id=1)) + "\n" + json.dumps(design(id=1)))
    r = write(tmp_path / "r.csv", "id,error\n1,20\n")
    with pytest.raises(AnalysisError, match="appears twice"):
        load_study([r], samples=[s])
    s2 = write(tmp_path / "s2.jsonl", json.dumps(design(id=5)))
    with pytest.raises(AnalysisError, match="id 1 is not in the samples"):
        load_study([r], samples=[s2])
    with pytest.raises(AnalysisError, match="no such file"):
        load_study([tmp_path / "missing.csv"])
    with pytest.raises(AnalysisError, match="2 space labels for 1"):
        load_study([r], labels=["a", "b"])
    with pytest.raises(AnalysisError, match="no results files"):
        load_study([])


# ---------------------------------------------------------------------------------------------
# CLI (tables only; the plots have their own tests)


def test_cli_analyze_text_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["analyze", str(ZOO_CSV)]) == 0
    out = capsys.readouterr().out
    assert "24 models in 2 space(s)" in out and "RegNetY" in out and "Spearman" in out
    assert main(["analyze", str(ZOO_CSV), "--json", "--resamples", "200"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["bootstrap"]["resamples"] == 200 and len(data["spaces"]) == 2
    assert data["outputs"] == []
    out_dir = tmp_path / "rep"
    assert main(["analyze", str(ZOO_CSV), "--no-plots", "-o", str(out_dir)]) == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [".regnet-space-manifest", "report.html", "results.json"]
    assert json.loads((out_dir / "results.json").read_text())["metric"] == "error"


def test_cli_analyze_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["analyze", str(ZOO_CSV), "--metric", "top5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no column 'top5'" in err and "name, spec" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert main(["analyze", str(ZOO_CSV), "--no-plots", "-o", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (
        main(["analyze", str(ZOO_CSV), "--no-plots", "-o", str(tmp_path / "full"), "--force"]) == 0
    )


def test_analysis_tools_never_import_torch() -> None:
    code = (
        "import sys\n"
        "from regnet_space.cli import main\n"
        f"assert main(['analyze', {str(ZOO_CSV)!r}, '--json', '--resamples', '10']) == 0\n"
        f"assert main(['scale', {str(ROOT / 'specs/x002.yaml')!r}, '--flops-factor', '2']) == 0\n"
        f"assert main(['fit', {str(ROOT / 'specs/x002.yaml')!r}]) == 0\n"
        "import regnet_space.analysis.plots, regnet_space.space.fitting\n"
        "import regnet_space.space.scaling\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_metric_parsing_accepts_numeric_strings() -> None:
    study = study_from_records({"S": [design(error="21.5"), design(error=20)]})
    assert study.spaces[0].metric == (21.5, 20.0)
    with pytest.raises(AnalysisError, match="not a number"):
        study_from_records({"S": [design(error=True)]})
    assert math.isnan(study.spaces[0].parameters.get("num_stages", (math.nan,))[0])


def test_explicit_stage_records_give_per_stage_parameters() -> None:
    def rec(ws: list[int], ds: list[int], g: int, err: float) -> dict:
        stages = [{"width": w, "depth": d, "group_width": g} for w, d in zip(ws, ds, strict=True)]
        return {"block": "x", "stages": stages, "error": err}

    recs = [rec([32, 64, 128], [1, 2, 3], 8, 30), rec([48, 96, 128], [1, 3, 3], 16, 29)]
    recs.append(rec([32, 96, 256], [2, 2, 3], 8, 28))
    (space,) = study_from_records({"E": recs}).spaces
    params = space.parameters
    assert params["w2"] == (64.0, 96.0, 96.0) and params["d1"] == (1.0, 1.0, 2.0)
    assert params["group_width"] == (8.0, 16.0, 8.0) and "g1" not in params  # shared: one column
    assert "bottleneck_multiplier" not in params and "bm1" not in params  # not in the records
    study = study_from_records({"E": recs})
    assert study.parameters == ("group_width", "d1", "d2", "w1", "w2", "w3")
    first = {"name": "a", "block": "x", "stages": recs[0]["stages"]}
    assert space.complexity["flops"][0] == count(load_spec(first)).flops


def test_good_range_integers_print_as_integers() -> None:
    from regnet_space import analyze, load_study
    from regnet_space.analysis.stats import range_table

    a = analyze(load_study([ROOT / "examples" / "zoo_errors.csv"]), resamples=200)
    _, rows = range_table(a)
    whole = [r for r in rows if r[1] in ("depth", "w0", "group_width")]
    assert whole
    for _, _, good, median, best, observed in whole:
        # A range is shown only where resolved; at n = 12 most are not.
        assert good == "not resolved at n = 12" or all(x.isdigit() for x in good.split(" .. "))
        assert median == "" if good.startswith("not") else median.isdigit()
        assert best.isdigit() and all(x.isdigit() for x in observed.split(" .. "))
