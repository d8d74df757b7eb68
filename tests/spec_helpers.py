"""Shared pieces of the spec tests: RegNetX-200MF as YAML text and as a mapping."""

from __future__ import annotations

from regnet_space import ParametricSpec

X_TEXT = """\
name: RegNetX-200MF
block: x
depth: 13
w0: 24
wa: 36.44
wm: 2.49
group_width: 8
"""

X_DICT = {
    "name": "RegNetX-200MF",
    "block": "x",
    "depth": 13,
    "w0": 24,
    "wa": 36.44,
    "wm": 2.49,
    "group_width": 8,
}


def check_x200(s: object) -> None:
    """s is RegNetX-200MF as X_TEXT and X_DICT give it."""
    assert isinstance(s, ParametricSpec)
    assert (s.name, s.block, s.depth, s.w0, s.wa, s.wm, s.group_width) == (
        "RegNetX-200MF",
        "x",
        13,
        24,
        36.44,
        2.49,
        8,
    )
