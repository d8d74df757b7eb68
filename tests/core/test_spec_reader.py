"""The one spec reader: every spec form, from every entry point, goes through `read_spec`;
its form is told once; a config.json is opened once per command; a name is looked up once."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import regnet_space
from regnet_space.cli import main as run
from regnet_space.core import names, reader
from regnet_space.core.errors import SpecError
from regnet_space.core.spec import ParametricSpec

ROOT = Path(__file__).resolve().parents[2]
OURS = "name: tiny\nblock: x\ndepth: 4\nw0: 16\nwa: 8.0\nwm: 2.0\ngroup_width: 8\n"
HF = {
    "model_type": "regnet",
    "hidden_sizes": [16, 32],
    "depths": [1, 1],
    "groups_width": 8,
    "layer_type": "x",
    "num_labels": 5,
}
PYCLS = "MODEL:\n  TYPE: regnet\nREGNET:\n  DEPTH: 4\n  W0: 16\n  WA: 8.0\n  WM: 2.0\n"


def _forms(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Each form as a command-line argument, with the form's one function."""
    ours, pycls = tmp_path / "tiny.yaml", tmp_path / "pycls.yaml"
    ours.write_text(OURS)
    pycls.write_text(PYCLS)
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "config.json").write_text(json.dumps(HF))
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"name": "j"} | _our_fields()))
    return {
        "our YAML file": (str(ours), "spec_from_dict"),
        "our JSON file": (str(flow), "spec_from_dict"),
        "our YAML text": (OURS, "spec_from_dict"),
        "a shipped name": ("regnety_040", "spec_from_dict"),
        "a Hugging Face folder": (str(snapshot), "spec_from_hf_config"),
        "a Hugging Face config.json": (str(snapshot / "config.json"), "spec_from_hf_config"),
        "a pycls YAML": (str(pycls), "spec_from_pycls_dict"),
        "stdin": ("-", "spec_from_dict"),
    }


def _our_fields() -> dict[str, Any]:
    return {"block": "x", "depth": 4, "w0": 16, "wa": 8.0, "wm": 2.0, "group_width": 8}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts of calls of the reader and of each form's function (as the reader calls them)."""
    seen: Counter[str] = Counter()

    def spy(module: Any, name: str) -> None:
        real: Callable[..., Any] = getattr(module, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    for name in ("read_spec", "spec_from_dict", "spec_from_hf_config", "spec_from_pycls_dict"):
        spy(reader, name)
    spy(reader, "resolve_name")
    return seen


def _entry_points(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict:
    def command(*argv: str) -> Callable[[str], None]:
        def call(spec: str) -> None:
            if spec == "-":
                monkeypatch.setattr(sys, "stdin", io.StringIO(OURS))
            status = run([*argv[:1], spec, *argv[1:]])
            out = capsys.readouterr()
            assert status == 0, out.err

        return call

    def python(spec: str) -> None:
        if spec == "-":
            monkeypatch.setattr(sys, "stdin", io.StringIO(OURS))
        assert regnet_space.load_spec(spec).name

    return {
        "python": python,
        "report": command("report", "--json"),
        "build": command("build", "--json"),
        "scale": command("scale", "--flops-factor", "2", "--allow-miss", "-o", "-"),
    }


def test_every_spec_form_goes_through_the_one_reader(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    calls: Counter[str],
) -> None:
    entries = _entry_points(monkeypatch, capsys)
    for form, (argument, function) in _forms(tmp_path).items():
        for entry, call in entries.items():
            calls.clear()
            call(argument)
            named = 1 if form == "a shipped name" else 0
            assert calls == Counter({"read_spec": 1, function: 1, "resolve_name": named}), (
                form,
                entry,
                calls,
            )


def test_mappings_specs_and_config_objects_are_read_by_it_too(calls: Counter[str]) -> None:
    spec = regnet_space.load_spec({"name": "d"} | _our_fields())
    assert isinstance(spec, ParametricSpec)
    assert regnet_space.load_spec(spec) is spec
    hf = regnet_space.load_spec(HF)
    pycls = regnet_space.load_spec({"MODEL": {"TYPE": "regnet"}, "REGNET": {"DEPTH": 4}})
    assert (hf.name, pycls.name) == ("hf-regnet", "pycls-regnet")
    assert calls == Counter(
        {"read_spec": 4, "spec_from_dict": 1, "spec_from_hf_config": 1, "spec_from_pycls_dict": 1}
    )


def test_the_public_load_spec_is_the_readers() -> None:
    assert regnet_space.load_spec is reader.load_spec
    import regnet_space.core.spec as core_spec

    assert not hasattr(core_spec, "load_spec")


def test_a_name_is_looked_up_once_hit_or_miss(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lookups: list[str] = []
    real = names.resolve_name

    def counted(text: str) -> Path | None:
        lookups.append(text)
        return real(text)

    # Wherever it is called from: the names module and every module that imported it.
    monkeypatch.setattr(names, "resolve_name", counted)
    monkeypatch.setattr(reader, "resolve_name", counted)
    assert run(["report", "y040", "--json"]) == 0
    assert lookups == ["y040"]
    lookups.clear()
    assert run(["report", "y04", "--json"]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert lookups == ["y04"]
    lookups.clear()
    with pytest.raises(SpecError, match="not a shipped model name"):
        regnet_space.load_spec("y04")
    assert lookups == ["y04"]


OPENS = """\
import sys
opened = []


def hook(event, args):
    if event == "open" and str(args[0]).endswith("config.json"):
        opened.append(str(args[0]))


sys.addaudithook(hook)
if sys.argv[1] == "python":
    import regnet_space

    regnet_space.load_spec(sys.argv[2])
    status = 0
else:
    from regnet_space.cli import main

    status = main(sys.argv[1:])
print("OPENED", len(opened), status, file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "{folder}"],
        ["report", "{folder}", "--json"],
        ["report", "{folder}/config.json", "--json"],
        ["build", "{folder}", "--json"],
        ["scale", "{folder}", "--flops-factor", "2", "--allow-miss", "-o", "-"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_a_config_json_is_opened_once_per_command(tmp_path: Path, argv: list[str]) -> None:
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(HF))
    proc = subprocess.run(
        [sys.executable, "-c", OPENS, *(a.format(folder=folder) for a in argv)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "OPENED 1 0", proc.stderr[-2000:]
