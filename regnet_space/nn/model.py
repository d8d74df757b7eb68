"""The PyTorch RegNet built from a plan, with the Hugging Face module tree and parameter names.

Every module is constructed from typed `Plan` / `StagePlan` / `BlockPlan` fields, so any
design the generator resolves (any bottleneck multiplier, stage count and per-stage stride)
builds. The names and nesting match `transformers`' RegNet (`embedder.embedder.convolution`,
`encoder.stages.{i}.layers.{j}.shortcut` / `.layer.{0..3}`, `classifier.1`, prefix `regnet.`
in the classification model), so a Hugging Face state dict of the same design loads with
`strict=True` and gives the same outputs. transformers is not imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from ..core.blocks import (
    ConvLayer,
    NormAct,
    Pool,
    SqueezeExcite,
    Unit,
    block_layers,
    head_layers,
    stem_layers,
)
from ..core.complexity import count_plan
from ..core.errors import BuildError
from ..core.generator import BlockOptions, BlockPlan, Plan, StagePlan, make_plan
from ..core.limits import MAX_BUILD_PARAMS
from ..core.spec import ExplicitSpec, ParametricSpec
from .hf import load_weights, read_snapshot, save_snapshot

__all__ = [
    "MAX_BUILD_PARAMS",
    "PROBLEM_TYPES",
    "RegNetClassifierOutput",
    "RegNetConvLayer",
    "RegNetDropPath",
    "RegNetEmbeddings",
    "RegNetEncoder",
    "RegNetEncoderOutput",
    "RegNetForImageClassification",
    "RegNetLayer",
    "RegNetModel",
    "RegNetModelOutput",
    "RegNetNormAct",
    "RegNetSELayer",
    "RegNetShortCut",
    "RegNetStage",
    "RegNetXLayer",
    "RegNetYLayer",
    "build_model",
]


PROBLEM_TYPES: tuple[str, ...] = (
    "regression",
    "single_label_classification",
    "multi_label_classification",
)

# In place where PyTorch can (each one follows a BatchNorm or the residual add, whose outputs
# no backward pass needs): one allocation less per activation.
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "gelu": nn.GELU,
}


def _activation(name: str | None) -> nn.Module:
    """The activation module of a plan's activation name; None gives nn.Identity."""
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        known = ", ".join(_ACTIVATIONS)
        raise BuildError(f"unknown activation {name!r}; expected one of {known}") from None


# ---------------------------------------------------------------------------------------------
# Outputs (Hugging Face field names; `to_tuple` drops None fields as ModelOutput does)


class _Output:
    """Tuple conversion and integer/key indexing shared by the output dataclasses."""

    def to_tuple(self) -> tuple[Any, ...]:
        """The non-None fields in declaration order (Hugging Face `ModelOutput.to_tuple`)."""
        return tuple(
            getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) is not None
        )

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            names = {f.name for f in fields(self)}  # type: ignore[arg-type]
            value = getattr(self, key) if key in names else None
            if value is None:
                raise KeyError(key)
            return value
        return self.to_tuple()[key]


@dataclass
class RegNetEncoderOutput(_Output):
    """Like `BaseModelOutputWithNoAttention`: the last stage's output and, optionally, the
    stem output followed by every stage's output."""

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None


@dataclass
class RegNetModelOutput(_Output):
    """Like `BaseModelOutputWithPoolingAndNoAttention`."""

    last_hidden_state: Tensor
    pooler_output: Tensor
    hidden_states: tuple[Tensor, ...] | None = None


@dataclass
class RegNetClassifierOutput(_Output):
    """Like `ImageClassifierOutputWithNoAttention`."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None


def _output_flatten(output: _Output) -> tuple[list[Any], list[str]]:
    """Children: the non-None fields, keyed by name (as transformers flattens ModelOutput)."""
    names = [f.name for f in fields(output) if getattr(output, f.name) is not None]  # type: ignore[arg-type]
    return [getattr(output, n) for n in names], names


def _output_flatten_with_keys(output: _Output) -> tuple[list[tuple[Any, Any]], list[str]]:
    values, names = _output_flatten(output)
    return [(pytree.GetAttrKey(n), v) for n, v in zip(names, values, strict=True)], names


def _register_output(cls: type[_Output]) -> None:
    """Register an output type as a pytree node, so torch.export and DDP see its tensors."""
    if cls in pytree.SUPPORTED_NODES:  # the module imported again (importlib.reload)
        return
    pytree.register_pytree_node(
        cls,
        _output_flatten,
        lambda values, names: cls(**dict(zip(names, values, strict=True))),
        serialized_type_name=f"{cls.__module__}.{cls.__name__}",
        flatten_with_keys_fn=_output_flatten_with_keys,
    )


for _cls in (RegNetEncoderOutput, RegNetModelOutput, RegNetClassifierOutput):
    _register_output(_cls)


# ---------------------------------------------------------------------------------------------
# Modules, built from the block, stem and head definitions of core.blocks


NormFactory = Callable[[int], nn.Module]


def norm_factory(options: BlockOptions) -> NormFactory:
    """The norm of a plan's layers on c channels: BatchNorm2d, or GroupNorm (eps 1e-5)."""
    if options.norm == "group":
        return lambda c: nn.GroupNorm(options.norm_groups_of(c), c)
    return nn.BatchNorm2d


class RegNetConvLayer(nn.Module):
    """Conv (no bias, padding dilation * (k // 2)) -> norm (or identity) -> activation (or
    identity)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "relu",
        *,
        dilation: int = 1,
        norm: NormFactory | None = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.convolution = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.normalization = norm(out_channels) if norm is not None else nn.Identity()
        self.activation = _activation(activation)

    def forward(self, hidden_state: Tensor) -> Tensor:
        hidden_state = self.convolution(hidden_state)
        hidden_state = self.normalization(hidden_state)
        return self.activation(hidden_state)


class RegNetNormAct(nn.Module):
    """Norm (or identity) -> activation: a pre-activation, or the final activation."""

    def __init__(self, channels: int, activation: str | None, norm: NormFactory | None) -> None:
        super().__init__()
        self.normalization = norm(channels) if norm is not None else nn.Identity()
        # Without a norm, the input may be a hidden state the caller keeps: not in place.
        in_place = norm is not None or activation is None
        self.activation = _activation(activation) if in_place else _SE_ACTIVATIONS[activation]()

    def forward(self, hidden_state: Tensor) -> Tensor:
        return self.activation(self.normalization(hidden_state))


class _AvgPoolSame(nn.Sequential):
    """timm's AvgPool2dSame for a 2x2 window at stride 1: zero padding right and bottom, then
    the average (the padded zeros count)."""

    def __init__(self) -> None:
        super().__init__(
            nn.ZeroPad2d((0, 1, 0, 1)),
            nn.AvgPool2d(2, 1, ceil_mode=True, count_include_pad=False),
        )


def _pool(unit: Pool) -> nn.Module:
    if unit.kind == "max":
        return nn.MaxPool2d(unit.kernel, unit.stride, unit.padding)
    if unit.kind == "avg_same":
        return _AvgPoolSame()
    return nn.AvgPool2d(unit.kernel, unit.stride, ceil_mode=True, count_include_pad=False)


class RegNetEmbeddings(nn.Module):
    """The stem: its conv layers (one, or a Sequential of three for the tiered stem) and a
    max-pool for the resnet stem, num_channels -> stem_width."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        stem = stem_layers(plan)
        modules = [_unit_module(u, plan) for u in stem.units]
        convs = [m for u, m in zip(stem.units, modules, strict=True) if isinstance(u, ConvLayer)]
        self.embedder = convs[0] if len(convs) == 1 else nn.Sequential(*convs)
        pools = [m for u, m in zip(stem.units, modules, strict=True) if isinstance(u, Pool)]
        if pools:
            self.pool = pools[0]
        self.tap = stem.tap
        self.num_channels = plan.num_channels

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.forward_with_tap(pixel_values)[0]

    def forward_with_tap(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """The stem's output and its stride-2 feature map (the same tensor for one-conv stems)."""
        if pixel_values.dim() != 4:
            raise ValueError(
                f"pixel_values must have shape (batch, channels, height, width), "
                f"got {tuple(pixel_values.shape)}"
            )
        channels = pixel_values.shape[1]
        if channels != self.num_channels:
            raise ValueError(
                f"pixel_values has {channels} channels but the model was built for "
                f"num_channels={self.num_channels} (input shape {tuple(pixel_values.shape)})"
            )
        hidden = pixel_values
        layers = (
            list(self.embedder) if isinstance(self.embedder, nn.Sequential) else [self.embedder]
        )
        tap = hidden
        for i, layer in enumerate(layers):
            hidden = layer(hidden)
            if i == self.tap:
                tap = hidden
        if hasattr(self, "pool"):
            hidden = self.pool(hidden)
        return hidden, tap


class RegNetShortCut(nn.Module):
    """Projection shortcut: [2x2 average pool] -> 1x1 conv (stride, no bias) -> norm (or none,
    in pre-activation blocks)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 2,
        *,
        norm: NormFactory | None = nn.BatchNorm2d,
        pool: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if pool is not None:
            self.pool = pool
        self.convolution = nn.Conv2d(
            in_channels, out_channels, kernel_size=1, stride=stride, bias=False
        )
        self.normalization = norm(out_channels) if norm is not None else nn.Identity()

    def forward(self, hidden_state: Tensor) -> Tensor:
        if hasattr(self, "pool"):
            hidden_state = self.pool(hidden_state)
        return self.normalization(self.convolution(hidden_state))


# The SE's activation does not run in place (it follows a 1x1 conv on a 1x1 map).
_SE_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


class RegNetSELayer(nn.Module):
    """Squeeze-excitation: pool, 1x1 conv (bias) -> activation (ReLU in x and y blocks) ->
    1x1 conv (bias) -> sigmoid, multiply."""

    def __init__(self, in_channels: int, reduced_channels: int, activation: str = "relu") -> None:
        super().__init__()
        self.pooler = nn.AdaptiveAvgPool2d((1, 1))
        self.attention = nn.Sequential(
            nn.Conv2d(in_channels, reduced_channels, kernel_size=1),
            _SE_ACTIVATIONS[activation](),
            nn.Conv2d(reduced_channels, in_channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, hidden_state: Tensor) -> Tensor:
        attention = self.attention(self.pooler(hidden_state))
        return hidden_state * attention


class RegNetDropPath(nn.Module):
    """Stochastic depth (training only): zero a sample's branch with probability `rate`, and
    scale the kept ones by 1 / (1 - rate), as timm's DropPath does."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, hidden_state: Tensor) -> Tensor:
        if not self.training or self.rate == 0:
            return hidden_state
        keep = 1 - self.rate
        shape = (hidden_state.shape[0],) + (1,) * (hidden_state.dim() - 1)
        mask = hidden_state.new_empty(shape).bernoulli_(keep)
        return hidden_state * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.3f}"


def _unit_module(unit: Unit, plan: Plan) -> nn.Module:
    """The module of one definition unit (shortcut convs are built by RegNetLayer)."""
    norm = norm_factory(plan.options)
    if isinstance(unit, ConvLayer):
        c = unit.conv
        return RegNetConvLayer(
            c.c_in,
            c.c_out,
            kernel_size=c.kernel,
            stride=c.stride,
            groups=c.groups,
            activation=plan.activation if unit.act else None,
            dilation=c.dilation,
            norm=norm if unit.norm else None,
        )
    if isinstance(unit, NormAct):
        return RegNetNormAct(
            unit.channels, plan.activation if unit.act else None, norm if unit.norm else None
        )
    if isinstance(unit, SqueezeExcite):
        return RegNetSELayer(unit.channels, unit.width, unit.activation)
    return _pool(unit)


class RegNetLayer(nn.Module):
    """One block: act(layer(x) + shortcut(x)), from its kind's definition (core.blocks); a
    pre-activation block normalises x first, for both paths."""

    def __init__(self, block: BlockPlan, plan: Plan, drop_path: float = 0.0) -> None:
        super().__init__()
        layers = block_layers(plan, block)
        if block.se_width < 1 and plan.se_ratio and plan.options.bottleneck:
            raise BuildError(
                f"stage {block.stage} block {block.index}: SE width round(se_ratio * "
                f"{block.in_width}) is 0; raise se_ratio or the width, or use block x"
            )
        if layers.preact is not None:
            self.preact = _unit_module(layers.preact, plan)
        if layers.shortcut is not None:
            self.shortcut = _shortcut_module(layers.shortcut, plan)
        self.layer = nn.Sequential(*(_unit_module(u, plan) for u in layers.layer))
        if drop_path > 0:
            self.drop_path = RegNetDropPath(drop_path)
        self.activation = _activation(plan.activation if layers.act_out else None)

    def forward(self, hidden_state: Tensor) -> Tensor:
        if hasattr(self, "preact"):
            hidden_state = self.preact(hidden_state)
        residual = hidden_state
        hidden_state = self.layer(hidden_state)
        if hasattr(self, "shortcut"):
            if hasattr(self, "drop_path"):
                hidden_state = self.drop_path(hidden_state)
            hidden_state += self.shortcut(residual)  # a fresh conv or norm output: safe in place
        return self.activation(hidden_state)


def _shortcut_module(units: tuple[Unit, ...], plan: Plan) -> nn.Module:
    """nn.Identity, or RegNetShortCut: [pool], 1x1 conv, [norm]."""
    if not units:
        return nn.Identity()
    pool = _pool(units[0]) if isinstance(units[0], Pool) else None
    conv = units[-1]
    if not isinstance(conv, ConvLayer):  # pragma: no cover - the definitions end with the conv
        raise BuildError("a shortcut ends with its 1x1 conv")
    return RegNetShortCut(
        conv.conv.c_in,
        conv.conv.c_out,
        stride=conv.conv.stride,
        norm=norm_factory(plan.options) if conv.norm else None,
        pool=pool,
    )


class RegNetXLayer(RegNetLayer):
    """X block: 1x1 -> 3x3 grouped -> 1x1, plus the shortcut, then the activation."""


class RegNetYLayer(RegNetLayer):
    """Y block: an X block with squeeze-excitation (width `block.se_width`) after the 3x3."""


_LAYERS: dict[str, type[RegNetLayer]] = {"x": RegNetXLayer, "y": RegNetYLayer}


class RegNetStage(nn.Module):
    """`stage.depth` blocks; the first one has the stage's stride and input width."""

    def __init__(self, stage: StagePlan, plan: Plan, drop_paths: Sequence[float] = ()) -> None:
        super().__init__()
        layer = _LAYERS.get(plan.block, RegNetLayer)
        rates = list(drop_paths) or [0.0] * stage.depth
        self.layers = nn.Sequential(
            *(layer(b, plan, rate) for b, rate in zip(stage.blocks(), rates, strict=True))
        )

    def forward(self, hidden_state: Tensor) -> Tensor:
        return self.layers(hidden_state)


def drop_path_rates(plan: Plan) -> list[list[float]]:
    """Each stage's blocks' drop-path rates: 0 at the first block rising linearly to the
    plan's rate at the last (torch.linspace in float32, as timm's calculate_drop_path_rates)."""
    rates = torch.linspace(0, plan.options.drop_path, plan.depth, device="cpu").tolist()
    out, start = [], 0
    for depth in plan.depths:
        out.append(rates[start : start + depth])
        start += depth
    return out


class RegNetEncoder(nn.Module):
    """The stages, in order."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        rates = drop_path_rates(plan) if plan.options.drop_path else [[]] * plan.num_stages
        self.stages = nn.ModuleList(
            RegNetStage(s, plan, r) for s, r in zip(plan.stages, rates, strict=True)
        )

    def forward(
        self, hidden_state: Tensor, output_hidden_states: bool = False, return_dict: bool = True
    ) -> RegNetEncoderOutput | tuple[Any, ...]:
        hidden_states: tuple[Tensor, ...] | None = () if output_hidden_states else None
        for stage in self.stages:
            if hidden_states is not None:
                hidden_states = (*hidden_states, hidden_state)
            hidden_state = stage(hidden_state)
        if hidden_states is not None:
            hidden_states = (*hidden_states, hidden_state)
        out = RegNetEncoderOutput(last_hidden_state=hidden_state, hidden_states=hidden_states)
        return out if return_dict else out.to_tuple()


def _init_weights(module: nn.Module) -> None:
    """The seed's init: conv kaiming normal (fan_out, relu), BN weight 1 and bias 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.constant_(module.weight, 1)
        nn.init.constant_(module.bias, 0)


class _OutputSwitches(nn.Module):
    """Hugging Face's output switches, set once on the model (transformers keeps them in the
    config): `output_hidden_states`, `return_dict` and `torchscript` (tuples, as
    transformers 4's `config.torchscript`). A forward argument left None takes the model's
    value; while `torch.jit.trace` (and so fvcore) traces, None also means a tuple."""

    output_hidden_states: bool
    return_dict: bool
    torchscript: bool

    def _hidden(self, output_hidden_states: bool | None) -> bool:
        return self.output_hidden_states if output_hidden_states is None else output_hidden_states

    def _as_dict(self, return_dict: bool | None) -> bool:
        if return_dict is not None:
            return return_dict
        return self.return_dict and not self.torchscript and not torch.jit.is_tracing()


class RegNetModel(_OutputSwitches):
    """Stem, stages and global average pooling (no classifier)."""

    base_model_prefix = "regnet"
    main_input_name = "pixel_values"

    def __init__(
        self,
        plan: Plan,
        *,
        zero_init_last_bn: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        torchscript: bool = False,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.output_hidden_states = output_hidden_states
        self.return_dict = return_dict
        self.torchscript = torchscript
        self.embedder = RegNetEmbeddings(plan)
        self.encoder = RegNetEncoder(plan)
        head = head_layers(plan)
        if head:  # the head conv, or the activation after pre-activation / linear blocks
            self.final = _unit_module(head[0], plan)
        self.pooler = nn.AdaptiveAvgPool2d((1, 1))
        self.apply(_init_weights)
        if zero_init_last_bn:
            for stage in self.encoder.stages:
                for block in stage.layers:
                    last = block.layer[-1]
                    # the branch's last norm, where it ends the branch (not in pre-activation)
                    if isinstance(last, RegNetConvLayer) and hasattr(last.normalization, "weight"):
                        nn.init.zeros_(last.normalization.weight)

    def forward(
        self,
        pixel_values: Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,  # accepted and ignored, as in transformers
    ) -> RegNetModelOutput | tuple[Any, ...]:
        embedding = self.embedder(pixel_values)
        encoded = self.encoder(embedding, output_hidden_states=self._hidden(output_hidden_states))
        last_hidden_state = encoded.last_hidden_state
        if hasattr(self, "final"):
            last_hidden_state = self.final(last_hidden_state)
        out = RegNetModelOutput(
            last_hidden_state=last_hidden_state,
            pooler_output=self.pooler(last_hidden_state),
            hidden_states=encoded.hidden_states,
        )
        return out if self._as_dict(return_dict) else out.to_tuple()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        torchscript: bool | None = None,
    ) -> RegNetModel:
        """The model of a Hugging Face directory (config.json + model.safetensors), in eval mode.

        Output switches left None take config.json's values (as transformers does).
        """
        given = {"output_hidden_states": output_hidden_states, "return_dict": return_dict}
        snapshot = read_snapshot(Path(path), {**given, "torchscript": torchscript})
        return load_weights(cls(snapshot.plan, **snapshot.switches), Path(path), prefix="")

    def save_pretrained(self, path: str | Path, *, force: bool = False) -> Path:
        """Write config.json and model.safetensors as transformers' `save_pretrained` does."""
        return save_snapshot(self, self.plan, Path(path), "RegNetModel", force)


class RegNetForImageClassification(_OutputSwitches):
    """RegNetModel plus Flatten -> Linear(last width, num_classes) (Identity if 0 classes)."""

    base_model_prefix = "regnet"
    main_input_name = "pixel_values"

    def __init__(
        self,
        plan: Plan,
        *,
        zero_init_last_bn: bool = False,
        problem_type: str | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        torchscript: bool = False,
    ) -> None:
        super().__init__()
        self.output_hidden_states = output_hidden_states
        self.return_dict = return_dict
        self.torchscript = torchscript
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise BuildError(
                f"unknown problem_type {problem_type!r}; expected one of {', '.join(PROBLEM_TYPES)}"
            )
        self.num_labels = plan.num_classes
        self.problem_type = problem_type
        self.regnet = RegNetModel(plan, zero_init_last_bn=zero_init_last_bn)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(plan.out_width, plan.num_classes) if plan.num_classes > 0 else nn.Identity(),
        )

    @property
    def plan(self) -> Plan:
        return self.regnet.plan

    def resolve_problem_type(self, labels: Tensor) -> str:
        """The configured problem type, or the one inferred from num_labels and label dtype."""
        if self.problem_type is not None:
            return self.problem_type
        if self.num_labels == 1:
            return "regression"
        if self.num_labels > 1 and labels.dtype in (torch.long, torch.int):
            return "single_label_classification"
        return "multi_label_classification"

    def compute_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The seed's loss; the inferred problem type is not stored on the model."""
        labels = labels.to(logits.device)
        problem_type = self.resolve_problem_type(labels)
        if problem_type == "regression":
            if self.num_labels == 1:
                return nn.functional.mse_loss(logits.squeeze(), labels.squeeze())
            return nn.functional.mse_loss(logits, labels)
        if problem_type == "single_label_classification":
            # int32 labels are accepted as in the seed's inference (torch's CE wants int64)
            target = labels.view(-1).long()
            return nn.functional.cross_entropy(logits.view(-1, self.num_labels), target)
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)

    def forward(
        self,
        pixel_values: Tensor,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,  # accepted and ignored, as in transformers
    ) -> RegNetClassifierOutput | tuple[Any, ...]:
        outputs = self.regnet(
            pixel_values, output_hidden_states=self._hidden(output_hidden_states), return_dict=True
        )
        logits = self.classifier(outputs.pooler_output)
        loss = self.compute_loss(logits, labels) if labels is not None else None
        out = RegNetClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return out if self._as_dict(return_dict) else out.to_tuple()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        torchscript: bool | None = None,
        problem_type: str | None = None,
    ) -> RegNetForImageClassification:
        """The classifier of a Hugging Face directory (config.json + model.safetensors), in eval
        mode; a RegNetModel checkpoint gives a freshly initialised head (with a warning).

        Output switches left None take config.json's values (as transformers does).
        """
        given = {"output_hidden_states": output_hidden_states, "return_dict": return_dict}
        snapshot = read_snapshot(Path(path), {**given, "torchscript": torchscript})
        model = cls(snapshot.plan, problem_type=problem_type, **snapshot.switches)
        return load_weights(model, Path(path), prefix="regnet.")

    def save_pretrained(self, path: str | Path, *, force: bool = False) -> Path:
        """Write config.json and model.safetensors as transformers' `save_pretrained` does."""
        return save_snapshot(self, self.plan, Path(path), "RegNetForImageClassification", force)


# ---------------------------------------------------------------------------------------------
# Parameter count from the plan (no allocation)


def _plan_param_count(plan: Plan, with_head: bool = True) -> int:
    """Trainable parameters of the model `build_model` would build, from the analytic count."""
    parts = count_plan(plan).parts
    return sum(part.params for part in parts if with_head or part.name != "head")


# ---------------------------------------------------------------------------------------------
# Public entry points


def _as_plan(spec_or_plan: ParametricSpec | ExplicitSpec | Plan) -> Plan:
    if isinstance(spec_or_plan, Plan):
        return spec_or_plan
    if isinstance(spec_or_plan, (ParametricSpec, ExplicitSpec)):
        return make_plan(spec_or_plan)
    raise TypeError(f"expected a Spec or a Plan, got {type(spec_or_plan).__name__}")


def build_model(
    spec_or_plan: ParametricSpec | ExplicitSpec | Plan,
    with_head: bool = True,
    *,
    zero_init_last_bn: bool = False,
    problem_type: str | None = None,
    force: bool = False,
    output_hidden_states: bool = False,
    torchscript: bool = False,
) -> RegNetForImageClassification | RegNetModel:
    """Build the model of a spec or plan: with the classification head, or the bare RegNetModel.

    Designs above MAX_BUILD_PARAMS parameters are refused (BuildError) unless `force`.
    `output_hidden_states` and `torchscript` (tuple outputs) are the model's defaults for
    forward calls that leave them None, as transformers' config fields of the same names.
    """
    p = _as_plan(spec_or_plan)
    if problem_type is not None and not with_head:
        raise BuildError("problem_type needs the classification head (with_head=True)")
    n_params = _plan_param_count(p, with_head=with_head)
    if n_params > MAX_BUILD_PARAMS and not force:
        raise BuildError(
            f"{p.name}: {n_params:,} parameters exceed the build limit of "
            f"{MAX_BUILD_PARAMS:,} ({4 * n_params / 1e9:.1f} GB of float32); "
            "use --allow-large (force=True from Python) to build it anyway"
        )
    switches = {"output_hidden_states": output_hidden_states, "torchscript": torchscript}
    if with_head:
        return RegNetForImageClassification(
            p, zero_init_last_bn=zero_init_last_bn, problem_type=problem_type, **switches
        )
    return RegNetModel(p, zero_init_last_bn=zero_init_last_bn, **switches)
