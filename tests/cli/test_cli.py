"""The command line: build, report, schema; exit codes, one-line errors, atomic outputs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from regnet_space import count, load_spec
from regnet_space.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
Y040 = str(SPECS / "y040.yaml")
SMALL = "name: tiny\nblock: y\ndepth: 4\nw0: 16\nwa: 12.0\nwm: 2.0\ngroup_width: 8\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse usage errors and --help
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(SMALL)
    return p


def test_build_y040_shows_the_published_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "build", Y040)
    assert status == 0, err
    assert "[1, 1088, 7, 7]" in out
    assert "4.0 GF" in out
    assert "20.6 M params" in out
    # one row per stage plus stem and head, with the SE widths of first/other blocks
    assert "8/32" in out  # stage 1: first block from the 32-wide stem, others from 128


def test_build_json_keys_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "build", Y040, "--json")
    assert status == 0
    data = json.loads(out)
    assert data["name"] == "RegNetY-4.0GF"
    assert data["widths"] == [128, 192, 512, 1088]
    assert data["depths"] == [2, 6, 12, 2]
    assert data["group_widths"] == [64, 64, 64, 64]
    assert data["bottleneck_widths"] == [128, 192, 512, 1088]
    assert data["params"] == 20646656
    assert round(data["flops"] / 1e9, 1) == 4.0 and round(data["acts"] / 1e6, 1) == 12.3
    assert data["input_size"] == 224 and data["output_shape"] == [1, 1088, 7, 7]
    assert all(isinstance(data[k], int) for k in ("flops", "params", "acts"))


def test_build_odd_input_size(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    status, out, _ = run(capsys, "build", str(tiny), "--input-size", "45", "--json")
    assert status == 0
    data = json.loads(out)
    side = 45
    for _ in range(1 + len(data["widths"])):
        side = (side - 1) // 2 + 1
    assert data["output_shape"] == [1, data["widths"][-1], side, side]


def test_build_verify_is_exact(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    status, out, _ = run(capsys, "build", str(tiny), "--verify", "--json")
    assert status == 0
    v = json.loads(out)["verify"]
    assert v["ok"] is True
    assert v["fvcore"] == v["analytic_fvcore"]
    status, out, _ = run(capsys, "build", str(tiny), "--verify")
    assert status == 0 and "OK, exact" in out


def test_build_save_weights_and_resolved_spec(
    capsys: pytest.CaptureFixture[str], tiny: Path, tmp_path: Path
) -> None:
    import torch

    from regnet_space import build_model

    target = tmp_path / "tiny.pt"
    status, _, err = run(capsys, "build", str(tiny), "--save", str(target))
    assert status == 0, err
    state = torch.load(target, weights_only=True)
    resolved = load_spec(tmp_path / "tiny.resolved.yaml")
    assert "stages" in type(resolved).model_fields  # the explicit form
    assert count(resolved) == count(load_spec(tiny))
    model = build_model(resolved)
    model.load_state_dict(state, strict=True)
    # never silently overwritten
    before = target.read_bytes()
    status, _, err = run(capsys, "build", str(tiny), "--save", str(target))
    assert status == 2 and "already exists" in err and err.count("\n") == 1
    assert target.read_bytes() == before
    status, _, _ = run(capsys, "build", str(tiny), "--save", str(target), "--force")
    assert status == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_build_save_safetensors(
    capsys: pytest.CaptureFixture[str], tiny: Path, tmp_path: Path
) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    target = tmp_path / "tiny.safetensors"
    status, _, err = run(capsys, "build", str(tiny), "--save", str(target))
    assert status == 0, err
    state = safetensors_torch.load_file(str(target))
    from regnet_space import build_model

    build_model(load_spec(tiny)).load_state_dict(state, strict=True)


def test_build_refuses_too_large_design(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "build", str(SPECS / "y10b.yaml"))
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "--allow-large" in err


def test_report_folder_json_matches_count(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", str(SPECS), "--format", "json")
    assert status == 0
    rows = json.loads(out)
    files = sorted(SPECS.glob("*.yaml"))
    assert [Path(r["spec"]).name for r in rows] == [f.name for f in files]
    for row, f in zip(rows, files, strict=True):
        c = count(load_spec(f))
        assert (row["flops"], row["params"], row["acts"]) == (c.flops, c.params, c.acts)
        assert row["input_size"] == load_spec(f).input_size and "output_shape" not in row
        for key in ("name", "widths", "depths", "group_widths", "bottleneck_widths", "spec"):
            assert key in row


def test_report_formats(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    status, out, _ = run(capsys, "report", Y040, str(tiny), "--format", "csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows] == ["RegNetY-4.0GF", "tiny"]
    assert rows[0]["params"] == "20646656"
    status, out, _ = run(capsys, "report", Y040, "--format", "markdown")
    assert status == 0 and out.startswith("| spec |") and "| RegNetY-4.0GF |" in out
    status, out, _ = run(capsys, "report", Y040)
    assert status == 0 and "RegNetY-4.0GF" in out and "20.65" in out


def test_report_conventions_and_input_size(capsys: pytest.CaptureFixture[str]) -> None:
    spec = load_spec(Y040)
    for conv in ("paper", "fvcore", "torchvision"):
        status, out, _ = run(capsys, "report", Y040, "--format", "json", "--convention", conv)
        assert status == 0
        assert json.loads(out)[0]["flops"] == count(spec, convention=conv).flops
    status, out, _ = run(capsys, "report", Y040, "--format", "json", "--input-size", "160")
    assert json.loads(out)[0]["flops"] == count(spec, 160).flops


def test_schema_validates_shipped_specs(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "schema")
    assert status == 0
    schema = json.loads(out)
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    for f in SPECS.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "block": "x", "depth": 3, "bogus": 1}, schema)


BAD_SPECS: dict[str, bytes] = {
    "syntax": b"name: [unclosed\nblock: y\n",
    "tabs": b"name: a\n\tblock: y\n",
    "wrong_type": b"name: a\nblock: y\ndepth: twelve\nw0: 24\nwa: 36.0\nwm: 2.5\ngroup_width: 8\n",
    "unknown_key": SMALL.encode() + b"widht: 3\n",
    "nan": SMALL.replace("wa: 12.0", "wa: .nan").encode(),
    "inf": SMALL.replace("wm: 2.0", "wm: .inf").encode(),
    "negative": SMALL.replace("depth: 4", "depth: -4").encode(),
    "zero": SMALL.replace("w0: 16", "w0: 0").encode(),
    "huge": SMALL.replace("depth: 4", "depth: 1000000000").encode(),
    "huge_wa": SMALL.replace("wa: 12.0", "wa: 1.0e300").encode(),
    "w0_not_multiple": SMALL.replace("w0: 16", "w0: 20").encode(),
    "empty": b"",
    "only_comment": b"# nothing here\n",
    "list": b"- 1\n- 2\n",
    "alias_bomb": b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n".encode()
        for i in range(8)
    ),
    "binary": bytes(range(256)) * 4,
    "latin1": "name: caf\xe9\n".encode("latin-1"),
    "duplicate_key": SMALL.encode() + b"depth: 5\n",
    "huge_literal": SMALL.replace("depth: 4", "depth: " + "9" * 5000).encode(),
    "deep": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_hostile_specs_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(BAD_SPECS[case])
    for argv in (["build", str(path)], ["report", str(path)]):
        status, out, err = run(capsys, *argv)
        assert status == 2, (case, err)
        assert out == ""
        assert err.count("\n") == 1 and err.startswith("regnet-space: "), err
        assert "Traceback" not in err
        assert str(path) in err


def test_hostile_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "build", str(tmp_path))  # a folder
    assert status == 2 and "directory" in err and err.count("\n") == 1
    status, _, err = run(capsys, "build", str(tmp_path / "missing.yaml"))
    assert status == 2 and "no such file" in err
    status, _, err = run(capsys, "report", str(tmp_path))  # empty folder
    assert status == 2 and err.count("\n") == 1
    status, _, err = run(capsys, "build", Y040, "--input-size", "0")
    assert status == 2 and err.count("\n") == 1
    status, _, err = run(capsys, "report", Y040, "--convention", "nope")
    assert status == 2 and err.count("\n") == 1


def test_error_names_file_field_and_rule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SMALL.replace("w0: 16", "w0: 20"))
    _, _, err = run(capsys, "report", str(path))
    assert err == f"regnet-space: {path}: w0: must be a positive multiple of q=8, got 20\n"


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["build", "--help"], ["report", "--help"]):
        status, out, _ = run(capsys, *argv)
        assert status == 0 and "usage:" in out
    assert "convention" in run(capsys, "report", "--help")[1]


def test_real_process_no_traceback_and_no_torch_for_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\x00\x01garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "regnet_space", "report", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    code = (
        "import sys; from regnet_space.cli import main; "
        f"rc = main(['report', {str(SPECS)!r}, '--format', 'json']); "
        "sys.stdout.flush(); assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == len(list(SPECS.glob("*.yaml")))


def test_counter_torch_report_and_build(capsys: pytest.CaptureFixture[str]) -> None:
    # FlopCounterMode on the meta device: y10b is counted without allocating its weights.
    status, out, _ = run(capsys, "report", str(SPECS / "y10b.yaml"), Y040, "--counter", "torch")
    assert status == 0 and "2/2 agree" in out
    status, out, _ = run(capsys, "report", Y040, "--counter", "torch", "--format", "json")
    row = json.loads(out)[0]
    tv = count(load_spec(Y040), convention="torchvision").flops
    assert row["torch_counter"]["ok"] is True
    assert row["torch_counter"]["flop_counter_mode"] == 2 * tv
    status, out, _ = run(capsys, "build", str(SPECS / "x002.yaml"), "--counter", "torch")
    assert status == 0 and "OK, exact" in out.splitlines()[-1]


def test_space_file_named_as_a_spec(capsys: pytest.CaptureFixture[str]) -> None:
    space = str(SPECS / "spaces" / "regnety.yaml")
    for argv in (["report", space], ["build", space]):
        status, out, err = run(capsys, *argv)
        assert status == 2 and out == ""
        assert err == (
            f"regnet-space: {space}: a design-space file, not a spec; draw designs "
            "from it with `regnet-space sample`\n"
        )


def test_build_and_report_show_the_cifar_stem_stride(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nblock: x\ndepth: 6\nw0: 24\nwa: 20.0\nwm: 2.5\ngroup_width: 8\n"
        "stem: cifar\nstem_width: 16\nnum_classes: 10\n"
    )
    assert main(["build", str(spec), "--input-size", "32"]) == 0
    stem_row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("stem "))
    assert stem_row.split()[:4] == ["stem", "16", "1", "1"] and stem_row.split()[4] == "32"
    assert main(["report", str(spec), "--format", "json", "--input-size", "32"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["stem_stride"] == 1


def test_build_json_stages_show_the_cifar_stem_stride(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nblock: x\ndepth: 6\nw0: 24\nwa: 20.0\nwm: 2.5\ngroup_width: 8\n"
        "stem: cifar\nstem_width: 16\nnum_classes: 10\n"
    )
    status, out, err = run(capsys, "build", str(spec), "--input-size", "32", "--json")
    assert status == 0, err
    stem = json.loads(out)["stages"][0]
    assert stem["part"] == "stem" and stem["stride"] == 1 and stem["out_size"] == 32
    status, out, err = run(capsys, "build", Y040, "--json")
    assert status == 0, err
    assert json.loads(out)["stages"][0]["stride"] == 2  # the ImageNet stem
