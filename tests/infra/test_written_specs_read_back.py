"""Every spec file the tool writes reads back to the spec it wrote, whatever the name holds.

A name is the user's text: newlines, '#', ':', quotes, NUL, YAML's own line breaks (NEL,
U+2028), any Unicode. It must never leave the value it belongs to, neither through the header
comment of `scale -o` / `fit -o` nor through the YAML itself, and no NUL is written raw.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from regnet_space import load_spec
from regnet_space.cli import main as run
from regnet_space.core.pycls import pycls_yaml_from_spec, spec_from_pycls_yaml
from regnet_space.core.spec import ParametricSpec, dump_spec, spec_from_dict
from regnet_space.infra.dumping import yaml_comment
from regnet_space.space.scaling import scale_spec, scaled_spec_text

DESIGN = {"block": "x", "depth": 13, "w0": 24, "wa": 36.44, "wm": 2.49, "group_width": 8}
INJECTION = "x\ninput_size: 4000 #"
# Characters that break out of a YAML comment or value, or that YAML cannot hold raw.
_HOSTILE = st.sampled_from(
    [*"\n\r#:'\"\\\t -{}[]&*!|>%@`,?", "\0", "\x85", "\u2028", "\u2029", "\ufeff", "\x1b"]
)
NAMES = st.text(
    alphabet=st.one_of(_HOSTILE, st.characters(blacklist_categories=("Cs",))),
    min_size=1,
    max_size=200,
)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _spec(name: str) -> ParametricSpec:
    spec = spec_from_dict({"name": name, **DESIGN})
    assert isinstance(spec, ParametricSpec)
    return spec


def _reads_back(path: Path) -> object:
    data = path.read_bytes()
    assert b"\0" not in data
    return load_spec(path)


def _written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, name: str
) -> tuple[object, object]:
    """What `command -o` wrote for the design named `name`, and for it named 'plain'."""
    out = []
    for i, which in enumerate((name, "plain")):
        src = tmp_path / f"src{i}.yaml"
        src.write_text(dump_spec(_spec(which)), encoding="utf-8")
        target = tmp_path / f"{command}{i}.yaml"
        args = ["--flops-factor", "2"] if command == "scale" else []
        status = run([command, str(src), *args, "-o", str(target), "--force"])
        capsys.readouterr()
        assert status == 0
        out.append(_reads_back(target))
    return out[0], out[1]


@SETTINGS
@given(NAMES)
@example(INJECTION)
@example("a\0b")
@example("a\u2028input_size: 4000")
def test_python_writers_read_back(name: str) -> None:
    spec = _spec(name)
    assert load_spec(dump_spec(spec)) == spec
    scaled = scale_spec(spec, 2.0)
    text = scaled_spec_text(scaled)
    assert "\0" not in text
    assert load_spec(text) == scaled.spec
    pycls = pycls_yaml_from_spec(spec)
    assert "\0" not in pycls
    assert spec_from_pycls_yaml(pycls).model_dump(exclude={"name"}) == spec.model_dump(
        exclude={"name"}
    )


@SETTINGS
@given(NAMES)
@example(INJECTION)
@example("a\0b")
@example("a\x85input_size: 4000 #")
def test_scale_and_fit_outputs_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    for command, written_name in (("scale", f"{name} x2"[:200]), ("fit", name)):
        named, plain = _written(tmp_path, capsys, command, name)
        assert isinstance(named, ParametricSpec) and isinstance(plain, ParametricSpec)
        assert named.name == written_name
        assert named.model_copy(update={"name": plain.name}) == plain
    assert _reads_back(tmp_path / "scale0.yaml") == scale_spec(_spec(name), 2.0).spec


def test_the_reported_injection_is_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fitted, _ = _written(tmp_path, capsys, "fit", INJECTION)
    scaled, _ = _written(tmp_path, capsys, "scale", INJECTION)
    assert isinstance(fitted, ParametricSpec) and isinstance(scaled, ParametricSpec)
    assert fitted.name == INJECTION and fitted.input_size == 224
    assert scaled.input_size == 232
    for which in ("fit0.yaml", "scale0.yaml"):
        first = (tmp_path / which).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# ") and "\\x0a" in first


def test_fit_name_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "f.yaml"
    argv = ["fit", "--widths", "24,56,152x4,368x7", "--name", INJECTION, "-o", str(target)]
    assert run(argv) == 0
    capsys.readouterr()
    fitted = _reads_back(target)
    assert isinstance(fitted, ParametricSpec) and fitted.name == INJECTION


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain words: a # b", "# plain words: a # b\n"),
        ("two\nlines", "# two\\x0alines\n"),
        ("nul\0 cr\r nel\x85 ls\u2028 ps\u2029 bom\ufeff", None),
    ],
)
def test_yaml_comment_is_one_comment_line(text: str, shown: str | None) -> None:
    comment = yaml_comment(text)
    assert comment.startswith("# ") and comment.endswith("\n") and comment.count("\n") == 1
    if shown is not None:
        assert comment == shown
    assert load_spec(comment + dump_spec(_spec("a"))) == _spec("a")
    for raw in "\0\r\x85\u2028\u2029\ufeff":
        assert raw not in comment
