"""Space files: the shipped ones, one-line errors for bad ones, telling them from specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from regnet_space.core.errors import SpecError
from regnet_space.space.space import (
    AnyNetSpace,
    Bounds,
    RegNetSpace,
    SpaceError,
    format_count,
    is_space_file,
    load_space,
    load_space_file,
    parse_count,
    space_from_text,
)

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "specs" / "spaces"

REGNET = """\
space: test
family: regnet
spec: {block: x}
sample:
  depth: {dist: uniform, low: 12, high: 28, quantum: 1}
  w0: {dist: log_uniform, low: 8, high: 256, quantum: 8}
  wa: {dist: log_uniform, low: 8, high: 256, quantum: 0.1}
  wm: {dist: log_uniform, low: 2, high: 3, quantum: 0.001}
  group_width: {dist: power2_or_log_uniform, low: 8, high: 128, quantum: 8}
"""

ANYNET = """\
space: test
family: anynet
spec: {block: x}
per_stage:
  depth: {dist: log_uniform, low: 1, high: 16, quantum: 1}
  width: {dist: log_uniform, low: 8, high: 1024, quantum: 8}
  bottleneck_multiplier: {values: [1.0, 0.5, 0.25]}
  group_width: {dist: power2_uniform, low: 1, high: 32, quantum: 1}
"""


def test_shipped_spaces() -> None:
    names = sorted(p.stem for p in SPACES.glob("*.yaml"))
    cifar = ["regnetx-cifar", "regnety-cifar"]
    progression = [f"anynetx-cifar-{k}" for k in "abcde"]  # tests/space/test_anynet_cifar.py
    assert names == [
        *progression,
        *(f"anynetx_{k}" for k in "abcde"),
        "regnetx",
        *cifar[:1],
        "regnety",
        cifar[1],
    ]
    for name in cifar:
        c = load_space(SPACES / f"{name}.yaml")
        assert isinstance(c, RegNetSpace) and c.input_size == 32
        fixed = c.fixed_spec()
        assert (fixed.stem, fixed.stem_width, fixed.num_classes) == ("cifar", 16, 10)
        assert c.constraints.stages == Bounds(lo=2, hi=2)
        assert (c.sample.depth.min_value, c.sample.group_width.min_value) == (6, 1)
    x, y = load_space(SPACES / "regnetx.yaml"), load_space(SPACES / "regnety.yaml")
    assert isinstance(x, RegNetSpace) and isinstance(y, RegNetSpace)
    assert (x.fixed_spec().block, y.fixed_spec().se_ratio) == ("x", 0.25)
    assert x.constraints.stages == Bounds(lo=4, hi=4)
    assert not x.constraints.allow_skipped_exponents
    shared = {"a": (), "b": ("bottleneck_multiplier",)}
    shared |= dict.fromkeys("cde", ("bottleneck_multiplier", "group_width"))
    monotone = {"a": (), "b": (), "c": (), "d": ("width",), "e": ("width", "depth")}
    for key in "abcde":
        s = load_space(SPACES / f"anynetx_{key}.yaml")
        assert isinstance(s, AnyNetSpace) and s.num_stages == 4
        assert (s.shared, s.non_decreasing) == (shared[key], monotone[key])


def test_space_files_are_recognised_and_specs_are_not(tmp_path: Path) -> None:
    for path in SPACES.glob("*.yaml"):
        assert is_space_file(path)
        with pytest.raises(SpecError, match="a design-space file, not a spec"):
            from regnet_space.core.reader import load_spec

            load_spec(path)
    for path in (ROOT / "specs").glob("*.yaml"):
        assert not is_space_file(path)
    assert not is_space_file(tmp_path / "missing.yaml")
    assert not is_space_file(tmp_path)
    (tmp_path / "nested.yaml").write_text("name: n\nblock: x\ndescription: |\n  space: no\n")
    assert not is_space_file(tmp_path / "nested.yaml")


def test_report_of_a_folder_skips_space_files(tmp_path: Path) -> None:
    """`regnet-space report DIR` keeps working when a space file sits among the specs."""
    report = pytest.importorskip("regnet_space.cli.render")
    (tmp_path / "a.yaml").write_text((ROOT / "specs" / "x004.yaml").read_text())
    (tmp_path / "space.yaml").write_text(REGNET)
    assert [p.name for p in report.collect_spec_paths([tmp_path])] == ["a.yaml"]


def test_anynet_and_regnet_minimal() -> None:
    assert isinstance(space_from_text(ANYNET), AnyNetSpace)
    r = space_from_text(REGNET)
    assert isinstance(r, RegNetSpace) and r.input_size == 224
    assert r.fixed_spec().q == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("name: RegNetX\nblock: x\n", "not a design-space file"),
        ("space: s\n", "family: must be one of regnet, anynet"),
        ("space: s\nfamily: resnet\n", "family: must be one of regnet, anynet"),
        ("a: &x 1\nb: *x\n", "aliases"),
        ("space: [\n", "invalid YAML"),
        (REGNET + "inputsize: 160\n", "did you mean 'input_size'"),
        (REGNET.replace("w0:", "w_0:"), "did you mean 'w0'"),
        (REGNET + "input_size: 0\n", "input_size"),
        (REGNET.replace("low: 12", "low: twelve"), "sample.depth.low"),
        (REGNET.replace("high: 28", "high: 8"), "low 12 is above high 8"),
        (REGNET.replace("quantum: 0.001", "quantum: 0"), "quantum: must be positive"),
        (REGNET.replace("quantum: 0.001", "quantum: -1"), "quantum: must be positive"),
        (REGNET.replace("high: 3, quantum: 0.001", "high: 3, quantum: 1.0e-300"), "too large"),
        (REGNET.replace("low: 2,", "low: 2.0005,"), "not a multiple of quantum"),
        (REGNET.replace("low: 2,", "low: 1,"), "sample.wm: Input should be greater than 1, got 1"),
        (REGNET.replace("low: 2,", "low: .nan,"), "finite"),
        (REGNET.replace("quantum: 1}", "quantum: 0.5}"), "integer field"),
        (REGNET.replace("dist: uniform", "dist: normal"), "sample.depth.dist"),
        (
            REGNET.replace("power2_or_log_uniform, low: 8", "power2_or_log_uniform, low: 6"),
            "powers of two",
        ),
        (
            REGNET.replace(
                "log_uniform, low: 8, high: 256, quantum: 8",
                "log_uniform, low: 12, high: 252, quantum: 12",
            ),
            "multiple of q=8",
        ),
        (
            REGNET.replace("uniform, low: 12", "uniform, low: 0"),
            "sample.depth: Input should be greater than or equal to 1, got 0",
        ),
        (
            REGNET.replace("{dist: uniform, low: 12, high: 28, quantum: 1}", "{values: []}"),
            "at least 1",
        ),
        (
            REGNET.replace("{dist: uniform, low: 12, high: 28, quantum: 1}", "{values: [12, 12]}"),
            "listed once",
        ),
        (
            REGNET.replace("{dist: uniform, low: 12, high: 28, quantum: 1}", "{values: [true]}"),
            "sample.depth.values",
        ),
        (REGNET.replace("{dist: uniform, low: 12, high: 28, quantum: 1}", "12"), "expected {dist"),
        (
            REGNET.replace("  depth: {dist: uniform, low: 12, high: 28, quantum: 1}\n", ""),
            "depth must be sampled or fixed",
        ),
        (
            REGNET.replace("spec: {block: x}", "spec: {block: x, depth: 12}"),
            "both fixed and sampled",
        ),
        (REGNET.replace("spec: {block: x}", "spec: {block: x, name: n}"), "spec.name"),
        (
            REGNET.replace("spec: {block: x}", "spec: {block: q}"),
            "spec.block: Input should be 'x', 'y', 'z', 'v', 'w', 'vanilla' or 'basic'",
        ),
        (REGNET.replace("spec: {block: x}", "spec: {block: x, stages: 4}"), "spec.stages"),
        (REGNET.replace("spec: {block: x}", "spec: {}"), "block"),
        (
            REGNET.replace("spec: {block: x}", "spec: [x]"),
            "spec: Input should be a valid dictionary",
        ),
        (REGNET.replace("{block: x}", "{block: x, se_ratio: [1]}"), "spec.se_ratio: Input should"),
        (REGNET.replace("{block: x}", "{block: x, se_ratio: 0.25}"), "x blocks have no SE"),
        (REGNET.replace("{block: x}", "{block: x, stem_widht: 8}"), "(did you mean 'stem_width'?)"),
        (REGNET.replace("low: 2,", "low: true,"), "sample.wm.low: Input should be a valid number"),
        (ANYNET.replace("{block: x}", "{block: x, stem_width: {a: 1}}"), "spec.stem_width"),
        (REGNET + "constraints: {stages: 4:4}\n", "at most 64"),
        (REGNET + "constraints: {flops: [5M, 1M]}\n", "empty range"),
        (REGNET + "constraints: {flops: [1M]}\n", "expected [lo, hi]"),
        (REGNET + "constraints: {flops: '-1:5'}\n", "non-negative"),
        (REGNET + "constraints: {flops: '5Q:'}\n", "expected a number"),
        (REGNET + "constraints: {flops: '1e999999999:'}\n", "below 1e30"),
        (REGNET + "constraints: {flops: [0, 1000000000000000000000000000000000]}\n", "below 1e30"),
        (REGNET + "constraints: {flopz: [1, 2]}\n", "did you mean 'flops'"),
        (ANYNET + "shared: [widht]\n", "shared"),
        (ANYNET + "constraints: {allow_skipped_exponents: true}\n", "only for regnet"),
        (ANYNET + "num_stages: 0\n", "num_stages"),
        (ANYNET.replace("high: 1024", "high: 2000000"), "per_stage.width"),
        (
            ANYNET.replace("{values: [1.0, 0.5, 0.25]}", "{values: [0]}"),
            "per_stage.bottleneck_multiplier",
        ),
    ],
)
def test_hostile_space_text(text: str, message: str) -> None:
    with pytest.raises(SpaceError) as info:
        space_from_text(text, "bad.yaml")
    msg = str(info.value)
    assert message in msg, msg
    assert "\n" not in msg and msg.startswith("bad.yaml")


def test_ranges_that_could_overflow_counts_are_refused() -> None:
    from regnet_space.space.sampling import sample

    text = ANYNET.replace("high: 16, quantum: 1", "high: 1000, quantum: 1").replace(
        "high: 1024", "high: 1048576"
    )
    with pytest.raises(SpaceError, match="overflow"):
        sample(space_from_text(text + "input_size: 16384\n"), 1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01binary", "binary"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"x" * (1 << 20) + b"more", "larger than"),
    ],
)
def test_hostile_space_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes(content)
    with pytest.raises(SpaceError, match=message):
        load_space_file(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="no such file"):
        load_space(tmp_path / "nope.yaml")
    with pytest.raises(SpaceError, match="is a directory"):
        load_space_file(tmp_path)
    with pytest.raises(SpaceError, match="cannot load"):
        load_space(42)  # type: ignore[arg-type]


def test_counts_with_suffixes() -> None:
    assert parse_count("396M") == 396_000_000
    assert parse_count("1.58g") == 1_580_000_000
    assert parse_count("5e6") == 5_000_000
    assert parse_count(7) == 7
    assert Bounds.model_validate("0.5K:") == Bounds(lo=500, hi=None)
    assert Bounds.model_validate("1.0005K:1.0015K") == Bounds(lo=1001, hi=1001)
    assert Bounds.model_validate([None, "2M"]) == Bounds(lo=None, hi=2_000_000)
    values = (396_000_000, 1_580_000_000, 10_000_000, 100_000, 12345, 5, 2_500)
    assert [format_count(v) for v in values] == [
        "396M",
        "1.58G",
        "10M",
        "100K",
        "12345",
        "5",
        "2.5K",
    ]
    assert all(parse_count(format_count(v)) == v for v in values)
    assert str(Bounds(lo=396_000_000, hi=None)) == "396M:"
