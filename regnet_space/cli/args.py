"""Argument types and helpers shared by every subcommand (one rule, one message).

Light on purpose: importing this module (when the parser is made) loads no numpy, pydantic
or YAML; the readers below import them when a command runs.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

from ..core.limits import MAX_INPUT_SIZE

PROG = "regnet-space"
STDIO = "-"

# The commands in the order --help lists them, each with its one line of help; each is
# registered by the module of its name (`list`: presets) and in full only when it runs.
COMMANDS: dict[str, str] = {
    "build": "build the PyTorch model of a spec and describe it",
    "report": "counts of specs or folders of specs, without building models",
    "schema": "print the JSON Schema of the spec format",
    "sample": "draw designs from a design space under complexity constraints",
    "analyze": "compare design spaces: EDFs, good ranges, rank correlations, HTML report",
    "scale": "scale a model's flops by the rules of 'Fast and Accurate Model Scaling'",
    "fit": "fit d, w0, wa, wm to per-block widths (a spec's or a list)",
    "convert": "convert a timm / torchvision / pycls / Hugging Face checkpoint to another layout",
    "export": "export a model to ONNX or a torch.export program",
    "list": "the shipped specs, spaces and example data",
    "train": "train one design under a recipe on a data set (resumable run folder)",
    "study": "train sampled designs into a resumable study database (run, status, export, best)",
}

INPUT_SIZE_HELP = "square input side (default: the spec's input_size, 224 when it has none)"
JSON_HELP = "print machine-readable JSON on stdout (human text, if any, goes to stderr)"
FORCE_HELP = "overwrite existing outputs"
ALLOW_LARGE_HELP = (
    "build designs above the size guards: over 1e9 parameters, or a forward pass estimated "
    "to need more memory than is free"
)
SPEC_HELP = (
    "a spec (YAML), a Hugging Face config.json (or its folder), a pycls config, a shipped "
    "model name as any library spells it (y040, RegNetY-4.0GF, regnety_040, regnet_y_3_2gf, "
    "facebook/regnet-y-040; see `list`), or - for stdin"
)


def input_size(text: str) -> int:
    """--input-size: a square input side from 1 to MAX_INPUT_SIZE."""
    return int_in(1, MAX_INPUT_SIZE)(text)


def int_in(low: int, high: int) -> Any:
    """An integer argument from `low` to `high`; every count says the same thing when out of it."""

    def parse(text: str) -> int:
        value = text.strip()
        if not re.fullmatch(r"[+-]?\d+", value) or not low <= int(value) <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low:,} to {high:,}, got {text!r}"
            )
        return int(value)

    return parse


def write_output(path: str, text: str, force: bool) -> str:
    """Write text to a file atomically, or to stdout for `-`; the name to report."""
    if path == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return "stdout"
    from ..infra.outputs import atomic_write_text

    atomic_write_text(path, text, force)
    return path


def check_output(path: str | None, force: bool) -> None:
    """Refuse an output file before any work (nothing to check for stdout)."""
    if path is not None and path != STDIO:
        from ..infra.paths import check_target

        check_target(Path(path), force)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions re-wrapped to the terminal; indented lines (examples, lists) kept as typed."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        for block in re.split(r"\n\s*\n", text):
            lines = block.splitlines()
            # A heading ("examples:") or indented lines: a layout typed on purpose.
            if lines[0].endswith(":") or any(line[:1].isspace() for line in lines):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(
                    textwrap.fill(
                        " ".join(lines), width, initial_indent=indent, subsequent_indent=indent
                    )
                )
        return "\n\n".join(out)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # One formatter for every command: wrapped prose, examples kept as typed.
        return Formatter(prog=self.prog)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# ---------------------------------------------------------------------------------------------
# Numbers, counters and checkpoint layouts shared by several commands


def positive_float(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def percent(text: str) -> float:
    """A finite percentage of at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a percentage of at least 0, got {text!r}")
    return value


def unit_float(text: str) -> float:
    """A number from 0 to 1."""
    value = positive_float(text) if text.strip() not in ("0", "0.0") else 0.0
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


# Checkpoint layouts `convert` and `export` read (and `convert` writes).
LIBRARIES = ("hf", "timm", "torchvision", "pycls")

COUNTERS = ("analytic", "torch")
COUNTER_HELP = (
    "torch: also count with PyTorch's FlopCounterMode on the meta device (2 flops per "
    "multiply-add, no bias; no weights are allocated, so y10b works) and check it against "
    "2 x the torchvision convention (exit 1 on a mismatch)"
)
