"""Pictures and the HTML report; a synthetic study end to end; running without matplotlib."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from regnet_space.analysis.plots import (
    PlotDependencyError,
    draw_all,
    require_matplotlib,
    write_report,
)
from regnet_space.analysis.results import load_study
from regnet_space.analysis.stats import analyze
from regnet_space.cli import main

ROOT = Path(__file__).resolve().parents[2]
ZOO_CSV = ROOT / "examples" / "zoo_errors.csv"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.links: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src") or "")
        # Inline scripts (the trial table's sorting) are self-contained; a src would fetch.
        if tag == "link" or "href" in a or (tag == "script" and "src" in a):
            self.links.append(tag)
        self.tables += tag == "table"


def test_zoo_pictures() -> None:
    pytest.importorskip("matplotlib")
    study = load_study([ZOO_CSV])
    images = draw_all(study, analyze(study, resamples=300))
    assert list(images) == [
        "edf.png",
        "complexity.png",
        "parameters-1-RegNetX.png",
        "parameters-2-RegNetY.png",
    ]
    for data in images.values():
        w, h = png_size(data)
        assert 800 <= w <= 1600 and 300 <= h <= 1200


def test_report_is_self_contained(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    study = load_study([ZOO_CSV])
    a = analyze(study, resamples=300)
    written = write_report(study, a, tmp_path / "out", json_text="{}")
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            *("edf.png", "complexity.png", "parameters-1-RegNetX.png"),
            *("parameters-2-RegNetY.png", "results.json", "report.html"),
        ]
    )
    text = (tmp_path / "out" / "report.html").read_text()
    parser = _Collect()
    parser.feed(text)
    # EDF summary, pair tests, pair differences, good ranges, inputs, correlations, models
    assert parser.links == [] and parser.tables == 7
    assert len(parser.srcs) == 4 and all(
        s.startswith("data:image/png;base64,") for s in parser.srcs
    )
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in parser.srcs}
    on_disk = {p.read_bytes() for p in written if p.suffix == ".png"}
    assert embedded == on_disk
    assert "RegNetY" in text and "19.1" in text


def test_output_folder_rules(tmp_path: Path) -> None:
    from regnet_space.infra.errors import OutputError

    study = load_study([ZOO_CSV])
    a = analyze(study, resamples=50)
    out = tmp_path / "r"
    write_report(study, a, out, plots=False)
    assert sorted(p.name for p in out.iterdir()) == [".regnet-space-manifest", "report.html"]
    with pytest.raises(OutputError, match="not empty"):
        write_report(study, a, out, plots=False)
    (out / "report.html").write_text("old")
    (out / "mine.txt").write_text("kept")
    write_report(study, a, out, plots=False, force=True)
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "mine.txt").read_text() == "kept"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        write_report(study, a, tmp_path / "file", plots=False)
    with pytest.raises(OutputError, match="no such directory"):
        write_report(study, a, tmp_path / "missing" / "r", plots=False)


def test_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotDependencyError, match=re.escape("pip install 'regnet-space[plot]'")):
        require_matplotlib()
    assert main(["analyze", str(ZOO_CSV), "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "regnet-space[plot]" in err and "--no-plots" in err
    assert not (tmp_path / "a").exists()
    assert main(["analyze", str(ZOO_CSV), "--no-plots", "-o", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "report.html").exists()


def test_synthetic_study_shows_the_planted_dependence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Sample two spaces, make up an error that is best at wm = 2.2 and 1 point lower for Y,
    # then analyze: the EDFs, the good range of wm and the correlations must show it.
    pytest.importorskip("matplotlib")
    sampling = pytest.importorskip("regnet_space.space.sampling")
    output = pytest.importorskip("regnet_space.space.output")
    rng = np.random.default_rng(0)
    files, options = [], []
    for name, offset in (("regnetx", 0.0), ("regnety", -1.0)):
        result = sampling.sample(ROOT / f"specs/spaces/{name}.yaml", 150, seed=1, flops="380M:420M")
        samples = tmp_path / f"{name}.jsonl"
        samples.write_text(output.records_to_jsonl(result.records))
        lines = ["id,error"]
        for r in result.records:
            err = 27 + 8 * abs(math.log(r.spec["wm"] / 2.2)) + offset + rng.normal(0, 0.3)
            lines.append(f"{r.id},{err:.4f}")
        results = tmp_path / f"{name}_results.csv"
        results.write_text("\n".join(lines) + "\n")
        files.append(str(results))
        options += ["--samples", str(samples), "--space-label", name]
    out = tmp_path / "report"
    assert main(["analyze", *files, *options, "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    x, y = data["spaces"]
    assert (x["label"], y["label"]) == ("regnetx", "regnety")
    assert y["median"] < x["median"] - 0.7 and y["normalized_median"] < x["normalized_median"]
    for g in data["good_ranges"]:
        if g["parameter"] == "wm":
            assert g["low"] < 2.2 < g["high"] and abs(g["median"] - 2.2) < 0.12
    rho = {(c["space"], c["variable"]): c["rho"] for c in data["correlations"]}
    assert rho["regnetx", "wm"] > 0.5 and rho["regnety", "wm"] > 0.5  # wm mostly above 2.2
    assert abs(rho["regnetx", "group_width"]) < 0.3  # not planted
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "wm" in html
