"""Hostile paths and names through the real command line: one line, exit 2, nothing touched.

A --specs-dir holding files this tool did not write is refused without --force; a path
component longer than the file system allows is one line for every reader and writer; a
newline in a path or a name is escaped wherever it is printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regnet_space.cli import main

ROOT = Path(__file__).resolve().parents[2]
ZOO = str(ROOT / "examples" / "zoo_errors.csv")
REGNETX = str(ROOT / "specs" / "spaces" / "regnetx.yaml")
REGNETY = str(ROOT / "specs" / "spaces" / "regnety.yaml")
SPEC = "name: mid\nblock: x\nstages:\n  - {width: 64, depth: 2, group_width: 8}\n"


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------
# sample --specs-dir among files this tool did not write


def test_specs_dir_with_foreign_files_is_refused_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "notes.txt").write_text("my notes\n")
    (specs / "sub").mkdir()
    before = _files(tmp_path)
    argv = ["sample", REGNETX, "-n", "3", "-o", str(tmp_path / "s.jsonl"), "--quiet"]
    status, _, err = _main(capsys, *argv, "--specs-dir", str(specs))
    assert status == 2 and err.count("\n") == 1, err
    assert "did not write" in err and "--force" in err and "notes.txt" in err
    assert _files(tmp_path) == before and sorted(p.name for p in specs.iterdir()) == [
        "notes.txt",
        "sub",
    ]
    # --force writes among them, and leaves them be.
    status, _, err = _main(capsys, *argv, "--specs-dir", str(specs), "--force")
    assert status == 0, err
    assert (specs / "notes.txt").read_text() == "my notes\n" and (specs / "sub").is_dir()
    assert len(list(specs.glob("*.yaml"))) == 3


def test_specs_dir_holding_our_earlier_result_is_written_into(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    first = ["sample", REGNETX, "-n", "2", "-o", str(tmp_path / "x.jsonl"), "--quiet"]
    assert _main(capsys, *first, "--specs-dir", str(specs))[0] == 0
    second = ["sample", REGNETY, "-n", "2", "-o", str(tmp_path / "y.jsonl"), "--quiet"]
    status, _, err = _main(capsys, *second, "--specs-dir", str(specs))
    assert status == 0, err
    manifest = json.loads((specs / ".regnet-space-manifest").read_text())
    assert len(manifest["files"]) == 4 == len(list(specs.glob("*.yaml")))
    # A file added by hand since is someone else's: refused again without --force.
    (specs / "mine.yaml").write_text(SPEC)
    third = [
        "sample",
        str(ROOT / "specs" / "spaces" / "anynetx_e.yaml"),
        "-n",
        "3",
        "-o",
        str(tmp_path / "z.jsonl"),
        "--quiet",
    ]
    status, _, err = _main(capsys, *third, "--specs-dir", str(specs))
    assert status == 2 and "mine.yaml" in err and err.count("\n") == 1, err


# ---------------------------------------------------------------------------------------------
# A path component longer than the file system allows (ENAMETOOLONG)

LONG = "a" * 300
DIGITS = str(ROOT / "recipes" / "digits.yaml")
ENAMETOOLONG_CASES = {
    # outputs
    "scale -o": ["scale", "y002", "--flops-factor", "2", "-o", f"{LONG}.yaml"],
    "fit -o": ["fit", "--widths", "24,56", "-o", f"{LONG}.yaml"],
    "fit -o in a long folder": ["fit", "--widths", "24,56", "-o", f"{LONG}/x.yaml"],
    "sample -o": ["sample", REGNETX, "-n", "2", "-o", f"{LONG}.jsonl"],
    "sample --specs-dir": ["sample", REGNETX, "-n", "2", "-o", "s.jsonl", "--specs-dir", LONG],
    "analyze -o": ["analyze", ZOO, "-o", LONG],
    "build --save": ["build", "mid.yaml", "--save", f"{LONG}.pt"],
    "convert -o": ["convert", "w.pth", "--from", "timm", "--spec", "mid.yaml", "-o", f"{LONG}.pt"],
    "export -o": ["export", "mid.yaml", "-o", f"{LONG}.onnx"],
    "study export -o": ["study", "export", "s.db", "-o", f"{LONG}.jsonl"],
    "train -o": ["train", "mid.yaml", "--recipe", DIGITS, "-o", LONG],
    # inputs
    "report": ["report", f"{LONG}.yaml"],
    "report in a long folder": ["report", f"{LONG}/x.yaml"],
    "build": ["build", f"{LONG}.yaml"],
    "scale": ["scale", f"{LONG}.yaml", "--flops-factor", "2"],
    "fit": ["fit", f"{LONG}.yaml"],
    "sample": ["sample", f"{LONG}.yaml", "-n", "2", "-o", "s.jsonl"],
    "analyze": ["analyze", f"{LONG}.csv"],
    "convert CHECKPOINT": [
        "convert",
        f"{LONG}.pth",
        "--from",
        "timm",
        "--spec",
        "mid.yaml",
        "-o",
        "w.pt",
    ],
    "convert --spec": [
        "convert",
        "w.pth",
        "--from",
        "timm",
        "--spec",
        f"{LONG}.yaml",
        "-o",
        "w.pt",
    ],
    "export --weights": ["export", "mid.yaml", "--weights", f"{LONG}.pt", "-o", "m.onnx"],
    "study status": ["study", "status", f"{LONG}.db"],
    "study export": ["study", "export", f"{LONG}.db", "-o", "x.jsonl"],
    "study run": ["study", "run", f"{LONG}.yaml"],
    "study run --db": ["study", "run", "study.yaml", "--db", f"{LONG}.db"],
    "train": ["train", f"{LONG}.yaml", "--recipe", DIGITS, "-o", "run"],
    "train --recipe": ["train", "mid.yaml", "--recipe", f"{LONG}.yaml", "-o", "run"],
    "train --data-root": [
        *("train", "mid.yaml", "--recipe", DIGITS, "--data", "cifar10", "--data-root", LONG),
        *("-o", "run"),
    ],
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a spec, a study file and its (real, untrained) database."""
    from study_helpers import write_study

    from regnet_space.study.database import StudyDatabase
    from regnet_space.study.studyfile import resolve

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mid.yaml").write_text(SPEC)
    study = write_study(tmp_path / "study.yaml")
    StudyDatabase.open(tmp_path / "s.db", resolve(study)).close()
    return tmp_path


@pytest.mark.parametrize("case", ENAMETOOLONG_CASES)
def test_a_too_long_name_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    before = _files(workdir)
    status, _, err = _main(capsys, *ENAMETOOLONG_CASES[case])
    assert status == 2 and err.count("\n") == 1, err
    assert "too long" in err and err.startswith("regnet-space: "), err
    assert _files(workdir) == before


# ---------------------------------------------------------------------------------------------
# Newlines in paths and names: escaped wherever they are printed

FORGED = "\nregnet-space: forged"
NAMED = (
    'name: "a\\nregnet-space: forged"\nblock: x\nstages:\n'
    "  - {width: 64, depth: 2, group_width: 8}\n  - {width: 128, depth: 2, group_width: 8}\n"
)
NEWLINE_CASES = {
    "report (name)": ["report", "named.yaml"],
    "report (bad file)": ["report", "named.yaml", f"bad{FORGED}.yaml"],
    "build (name)": ["build", "named.yaml", "--input-size", "32"],
    "build --save": ["build", "mid.yaml", "--input-size", "32", "--save", f"w{FORGED}.pt"],
    "scale (name, -o)": ["scale", "named.yaml", "--flops-factor", "2", "-o", f"s{FORGED}.yaml"],
    "fit (name)": ["fit", "named.yaml", "-o", "f.yaml"],
    "fit -o": ["fit", "--widths", "24,56", "-o", f"f{FORGED}.yaml"],
    "sample -o --specs-dir": [
        *("sample", REGNETX, "-n", "2", "-o", f"s{FORGED}.jsonl"),
        *("--specs-dir", f"d{FORGED}"),
    ],
    "analyze -o": ["analyze", ZOO, "-o", f"r{FORGED}"],
    "convert": [
        *("convert", "w.pt", "--from", "hf", "--to", "timm", "--spec", "named.yaml"),
        *("-o", f"c{FORGED}.pt"),
    ],
    "export": ["export", "named.yaml", "--no-check", "-o", f"e{FORGED}.onnx"],
    "study status": ["study", "status", f"s{FORGED}.db"],
    "study export": ["study", "export", f"s{FORGED}.db", "-o", f"x{FORGED}.jsonl"],
}


@pytest.mark.parametrize("case", NEWLINE_CASES)
def test_newlines_in_paths_and_names_are_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mid.yaml").write_text(SPEC)
    (tmp_path / "named.yaml").write_text(NAMED)
    (tmp_path / f"bad{FORGED}.yaml").write_text("name: [\n")
    if case == "convert":
        assert main(["build", "named.yaml", "--input-size", "32", "--save", "w.pt"]) == 0
        capsys.readouterr()
    if case.startswith("study"):
        from study_helpers import write_study

        from regnet_space.study.database import StudyDatabase
        from regnet_space.study.studyfile import resolve

        study = resolve(write_study(tmp_path / "study.yaml"))
        StudyDatabase.open(tmp_path / f"s{FORGED}.db", study).close()
    status, out, err = _main(capsys, *NEWLINE_CASES[case])
    assert status == (2 if "bad file" in case else 0), err
    assert FORGED not in out and FORGED not in err, out + err
    assert "\\x0aregnet-space: forged" in out + err  # shown, escaped as \\x0a
