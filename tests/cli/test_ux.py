"""A new user's first hour (issue 11): specs keep their input size, one grammar across commands.

Every test runs the real command line (in-process, or as a subprocess where stdin or the
process matters) on real files.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from regnet_space import count, load_spec, plan
from regnet_space.cli import main, make_parser
from regnet_space.core.spec import dump_spec, spec_json_schema

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
Y040 = str(SPECS / "y040.yaml")
TINY = "name: tiny\nblock: x\ndepth: 3\nw0: 16\nwa: 8.0\nwm: 2.0\ngroup_width: 8\nnum_classes: 10\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse usage errors, --help, --version
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def cli(*argv: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m regnet_space` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "regnet_space", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def spec_file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# 1. A spec carries its input size


def test_spec_input_size_is_used_by_plan_count_and_dump() -> None:
    at160 = load_spec(TINY + "input_size: 160\n")
    at224 = load_spec(TINY)
    assert plan(at160).input_size == 160 and plan(at224).input_size == 224
    assert count(at160).flops == count(at224, 160).flops != count(at224).flops
    assert plan(at160, 224).input_size == 224  # an explicit size still wins
    assert "input_size: 160" in dump_spec(at160) and load_spec(dump_spec(at160)) == at160
    # Specs at the default read and write as they always did (no new line in old files).
    assert "input_size" not in dump_spec(load_spec(Y040))


def test_report_and_build_use_the_spec_input_size_unless_overridden(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = spec_file(tmp_path, "s160.yaml", TINY + "input_size: 160\n")
    status, out, err = run(capsys, "report", str(spec), "--json")
    assert status == 0, err
    (row,) = json.loads(out)
    assert row["input_size"] == 160 and row["flops"] == count(load_spec(TINY), 160).flops
    status, out, _ = run(capsys, "report", str(spec), "--json", "--input-size", "224")
    assert json.loads(out)[0]["input_size"] == 224
    status, out, err = run(capsys, "build", str(spec), "--json")
    assert status == 0, err
    data = json.loads(out)
    assert data["input_size"] == 160 and data["output_shape"][2:] == [20, 20]  # 224: 28 x 28
    assert data["output_shape"] == list(plan(load_spec(TINY), 160).output_shape)


def test_scaling_a_scaled_spec_back_returns_to_y040(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    up, down = tmp_path / "up.yaml", tmp_path / "down.yaml"
    assert run(capsys, "scale", Y040, "--flops-factor", "4", "-o", str(up))[0] == 0
    assert load_spec(up).input_size == 240  # a field, not a comment
    assert run(capsys, "scale", str(up), "--flops-factor", "0.25", "-o", str(down))[0] == 0
    back, y040 = plan(load_spec(down)), plan(load_spec(Y040))
    assert (back.widths, back.depths, back.group_widths) == (
        y040.widths,
        y040.depths,
        y040.group_widths,
    )
    assert back.input_size == 224 and count(back) == count(y040)


def test_sample_specs_dir_writes_the_input_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, folder = tmp_path / "s.jsonl", tmp_path / "specs"
    argv = ["sample", "regnety", "-n", "3", "--input-size", "160", "-o", str(out)]
    status, _, err = run(capsys, *argv, "--specs-dir", str(folder), "--quiet")
    assert status == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    files = sorted(f for f in folder.iterdir() if not f.name.startswith("."))  # not the manifest
    assert len(files) == 3
    for path, record in zip(files, records, strict=True):
        spec = load_spec(path)
        assert spec.input_size == 160 and count(spec).flops == record["flops"]


def test_a_space_has_one_input_size() -> None:
    from regnet_space import SpaceError, load_space

    text = (
        (SPECS / "spaces" / "regnetx.yaml")
        .read_text()
        .replace("spec:\n", "spec:\n  input_size: 160\n")
    )
    assert "input_size: 160" in text
    with pytest.raises(SpaceError, match=r"spec\.input_size: give the space's input_size"):
        load_space(text)


def test_fit_keeps_the_input_size(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = spec_file(tmp_path, "s.yaml", TINY + "input_size: 96\n")
    status, out, err = run(capsys, "fit", str(src))
    assert status == 0, err
    assert load_spec(out).input_size == 96


# ---------------------------------------------------------------------------------------------
# 2. scale says when it misses


def test_scale_miss_is_reported_and_fails_unless_allowed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    x002, out = str(SPECS / "x002.yaml"), tmp_path / "small.yaml"
    status, stdout, err = run(capsys, "scale", x002, "--flops-factor", "0.01", "-o", str(out))
    assert status == 1 and not out.exists()
    assert "missed the flop factor" in err and "tolerance 10 %" in err and "stages: 4 -> 3" in err
    status, stdout, err = run(capsys, "scale", x002, "--flops-factor", "0.01", "--json")
    data = json.loads(stdout)
    assert status == 1 and data["on_target"] is False and data["miss_percent"] > 100
    assert data["tolerance_percent"] == 10 and "missed the flop factor" in err
    argv = ["scale", x002, "--flops-factor", "0.01", "-o", str(out), "--allow-miss"]
    status, _, err = run(capsys, *argv)
    assert status == 0 and out.exists() and "missed the flop factor" in err
    status, _, err = run(capsys, "scale", x002, "--flops-factor", "0.01", "--tolerance", "600")
    assert status == 0 and "missed" not in err


def test_scale_over_the_build_limit_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "scale", str(SPECS / "x002.yaml"), "--flops-factor", "1000")
    assert status == 0 and "over the build limit" in err and "--allow-large" in err
    assert load_spec(out).input_size == 316


# ---------------------------------------------------------------------------------------------
# 4. Standard streams


def test_dash_output_writes_the_data_to_stdout_and_the_summary_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "scale", Y040, "--flops-factor", "2", "-o", "-")
    assert status == 0 and load_spec(out).name == "RegNetY-4.0GF x2"
    assert "flop factor: asked x2" in err and "flop factor" not in out
    status, out, err = run(capsys, "sample", "regnety", "-n", "3", "-o", "-")
    assert status == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [0, 1, 2]
    assert "3 designs" in err
    status, out, _ = run(capsys, "sample", "regnety", "-n", "3", "-o", "-", "--format", "csv")
    assert status == 0 and out.startswith("id,name,") and len(out.splitlines()) == 4
    status, out, err = run(capsys, "fit", Y040, "-o", "-")
    assert status == 0 and load_spec(out).depth == 22 and "e_fit" in err


def test_fit_without_output_prints_the_fitted_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "fit", "--widths", "24,56,152x4,368x7")
    assert status == 0 and load_spec(out).name == "fitted" and "e_fit" in err


def test_a_spec_argument_dash_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for command in (["report", "-", "--json"], ["build", "-", "--json"]):
        monkeypatch.setattr(sys, "stdin", io.StringIO(TINY))
        status, out, err = run(capsys, *command)
        assert status == 0, err
        data = json.loads(out)
        assert (data[0] if isinstance(data, list) else data)["name"] == "tiny"
    # A real pipe, as a shell gives it.
    done = cli("scale", "-", "--flops-factor", "2", stdin=Path(Y040).read_text())
    assert done.returncode == 0 and load_spec(done.stdout).name == "RegNetY-4.0GF x2"


# ---------------------------------------------------------------------------------------------
# 5. One grammar


def _actions(parser: argparse.ArgumentParser, path: str = "regnet-space"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_argument_of_every_command_has_help() -> None:
    seen = 0
    for path, action in _actions(make_parser()):
        seen += 1
        assert action.help and action.help != argparse.SUPPRESS, (path, action.dest)
    assert seen > 60


def test_one_machine_output_flag_on_every_command() -> None:
    commands = set(make_parser()._subparsers._group_actions[0].choices)
    with_json = {
        path.split()[1] for path, a in _actions(make_parser()) if "--json" in a.option_strings
    }
    # convert and export write binary files; schema prints JSON already.
    assert commands - with_json == {"convert", "export", "schema"}


def test_version_and_python_dash_m(capsys: pytest.CaptureFixture[str]) -> None:
    import regnet_space

    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.strip() == f"regnet-space {regnet_space.__version__}"
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == out.strip()


def test_short_n_beside_long_n(capsys: pytest.CaptureFixture[str]) -> None:
    short = run(capsys, "sample", "regnetx", "-n", "2", "-o", "-", "--quiet")
    long = run(capsys, "sample", "regnetx", "--n", "2", "-o", "-", "--quiet")
    assert short[0] == 0 and short == long


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "regnety", "-n", "0", "-o", "-"],
        ["sample", "regnety", "-n", "2", "--max-tries", "0", "-o", "-"],
        ["sample", "regnety", "-n", "2", "--seed", "-1", "-o", "-"],
        ["analyze", "x.csv", "--resamples", "0"],
        ["analyze", "x.csv", "--bins", "0"],
        ["fit", "--widths", "8", "--q", "0"],
        ["report", "y040", "--input-size", "0"],
    ],
)
def test_every_out_of_range_count_says_the_same(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "expected an integer from" in err


def test_export_takes_its_format_from_the_suffix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for out, message in (("m.txt", "writes .onnx or .pt2"), ("m.onnx", "--format pt2 writes")):
        extra = ["--format", "pt2"] if out == "m.onnx" else []
        status, _, err = run(capsys, "export", Y040, "-o", str(tmp_path / out), *extra)
        assert status == 2 and message in err and err.count("\n") == 1
    spec = spec_file(tmp_path, "tiny.yaml", TINY + "input_size: 32\n")
    target = tmp_path / "tiny.pt2"
    status, out, err = run(capsys, "export", str(spec), "-o", str(target))
    assert status == 0, err
    assert "(pt2, random weights)" in out and "OK" in out and target.stat().st_size > 0


def test_force_only_overwrites_and_allow_large_lifts_the_guard(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In a process capped at 8 GB of address space: should the guard ever give way to
    # --force again, the 37 GB build fails there instead of taking the machine's memory.
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "regnet_space", "build", str(SPECS / "y10b.yaml"), "--force"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=cap,
    )
    # Refused by a size guard (the forward-memory estimate or the parameter limit), never by
    # --force, which only overwrites.
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "exceed the build limit" in done.stderr or "forward pass" in done.stderr
    assert "--allow-large" in done.stderr
    for command in ("build", "export"):
        options = {
            o
            for a in make_parser()._subparsers._group_actions[0].choices[command]._actions
            for o in a.option_strings
        }
        assert {"--force", "--allow-large"} <= options


def test_descriptions_wrap_to_the_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    for command in ("sample", "scale", "analyze", "fit", "export", "list"):
        status, out, _ = run(capsys, command, "--help")
        assert status == 0
        prose = [
            line
            for line in out.splitlines()
            if not line.startswith(" ") and "regnet-space" not in line
        ]
        assert prose and max(map(len, prose)) <= 60, command


# ---------------------------------------------------------------------------------------------
# 6. report DIR


def test_report_dir_reports_good_files_then_bad_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec_file(tmp_path, "a.yaml", TINY)
    spec_file(tmp_path, "b.yaml", TINY.replace("depth: 3", "depth: 0"))
    spec_file(tmp_path, "c.yaml", (SPECS / "spaces" / "regnetx.yaml").read_text())
    (tmp_path / "sub").mkdir()
    spec_file(tmp_path / "sub", "d.yaml", TINY.replace("tiny", "deep"))
    status, out, err = run(capsys, "report", str(tmp_path))
    assert status == 2
    assert "a.yaml" in out and "b.yaml" not in out and "d.yaml" not in out
    lines = err.splitlines()
    assert any("skipped" in line and "c.yaml" in line for line in lines)
    assert any(str(tmp_path / "b.yaml") + ": depth" in line for line in lines)
    assert len(lines) == 2
    status, out, err = run(capsys, "report", str(tmp_path), "--recursive", "--json")
    assert status == 2 and [r["name"] for r in json.loads(out)] == ["tiny", "deep"]


def test_report_of_only_bad_files_names_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = run(capsys, "report", str(tmp_path / "none.yaml"), "/dev/null")
    assert status == 2 and out == ""
    assert "none.yaml: no such file" in err and "/dev/null:" in err and err.count("\n") == 2


# ---------------------------------------------------------------------------------------------
# 7. --save


@pytest.mark.parametrize("name", ["newdir/", "q.txt", "weights", "."])
def test_save_refuses_folders_and_unknown_suffixes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    spec = spec_file(tmp_path, "tiny.yaml", TINY)
    target = str(tmp_path / name) if name != "." else str(tmp_path)
    before = sorted(tmp_path.iterdir())
    status, out, err = run(capsys, "build", str(spec), "--save", target)
    assert status == 2 and out == "" and err.count("\n") == 1 and "--save" in err
    assert sorted(tmp_path.iterdir()) == before


def test_save_safetensors_without_the_package_names_the_extra(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_file(tmp_path, "tiny.yaml", TINY)
    # An interpreter without safetensors: the import fails as it would there.
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    status, out, err = run(capsys, "build", str(spec), "--save", str(tmp_path / "w.safetensors"))
    assert status == 2 and out == "" and "pip install 'regnet-space[safetensors]'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


# ---------------------------------------------------------------------------------------------
# 9. Smaller things


def test_tiny_models_show_fitting_units(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from regnet_space.cli.render import human_count

    assert human_count(3_973_000_000, "F") == "4.0 GF"
    assert human_count(12_500_000, "F") == "12.5 MF"
    assert human_count(960_000, " params") == "960.0 K params"
    assert human_count(512, " params") == "512 params"
    status, out, _ = run(capsys, "build", str(spec_file(tmp_path, "t.yaml", TINY)))
    total = next(line for line in out.splitlines() if line.startswith("total:"))
    assert status == 0 and "MF" in total and "K params" in total and "0.0" not in total


def test_build_json_carries_the_design_and_the_stage_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, "build", Y040, "--json")
    data = json.loads(out)
    assert status == 0 and data["design"] == load_spec(Y040).model_dump(mode="json")
    parts = [row["part"] for row in data["stages"]]
    assert parts == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert sum(row["flops"] for row in data["stages"]) == data["flops"]
    assert [r["width"] for r in data["stages"][1:5]] == data["widths"]
    assert data["stages"][1]["se_width_first"] == 8 and data["stages"][1]["se_width"] == 32


def test_schema_se_ratio_default_is_not_a_lie() -> None:
    definitions = spec_json_schema()["$defs"]
    for model in ("ParametricSpec", "ExplicitSpec"):
        field = definitions[model]["properties"]["se_ratio"]
        assert "default" not in field and "0.25 for y, 0 for x" in field["description"]
        assert definitions[model]["properties"]["input_size"]["default"] == 224


def test_mixed_form_spec_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = "name: m\nblock: x\nw0: 24\nstages:\n  - {width: 48, depth: 1, group_width: 16}\n"
    status, _, err = run(capsys, "report", str(spec_file(tmp_path, "m.yaml", text)))
    assert status == 2 and "parametric or explicit (stages:), not both" in err


def test_analyze_on_a_spec_file_says_it_expects_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "analyze", Y040)
    assert status == 2 and out == "" and "expects results" in err and err.count("\n") == 1


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


def test_sample_result_has_len_iteration_and_a_short_repr() -> None:
    import regnet_space as rs

    result = rs.sample(rs.load_space(SPECS / "spaces" / "regnetx.yaml"), 5, seed=1)
    assert len(result) == 5 and list(result) == list(result.records)
    assert len(repr(result)) < 200 and "5/5 designs" in repr(result)


def test_analyze_force_no_plots_removes_its_old_pictures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    zoo = str(ROOT / "examples" / "zoo_errors.csv")
    argv = ["analyze", zoo, "-o", str(out), "--resamples", "50"]
    status, _, err = run(capsys, *argv)
    assert status == 0, err
    assert {"edf.png", "complexity.png"} <= {p.name for p in out.iterdir()}
    (out / "mine.png").write_bytes(b"the user's own file")
    status, _, err = run(capsys, *argv, "--no-plots", "--force")
    assert status == 0, err
    shown = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert shown == ["mine.png", "report.html", "results.json"]
