"""`regnet-space schema`: the JSON schema validates the shipped specs and tells the truth about
defaults."""

from __future__ import annotations

import json

import pytest
from cli_helpers import SPECS, run

from regnet_space.core.spec import spec_json_schema


def test_schema_validates_shipped_specs(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "schema")
    assert status == 0
    schema = json.loads(out)
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    for f in SPECS.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "block": "x", "depth": 3, "bogus": 1}, schema)


def test_schema_se_ratio_default_is_not_a_lie() -> None:
    definitions = spec_json_schema()["$defs"]
    for model in ("ParametricSpec", "ExplicitSpec"):
        field = definitions[model]["properties"]["se_ratio"]
        assert "default" not in field and "0.25 for y, 0 for x" in field["description"]
        assert definitions[model]["properties"]["input_size"]["default"] == 224
