"""One grammar across commands: help on every argument, one --json flag, --version, -n and
--n, one message for out-of-range counts, formats from suffixes, --force and --allow-large,
descriptions wrapped to the terminal."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import SPECS, TINY, Y040, cli, run, spec_file

from regnet_space.cli import make_parser


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
