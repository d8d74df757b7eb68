"""The shipped design-space progression (examples/progression/*.yaml), small: n = 4 per
step and one epoch, end to end through one `study run` of the six files and `analyze
--pairs adjacent` (each step against the one before it)."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import yaml
from study_helpers import ROOT, run_cli

from regnet_space.analysis.studydb import read_study_db

PROGRESSION = ROOT / "examples" / "progression"
STEPS = ["anynetx-cifar-a", "anynetx-cifar-b", "anynetx-cifar-c", "anynetx-cifar-d",
         "anynetx-cifar-e", "regnetx-cifar"]  # fmt: skip


def test_the_shipped_files_are_one_progression() -> None:
    """Six steps, as shipped: the same recipe, data, seed, flops band and n = 32."""
    files = sorted(PROGRESSION.glob("*.yaml"))
    assert [f.stem for f in files] == STEPS  # the shell's glob order is the progression's
    studies = [yaml.safe_load(f.read_text()) for f in files]
    for f, s in zip(files, studies, strict=True):
        assert (f.parent / s["space"]).resolve() == ROOT / "specs" / "spaces" / f"{f.stem}.yaml"
        assert (f.parent / s["recipe"]).resolve() == ROOT / "recipes" / "digits-8px.yaml"
        rest = {k: v for k, v in s.items() if k not in ("name", "space")}
        assert rest == {k: v for k, v in studies[0].items() if k not in ("name", "space")}
    assert studies[0]["n"] == 32 and studies[0]["constraints"] == {"flops": "1M:3M"}


def test_the_progression_end_to_end_small(tmp_path: Path) -> None:
    recipe = yaml.safe_load((ROOT / "recipes" / "digits-8px.yaml").read_text())
    for stem in STEPS:
        study = yaml.safe_load((PROGRESSION / f"{stem}.yaml").read_text())
        study["space"] = str((PROGRESSION / study["space"]).resolve())
        study["recipe"] = {**recipe, "epochs": 1}
        study["n"] = 4
        (tmp_path / f"{stem}.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    proc = run_cli("study", "run", *(f"{s}.yaml" for s in STEPS), "--json", cwd=tmp_path,
                   timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summaries = json.loads(proc.stdout)
    assert [s["db"] for s in summaries] == [f"{s}.db" for s in STEPS]
    assert all(s["done"] == 4 for s in summaries)
    labels = [read_study_db(tmp_path / f"{s}.db").name for s in STEPS]
    assert labels == ["AnyNetX-CIFAR-A", "AnyNetX-CIFAR-B", "AnyNetX-CIFAR-C",
                      "AnyNetX-CIFAR-D", "AnyNetX-CIFAR-E", "RegNetX-CIFAR"]  # fmt: skip
    out = run_cli("analyze", *(f"{s}.db" for s in STEPS), "--pairs", "adjacent", "--json",
                  "-o", "report", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    steps = [(c["a"], c["b"]) for c in data["comparisons"]]
    assert steps == list(pairwise(labels))  # five steps
    for c in data["comparisons"]:
        assert c["n_a"] == c["n_b"] == 4 and 0 <= c["p_value"] <= 1
        low, high = c["median_difference_ci"]
        assert low <= c["median_difference"] <= high
    assert [s["n"] for s in data["spaces"]] == [4] * 6
    assert "n < 100" in out.stderr  # small n is said
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Each space against the one before it" in html
