"""`regnet-space sample`: outputs, byte-identical reruns, atomic writes, errors, no torch."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from regnet_space.cli import main as cli_main
from regnet_space.cli import sample as cli_sample
from regnet_space.core.complexity import count
from regnet_space.core.reader import load_spec
from regnet_space.infra.errors import OutputError, RegNetSpaceError
from regnet_space.space.sampling import SampleError

ROOT = Path(__file__).resolve().parents[2]
REGNETY = str(ROOT / "specs" / "spaces" / "regnety.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="regnet-space")
    cli_sample.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(*argv: str) -> int:
    args = _parser().parse_args(["sample", *argv])
    return args.func(args)


def test_done_means(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's acceptance command: 100 designs, valid specs, right counts, same bytes."""
    out, specs = tmp_path / "s.jsonl", tmp_path / "specs"
    argv = [REGNETY, "--n", "100", "--flops", "396M:404M", "--seed", "0", "-o", str(out)]
    assert _run(*argv, "--specs-dir", str(specs)) == 0
    assert "100 designs" in capsys.readouterr().err
    lines = out.read_text().splitlines()
    assert len(lines) == 100
    files = sorted(specs.glob("*.yaml"))
    assert len(files) == 100
    for line, path in zip(lines, files, strict=True):
        rec = json.loads(line)
        assert 396_000_000 <= rec["flops"] <= 404_000_000
        spec = load_spec(path)
        assert spec.name == rec["name"] == path.stem
        c = count(spec)
        assert (c.flops, c.params, c.acts) == (rec["flops"], rec["params"], rec["acts"])
    first = out.read_bytes()
    again = tmp_path / "again.jsonl"
    assert _run(*argv[:-1], str(again)) == 0
    assert again.read_bytes() == first


def test_csv_and_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.csv"
    space = str(ROOT / "specs" / "spaces" / "regnetx.yaml")
    assert _run(space, "--n", "20", "--params", ":3M", "-o", str(out), "--json", "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    summary = json.loads(captured.out)
    assert summary["accepted"] == 20 and summary["constraints"]["params"] == ":3M"
    assert summary["constraints"]["stages"] == "4:4"
    assert 0 < summary["acceptance_rate"] <= 1
    header, *rows = out.read_text().splitlines()
    assert header.startswith("id,name,block,") and header.endswith(",flops,params,acts")
    assert len(rows) == 20


def test_existing_outputs_need_force(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    out.write_text("keep me\n")
    argv = [REGNETY, "--n", "3", "-o", str(out)]
    with pytest.raises(OutputError, match="already exists"):
        _run(*argv)
    assert out.read_text() == "keep me\n"
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "RegNetY-0001.yaml").write_text("keep\n")
    fresh = tmp_path / "fresh.jsonl"
    with pytest.raises(OutputError, match=r"RegNetY-0001\.yaml: already exists"):
        _run(REGNETY, "--n", "3", "-o", str(fresh), "--specs-dir", str(specs))
    assert not fresh.exists()  # refused before sampling, nothing written
    assert (specs / "RegNetY-0001.yaml").read_text() == "keep\n"
    assert _run(*argv, "--force", "--specs-dir", str(specs), "--quiet") == 0
    assert len(out.read_text().splitlines()) == 3
    # three specs and the manifest that lets a later --force remove what this run wrote
    assert len([p for p in specs.iterdir() if p.suffix == ".yaml"]) == 3
    assert (specs / ".regnet-space-manifest").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl", "specs"]  # no temp files


def test_unmet_constraints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.jsonl"
    argv = [REGNETY, "--n", "5", "--flops", "12M:13M", "--max-tries", "50K", "-o", str(out)]
    with pytest.raises(SampleError, match="only 0 of 5"):
        _run(*argv)
    err = capsys.readouterr().err
    assert "closest designs seen" in err and "flops" in err and "12M:13M" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_main_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "s.jsonl")
    assert cli_main(["sample", REGNETY, "--n", "2", "-o", out, "--quiet"]) == 0
    assert cli_main(["sample", REGNETY, "--n", "2", "-o", out]) == 2
    assert "regnet-space: " in capsys.readouterr().err
    failing = [REGNETY, "--n", "2", "--flops", "12M:13M", "--max-tries", "9000"]
    assert cli_main(["sample", *failing, "-o", str(tmp_path / "f.jsonl")]) == 2
    assert cli_main(["sample", str(ROOT / "specs" / "y040.yaml"), "--n", "2", "-o", out]) == 2
    assert "not a design-space file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--n", "0"],
        ["--n", "1.5"],
        ["--n", "3", "--flops", "400Q"],
        ["--n", "3", "--seed", "-1"],
        ["--n", "3", "--input-size", "0"],
        ["--n", "3", "--stages", "5:4"],
    ],
)
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["sample", REGNETY, *argv, "-o", "x.jsonl"])
    assert info.value.code == 2
    assert "sample: error: argument" in capsys.readouterr().err


def test_bad_output_suffix(tmp_path: Path) -> None:
    with pytest.raises(RegNetSpaceError, match=r"\.jsonl or \.csv"):
        _run(REGNETY, "--n", "1", "-o", str(tmp_path / "s.txt"))


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["sample", "--help"])
    text = capsys.readouterr().out
    assert "--flops 396M:404M" in text and "anynetx_a" in text


def test_sampling_never_imports_torch(tmp_path: Path) -> None:
    out = str(tmp_path / "a.csv")
    code = (
        "import sys\n"
        "from regnet_space.cli import main\n"
        f"assert main(['sample', {REGNETY!r}, '--n', '3', '-o', {out!r}, '--quiet']) == 0\n"
        "import regnet_space.space.sampling, regnet_space.space.bulk, regnet_space.space.space\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_registered_in_the_main_cli(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    assert cli_main(["sample", REGNETY, "--n", "2", "-o", str(out), "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == 2
