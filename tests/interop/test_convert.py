"""Checkpoint conversion: key layouts by name, shape checks, safe reading, the convert command."""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from regnet_space.cli import main as run
from regnet_space.core.generator import Plan, make_plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.infra.errors import OutputError
from regnet_space.interop.checkpoints import (
    LIBRARIES,
    ConvertError,
    convert_state_dict,
    detect_library,
    expected_shapes,
    key_pairs,
    load_converted,
    read_checkpoint,
    save_state_dict,
)
from regnet_space.nn.model import build_model

ROOT = Path(__file__).resolve().parents[2]


def small(block: str = "y", num_classes: int = 5, **fields: Any) -> Plan:
    """Two stages: the first block of each projects, the second block is an identity one."""
    stages = [
        {"width": 16, "depth": 1, "group_width": 8},
        {"width": 32, "depth": 2, "group_width": 8, "bottleneck_multiplier": 0.5},
    ]
    data = {"name": "tiny", "block": block, "num_classes": num_classes, "stages": stages}
    return make_plan(spec_from_dict(data | fields))


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, BN statistics included, so a wrong mapping shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + (0.5 if "running_var" in name else -0.5))
    return model.eval()


def our_state(p: Plan, head: bool = True) -> dict[str, Tensor]:
    return dict(randomised(build_model(p, head)).state_dict())


# ---------------------------------------------------------------------------------------------
# Key layouts

# The tiny y design's keys, written out by hand from the Hugging Face module tree (not generated).
TIMM_TINY = [
    "stem.conv.weight",
    *[f"stem.bn.{t}" for t in ("weight", "bias", "running_mean", "running_var")],
    "s1.b1.conv1.conv.weight",
    "s1.b1.conv2.conv.weight",
    "s1.b1.se.fc1.weight",
    "s1.b1.se.fc1.bias",
    "s1.b1.se.fc2.weight",
    "s1.b1.conv3.conv.weight",
    "s1.b1.downsample.conv.weight",
    "s2.b1.downsample.bn.running_var",
    "s2.b2.conv3.bn.weight",
    "head.fc.weight",
    "head.fc.bias",
]
TORCHVISION_TINY = [
    "stem.0.weight",
    "stem.1.running_mean",
    "trunk_output.block1.block1-0.proj.0.weight",
    "trunk_output.block1.block1-0.proj.1.bias",
    "trunk_output.block1.block1-0.f.a.0.weight",
    "trunk_output.block1.block1-0.f.b.1.running_var",
    "trunk_output.block1.block1-0.f.se.fc1.weight",
    "trunk_output.block1.block1-0.f.se.fc2.bias",
    "trunk_output.block2.block2-1.f.c.1.weight",
    "fc.weight",
    "fc.bias",
]
PYCLS_TINY = [
    "stem.conv.weight",
    "stem.bn.weight",
    "s1.b1.proj.weight",
    "s1.b1.bn.running_mean",
    "s1.b1.f.a.weight",
    "s1.b1.f.a_bn.bias",
    "s1.b1.f.b.weight",
    "s1.b1.f.b_bn.weight",
    "s1.b1.f.se.f_ex.0.weight",
    "s1.b1.f.se.f_ex.2.bias",
    "s2.b2.f.c.weight",
    "s2.b2.f.c_bn.running_var",
    "head.fc.weight",
]


@pytest.mark.parametrize(
    ("library", "keys"),
    [("timm", TIMM_TINY), ("torchvision", TORCHVISION_TINY), ("pycls", PYCLS_TINY)],
)
def test_peer_layouts_have_the_documented_keys(library: str, keys: list[str]) -> None:
    peer = convert_state_dict(our_state(small()), small(), "hf", library)  # type: ignore[arg-type]
    missing = [k for k in keys if k not in peer]
    assert not missing
    # the identity block (s2 b2) has no shortcut in any layout
    assert not any("b2.downsample" in k or "2-1.proj" in k or "b2.proj" in k for k in peer)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("block", ["x", "y"])
def test_every_layout_round_trips_exactly(library: str, block: str) -> None:
    p = small(block)
    ours = our_state(p)
    peer = convert_state_dict(ours, p, "hf", library)  # type: ignore[arg-type]
    assert len(peer) == len(ours)
    # map by name, not by position: the peer's order must not matter
    shuffled = dict(reversed(list(peer.items())))
    back = convert_state_dict(shuffled, p, library, "hf")  # type: ignore[arg-type]
    assert list(back) == list(ours)
    assert all(torch.equal(back[k], ours[k]) for k in ours)


def test_conversion_between_two_peers_is_direct() -> None:
    p = small()
    tv = convert_state_dict(our_state(p), p, "hf", "torchvision")
    timm = convert_state_dict(tv, p, "torchvision", "timm")
    assert torch.equal(
        timm["s2.b1.downsample.conv.weight"], tv["trunk_output.block2.block2-0.proj.0.weight"]
    )
    assert torch.equal(timm["head.fc.bias"], tv["fc.bias"])


def test_key_pairs_cover_the_built_model_exactly() -> None:
    for head in (True, False):
        p = small("x", num_classes=0 if not head else 3)
        ours = {pair.ours for pair in key_pairs(p, "timm", head=head)}
        assert ours == set(build_model(p, head).state_dict())


def test_expected_shapes_of_a_huge_design_need_no_memory() -> None:
    spec = spec_from_dict(
        {"name": "y10b", "block": "y", "depth": 27, "w0": 1744, "wa": 620.83, "wm": 2.52}
        | {"group_width": 1010}
    )
    shapes = expected_shapes(make_plan(spec))
    assert shapes["classifier.1.weight"] == (1000, 28280)


def test_detect_library() -> None:
    p = small()
    for library in LIBRARIES:
        keys = list(convert_state_dict(our_state(p), p, "hf", library))  # type: ignore[arg-type]
        assert detect_library(keys) == library
    assert detect_library(["foo.weight"]) is None


# ---------------------------------------------------------------------------------------------
# Checks


def test_a_wrong_shape_names_the_key_and_both_shapes() -> None:
    p = small()
    peer = convert_state_dict(our_state(p), p, "hf", "timm")
    peer["s2.b1.conv2.conv.weight"] = torch.zeros(16, 4, 3, 3)
    with pytest.raises(ConvertError) as err:
        convert_state_dict(peer, p, "timm", origin="ckpt.pth")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("ckpt.pth: s2.b1.conv2.conv.weight: shape [16, 4, 3, 3]")
    assert msg.endswith("which needs [16, 8, 3, 3]")


def test_a_checkpoint_of_another_design_fails_at_its_first_differing_key() -> None:
    p = small()
    other = small(stages=[{"width": 24, "depth": 1, "group_width": 8}])
    peer = convert_state_dict(our_state(other), other, "hf", "pycls")
    with pytest.raises(ConvertError, match=r"s1\.b1\.proj\.weight: shape \[24, 32, 1, 1\]"):
        convert_state_dict(peer, p, "pycls")


def test_missing_and_unexpected_keys_are_named() -> None:
    p = small()
    peer = convert_state_dict(our_state(p), p, "hf", "torchvision")
    del peer["trunk_output.block2.block2-1.f.b.0.weight"]
    with pytest.raises(
        ConvertError, match=re.escape("missing key 'trunk_output.block2.block2-1.f.b.0.weight'")
    ):
        convert_state_dict(peer, p, "torchvision")
    peer = convert_state_dict(our_state(p), p, "hf", "torchvision")
    peer["trunk_output.block3.block3-0.f.a.0.weight"] = torch.zeros(1)
    with pytest.raises(
        ConvertError, match=re.escape("unexpected key 'trunk_output.block3.block3-0")
    ):
        convert_state_dict(peer, p, "torchvision")


def test_the_wrong_library_flag_gets_a_hint() -> None:
    p = small()
    peer = convert_state_dict(our_state(p), p, "hf", "torchvision")
    with pytest.raises(
        ConvertError, match="look like a torchvision checkpoint; use --from torchvision"
    ):
        convert_state_dict(peer, p, "timm")
    with pytest.raises(ConvertError, match="unknown library 'keras'"):
        convert_state_dict(peer, p, "keras")  # type: ignore[arg-type]


def test_head_size_mismatch_and_headless_checkpoints() -> None:
    p5, p7 = small(num_classes=5), small(num_classes=7)
    peer = convert_state_dict(our_state(p5), p5, "hf", "timm")
    with pytest.raises(ConvertError, match=r"head\.fc\.weight: shape \[5, 32\].*needs \[7, 32\]"):
        convert_state_dict(peer, p7, "timm")
    # without the head the classifier is dropped, whatever its size
    backbone = convert_state_dict(peer, p7, "timm", head=False)
    model = build_model(p7, False)
    model.load_state_dict(backbone, strict=True)
    headless = {k: v for k, v in peer.items() if not k.startswith("head.")}
    with pytest.raises(ConvertError, match="without a classifier"):
        convert_state_dict(headless, p5, "timm")
    # a spec without classes refuses a checkpoint that has one
    with pytest.raises(ConvertError, match=re.escape("unexpected key 'head.fc.weight'")):
        convert_state_dict(peer, small(num_classes=0), "timm")


def test_missing_num_batches_tracked_is_filled_and_non_tensors_refused() -> None:
    p = small()
    peer = convert_state_dict(our_state(p), p, "hf", "pycls")
    stripped = {k: v for k, v in peer.items() if not k.endswith("num_batches_tracked")}
    out = convert_state_dict(stripped, p, "pycls")
    assert int(out["regnet.embedder.embedder.normalization.num_batches_tracked"]) == 0
    peer["stem.conv.weight"] = [1.0]  # type: ignore[assignment]
    with pytest.raises(ConvertError, match=re.escape("stem.conv.weight: not a tensor")):
        convert_state_dict(peer, p, "pycls")


def test_bgr_to_rgb_flips_only_the_stem_input_channels() -> None:
    p = small()
    peer = convert_state_dict(our_state(p), p, "hf", "pycls")
    plain = convert_state_dict(peer, p, "pycls")
    flipped = convert_state_dict(peer, p, "pycls", bgr_to_rgb=True)
    stem = "regnet.embedder.embedder.convolution.weight"
    assert torch.equal(flipped[stem], plain[stem][:, [2, 1, 0]])
    assert all(torch.equal(flipped[k], plain[k]) for k in plain if k != stem)
    # a model on RGB input with flipped weights equals the original on BGR input
    m_bgr, m_rgb = build_model(p), build_model(p)
    m_bgr.load_state_dict(plain)
    m_rgb.load_state_dict(flipped)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m_rgb.eval()(x).logits, m_bgr.eval()(x.flip(1)).logits, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Hugging Face models convert and match


def test_a_hugging_face_model_converts_and_gives_equal_outputs() -> None:
    transformers = pytest.importorskip("transformers")
    from regnet_space.core.hf import hf_config_kwargs

    stages = [
        {"width": 16, "depth": 1, "group_width": 8},
        {"width": 32, "depth": 2, "group_width": 8},
    ]
    for block in ("x", "y"):
        p = small(block, stages=stages)
        config = transformers.RegNetConfig(**hf_config_kwargs(p))
        hf = randomised(transformers.RegNetForImageClassification(config), seed=3)
        ours = build_model(p)
        ours.load_state_dict(convert_state_dict(hf.state_dict(), p, "hf"), strict=True)
        x = torch.randn(2, 3, 40, 40)
        with torch.no_grad():
            diff = (ours.eval()(x).logits - hf(x).logits).abs().max()
        assert diff <= 1e-5
        # the bare RegNetModel's checkpoint (no `regnet.` prefix) converts as a backbone
        bare = hf.regnet.state_dict()
        backbone = build_model(p, False)
        backbone.load_state_dict(convert_state_dict(bare, p, "hf", head=False), strict=True)


# ---------------------------------------------------------------------------------------------
# Files


def test_read_torch_files_with_wrappers(tmp_path: Path) -> None:
    p = small()
    peer = convert_state_dict(our_state(p), p, "hf", "pycls")
    files = {
        "plain.pth": peer,
        "zoo.pyth": {"epoch": 99, "model_state": peer, "optimizer_state": {}},
        "train.pt": {"state_dict": {f"module.{k}": v for k, v in peer.items()}},
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
        state = read_checkpoint(tmp_path / name)
        assert list(state) == list(peer)
        assert all(torch.equal(state[k], peer[k]) for k in peer)


def test_safetensors_files_and_snapshot_folders(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    p = small()
    ours = our_state(p)
    out = save_state_dict(ours, tmp_path / "model.safetensors")
    for source in (out, tmp_path):
        state = read_checkpoint(source)
        assert all(torch.equal(state[k], ours[k]) for k in ours)
    model = load_converted(p, out, "hf")
    assert not model.training


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage\n", "not a PyTorch checkpoint"),
        (b"", "not a PyTorch checkpoint"),
        (pickle.dumps({"a": Path("x")}), "not a PyTorch checkpoint"),
    ],
)
def test_garbage_files_are_refused_in_one_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    with pytest.raises(ConvertError) as err:
        read_checkpoint(bad)
    assert str(err.value).startswith(f"{bad}: {message}")
    assert "\n" not in str(err.value)


def test_pickled_objects_are_refused_by_weights_only(tmp_path: Path) -> None:
    target = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "obj": argparse.Namespace(a=1)}, target)
    with pytest.raises(ConvertError, match="weights_only=True"):
        read_checkpoint(target)


def test_other_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="no such file"):
        read_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(ConvertError, match=re.escape("without model.safetensors")):
        read_checkpoint(tmp_path)
    (tmp_path / "x.safetensors").write_bytes(b"{}")
    with pytest.raises(ConvertError, match="not a safetensors file"):
        read_checkpoint(tmp_path / "x.safetensors")
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(
        ConvertError, match=r"no state dict of tensors found \(top-level keys: epoch, lr\)"
    ):
        read_checkpoint(tmp_path / "meta.pth")


def test_outputs_are_atomic_and_never_overwritten(tmp_path: Path) -> None:
    state = {"w": torch.ones(2)}
    target = save_state_dict(state, tmp_path / "out.pt")
    with pytest.raises(OutputError, match="already exists"):
        save_state_dict({"w": torch.zeros(2)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(2))
    save_state_dict({"w": torch.zeros(2)}, target, force=True)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.zeros(2))
    with pytest.raises(ConvertError, match=re.escape("unknown output format .txt")):
        save_state_dict(state, tmp_path / "out.txt")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out.pt"]


# ---------------------------------------------------------------------------------------------
# The convert command


SPEC_Y = """name: tiny
block: y
num_classes: 5
stages:
  - {width: 16, depth: 1, group_width: 8}
  - {width: 32, depth: 2, group_width: 8, bottleneck_multiplier: 0.5}
"""


def test_convert_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC_Y)
    p = small()
    ours = our_state(p)
    torch.save({"model": convert_state_dict(ours, p, "hf", "torchvision")}, tmp_path / "tv.pth")
    out = tmp_path / "tiny.safetensors"
    argv = ["convert", str(tmp_path / "tv.pth"), "--from", "torchvision", "--spec", str(spec)]
    assert run([*argv, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(torchvision) ->" in printed and "tensors" in printed
    model = build_model(p)
    model.load_state_dict(read_checkpoint(out), strict=True)
    assert all(torch.equal(model.state_dict()[k], ours[k]) for k in ours)
    assert run([*argv, "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert run([*argv, "-o", str(out), "--force", "--to", "pycls", "--no-head"]) == 0
    assert "head.fc.weight" not in read_checkpoint(out)
    wrong = ["convert", str(tmp_path / "tv.pth"), "--from", "timm", "--spec", str(spec)]
    assert run([*wrong, "-o", str(tmp_path / "b.pt")]) == 2
    assert "use --from torchvision" in capsys.readouterr().err


def test_convert_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(["convert", "--help"])
    text = capsys.readouterr().out
    assert "--from timm" in text and "--bgr-to-rgb" in text and "weights_only=True" in text


def test_cifar_stem_weights_convert_to_pycls_only() -> None:
    # pycls has res_stem_cifar; timm and torchvision have only the stride-2 stem.
    p = small(stem="cifar")
    ours = our_state(p)
    back = convert_state_dict(convert_state_dict(ours, p, "hf", "pycls"), p, "pycls", "hf")
    assert all(torch.equal(back[k], ours[k]) for k in ours)
    for library in ("timm", "torchvision"):
        with pytest.raises(ConvertError, match=rf"stem: cifar .*{library}'s RegNet has only"):
            convert_state_dict(ours, p, "hf", library)  # type: ignore[arg-type]
        with pytest.raises(ConvertError, match="stride-2 ImageNet stem"):
            convert_state_dict(ours, p, library, "hf")  # type: ignore[arg-type]
