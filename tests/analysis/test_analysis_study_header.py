"""`analyze` of a real study database: the report states the space, recipe, data, n and
filters the database records; --filter on a searched recipe field; the full trial table."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from study_helpers import write_study

from regnet_space.cli import main
from regnet_space.study.studyfile import resolve


@pytest.fixture(scope="module")
def searched_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-trial, 1-epoch digits study that searches base_lr, run once for real."""
    folder = tmp_path_factory.mktemp("searched")
    study = write_study(folder / "tiny.yaml", search={"base_lr": {"values": [0.2, 0.4]}})
    db = folder / "tiny.db"
    assert main(["study", "run", str(study), "--db", str(db), "--quiet"]) == 0
    return db


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str | None] = []
        self.headers: list[list[str]] = []
        self._th: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.ids.append(dict(attrs).get("id"))
            self.headers.append([])
        elif tag == "th":
            self._th = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self._th is not None:
            self.headers[-1].append("".join(self._th))
            self._th = None

    def handle_data(self, data: str) -> None:
        if self._th is not None:
            self._th.append(data)


def test_the_report_states_what_the_database_records(
    searched_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("scipy")
    study = resolve(searched_run.parent / "tiny.yaml")
    draws = [t.recipe_fields["base_lr"] for t in study.trials]
    assert 0.2 in draws and 0.4 in draws  # this seed draws both values
    out = tmp_path / "report"
    argv = ["analyze", str(searched_run), "--no-plots", "-o", str(out), "--resamples", "30"]
    assert main([*argv, "--json", "--filter", "base_lr<0.3"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["spaces"][0]["n"] == draws.count(0.2)
    assert data["filters"] == ["base_lr<0.3"]
    assert captured.err.count("\n") == 1 and "warning: n < 100" in captured.err
    (source,) = data["inputs"]
    assert source["kind"] == "study database" and source["records"] == 4
    facts = source["facts"]
    assert facts["space"] == "tiny (regnet)" and facts["data"] == "digits"
    assert facts["recipe"] == "tiny: epochs 1, batch 64, base_lr searched, weight decay 0.0005"
    assert facts["search"] == "base_lr in 0.2, 0.4" and facts["trials"] == "4 done"
    html = (out / "report.html").read_text()
    for text in ("What was analyzed", "tiny (regnet)", "base_lr searched", "digits"):
        assert text in html
    assert f"Filters: base_lr&lt;0.3 ({draws.count(0.2)} of 4 records kept)" in html
    tables = _Tables()
    tables.feed(html)
    trial_headers = tables.headers[tables.ids.index("trials")]
    assert trial_headers[:6] == ["space", "model", "error (%)", "flops", "params", "acts"]
    assert "recipe.base_lr" in trial_headers and "depth" in trial_headers


def test_a_results_file_says_not_recorded(
    searched_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("scipy")
    exported = tmp_path / "r.jsonl"
    assert main(["study", "export", str(searched_run), "-o", str(exported)]) == 0
    capsys.readouterr()
    assert main(["analyze", str(exported), "--json", "--resamples", "20"]) == 0
    (source,) = json.loads(capsys.readouterr().out)["inputs"]
    assert source["kind"] == "results file"
    assert source["facts"] == {
        "space": "not recorded",
        "recipe": "epochs 1 (from the records); the rest not recorded",
        "data": "not recorded",
    }
