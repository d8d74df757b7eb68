"""Start-up short cuts answer as the full paths do: a command registered alone parses and
helps as in the full parser, and the ASCII check for libyaml finds what the full pattern finds.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regnet_space.cli import make_parser
from regnet_space.cli.args import COMMANDS
from regnet_space.infra.parsing import _C_DISAGREES, c_disagrees

FULL = re.compile(_C_DISAGREES)
ASCII = [chr(i) for i in range(128)]


def _subparser(parser, name):  # type: ignore[no-untyped-def]
    return parser._subparsers._group_actions[0].choices[name]


def test_the_top_level_help_lists_every_command_without_registering_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    full, light = make_parser(), make_parser(full=set())
    assert light.format_help() == full.format_help()
    assert [a.dest for a in _subparser(light, "build")._actions] == ["help"]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_registered_alone_is_the_full_parsers(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    full, alone = make_parser(), make_parser(full={name})
    assert alone.format_help() == full.format_help()
    assert _subparser(alone, name).format_help() == _subparser(full, name).format_help()
    assert [a.dest for a in _subparser(alone, name)._actions] == [
        a.dest for a in _subparser(full, name)._actions
    ]


def test_the_ascii_check_finds_what_the_full_pattern_finds() -> None:
    texts = [*ASCII, *(a + b for a in ASCII for b in ASCII), "|#", ">-2#", "|+ #", "a: |1#"]
    differ = [t for t in texts if c_disagrees(t) != (FULL.search(t) is not None)]
    assert differ == []
    assert sum(map(c_disagrees, ASCII)) == 33  # 0-8, 11, 12, 14-31, 127, tab, ! and ?


@given(st.text(alphabet=string.printable + "\x00\x07\x1b\x7f|>#-+", max_size=40))
def test_the_ascii_check_on_ascii_text(text: str) -> None:
    assert c_disagrees(text) == (FULL.search(text) is not None)


@given(st.text(max_size=20))
def test_text_that_is_not_ascii_takes_the_full_pattern(text: str) -> None:
    assert c_disagrees(text) == (FULL.search(text) is not None)
