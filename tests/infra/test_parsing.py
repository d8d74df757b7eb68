"""The safe readers: duplicate JSON keys refused by name, flow-style YAML read as YAML, and a
number too long to read named as such (issue 17, items 10 and 20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regnet_space import load_spec
from regnet_space.cli import main as run
from regnet_space.core.errors import BuildError, SpecError
from regnet_space.core.spec import ParametricSpec
from regnet_space.infra.errors import RegNetSpaceError
from regnet_space.infra.parsing import parse_json
from regnet_space.nn.model import RegNetForImageClassification, build_model

HF_CONFIG = {
    "model_type": "regnet",
    "hidden_sizes": [16, 32],
    "depths": [1, 2],
    "groups_width": 8,
    "layer_type": "x",
    "num_labels": 5,
}
FLOW = "{name: a, block: x, depth: 13, w0: 24, wa: 36.44, wm: 2.49, group_width: 8}\n"
RECORD = {"block": "x", "depth": 13, "w0": 24, "wa": 36.44, "wm": 2.49, "group_width": 8}


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = run(list(argv))
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("regnet-space: "), err
    return err


def _duplicated(obj: dict, key: str, value: object) -> str:
    """JSON text of obj with `key` written a second time, last (the value json.loads keeps)."""
    text = json.dumps(obj)
    return text[:-1] + f", {json.dumps(key)}: {json.dumps(value)}}}"


# ---------------------------------------------------------------------------------------------
# Duplicate keys


def test_parse_json_refuses_a_duplicate_key_by_name() -> None:
    with pytest.raises(SpecError, match=r"^x\.json: duplicate key 'depths'$"):
        parse_json(_duplicated(HF_CONFIG, "depths", [2, 2]), "x.json", error=SpecError)
    nested = '{"a": {"b": 1, "c": 2, "b": 3}}'
    with pytest.raises(SpecError, match="duplicate key 'b'"):
        parse_json(nested, "n.json", error=SpecError)
    assert parse_json('{"a": {"b": 1}, "b": {"a": 2}}', "ok.json") == {"a": {"b": 1}, "b": {"a": 2}}


def test_a_config_json_with_a_key_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "snap"
    folder.mkdir()
    config = folder / "config.json"
    config.write_text(_duplicated(HF_CONFIG, "depths", [3, 3]))
    for source in (config, folder):
        with pytest.raises(RegNetSpaceError, match="duplicate key 'depths'"):
            load_spec(source)
    with pytest.raises(RegNetSpaceError, match="duplicate key 'depths'"):
        load_spec(folder)
    assert "config.json: duplicate key 'depths'" in _refused(capsys, "report", str(config))


def test_from_pretrained_refuses_duplicate_keys(tmp_path: Path) -> None:
    model = build_model(load_spec(json.dumps(HF_CONFIG)))
    model.save_pretrained(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    data = json.loads(config.read_text())
    config.write_text(_duplicated(data, "hidden_sizes", [16, 32]))
    with pytest.raises(BuildError, match=r"config\.json: duplicate key 'hidden_sizes'"):
        RegNetForImageClassification.from_pretrained(tmp_path / "m")


def test_a_spec_json_with_a_key_twice_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(_duplicated({"name": "a", **RECORD}, "depth", 20))
    with pytest.raises(SpecError, match=r"s\.json: duplicate key 'depth'"):
        load_spec(spec)


def test_results_with_a_key_twice_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {"id": 0, "error": 30.0, **RECORD}
    lines = tmp_path / "r.jsonl"
    lines.write_text(json.dumps(good) + "\n" + _duplicated({**good, "id": 1}, "error", 1.0) + "\n")
    err = _refused(capsys, "analyze", str(lines))
    assert "r.jsonl: line 2: duplicate key 'error'" in err
    listed = tmp_path / "r.json"
    listed.write_text("[" + _duplicated(good, "error", 1.0) + "]")
    assert "r.json: duplicate key 'error'" in _refused(capsys, "analyze", str(listed))


# ---------------------------------------------------------------------------------------------
# Flow-style YAML is YAML


def test_a_flow_style_yaml_spec_is_read_as_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    spec = load_spec(path)
    assert isinstance(spec, ParametricSpec) and spec.name == "a" and spec.depth == 13
    assert load_spec(FLOW) == spec
    assert run(["report", str(path)]) == 0
    assert "flow.yaml" in capsys.readouterr().out


def test_json_text_in_a_yaml_file_is_still_json(tmp_path: Path) -> None:
    """JSON's numbers stay JSON's: 1e1 is a float in JSON, a string in YAML 1.1."""
    path = tmp_path / "j.yaml"
    path.write_text(json.dumps({"name": "a", **RECORD, "wm": 2.49e0}).replace("2.49", "249e-2"))
    spec = load_spec(path)
    assert isinstance(spec, ParametricSpec) and spec.wm == 2.49
    bad = tmp_path / "dup.yaml"
    bad.write_text(_duplicated({"name": "a", **RECORD}, "depth", 20))
    with pytest.raises(SpecError, match="duplicate key 'depth'"):
        load_spec(bad)


def test_broken_flow_yaml_says_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("{name: a, block: [x\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: line .*invalid YAML") as err:
        load_spec(path)
    assert "JSON" not in str(err.value)


def test_a_json_file_is_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text(FLOW)
    with pytest.raises(SpecError, match="invalid JSON"):
        load_spec(path)


def test_a_flow_style_hf_config_in_yaml_is_named_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("{model_type: regnet, hidden_sizes: [16, 32], depths: [1, 2], "
                    "groups_width: 8, layer_type: x}\n")  # fmt: skip
    assert load_spec(path).name == "mine"


# ---------------------------------------------------------------------------------------------
# A number too long to read


PYCLS = """MODEL:
  TYPE: regnet
  NUM_CLASSES: 1000
REGNET:
  DEPTH: {depth}
  W0: 24
  WA: 36.44
  WM: 2.49
  GROUP_W: 8
"""


def test_a_5000_digit_pycls_depth_is_named_too_long(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(PYCLS.format(depth="9" * 5000))
    err = _refused(capsys, "report", str(path))
    assert "REGNET.DEPTH" in err and "too long" in err and "_TooLong" not in err
    path.write_text(PYCLS.format(depth="9" * 300))
    err = _refused(capsys, "report", str(path))
    assert "depth" in err and len(err) < 300, err


def test_long_numbers_in_other_yaml_forms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = tmp_path / "hf.yaml"
    hf.write_text(f"model_type: regnet\nhidden_sizes: [16, 32]\ndepths: [1, 2]\n"
                  f"groups_width: {'9' * 5000}\nlayer_type: x\n")  # fmt: skip
    err = _refused(capsys, "report", str(hf))
    assert "groups_width: expected a positive integer, got a number too long to read" in err
    ours = tmp_path / "ours.yaml"
    ours.write_text(f"name: a\nblock: x\ndepth: {'9' * 5000}\nw0: 24\nwa: 36\nwm: 2.5\n"
                    "group_width: 8\n")  # fmt: skip
    err = _refused(capsys, "report", str(ours))
    assert "depth: number too long to read" in err
