"""Checkpoint conversion between timm, torchvision, pycls and Hugging Face RegNet key layouts.

Keys are mapped by name from the plan (each library's own module names), never by position (timm
registers `downsample` after `conv3`); every tensor's shape is checked against the model the
spec builds, and the first offending key is named in a one-line `ConvertError`. Checkpoints
are read with `torch.load(..., weights_only=True)` or safetensors only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor

from ..core.blocks import (
    BLOCK_PREFIX,
    CLASSIFIER,
    PEER_NAMES,
    BlockLayers,
    ConvLayer,
    NormAct,
    SqueezeExcite,
    Unit,
    block_layers,
    head_layers,
    peer_refusal,
    stem_layers,
    timm_layout,
)
from ..core.generator import Plan
from ..infra.errors import RegNetSpaceError
from ..infra.outputs import atomic_write_with
from ..infra.paths import check_target
from ..nn.weights import SAFETENSORS_SUFFIX, check_weight, read_weight_file, save_torch

__all__ = [
    "LIBRARIES",
    "ConvertError",
    "KeyPair",
    "Library",
    "check_layout",
    "check_output",
    "convert_state_dict",
    "detect_library",
    "expected_shapes",
    "key_pairs",
    "layout_of",
    "load_converted",
    "read_checkpoint",
    "save_state_dict",
]

Library = Literal["hf", "timm", "torchvision", "pycls"]
LIBRARIES: tuple[Library, ...] = get_args(Library)

TORCH_SUFFIXES = (".pth", ".pyth", ".pt", ".bin", ".ckpt")
# Wrappers around the state dict: pycls, training scripts (timm, Lightning), torchvision refs.
_WRAPPER_KEYS = ("model_state", "state_dict", "model", "module")


class ConvertError(RegNetSpaceError, ValueError):
    """A checkpoint that cannot be read, or whose keys or shapes do not fit the spec."""


# ---------------------------------------------------------------------------------------------
# Key layouts: every stateful unit of the block, stem and head definitions (core.blocks), its
# module path in our model and its name in the library's layout (blocks.PEER_NAMES)

_TENSORS = {
    "conv": ("weight",),
    "conv_bias": ("weight", "bias"),
    "batch": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    "group": ("weight", "bias"),
    "linear": ("weight", "bias"),
}


@dataclass(frozen=True)
class KeyPair:
    """One tensor: its key in our (Hugging Face) layout and in a peer library's layout."""

    ours: str
    theirs: str


@dataclass(frozen=True)
class _Part:
    """A module with state: our path, its tensor kind, and its role's name (0: conv or first
    module, 1: norm or second module) in PEER_NAMES."""

    ours: str
    kind: str
    role: str
    which: int


def _unit_parts(unit: Unit, norm: str) -> list[_Part]:
    """The stateful modules of one unit, paths relative to where the unit sits."""
    if isinstance(unit, ConvLayer):
        parts = [_Part(f"{unit.path}.convolution", "conv", unit.role, 0)]
        if unit.norm:
            parts.append(_Part(f"{unit.path}.normalization", norm, unit.role, 1))
        return parts
    if isinstance(unit, NormAct):
        return [_Part(f"{unit.path}.normalization", norm, unit.role, 1)] if unit.norm else []
    if isinstance(unit, SqueezeExcite):
        return [
            _Part(f"{unit.path}.attention.0", "conv_bias", unit.role, 0),
            _Part(f"{unit.path}.attention.2", "conv_bias", unit.role, 1),
        ]
    return []  # pools


def _block_parts(layers: BlockLayers, norm: str) -> list[_Part]:
    """Pre-activation, shortcut (first, as timm registers it last) and branch modules."""
    units = [layers.preact] if layers.preact is not None else []
    units += [*(layers.shortcut or ()), *layers.layer]
    return [part for u in units for part in _unit_parts(u, norm)]


def layout_of(plan: Plan, library: Library) -> str:
    """The key layout a library stores this plan in: timm's ByobNet (byobnet.py: the tiered
    stem, bottleneck_in, SE from the bottleneck width) or its RegNet (regnet.py) for timm."""
    return timm_layout(plan) if library == "timm" else library


def _peer(part: _Part, layout: str, plan: Plan) -> str:
    """The part's module path in the layout (ours, from where the unit sits, for hf)."""
    if layout == "hf":
        return part.ours
    name = PEER_NAMES.get(part.role, {}).get(layout, (None, None))[part.which]
    if name is None:  # the refusals of check_layout come first; this is a missing table row
        raise ConvertError(f"{plan.name}: {layout}'s layout has no module for {part.role!r}")
    return name


def _modules(plan: Plan, layout: str, head: bool) -> list[tuple[str, str, str]]:
    """(our module path, peer module path, tensor kind) of every stateful module, stem first."""
    norm = plan.options.norm
    stem = "embedder." if layout == "hf" else ""  # peer stem names are from the root
    out = [
        (f"embedder.{p.ours}", stem + _peer(p, layout, plan), p.kind)
        for u in stem_layers(plan).units
        for p in _unit_parts(u, norm)
    ]
    ours_prefix, theirs_prefix = BLOCK_PREFIX["hf"], BLOCK_PREFIX[layout]
    for blk in plan.blocks:
        names = {"i": blk.stage + 1, "j": blk.index + 1, "s": blk.stage, "b": blk.index}
        ours, theirs = ours_prefix.format(**names), theirs_prefix.format(**names)
        out += [
            (ours + p.ours, theirs + _peer(p, layout, plan), p.kind)
            for p in _block_parts(block_layers(plan, blk), norm)
        ]
    out += [
        (p.ours, _peer(p, layout, plan), p.kind)
        for u in head_layers(plan)
        for p in _unit_parts(u, norm)
    ]
    if head and plan.num_classes > 0:
        out.append((CLASSIFIER["hf"], CLASSIFIER[layout], "linear"))
    return out


def _hf_key(path: str, prefixed: bool) -> str:
    """A Hugging Face key: under `regnet.` in the classification model, bare in RegNetModel."""
    if path.startswith("classifier.") or not prefixed:
        return path
    return "regnet." + path


def key_pairs(
    plan: Plan, library: Library, *, head: bool = True, hf_prefixed: bool | None = None
) -> tuple[KeyPair, ...]:
    """Every tensor key of the model `build_model(plan, with_head=head)` and its peer key.

    `head=False` pairs the bare RegNetModel (no `regnet.` prefix, no classifier). For a
    Hugging Face peer, `hf_prefixed` says whether its keys carry the `regnet.` prefix
    (default: as ours do).
    """
    _check_library(library)
    check_layout(plan, library)
    theirs_prefixed = head if hf_prefixed is None else hf_prefixed
    pairs = []
    for ours, theirs, kind in _modules(plan, layout_of(plan, library), head):
        ours_key = _hf_key(ours, head)
        theirs_key = _hf_key(theirs, theirs_prefixed) if library == "hf" else theirs
        for tensor in _TENSORS[kind]:
            pairs.append(KeyPair(f"{ours_key}.{tensor}", f"{theirs_key}.{tensor}"))
    return tuple(pairs)


def _check_library(library: str) -> None:
    if library not in LIBRARIES:
        raise ConvertError(f"unknown library {library!r}; expected one of {', '.join(LIBRARIES)}")


def check_layout(plan: Plan, library: Library) -> None:
    """Refuse, naming the field, a plan the library's models cannot hold or that would compute
    something else with the same weights (a conversion never yields another network)."""
    if library == "hf":
        return
    layout = layout_of(plan, library)
    why = peer_refusal(plan, layout)
    if why is None:
        return
    if why.startswith("stem: cifar"):  # the one message that names the stem peers have
        raise ConvertError(
            f"{plan.name}: stem: cifar (stride-1 stem); {library}'s RegNet has only the "
            "stride-2 ImageNet stem"
        )
    raise ConvertError(f"{plan.name}: {why}")


# Marker substrings of each layout, for a hint when keys do not fit the named library.
_MARKERS: tuple[tuple[Library, str], ...] = (
    ("torchvision", "trunk_output."),
    ("hf", "embedder.embedder."),
    ("timm", ".conv1.conv."),
    ("pycls", ".f.a_bn."),
)


def detect_library(keys: list[str]) -> Library | None:
    """The library whose key layout these keys follow, or None if none is recognisable."""
    for library, marker in _MARKERS:
        if any(marker in k for k in keys):
            return library
    return None


# ---------------------------------------------------------------------------------------------
# Shapes and conversion


def expected_shapes(plan: Plan, *, head: bool = True) -> dict[str, tuple[int, ...]]:
    """Shape of every state-dict entry of the model the plan builds (meta device: no memory)."""
    from ..nn.model import build_model

    with torch.device("meta"):
        model = build_model(plan, head, force=True)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def convert_state_dict(
    state: Mapping[str, Tensor],
    plan: Plan,
    source: Library,
    target: Library = "hf",
    *,
    head: bool = True,
    bgr_to_rgb: bool = False,
    origin: str = "<state dict>",
) -> dict[str, Tensor]:
    """A `source`-layout state dict re-keyed to the `target` layout, every key and shape checked.

    `head=False` drops the classifier (present or not) and gives the backbone keys only.
    `bgr_to_rgb` flips the stem conv's input channels (pycls checkpoints were trained on BGR).
    A missing `num_batches_tracked` buffer is filled with 0; anything else missing, extra or
    of the wrong shape raises ConvertError naming `origin` and the first offending key.
    """
    for library in (source, target):
        _check_library(library)
        check_layout(plan, library)
    prefixed = any(k.startswith("regnet.") for k in state)
    src_pairs = key_pairs(plan, source, head=head, hf_prefixed=prefixed)
    dst_pairs = {p.ours: p.theirs for p in key_pairs(plan, target, head=head)}
    shapes = expected_shapes(plan, head=head)
    if set(shapes) != {p.ours for p in src_pairs}:  # the layout tables and model.py disagree
        raise RuntimeError(f"{plan.name}: internal key layout does not match the built model")
    hint = _library_hint(list(state), source)
    out: dict[str, Tensor] = {}
    for pair in src_pairs:
        value = state.get(pair.theirs)
        want = shapes[pair.ours]
        if value is None and pair.theirs.endswith(".num_batches_tracked"):
            value = torch.zeros((), dtype=torch.long)
        if value is None:
            why = ""
            if pair.ours.startswith("classifier."):
                why = " (a checkpoint without a classifier: convert without the head)"
            raise ConvertError(f"{origin}: missing key {pair.theirs!r} for {plan.name}{why}{hint}")
        count = pair.theirs.endswith("num_batches_tracked")
        check_weight(value, pair.theirs, origin, ConvertError, count=count)
        if tuple(value.shape) != want:
            raise ConvertError(
                f"{origin}: {pair.theirs}: shape {_shape(tuple(value.shape))} does not fit "
                f"{plan.name}, which needs {_shape(want)}"
            )
        out[dst_pairs[pair.ours]] = value
    used = {p.theirs for p in src_pairs}
    head_keys = CLASSIFIER[layout_of(plan, source)] + "."
    for key in state:
        if key not in used and not (not head and key.startswith(head_keys)):
            raise ConvertError(
                f"{origin}: unexpected key {key!r} for a {source} checkpoint of {plan.name}{hint}"
            )
    if bgr_to_rgb:
        stem = dst_pairs[src_pairs[0].ours]  # the stem conv's key in the target layout
        if out[stem].shape[1] != 3:
            raise ConvertError(f"{origin}: --bgr-to-rgb needs 3 input channels")
        out[stem] = out[stem].flip(1).contiguous()
    return out


def _library_hint(keys: list[str], source: Library) -> str:
    found = detect_library(keys)
    if found is not None and found != source:
        return f" (the keys look like a {found} checkpoint; use --from {found})"
    return ""


# ---------------------------------------------------------------------------------------------
# Files


def _unwrap(obj: object, origin: str) -> dict[str, Tensor]:
    """The state dict inside a checkpoint: bare, or under model_state / state_dict / model."""
    if not isinstance(obj, Mapping):
        raise ConvertError(f"{origin}: expected a state dict, got {type(obj).__name__}")
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        state = {str(k): v for k, v in obj.items()}
        if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
            state = {k.removeprefix("module."): v for k, v in state.items()}
        return state
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner:
            return _unwrap(inner, origin)
    shown = ", ".join(map(str, list(obj)[:6])) or "none"
    raise ConvertError(f"{origin}: no state dict of tensors found (top-level keys: {shown})")


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from .pth/.pyth/.pt/.bin (weights_only=True) or .safetensors.

    A directory is searched for `model.safetensors` or `pytorch_model.bin` (a Hugging Face
    snapshot). Every problem is a one-line ConvertError naming the file.
    """
    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("model.safetensors", "pytorch_model.bin") if (p / n).exists()]
        if not found:
            raise ConvertError(f"{p}: a directory without model.safetensors or pytorch_model.bin")
        p = found[0]
    state = read_weight_file(p, ConvertError)  # names a missing file, a FIFO or a device
    return _unwrap(state, str(p))


def check_output(path: str | Path, force: bool = False) -> Path:
    """Refuse an output with an unknown suffix, or one that exists without force."""
    p = Path(path)
    if p.suffix != SAFETENSORS_SUFFIX and p.suffix not in TORCH_SUFFIXES:
        known = ", ".join((*TORCH_SUFFIXES, SAFETENSORS_SUFFIX))
        raise ConvertError(f"{p}: unknown output format {p.suffix or '(none)'}; use {known}")
    return check_target(p, force)


def save_state_dict(state: Mapping[str, Tensor], path: str | Path, force: bool = False) -> Path:
    """Write a state dict atomically: .safetensors, or torch.save for .pth/.pyth/.pt/.bin."""
    p = check_output(path, force)
    tensors = {k: v.contiguous() for k, v in state.items()}
    if p.suffix == SAFETENSORS_SUFFIX:
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise ConvertError(f"{p}: writing .safetensors needs the safetensors package") from None
        return atomic_write_with(p, lambda tmp: save_file(tensors, tmp), force)
    return atomic_write_with(p, lambda tmp: save_torch(tensors, tmp), force)


def load_converted(
    plan: Plan,
    checkpoint: str | Path,
    source: Library,
    *,
    head: bool = True,
    bgr_to_rgb: bool = False,
    force: bool = False,
) -> torch.nn.Module:
    """Build the plan's model and load a peer checkpoint into it (strict), in eval mode.

    `force` builds designs above the memory guard of `build_model`.
    """
    from ..nn.model import build_model

    state = convert_state_dict(
        read_checkpoint(checkpoint),
        plan,
        source,
        "hf",
        head=head,
        bgr_to_rgb=bgr_to_rgb,
        origin=str(checkpoint),
    )
    model = build_model(plan, head, force=force)
    model.load_state_dict(state, strict=True)
    return model.eval()
