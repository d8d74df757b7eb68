"""Argument types shared by every subcommand (one rule, one message)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..core.generator import MAX_INPUT_SIZE


def input_size(text: str) -> int:
    """--input-size: a square input side from 1 to MAX_INPUT_SIZE."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 1 <= value <= MAX_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_INPUT_SIZE}, got {value}")
    return value


PROG = "regnet-space"


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
