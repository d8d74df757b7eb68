"""analyze checks given counts against the design: flops, params and acts of a record that
carries its design must be that design's (paper convention, exact), or be left out.

Counting many records goes through the bulk path (`space.bulk.count_specs`), which must give
exactly what `complexity.count` gives one design at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from regnet_space.analysis.results import AnalysisError, load_study, study_from_records
from regnet_space.cli import main as run
from regnet_space.core.complexity import count
from regnet_space.core.spec import spec_from_dict
from regnet_space.infra.errors import RegNetSpaceError
from regnet_space.space import sampling
from regnet_space.space.bulk import count_specs

ROOT = Path(__file__).resolve().parents[2]
X002 = {"name": "x002", "block": "x", "depth": 13, "w0": 24, "wa": 36.44, "wm": 2.49}
X002 |= {"group_width": 8}


def _counts(data: dict, size: int = 224) -> dict[str, int]:
    c = count(spec_from_dict(data), size)
    return {"flops": c.flops, "params": c.params, "acts": c.acts}


def _write(tmp_path: Path, rows: list[dict], name: str = "r.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = run(["analyze", *argv, "--no-plots"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("regnet-space: "), err
    return err


# ---------------------------------------------------------------------------------------------
# The bulk counter


def test_count_specs_equals_count_on_sampled_designs() -> None:
    """Designs of the shipped spaces (regnet and anynet, several input sizes) counted both ways."""
    specs, sizes = [], []
    rng = np.random.default_rng(0)
    for space in ("regnetx", "regnety", "anynetx_a", "anynetx_e", "regnety-cifar"):
        result = sampling.sample(ROOT / "specs" / "spaces" / f"{space}.yaml", 60, seed=3)
        for record in result.records:
            specs.append(record.to_spec())
            sizes.append(int(rng.choice([32, 97, 224, 225, 320])))
    counts = count_specs(specs, sizes)
    for i, (spec, size) in enumerate(zip(specs, sizes, strict=True)):
        c = count(spec, size)
        got = (int(counts.flops[i]), int(counts.params[i]), int(counts.acts[i]))
        assert got == (c.flops, c.params, c.acts), (spec, size)


def test_count_specs_leaves_what_it_cannot_take_to_count() -> None:
    strided = spec_from_dict(
        {"name": "s", "block": "x", "stages": [
            {"width": 16, "depth": 1, "group_width": 8},
            {"width": 32, "depth": 2, "group_width": 8, "stride": 1},
        ]}
    )  # fmt: skip
    plain = spec_from_dict(X002)
    counts = count_specs([strided, plain, plain, plain], [224, 0, 224, 1 << 20])
    assert counts.flops.tolist()[0] == -1 and counts.flops.tolist()[1] == -1
    assert counts.flops.tolist()[2] == count(plain).flops and counts.flops.tolist()[3] == -1
    huge = spec_from_dict({**X002, "depth": 1000, "w0": 8192, "wa": 1000.0, "wm": 1.01})
    try:
        exact = count(huge, 65536).flops
    except RegNetSpaceError:
        exact = None
    got = int(count_specs([huge], [65536]).flops[0])
    assert got == -1 or got == exact


# ---------------------------------------------------------------------------------------------
# analyze


def test_right_counts_pass_and_missing_ones_are_counted(tmp_path: Path) -> None:
    exact = _counts(X002)
    given = _write(tmp_path, [{"error": 30.0, **X002, **exact}], "given.jsonl")
    missing = _write(tmp_path, [{"error": 30.0, **X002}], "missing.jsonl")
    for path in (given, missing):
        space = load_study([path]).spaces[0]
        assert {k: v[0] for k, v in space.complexity.items()} == exact


@pytest.mark.parametrize(
    ("key", "change"),
    [
        ("flops", lambda v: 1e300),
        ("flops", lambda v: v + 1),
        ("params", lambda v: v + 1),
        ("params", lambda v: v - 1),
        ("acts", lambda v: v * 2),
    ],
)
def test_a_count_that_differs_from_the_design_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, change: object
) -> None:
    exact = _counts(X002)
    good = {"error": 31.0, **X002, **exact}
    bad = {"error": 30.0, **X002, **exact, key: change(exact[key])}  # type: ignore[operator]
    path = _write(tmp_path, [good, {**bad, "name": "b"}])
    err = _refused(capsys, str(path))
    assert f"r.jsonl: line 2: {key} " in err and f"{exact[key]:,}" in err, err
    with pytest.raises(AnalysisError, match=f"line 2: {key} "):
        load_study([path])


def test_a_count_in_another_convention_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fvcore = count(spec_from_dict(X002), 224, "fvcore").flops
    path = _write(tmp_path, [{"error": 30.0, **X002, **_counts(X002), "flops": fvcore}])
    err = _refused(capsys, str(path))
    assert "fvcore" in err and "paper" in err
    torchvision = count(spec_from_dict(X002), 224, "torchvision").flops
    path = _write(tmp_path, [{"error": 30.0, **X002, **_counts(X002), "flops": 2 * torchvision}])
    assert "FlopCounterMode" in _refused(capsys, str(path))


def test_counts_at_the_records_input_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at_256 = _counts(X002, 256)
    path = _write(tmp_path, [{"error": 30.0, **X002, "input_size": 256, **at_256}])
    assert load_study([path]).spaces[0].complexity["flops"] == (float(at_256["flops"]),)
    path = _write(tmp_path, [{"error": 30.0, **X002, **at_256}])
    assert "input size 224" in _refused(capsys, str(path))


def test_csv_and_joined_samples_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exact = _counts(X002)
    csv = tmp_path / "r.csv"
    header = ",".join(["error", *X002, "flops", "params", "acts"])
    values = [30.0, *X002.values(), exact["flops"], exact["params"], exact["acts"] + 5]
    csv.write_text(header + "\n" + ",".join(map(str, values)) + "\n")
    assert "line 2: acts" in _refused(capsys, str(csv))
    samples = _write(tmp_path, [{"id": 0, **X002, **exact, "params": 7}], "s.jsonl")
    results = _write(tmp_path, [{"id": 0, "error": 30.0}], "ids.jsonl")
    assert "params" in _refused(capsys, str(results), "--samples", str(samples))


def test_sampled_records_pass_unchanged(tmp_path: Path) -> None:
    """What `sample` writes (counts included) is what analyze takes, for regnet and anynet."""
    rows = []
    for space in ("regnetx", "anynetx_a"):
        result = sampling.sample(ROOT / "specs" / "spaces" / f"{space}.yaml", 40, seed=1)
        rows += [{**r.to_dict(), "error": 10.0 + i, "space": space}
                 for i, r in enumerate(result.records)]  # fmt: skip
    rows = [{**r, "id": i, "name": f"{r['space']}-{i}"} for i, r in enumerate(rows)]
    study = load_study([_write(tmp_path, rows)])
    got = {s.label: s.complexity["params"] for s in study.spaces}
    for space in ("regnetx", "anynetx_a"):
        assert got[space] == tuple(float(r["params"]) for r in rows if r["space"] == space)


def test_the_python_api_checks_when_asked() -> None:
    wrong = {"error": 30.0, **X002, **_counts(X002), "flops": 1e300}
    assert study_from_records({"S": [wrong]}).spaces[0].complexity["flops"] == (1e300,)
    with pytest.raises(AnalysisError, match="flops"):
        study_from_records({"S": [wrong]}, check_counts=True)
