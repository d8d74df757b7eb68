"""Hugging Face config fields transformers honours: output switches in config.json, and the
`swish` activation name (transformers' alias of SiLU), in the Hugging Face and pycls readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from regnet_space.core.hf import spec_from_hf_config
from regnet_space.core.pycls import spec_from_pycls_yaml
from regnet_space.nn.model import RegNetForImageClassification, RegNetModel

transformers = pytest.importorskip("transformers")

SMALL = {"hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "groups_width": 8}


def _saved(tmp_path: Path, **fields: object) -> Path:
    config = transformers.RegNetConfig(**SMALL, num_labels=3, **fields)
    transformers.RegNetForImageClassification(config).eval().save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("cls", [RegNetForImageClassification, RegNetModel])
def test_from_pretrained_honours_output_hidden_states_in_config_json(
    tmp_path: Path, cls: type
) -> None:
    folder = _saved(tmp_path, output_hidden_states=True)
    assert json.loads((folder / "config.json").read_text())["output_hidden_states"] is True
    x = torch.rand(1, 3, 32, 32)
    theirs = getattr(transformers, cls.__name__).from_pretrained(folder).eval()
    ours = cls.from_pretrained(folder)
    with torch.no_grad():
        assert theirs(x).hidden_states is not None  # what transformers does
        assert ours(x).hidden_states is not None
        assert len(ours(x).hidden_states) == 5
    # an explicit argument wins over config.json, as in transformers
    quiet = cls.from_pretrained(folder, output_hidden_states=False)
    with torch.no_grad():
        assert quiet(x).hidden_states is None


def test_from_pretrained_honours_return_dict_and_torchscript_in_config_json(
    tmp_path: Path,
) -> None:
    folder = _saved(tmp_path, return_dict=False)
    ours = RegNetForImageClassification.from_pretrained(folder)
    with torch.no_grad():
        assert isinstance(ours(torch.rand(1, 3, 32, 32)), tuple)
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**data, "return_dict": True, "torchscript": True})
    )
    with torch.no_grad():
        out = RegNetForImageClassification.from_pretrained(folder)(torch.rand(1, 3, 32, 32))
    assert isinstance(out, tuple)


def test_hidden_act_swish_reads_as_silu_with_hugging_faces_outputs(tmp_path: Path) -> None:
    folder = _saved(tmp_path, hidden_act="swish")
    spec = spec_from_hf_config(json.loads((folder / "config.json").read_text()))
    assert spec.activation == "silu"
    theirs = transformers.RegNetForImageClassification.from_pretrained(folder).eval()
    ours = RegNetForImageClassification.from_pretrained(folder)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, theirs(x).logits, atol=1e-6, rtol=0)


def test_pycls_activation_swish_reads_as_silu() -> None:
    text = "MODEL:\n  TYPE: regnet\n  ACTIVATION_FUN: swish\nREGNET:\n  DEPTH: 4\n  W0: 16\n"
    assert spec_from_pycls_yaml(text).activation == "silu"
