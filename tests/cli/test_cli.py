"""The command line's common rules: bad specs and paths are one line on stderr and exit 2,
whatever the command; errors name the file, field and rule; --help explains."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import SMALL, SPECS, Y040, run, spec_file

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


def test_space_file_named_as_a_spec(capsys: pytest.CaptureFixture[str]) -> None:
    space = str(SPECS / "spaces" / "regnety.yaml")
    for argv in (["report", space], ["build", space]):
        status, out, err = run(capsys, *argv)
        assert status == 2 and out == ""
        assert err == (
            f"regnet-space: {space}: a design-space file, not a spec; draw designs "
            "from it with `regnet-space sample`\n"
        )


def test_mixed_form_spec_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = "name: m\nblock: x\nw0: 24\nstages:\n  - {width: 48, depth: 1, group_width: 16}\n"
    status, _, err = run(capsys, "report", str(spec_file(tmp_path, "m.yaml", text)))
    assert status == 2 and "parametric or explicit (stages:), not both" in err
