"""Hugging Face's RegNet model tests, ported to run against our classes.

Written from what transformers' tests/models/regnet/test_modeling_regnet.py and the common
model tests it inherits check: the model tester (batch 3, 32 px, hidden sizes [10, 20, 30, 40],
depths [1, 1, 2, 1], 3 labels) and each check, with Hugging Face's config object turned into our
model through `spec_from_hf_config`. Then the parts of the API a transformers user relies on:
torch.export with default arguments, torch.jit.trace and fvcore on the model as built,
`save_pretrained` / `from_pretrained` in Hugging Face's directory layout, both ways.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from regnet_space.core.complexity import count_plan
from regnet_space.core.errors import BuildError
from regnet_space.core.generator import make_plan
from regnet_space.core.hf import spec_from_hf_config
from regnet_space.nn.model import (
    RegNetClassifierOutput,
    RegNetForImageClassification,
    RegNetModel,
    RegNetModelOutput,
    build_model,
)

transformers = pytest.importorskip("transformers")

BATCH, SIZE, CHANNELS, LABELS = 3, 32, 3, 3
HIDDEN_SIZES, DEPTHS = [10, 20, 30, 40], [1, 1, 2, 1]
CLASSES = (RegNetModel, RegNetForImageClassification)


def get_config(**changes: object) -> object:
    """The tester's config, built as Hugging Face's tester builds it (its `embeddings_size`
    keyword is not a RegNetConfig field, so the stem keeps its default width, 32)."""
    kwargs = {
        "num_channels": CHANNELS,
        "embeddings_size": 10,
        "hidden_sizes": HIDDEN_SIZES,
        "depths": DEPTHS,
        "hidden_act": "relu",
        "num_labels": LABELS,
    }
    return transformers.RegNetConfig(**(kwargs | changes))


def make(model_class: type, config: object | None = None, **switches: object) -> nn.Module:
    """Our model of a Hugging Face config."""
    spec = spec_from_hf_config(config if config is not None else get_config())
    return model_class(make_plan(spec), **switches)


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pixel_values = torch.rand(BATCH, CHANNELS, SIZE, SIZE, generator=g)
    labels = torch.randint(0, LABELS, (BATCH,), generator=g)
    return pixel_values, labels


# ---------------------------------------------------------------------------------------------
# RegNetModelTest


def test_model() -> None:
    model = make(RegNetModel).eval()
    result = model(inputs()[0])
    assert result.last_hidden_state.shape == (BATCH, HIDDEN_SIZES[-1], SIZE // 32, SIZE // 32)


def test_for_image_classification() -> None:
    x, labels = inputs()
    result = make(RegNetForImageClassification).eval()(x, labels=labels)
    assert result.logits.shape == (BATCH, LABELS)
    assert result.loss is not None and result.loss.ndim == 0


@pytest.mark.parametrize("model_class", CLASSES)
def test_initialization(model_class: type) -> None:
    for name, module in make(model_class).named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1), name
            assert torch.all(module.bias == 0), name


@pytest.mark.parametrize("model_class", CLASSES)
@pytest.mark.parametrize("layer_type", ["x", "y"])
def test_hidden_states_output(model_class: type, layer_type: str) -> None:
    config = get_config(layer_type=layer_type)
    x = inputs()[0]

    def check(outputs: object) -> None:
        hidden_states = outputs.hidden_states
        assert len(hidden_states) == len(HIDDEN_SIZES) + 1
        assert list(hidden_states[0].shape[-2:]) == [SIZE // 2, SIZE // 2]

    model = make(model_class, config).eval()
    with torch.no_grad():
        check(model(x, output_hidden_states=True))
        # ... and set once on the model, as config.output_hidden_states = True
        model.output_hidden_states = True
        check(model(x))
        check(make(model_class, config, output_hidden_states=True).eval()(x))
        assert model(x, output_hidden_states=False).hidden_states is None


# ---------------------------------------------------------------------------------------------
# The common model tests RegNet inherits (those that apply to a model without attentions)


@pytest.mark.parametrize("model_class", CLASSES)
def test_forward_signature(model_class: type) -> None:
    names = list(inspect.signature(model_class.forward).parameters)[1:]
    assert names[0] == "pixel_values" == model_class.main_input_name
    assert {"output_hidden_states", "return_dict", "output_attentions"} <= set(names)


@pytest.mark.parametrize("model_class", CLASSES)
def test_determinism(model_class: type) -> None:
    model = make(model_class).eval()
    x = inputs()[0]
    with torch.no_grad():
        first, second = model(x)[0], model(x)[0]
    assert torch.equal(first, second)


@pytest.mark.parametrize("model_class", CLASSES)
def test_model_outputs_equivalence(model_class: type) -> None:
    model = make(model_class).eval()
    x, labels = inputs()
    kwargs = {"labels": labels} if model_class is RegNetForImageClassification else {}
    with torch.no_grad():
        for hidden in (False, True):
            d = model(x, output_hidden_states=hidden, **kwargs)
            t = model(x, output_hidden_states=hidden, return_dict=False, **kwargs)
            flat_d = torch.utils._pytree.tree_leaves(d.to_tuple())
            flat_t = torch.utils._pytree.tree_leaves(t)
            assert len(flat_d) == len(flat_t)
            assert all(torch.equal(a, b) for a, b in zip(flat_d, flat_t, strict=True))


@pytest.mark.parametrize("model_class", CLASSES)
def test_return_dict_none_is_the_models_default(model_class: type) -> None:
    model = make(model_class).eval()
    x = inputs()[0]
    expected = RegNetModelOutput if model_class is RegNetModel else RegNetClassifierOutput
    with torch.no_grad():
        assert isinstance(model(x, return_dict=None), expected)
        assert isinstance(model(x, output_attentions=True), expected)  # accepted, ignored
        model.return_dict = False
        assert isinstance(model(x), tuple)
        assert isinstance(model(x, return_dict=True), expected)


@pytest.mark.parametrize(
    ("problem_type", "num_labels", "labels"),
    [
        ("multi_label_classification", 2, lambda: torch.rand(BATCH, 2).round()),
        ("single_label_classification", 2, lambda: torch.tensor([0, 1, 1])),
        ("regression", 1, lambda: torch.rand(BATCH)),
    ],
)
def test_problem_types(problem_type: str, num_labels: int, labels: object) -> None:
    model = make(
        RegNetForImageClassification,
        get_config(num_labels=num_labels),
        problem_type=problem_type,
    ).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a size mismatch broadcast warning in mse_loss
        loss = model(inputs()[0], labels=labels()).loss
    assert torch.isfinite(loss)
    loss.backward()


def test_training() -> None:
    model = make(RegNetForImageClassification).train()
    x, labels = inputs()
    loss = model(x, labels=labels).loss
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)


def test_retain_grad_hidden_states() -> None:
    model = make(RegNetForImageClassification).train()
    x = inputs()[0].requires_grad_()
    out = model(x, output_hidden_states=True)
    first = out.hidden_states[0]
    first.retain_grad()
    out.logits.flatten()[0].backward()
    assert first.grad is not None and x.grad is not None


@pytest.mark.parametrize("model_class", CLASSES)
def test_batching_equivalence(model_class: type) -> None:
    model = make(model_class).eval()
    x = inputs()[0]
    with torch.no_grad():
        batched = model(x)[0]
        single = torch.cat([model(x[i : i + 1])[0] for i in range(BATCH)])
    torch.testing.assert_close(batched, single, atol=3e-5, rtol=3e-5)


def test_model_is_small() -> None:
    for model_class in CLASSES:
        assert sum(p.numel() for p in make(model_class).parameters()) < 1_000_000


@pytest.mark.parametrize("model_class", CLASSES)
def test_parameters_equal_hugging_faces(model_class: type) -> None:
    hf_class = getattr(transformers, model_class.__name__)
    ours, theirs = make(model_class), hf_class(get_config())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


# ---------------------------------------------------------------------------------------------
# torch.export, torch.jit.trace, fvcore


@pytest.mark.parametrize("model_class", CLASSES)
def test_torch_export_with_default_arguments(model_class: type) -> None:
    model = make(model_class).eval()
    x = inputs()[0]
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        expected, got = model(x), program.module()(x)
    assert type(got) is type(expected)
    assert torch.allclose(got[0], expected[0], atol=1e-6)


@pytest.mark.parametrize("model_class", CLASSES)
def test_jit_trace_on_the_model_as_built(model_class: type) -> None:
    model = make(model_class).eval()
    x = inputs()[0]
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        expected = model(x)
        got = traced(x)
    assert isinstance(got, tuple) and isinstance(
        expected, (RegNetModelOutput, RegNetClassifierOutput)
    )
    assert all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(got, expected.to_tuple(), strict=True)
    )


@pytest.mark.parametrize("model_class", CLASSES)
def test_torchscript_switch_gives_tuples(model_class: type) -> None:
    model = make(model_class, torchscript=True).eval()
    x = inputs()[0]
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        traced = torch.jit.trace(model, x)
    # (last_hidden_state, pooler_output, hidden_states) or (logits, hidden_states)
    assert isinstance(out, tuple) and len(out) == (3 if model_class is RegNetModel else 2)
    assert len(out[-1]) == len(HIDDEN_SIZES) + 1
    assert torch.allclose(traced(x)[0], out[0], atol=1e-6)


def test_fvcore_counts_the_model_as_built() -> None:
    fvcore = pytest.importorskip("fvcore.nn")
    model = make(RegNetForImageClassification).eval()
    analysis = fvcore.FlopCountAnalysis(model, inputs()[0])
    analysis.unsupported_ops_warnings(False)
    # our analytic count in fvcore's convention, per image
    expected = count_plan(make_plan(spec_from_hf_config(get_config()), SIZE), "fvcore")
    assert analysis.total() == BATCH * expected.flops


# ---------------------------------------------------------------------------------------------
# save_pretrained / from_pretrained with Hugging Face's directory layout


def randomised(model: nn.Module, seed: int) -> nn.Module:
    """Random BN statistics and affine parameters (fresh ones make outputs too regular)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("layer_type", ["x", "y"])
def test_what_hugging_face_writes_we_read(tmp_path: Path, layer_type: str) -> None:
    config = get_config(layer_type=layer_type, groups_width=8, embedding_size=16)
    hf = randomised(transformers.RegNetForImageClassification(config), 1)
    hf.save_pretrained(tmp_path / "cls")
    hf.regnet.save_pretrained(tmp_path / "base")
    x = inputs()[0]
    ours = RegNetForImageClassification.from_pretrained(tmp_path / "cls")
    base = RegNetModel.from_pretrained(tmp_path / "base")
    headless = RegNetModel.from_pretrained(tmp_path / "cls")  # a classifier's backbone
    with torch.no_grad():
        expected = hf(x)
        assert torch.equal(ours(x).logits, expected.logits)
        hidden = hf.regnet(x).last_hidden_state
        assert torch.equal(base(x).last_hidden_state, hidden)
        assert torch.equal(headless(x).last_hidden_state, hidden)
    assert ours.plan.stem_width == 16 and ours.plan.group_widths == (10, 10, 10, 8)


def test_what_we_write_hugging_face_reads(tmp_path: Path) -> None:
    config = get_config(groups_width=8)
    ours = randomised(make(RegNetForImageClassification, config), 2)
    ours.save_pretrained(tmp_path / "cls")
    ours.regnet.save_pretrained(tmp_path / "base")
    assert sorted(p.name for p in (tmp_path / "cls").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    hf = transformers.RegNetForImageClassification.from_pretrained(tmp_path / "cls").eval()
    hf_base = transformers.RegNetModel.from_pretrained(tmp_path / "base").eval()
    assert hf.config.groups_width == 8 and hf.config.num_labels == LABELS
    theirs = hf.state_dict()
    assert set(theirs) == set(ours.state_dict())
    assert all(torch.equal(theirs[k], v) for k, v in ours.state_dict().items())
    x = inputs()[0]
    with torch.no_grad():
        # transformers keeps the loaded tensors where safetensors put them, at offsets that are
        # not 64-byte aligned, and CPU convolutions then take other kernels (1-ulp apart) ...
        torch.testing.assert_close(hf(x).logits, ours(x).logits, atol=1e-6, rtol=0)
        # ... in memory of their own, the same weights give bit-identical logits.
        for t in [*hf.parameters(), *hf.buffers(), *hf_base.parameters(), *hf_base.buffers()]:
            t.data = t.data.clone()
        assert torch.equal(hf(x).logits, ours(x).logits)
        assert torch.equal(hf_base(x).last_hidden_state, ours.regnet(x).last_hidden_state)
    # and back again through our reader
    again = RegNetForImageClassification.from_pretrained(tmp_path / "cls")
    with torch.no_grad():
        assert torch.equal(again(x).logits, ours(x).logits)


def test_a_config_json_with_transformers_defaults_left_out(tmp_path: Path) -> None:
    """save_pretrained writes only the fields that differ from RegNetConfig's defaults."""
    config = transformers.RegNetConfig(depths=[1, 1, 1, 1], num_labels=4)
    hf = randomised(transformers.RegNetForImageClassification(config), 3)
    hf.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    ours = RegNetForImageClassification.from_pretrained(tmp_path)
    assert ours.plan.widths == tuple(config.hidden_sizes)
    assert ours.plan.depths == (1, 1, 1, 1)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x).logits, hf(x).logits)
    assert "hidden_sizes" not in written or written["hidden_sizes"] == [128, 192, 512, 1088]


def test_a_base_checkpoint_gives_a_new_head_with_a_warning(tmp_path: Path) -> None:
    make(RegNetModel).save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="classifier"):
        model = RegNetForImageClassification.from_pretrained(tmp_path)
    assert model.classifier[1].out_features == LABELS


def test_save_pretrained_refuses_to_overwrite_and_names_bad_weights(tmp_path: Path) -> None:
    model = make(RegNetForImageClassification)
    model.save_pretrained(tmp_path)
    with pytest.raises(Exception, match="already exists"):
        model.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path, force=True)
    other = make(RegNetForImageClassification, get_config(hidden_sizes=[10, 20, 30, 48]))
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((tmp_path / "config.json").read_text())
    with pytest.raises(BuildError, match=r"shape \(\d+, 48.*, the config gives \(\d+, 40"):
        RegNetForImageClassification.from_pretrained(tmp_path / "other")
    with pytest.raises(BuildError, match=r"no config\.json"):
        RegNetModel.from_pretrained(tmp_path / "missing")


def test_build_model_takes_the_switches() -> None:
    spec = spec_from_hf_config(get_config())
    model = build_model(spec, output_hidden_states=True, torchscript=True).eval()
    with torch.no_grad():
        out = model(inputs()[0])
    assert isinstance(out, tuple) and len(out[1]) == len(HIDDEN_SIZES) + 1


def test_from_pretrained_refuses_unreadable_files_in_one_line(tmp_path: Path) -> None:
    make(RegNetForImageClassification).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    with pytest.raises(BuildError, match=r"pytorch_model\.bin: not a PyTorch checkpoint"):
        RegNetForImageClassification.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_sizes": ' + "[" * 200 + "]" * 200 + "}")
    with pytest.raises(BuildError, match=r"config\.json: nested more than"):
        RegNetForImageClassification.from_pretrained(tmp_path)
