"""One spec input everywhere: our YAML, Hugging Face config.json, pycls YAML and model names as
each library spells them, in the Python API and in every command that takes a SPEC."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run

from regnet_space import PlanError, load_spec, plan
from regnet_space.core import reader as core_reader
from regnet_space.core.errors import SpecError
from regnet_space.core.hf import hf_config_from_spec
from regnet_space.core.names import names_table, resolve_name, specs_dir, spellings
from regnet_space.infra.errors import RegNetSpaceError

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
PYCLS = ROOT / "tests" / "data" / "pycls"
STEMS = sorted(p.stem for p in SPECS.glob("*.yaml"))


def test_every_shipped_spec_has_names_and_every_name_a_spec() -> None:
    assert specs_dir() == SPECS
    assert set(names_table().values()) == set(STEMS)
    for name, stem in names_table().items():
        assert resolve_name(name) == SPECS / f"{stem}.yaml"
        assert resolve_name(name.upper()) == SPECS / f"{stem}.yaml"


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("y040", "y040"),
        ("RegNetY-4.0GF", "y040"),
        ("regnety_040", "y040"),
        ("timm/regnety_040.ra3_in1k", "y040"),
        ("regnet_y_3_2gf", "y032"),
        ("regnet_y_800mf", "y008_tv"),
        ("regnety_008_tv", "y008_tv"),
        ("facebook/regnet-y-040", "y040"),
        ("facebook/regnet-y-10b-seer", "y10b"),
        ("RegNetX-1.6GF", "x016"),
    ],
)
def test_names_as_each_library_spells_them(name: str, stem: str) -> None:
    expected = load_spec(SPECS / f"{stem}.yaml")
    assert load_spec(name) == expected
    assert core_reader.load_spec(name) == expected  # the reader itself, in core, knows names


def test_torchvision_names_build_what_torchvision_builds() -> None:
    """torchvision's rule (float32, make-divisible) on the file's design gives the file's plan."""
    checked = 0
    for stem in STEMS:
        for name in spellings(stem).get("torchvision", []):
            spec = load_spec(name)
            as_tv = spec.model_copy(update={"rounding": "torchvision"})
            assert plan(as_tv).stages == plan(spec).stages, name
            checked += 1
    assert checked == 15  # torchvision's 15 RegNet builders


def test_timm_names_build_what_timm_builds() -> None:
    """timm's float32 rule (group_min_ratio 0, or 0.9 for *_tv) gives the file's plan."""
    checked = 0
    for stem in STEMS:
        for name in spellings(stem).get("timm", []):
            spec = load_spec(name)
            rule = "torchvision" if name.endswith("_tv") else "timm"
            assert plan(spec.model_copy(update={"rounding": rule})).stages == plan(spec).stages
            checked += 1
    assert checked >= 29


def test_hf_names_are_hf_expressible() -> None:
    for stem in STEMS:
        for name in spellings(stem).get("hf", []):
            cfg = hf_config_from_spec(load_spec(name))
            assert list(cfg.hidden_sizes) == list(plan(load_spec(name)).widths)


def test_loading_names_imports_no_peer_library() -> None:
    code = (
        "import sys, regnet_space as r\n"
        "for n in ('y040', 'regnety_040', 'regnet_y_3_2gf', 'facebook/regnet-y-040'):\n"
        "    r.plan(r.load_spec(n))\n"
        "bad = {'torch', 'timm', 'torchvision', 'transformers'} & set(sys.modules)\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def hf_snapshot(tmp_path: Path) -> Path:
    """A config.json as transformers writes it (RegNetConfig.save_pretrained), for RegNetY-4.0GF."""
    from transformers import RegNetConfig

    folder = tmp_path / "regnet-y-040"
    RegNetConfig(
        hidden_sizes=[128, 192, 512, 1088],
        depths=[2, 6, 12, 2],
        groups_width=64,
        layer_type="y",
        num_labels=1000,
    ).save_pretrained(folder)
    return folder


def test_python_load_spec_reads_every_form(hf_snapshot: Path) -> None:
    y040 = plan(load_spec("y040"))
    for source in (
        hf_snapshot,
        hf_snapshot / "config.json",
        str(hf_snapshot / "config.json"),
        json.loads((hf_snapshot / "config.json").read_text()),
        PYCLS / "RegNetY-4.0GF_dds_8gpu.yaml",
        (PYCLS / "RegNetY-4.0GF_dds_8gpu.yaml").read_text(),
        SPECS / "y040.yaml",
    ):
        assert plan(load_spec(source)).stages == y040.stages, source
    from transformers import RegNetConfig

    assert plan(load_spec(RegNetConfig.from_pretrained(hf_snapshot))).stages == y040.stages


def test_report_and_build_take_every_form(
    capsys: pytest.CaptureFixture[str], hf_snapshot: Path
) -> None:
    forms = [
        str(hf_snapshot / "config.json"),
        str(hf_snapshot),
        str(PYCLS / "RegNetY-4.0GF_dds_8gpu.yaml"),
        "y040",
        "RegNetY-4.0GF",
        "regnety_040",
        "facebook/regnet-y-040",
        str(SPECS / "y040.yaml"),
    ]
    status, out, err = run(capsys, "report", *forms, "--format", "json")
    assert status == 0 and err == ""
    rows = json.loads(out)
    assert len(rows) == len(forms)
    assert len({(r["flops"], r["params"], r["acts"]) for r in rows}) == 1
    assert rows[0]["params"] == 20_646_656
    status, out, _ = run(capsys, "build", "regnet_y_3_2gf", "--json")
    assert status == 0 and json.loads(out)["widths"] == [72, 216, 576, 1512]
    status, out, _ = run(capsys, "scale", "regnetx_002", "--flops", "2")
    assert status == 0, out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("report", "regnety_04"), "did you mean"),
        (("build", "no-such-model"), "shipped model name"),
    ],
)
def test_unknown_forms_are_one_line_naming_the_forms(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and expected in err
    for form in ("regnet-space spec", "config.json", "pycls", "regnety_040"):
        assert form in err


def test_a_mapping_of_no_known_form(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("optimizer: sgd\nlr: 0.1\n")
    with pytest.raises(SpecError, match="not a spec; expected a regnet-space spec"):
        load_spec(path)
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"model_type": "resnet", "hidden_sizes": [64]}))
    with pytest.raises(RegNetSpaceError, match=r"config\.json: model_type: expected regnet"):
        load_spec(other)


def test_a_bad_hf_config_is_one_short_line(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "regnet", "hidden_sizes": [50], "depths": [1]}))
    status, _, err = run(capsys, "report", str(path))  # groups_width 64 (the default): 1 group
    assert status == 0
    path.write_text(
        json.dumps(
            {"model_type": "regnet", "hidden_sizes": [50], "depths": [1], "groups_width": 16}
        )
    )
    status, _, err = run(capsys, "report", str(path))
    assert status == 2 and err.count("\n") == 1 and len(err) < 200
    assert "hidden_sizes[0]: 50 channels do not split into 3 groups" in err


def test_a_file_wins_over_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("y040").write_text((SPECS / "x002.yaml").read_text())
    assert load_spec("y040").name == "RegNetX-200MF"
    with pytest.raises((SpecError, PlanError)):
        load_spec("y0400")
