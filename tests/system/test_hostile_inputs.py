"""Hostile specs, spaces, configs, checkpoints and results: refused in one line, never wrong.

One test (or a few) per finding of the fault-injection pass; each failed before the fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from regnet_space.analysis.results import MAX_RESULTS_ROWS, load_study
from regnet_space.cli import main
from regnet_space.core.reader import load_spec
from regnet_space.infra.errors import RegNetSpaceError
from regnet_space.infra.text import clean, csv_cell
from regnet_space.nn.model import build_model

ROOT = Path(__file__).resolve().parents[2]
ZOO = str(ROOT / "examples" / "zoo_errors.csv")
REGNETX = str(ROOT / "specs" / "spaces" / "regnetx.yaml")
TINY = "name: tiny\nblock: x\nstages:\n  - {width: 16, depth: 1, group_width: 8}\n"
DESIGN = {"depth": 12, "w0": 24, "wa": 36.4, "wm": 2.5, "group_width": 8}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status, _, err = _run(capsys, *argv)
    _check_refusal(status, err)
    return err


def _check_refusal(status: int, err: str) -> None:
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("regnet-space: ") and "Traceback" not in err


HANG = 300  # seconds: a hang guard for refusals that take well under one (never a timing)


def _refused_in_subprocess(*argv: str) -> str:
    """The refusal of `python -m regnet_space ARGV` in a child that is killed if it hangs."""
    proc = subprocess.run(
        [sys.executable, "-m", "regnet_space", *argv],
        capture_output=True,
        text=True,
        timeout=HANG,  # TimeoutExpired fails the test: expanding a bomb would run for hours
        cwd=ROOT,
    )
    _check_refusal(proc.returncode, proc.stderr)
    return proc.stderr


# ---------------------------------------------------------------------------------------------
# 2. build --save: validated before the first byte, and read back


def test_build_save_of_a_stride_1_first_stage_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s1.yaml"
    spec.write_text(
        "name: s1\nblock: x\nstages:\n  - {width: 16, depth: 1, group_width: 8, stride: 1}\n"
        "  - {width: 32, depth: 1, group_width: 8}\n"
    )
    status, _, err = _run(
        capsys, "build", str(spec), "--input-size", "32", "--save", str(tmp_path / "w.pt")
    )
    assert status == 0, err
    resolved = load_spec(tmp_path / "w.resolved.yaml")
    assert resolved.strides() == (1, 2)
    assert main(["build", str(tmp_path / "w.resolved.yaml"), "--input-size", "32"]) == 0


def test_build_save_refuses_an_unresolvable_design_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "long.yaml"  # every block its own width: 70 stages once resolved
    spec.write_text("name: long\nblock: x\ndepth: 70\nw0: 8\nwa: 8.0\nwm: 1.01\ngroup_width: 8\n")
    err = _refused(
        capsys, "build", str(spec), "--input-size", "32", "--save", str(tmp_path / "w.pt")
    )
    assert "resolved" in err and "64" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.yaml"]


# ---------------------------------------------------------------------------------------------
# 4. ONNX external data: a stable name beside the model, written with it


def test_onnx_external_data_is_named_after_the_model(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from regnet_space.core.generator import make_plan
    from regnet_space.core.spec import spec_from_text
    from regnet_space.nn.export import export_onnx

    model = build_model(make_plan(spec_from_text(TINY), 32), True).eval()
    out = tmp_path / "m.onnx"
    export_onnx(model, out, input_size=32, external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    proto = onnx.load(str(out), load_external_data=False)
    locations = {
        e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {"m.onnx.data"}
    onnx.load(str(out))  # the data file is where the model says
    # Re-exported small, with force: the old data file goes with the commit.
    export_onnx(model, out, input_size=32, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# ---------------------------------------------------------------------------------------------
# 7. every YAML and JSON read goes through the safe loader with its limits


def test_alias_bomb_and_deep_nesting_in_peer_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 30)]
    bomb.write_text("MODEL:\n  TYPE: regnet\n" + "\n".join(lines) + "\n")
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("MODEL: " + "[" * 3000 + "]" * 3000 + "\n")
    deep_json = tmp_path / "config.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    weights = tmp_path / "w.pt"
    torch.save({}, weights)
    for spec in (bomb, deep_yaml, deep_json):
        err = _refused_in_subprocess(
            "convert",
            str(weights),
            "--from",
            "hf",
            "--spec",
            str(spec),
            "-o",
            str(tmp_path / "o.pt"),
        )
        assert str(spec) in err
        _refused_in_subprocess(
            "export", str(spec), "--format", "pt2", "-o", str(tmp_path / "o.pt2")
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["bomb.yaml", "deep.yaml", "config.json", "w.pt"]
    )


def test_deep_and_huge_numbers_in_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "long.jsonl": json.dumps({"error": 1, **DESIGN}).replace("12", "9" * 5000, 1) + "\n",
        "inf.jsonl": '{"error": Infinity, "depth": 12, "w0": 24, "wa": 36.4, "wm": 2.5}\n',
        "flops.jsonl": json.dumps({"error": 1, **DESIGN})[:-1] + ', "flops": 1' + "0" * 400 + "}\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        _refused(capsys, "analyze", str(path))


# ---------------------------------------------------------------------------------------------
# 8. exhausted spaces and impossible constraints stop early


def test_impossible_requests_stop_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both are refused before the first draw: the messages come from the checks of the
    # request, which run before sampling starts.
    err = _refused(
        capsys,
        "sample",
        REGNETX,
        "--n",
        "1G",
        "-o",
        str(tmp_path / "s.jsonl"),
        "--specs-dir",
        str(tmp_path / "d"),
    )
    assert "at most 1,000,000" in err
    err = _refused(
        capsys, "sample", REGNETX, "--n", "5", "--flops", "1:2", "-o", str(tmp_path / "s.jsonl")
    )
    assert "no design can meet flops" in err
    assert list(tmp_path.iterdir()) == []


def test_a_space_with_fewer_designs_than_asked_says_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "few.yaml"
    space.write_text(
        "space: few\nfamily: regnet\nspec: {block: x}\nsample:\n"
        "  depth: {dist: uniform, low: 8, high: 20, quantum: 1}\n  w0: {values: [24]}\n"
        "  wa: {values: [36.4]}\n  wm: {values: [2.5]}\n  group_width: {values: [8]}\n"
        "constraints: {stages: [4, 4]}\n"
    )
    status, _, err = _run(
        capsys, "sample", str(space), "--n", "13", "-o", str(tmp_path / "s.jsonl")
    )
    assert status == 2
    last = err.strip().splitlines()[-1]
    assert "of the space's 13 distinct designs meet the constraints" in last, err
    assert "no constraints" not in err


# ---------------------------------------------------------------------------------------------
# 9. analyze: bounded, regular files only


def test_analyze_refuses_devices_and_too_many_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "regular file" in _refused(capsys, "analyze", "/dev/zero")
    big = tmp_path / "big.csv"
    row = ",".join(str(v) for v in DESIGN.values())
    big.write_text("error," + ",".join(DESIGN) + "\n" + f"1,{row}\n" * (MAX_RESULTS_ROWS + 1))
    assert "more than" in _refused(capsys, "analyze", str(big))


# ---------------------------------------------------------------------------------------------
# 10. activation memory


def test_build_refuses_a_forward_pass_beyond_free_memory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _refused(capsys, "build", str(ROOT / "specs" / "y002.yaml"), "--input-size", "65536")
    assert "forward pass" in err and "--allow-large" in err


# ---------------------------------------------------------------------------------------------
# 12. one line for what used to escape


def test_math_text_in_labels_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    status, _, err = _run(
        capsys,
        "analyze",
        ZOO,
        "--space-label",
        "$\\foo$",
        "--resamples",
        "20",
        "-o",
        str(tmp_path / "r"),
    )
    assert status == 0, err
    assert "$\\foo$" in (tmp_path / "r" / "report.html").read_text()


def _checkpoint(tmp_path: Path, name: str, change: object) -> Path:
    from regnet_space.core.generator import make_plan
    from regnet_space.core.spec import spec_from_text

    state = dict(build_model(make_plan(spec_from_text(TINY)), True).state_dict())
    key = "regnet.embedder.embedder.convolution.weight"
    state[key] = change(state[key])  # type: ignore[operator]
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.to(torch.int64), "floating point"),
        (lambda t: t.to(torch.bool), "floating point"),
        (lambda t: t.to(torch.uint8), "floating point"),
        (lambda t: t.clone().fill_(float("nan")), "NaN"),
        (lambda t: t.clone().fill_(float("inf")), "NaN or infinite"),
        (lambda t: t.to_sparse(), "dense"),
        (lambda t: t.to("meta"), "meta tensor"),
    ],
)
def test_convert_refuses_tensors_that_would_load_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: object, words: str
) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    ckpt = _checkpoint(tmp_path, "c.pt", change)
    err = _refused(
        capsys,
        "convert",
        str(ckpt),
        "--from",
        "hf",
        "--spec",
        str(tmp_path / "tiny.yaml"),
        "-o",
        str(tmp_path / "o.pt"),
    )
    assert words in err and "embedder" in err
    assert not (tmp_path / "o.pt").exists()


def test_convert_names_a_disallowed_pickle_global(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"a": subprocess.CompletedProcess(["x"], 0)}, path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    err = _refused(
        capsys,
        "convert",
        str(path),
        "--from",
        "hf",
        "--spec",
        str(tmp_path / "tiny.yaml"),
        "-o",
        str(tmp_path / "o.pt"),
    )
    assert "CompletedProcess" in err and "weights_only" in err and "unreadable" not in err


# ---------------------------------------------------------------------------------------------
# 13. silent acceptance


def test_duplicate_ids_and_ambiguous_joins_are_refused(tmp_path: Path) -> None:
    rows = [{"id": 0, "name": f"x-{i}", "error": 1.0 + i, **DESIGN} for i in range(2)]
    dup = tmp_path / "dup.jsonl"
    dup.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RegNetSpaceError, match="appears twice"):
        load_study([dup])
    # Two sample files whose ids both start at 0; results that name their space.
    for space in ("a", "b"):
        recs = [{"id": i, "name": f"{space}-{i:04d}", "space": space, **DESIGN} for i in range(2)]
        (tmp_path / f"{space}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    results = tmp_path / "r.csv"
    results.write_text("id,space,error\n0,b,1.0\n1,b,2.0\n")
    with pytest.raises(RegNetSpaceError, match="the wrong sample file"):
        load_study([results], samples=[tmp_path / "a.jsonl"])
    by_name = tmp_path / "n.csv"
    by_name.write_text("name,error\nb-0000,1.0\nb-0001,2.0\n")
    with pytest.raises(RegNetSpaceError, match="not in the samples"):
        load_study([by_name], samples=[tmp_path / "a.jsonl"])
    assert load_study([by_name], samples=[tmp_path / "b.jsonl"]).spaces[0].n == 2


def test_negative_bounds_and_non_numeric_depth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "neg.yaml"
    space.write_text(Path(REGNETX).read_text() + "  flops: {lo: -5, hi: 2000000}\n")
    err = _refused(capsys, "sample", str(space), "--n", "1", "-o", str(tmp_path / "s.jsonl"))
    assert "constraints.flops: a count cannot be negative" in err
    path = tmp_path / "r.csv"
    path.write_text(
        "error,depth,w0,wa,wm,group_width,flops,params,acts\n1,twelve,24,36.4,2.5,8,1,1,1\n"
    )
    assert "depth: not a finite number" in _refused(capsys, "analyze", str(path))


# ---------------------------------------------------------------------------------------------
# 14. terminal safety


def test_escape_sequences_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "evil.yaml"
    spec.write_text(TINY.replace("name: tiny", 'name: "\\e[2J\\e]0;owned\\a=HYPERLINK()"'))
    for argv in (
        ("report", str(spec)),
        ("report", str(spec), "--format", "csv"),
        ("scale", str(spec), "--flops-factor", "2"),
    ):
        status, out, err = _run(capsys, *argv)
        assert status == 0, err
        assert "\x1b" not in out + err and "\x07" not in out + err
        assert "\\x1b[2J" in out
    status, out, _ = _run(capsys, "report", str(spec), "--format", "csv")
    assert "'=HYPERLINK" not in out or out.count("'\\x1b") == 0
    err = _refused(capsys, "build", str(tmp_path / "\x1b[31mmissing.yaml"))
    assert "\x1b" not in err and "\\x1b[31m" in err
    assert clean("a\x1b[2Jb\u202e") == "a\\x1b[2Jb\\u202e"
    assert csv_cell("=1+2") == "'=1+2" and csv_cell("-5") == "-5" and csv_cell("@x") == "'@x"


def test_csv_formula_cells_are_inert_and_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "f.yaml"
    space.write_text(Path(REGNETX).read_text().replace("space: RegNetX", "space: '-cmd'"))
    out = tmp_path / "s.csv"
    assert main(["sample", str(space), "--n", "2", "-o", str(out), "--quiet"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert all(r.startswith("0,'-cmd-") or r.startswith("1,'-cmd-") for r in rows), rows
    results = tmp_path / "r.csv"
    results.write_text("name,error\n-cmd-0000,1\n-cmd-0001,2\n")
    assert load_study([results], samples=[out]).spaces[0].n == 2


# ---------------------------------------------------------------------------------------------
# 15. messages


def test_messages_name_the_field_once_and_stay_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(
        "space: s\nfamily: regnet\nspec: {stem_width: 32}\nsample:\n  depth: {values: [12]}\n"
        "  w0: {values: [24]}\n  wa: {values: [36.4]}\n  wm: {values: [2.5]}\n"
        "  group_width: {values: [8]}\n"
    )
    err = _refused(capsys, "sample", str(space), "--n", "1", "-o", str(tmp_path / "o.jsonl"))
    assert ": :" not in err and "block" in err
    long = tmp_path / "long.yaml"
    long.write_text(
        space.read_text()
        .replace("space: s", "space: " + "a" * 200)
        .replace("{stem_width: 32}", "{block: x}")
    )
    err = _refused(
        capsys,
        "sample",
        str(long),
        "--n",
        "1",
        "-o",
        str(tmp_path / "o.jsonl"),
        "--specs-dir",
        str(tmp_path / "d"),
    )
    assert "space: String should have at most 120 characters" in err
    big = tmp_path / "big.yaml"
    big.write_text(TINY.replace("depth: 1", "depth: " + "9" * 400))
    err = _refused(capsys, "report", str(big))
    assert "9" * 50 not in err and len(err) < 300
    stages = tmp_path / "stages.yaml"
    stages.write_text(
        space.read_text().replace("{stem_width: 32}", "{block: x}")
        + "constraints: {stages: [1, 100]}\n"
    )
    err = _refused(capsys, "sample", str(stages), "--n", "1", "-o", str(tmp_path / "o.jsonl"))
    assert "constraints.stages: at most 64" in err and err.count("constraints") == 1
    # a missing path with a colon is a path, not YAML text
    err = _refused(capsys, "report", str(tmp_path / "dir:name.yaml"))
    assert "no such file" in err
