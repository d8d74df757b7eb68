"""Hugging Face snapshot folders with torch: the weights from_pretrained reads and
save_pretrained writes, the output switches config.json sets, transformers' own RegNetConfig.

`core.hf` holds the rest of what this package knows of Hugging Face (config fields, config.json,
the folder's file names); this module adds only what needs torch or transformers. Every
problem is one line of BuildError naming the file.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor, nn

from ..core.errors import BuildError, SpecError
from ..core.generator import Plan, make_plan
from ..core.hf import (
    CONFIG_FILE,
    WEIGHT_FILES,
    HfRegNetConfig,
    hf_config_json,
    hf_config_kwargs,
    read_hf_config,
    spec_from_hf_config,
)
from ..infra.outputs import atomic_write_text, atomic_write_with
from ..infra.paths import check_target
from ..infra.text import clean, short
from .weights import check_weight, read_safetensors, read_weight_file, state_dict_in

_Model = TypeVar("_Model", bound=nn.Module)

# transformers' PretrainedConfig output switches and their defaults.
OUTPUT_SWITCHES = {"output_hidden_states": False, "return_dict": True, "torchscript": False}


def transformers_config(config: HfRegNetConfig) -> Any:
    """A `transformers.RegNetConfig` of these fields (imports transformers)."""
    from transformers import RegNetConfig

    return RegNetConfig(**config.as_kwargs())


@dataclass(frozen=True)
class Snapshot:
    """What a snapshot folder's config.json says: the plan, and the output switches."""

    plan: Plan
    switches: dict[str, bool]


def read_snapshot(folder: Path, given: Mapping[str, bool | None]) -> Snapshot:
    """The plan of a snapshot folder's config.json (named after the folder) and the output
    switches: each given one, else config.json's, else transformers' default."""
    config = folder / CONFIG_FILE
    if not config.exists():  # a FIFO or device is named by the reader, never opened blocking
        raise BuildError(f"{folder}: no config.json (expected a save_pretrained directory)")
    data = read_hf_config(config, error=BuildError)
    try:
        spec = spec_from_hf_config(data, folder.name or "hf", str(config))
    except SpecError as exc:  # a folder from_pretrained cannot build: a build error
        raise BuildError(str(exc)) from None
    switches = {}
    for key, default in OUTPUT_SWITCHES.items():
        value = given.get(key)
        if value is None:
            value = data.get(key, default)
            if not isinstance(value, bool):
                raise BuildError(f"{config}: {key}: expected true or false, got {value!r}")
        switches[key] = value
    return Snapshot(make_plan(spec), switches)


def load_weights(model: _Model, folder: Path, prefix: str) -> _Model:
    """Load a folder's weights strictly: every key and shape, the first offender named.

    `prefix` is the backbone's key prefix in `model` ("regnet." for the classifier). A
    classifier checkpoint loads into RegNetModel (its head dropped, as transformers does);
    a RegNetModel checkpoint into the classifier leaves the head as initialised, with a warning.
    """
    state, origin = _read_weights(folder)
    if prefix and not any(k.startswith(prefix) for k in state):
        state = {prefix + k: v for k, v in state.items()}
    elif not prefix and any(k.startswith("regnet.") for k in state):
        state = {k[7:]: v for k, v in state.items() if k.startswith("regnet.")}
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise BuildError(f"{folder}: unexpected weight {unexpected[0]!r} for this config.json")
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    head = [k for k in missing if k.startswith("classifier.")]
    body = [k for k in missing if k not in head]
    if body:
        raise BuildError(f"{folder}: missing weight {body[0]!r}")
    for key, value in state.items():
        check_weight(value, key, origin, BuildError, count=not own[key].is_floating_point())
        if value.shape != own[key].shape:
            raise BuildError(
                f"{folder}: {key}: shape {tuple(value.shape)}, the config gives "
                f"{tuple(own[key].shape)}"
            )
    if head:
        warnings.warn(
            f"{folder}: no classifier weights ({', '.join(head)}); the head is newly initialised",
            stacklevel=3,
        )
    model.load_state_dict(state, strict=False)
    return model.eval()


def save_snapshot(
    model: nn.Module, plan: Plan, folder: Path, architecture: str, force: bool
) -> Path:
    """config.json (Hugging Face's fields) and model.safetensors (metadata format pt)."""
    kwargs = hf_config_kwargs(plan)  # refuses what Hugging Face's config cannot express
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise BuildError("save_pretrained needs the safetensors package") from None
    if folder.exists() and not folder.is_dir():
        raise BuildError(f"{folder}: exists and is not a directory")
    config, weights = folder / CONFIG_FILE, folder / WEIGHT_FILES[0]
    if folder.is_dir():
        check_target(config, force)
        check_target(weights, force)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    text = json.dumps(hf_config_json(kwargs, architecture), indent=2) + "\n"
    atomic_write_with(weights, lambda tmp: save_file(state, tmp, {"format": "pt"}), force)
    atomic_write_text(config, text, force)
    return folder


def _read_weights(folder: Path) -> tuple[dict[str, Tensor], str]:
    """The state dict of a snapshot folder and the file it came from (for messages):
    model.safetensors, the shards its index names, or pytorch_model.bin."""
    found = [folder / name for name in WEIGHT_FILES if os.path.lexists(folder / name)]
    if not found:
        raise BuildError(f"{folder}: no weights ({', '.join(WEIGHT_FILES)})")
    path = found[0]
    if path.name.endswith(".index.json"):
        return _read_shards(path), str(path)
    return state_dict_in(read_weight_file(path, BuildError), str(path), BuildError), str(path)


def _read_shards(index: Path) -> dict[str, Tensor]:
    """The tensors of the shards a sharded index maps the weights to (files of its folder)."""
    weight_map = read_hf_config(index, error=BuildError).get("weight_map")
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise BuildError(f"{index}: no weight_map")
    names = sorted({_shard_name(name, index) for name in weight_map.values()})
    state: dict[str, Tensor] = {}
    for name in names:
        shard = index.parent / name
        for key, value in read_safetensors(shard, BuildError).items():
            if key in state:
                raise BuildError(f"{shard}: {clean(key)} is also in another shard")
            state[key] = value
    return state


def _shard_name(name: Any, index: Path) -> str:
    """A shard's file name; anything that could name a file outside the folder is refused."""
    if not isinstance(name, str):
        raise BuildError(f"{index}: weight_map: shard {short(name)} is not a file name")
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise BuildError(f"{index}: weight_map: shard {short(name)} is not a file in this folder")
    return name
