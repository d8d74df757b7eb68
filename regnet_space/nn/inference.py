"""The inference form: BatchNorm folded into the convolutions, channels-last, in-place ops.

`inference_model(model)` turns an eager RegNet (classification or bare) into a plain module
that returns one tensor (logits, or the last hidden state), equal to the eager model in eval
mode within float32 rounding. It is for inference only: it has no BatchNorm to train and
its ops run in place. It is assembled from the same block, stem and head definitions
(core.blocks) as the model: a conv layer's BatchNorm is folded into it; a norm that does not
directly follow a conv (the block-input and post-SE norms of pre-activation blocks) and every
GroupNorm run as they are (the plain path).
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import Tensor, nn

from ..core.blocks import (
    BlockLayers,
    ConvLayer,
    NormAct,
    Pool,
    SqueezeExcite,
    Unit,
    block_layers,
    head_layers,
    stem_layers,
)
from ..core.errors import BuildError
from ..core.generator import Plan
from .model import (
    RegNetConvLayer,
    RegNetForImageClassification,
    RegNetLayer,
    RegNetModel,
    RegNetNormAct,
    RegNetSELayer,
    RegNetShortCut,
)

__all__ = ["InferenceRegNet", "fold_conv_bn", "fused_kernels_available", "inference_model"]


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias computing bn(conv(x)) with BN's running statistics (in float64)."""
    fused = copy.deepcopy(conv)
    w = conv.weight.detach().double()
    zero = torch.zeros(w.shape[0], dtype=torch.float64)
    bias = conv.bias.detach().double() if conv.bias is not None else zero
    mean, var = bn.running_mean.double(), bn.running_var.double()  # type: ignore[union-attr]
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    fused.weight = nn.Parameter((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    fused.bias = nn.Parameter((beta + (bias - mean) * scale).to(conv.weight.dtype))
    return fused


def _act_(x: Tensor, name: str | None) -> Tensor:
    """Apply the activation in place where PyTorch has an in-place kernel."""
    if name == "relu":
        return torch.relu_(x)
    if name == "silu":
        return nn.functional.silu(x, inplace=True)
    if name == "gelu":
        return nn.functional.gelu(x)
    return x


def fused_kernels_available() -> bool:
    """Whether this PyTorch build has oneDNN's fused conv kernels (prepacked weights)."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_convolution_pointwise")
        and hasattr(ops, "_reorder_convolution_weight")
    )


# Packed copies kept per conv: one per input shape seen, oldest dropped first.
MAX_PACKED_SHAPES = 4
# Kernel choices kept per inference form: one per input shape and thread count.
MAX_CHOICES = 16


# oneDNN's pointwise attributes of the activations its fused conv kernel runs (SiLU is swish).
_FUSED_UNARY = {None: "none", "relu": "relu", "silu": "swish"}


class _ConvAct(nn.Module):
    """A conv with its BatchNorm folded in (a GroupNorm kept after it), then the activation.

    With `fused`, the weights are also prepacked for oneDNN and ReLU or SiLU (and, for the
    branch's last conv, the residual add) run inside the convolution kernel. oneDNN picks the
    packed layout from the input shape it is told (and the thread count); packed without a
    shape, or for another one, a conv runs slower than PyTorch's own conv. So the weights are
    packed for each input shape and thread count on first use, and the few most recent
    packings are kept.
    """

    def __init__(self, conv: nn.Conv2d, norm: nn.Module, act: str | None, fused: bool):
        super().__init__()
        if isinstance(norm, nn.BatchNorm2d):
            self.conv, self.norm = fold_conv_bn(conv, norm), None
        else:
            self.conv = copy.deepcopy(conv)
            self.norm = None if isinstance(norm, nn.Identity) else copy.deepcopy(norm)
        self.act = act
        c = self.conv
        self.padding = [int(v) for v in c.padding]  # model.py pads with ints, never "same"
        self.stride, self.dilation, self.groups = list(c.stride), list(c.dilation), c.groups
        self.fused = fused and self.norm is None
        # Opaque oneDNN copies of the folded weights by input shape; deliberately not buffers.
        self.packed: dict[tuple[int, ...], Tensor] = {}

    def _packed_for(self, x: Tensor) -> Tensor:
        """The weights packed for inputs of x's shape (packed on the first call)."""
        # oneDNN's choice of layout also depends on the thread count: weights packed for one
        # count run slower at another than without fused kernels.
        shape = (*x.shape, torch.get_num_threads())
        packed = self.packed.get(shape)
        if packed is None:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                self.conv.weight.detach(), self.padding, self.stride, self.dilation,
                self.groups, list(x.shape),
            )  # fmt: skip
            # A new dict, never one changed in place: threads running the model meanwhile
            # read the old one or the new one, whole.
            kept = list(self.packed.items())[-(MAX_PACKED_SHAPES - 1) :]
            self.packed = {**dict(kept), shape: packed}
        return packed

    def forward(self, x: Tensor, fused: bool = True) -> Tensor:
        if fused and self.fused and self.act in _FUSED_UNARY:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self._packed_for(x), self.conv.bias, self.padding, self.stride,
                self.dilation, self.groups, _FUSED_UNARY[self.act], [], "",
            )  # fmt: skip
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        return _act_(out, self.act)

    def add_act(self, x: Tensor, other: Tensor, act: str | None, fused: bool = True) -> Tensor:
        """act(conv(x) + other), in one kernel when fused."""
        if fused and self.fused and act in (None, "relu") and self.act is None:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, self._packed_for(x), self.conv.bias, self.padding, self.stride,
                self.dilation, self.groups, "add", None, act, [], "",
            )  # fmt: skip
        out = self(x, fused)
        out += other
        return _act_(out, act)


class _NormAct(nn.Module):
    """A norm that follows no conv directly (run as it is, in eval mode), then the activation."""

    def __init__(self, module: RegNetNormAct, act: str | None) -> None:
        super().__init__()
        norm = module.normalization
        self.norm = None if isinstance(norm, nn.Identity) else copy.deepcopy(norm)
        self.act = act

    def forward(self, x: Tensor, fused: bool = True) -> Tensor:
        if self.norm is not None:
            x = self.norm(x)
        return _act_(x, self.act)


class _SE(nn.Module):
    """Squeeze-excitation: mean, 1x1 conv, activation, 1x1 conv, sigmoid, scale in place.

    `then_norm`: the BatchNorm and activation that follow it (pre-activation blocks), done in
    the same pass: x * (gate * scale) + shift, with BN's scale and shift.
    """

    def __init__(self, module: RegNetSELayer, act: str, then_norm: _NormAct | None = None):
        super().__init__()
        self.reduce = copy.deepcopy(module.attention[0])
        self.expand = copy.deepcopy(module.attention[2])
        self.act = act
        self.post_act = None if then_norm is None else then_norm.act
        scale = shift = None
        if then_norm is not None and isinstance(then_norm.norm, nn.BatchNorm2d):
            scale, shift = _bn_affine(then_norm.norm)
        # buffers: they follow the form to another device or dtype
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: Tensor, fused: bool = True) -> Tensor:
        s = _act_(self.reduce(x.mean((2, 3), keepdim=True)), self.act)
        gate = torch.sigmoid_(self.expand(s))
        if self.scale is None:
            return x.mul_(gate)
        return _act_(torch.addcmul(self.shift, x, gate.mul_(self.scale)), self.post_act)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """BN in eval mode as x * scale + shift (computed in float64), shaped (1, C, 1, 1)."""
    mean, var = bn.running_mean.double(), bn.running_var.double()  # type: ignore[union-attr]
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    dtype = bn.running_mean.dtype  # type: ignore[union-attr]
    shape = (1, -1, 1, 1)
    return scale.view(shape).to(dtype), (beta - mean * scale).view(shape).to(dtype)


class _Pool(nn.Module):
    """A stem or shortcut pool, as in the eager model."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.pool = copy.deepcopy(module)

    def forward(self, x: Tensor, fused: bool = True) -> Tensor:
        return self.pool(x)


class _Identity(nn.Module):
    """A placeholder for an op merged into the one before it."""

    def forward(self, x: Tensor, fused: bool = True) -> Tensor:
        return x


def _op(unit: Unit, module: nn.Module, plan: Plan, fused: bool) -> nn.Module:
    """The inference op of one definition unit, from the eager module built for it."""
    act = plan.activation
    if isinstance(unit, ConvLayer) and isinstance(module, (RegNetConvLayer, RegNetShortCut)):
        return _ConvAct(module.convolution, module.normalization, act if unit.act else None, fused)
    if isinstance(unit, NormAct) and isinstance(module, RegNetNormAct):
        return _NormAct(module, act if unit.act else None)
    if isinstance(unit, SqueezeExcite) and isinstance(module, RegNetSELayer):
        return _SE(module, unit.activation)
    if isinstance(unit, Pool):
        return _Pool(module)
    raise BuildError(f"cannot fold a {type(module).__name__} as a {type(unit).__name__}")


class _Block(nn.Module):
    """act(last(branch(x)) + shortcut(x)), the pre-activation first where there is one, with
    folded convs and an in-place add and activation."""

    def __init__(self, block: RegNetLayer, layers: BlockLayers, plan: Plan, fused: bool):
        super().__init__()
        self.preact = (
            _op(layers.preact, block.preact, plan, fused) if layers.preact is not None else None
        )
        ops = [_op(u, m, plan, fused) for u, m in zip(layers.layer, block.layer, strict=True)]
        for i in range(len(ops) - 1):  # SE then a BatchNorm (pre-activation): one pass
            se, norm = ops[i], ops[i + 1]
            bn = isinstance(norm, _NormAct) and isinstance(norm.norm, nn.BatchNorm2d)
            if isinstance(se, _SE) and bn:
                ops[i] = _SE(block.layer[i], se.act, then_norm=norm)  # type: ignore[arg-type]
                ops[i + 1] = _Identity()
        ops = [op for op in ops if not isinstance(op, _Identity)]
        self.branch = nn.ModuleList(ops[:-1])
        self.last = ops[-1]
        self.add = layers.shortcut is not None
        self.shortcut = nn.ModuleList()
        if layers.shortcut:
            sc = block.shortcut
            for unit in layers.shortcut:
                module = sc.pool if isinstance(unit, Pool) else sc
                self.shortcut.append(_op(unit, module, plan, fused))
        self.act = plan.activation if layers.act_out else None

    @property
    def a(self) -> nn.Module:
        """The branch's first op (conv a of a bottleneck block)."""
        return self.branch[0] if len(self.branch) else self.last

    def forward(self, x: Tensor, fused: bool = True) -> Tensor:
        if self.preact is not None:
            x = self.preact(x, fused)
        out = x
        for op in self.branch:
            out = op(out, fused)
        if not self.add:
            return _act_(self.last(out, fused), self.act)
        residual = x
        for op in self.shortcut:
            residual = op(residual, fused)
        return self.last.add_act(out, residual, self.act, fused)


class InferenceRegNet(nn.Module):
    """Stem, blocks and (optionally) the classifier, folded; returns one tensor."""

    def __init__(
        self,
        model: RegNetModel,
        classifier: nn.Module | None,
        channels_last: bool,
        fused: bool,
        auto: bool = False,
    ) -> None:
        super().__init__()
        plan = model.plan
        embedder = model.embedder
        self.num_channels = embedder.num_channels
        stem = embedder.embedder
        convs = list(stem) if isinstance(stem, nn.Sequential) else [stem]
        modules = [*convs, *([embedder.pool] if hasattr(embedder, "pool") else [])]
        units = stem_layers(plan).units
        self.stem = nn.ModuleList(
            _op(u, m, plan, fused) for u, m in zip(units, modules, strict=True)
        )
        self.blocks = nn.ModuleList(
            _Block(module, block_layers(plan, b), plan, fused)
            for s, stage in zip(plan.stages, model.encoder.stages, strict=True)
            for b, module in zip(s.blocks(), stage.layers, strict=True)
        )
        head = head_layers(plan)
        self.final = _op(head[0], model.final, plan, fused) if head else None
        self.fused = fused
        # With `auto`, fused kernels run for an input shape and thread count only where they
        # were timed faster than the plain ones (first call); otherwise `fused` decides.
        self.auto = auto
        self.choices: dict[tuple[int, ...], bool] = {}
        self.classifier = classifier
        self.channels_last = channels_last

    def _body(self, x: Tensor, fused: bool) -> Tensor:
        """Stem, blocks and head conv (or final activation), with fused kernels or without."""
        for op in self.stem:
            x = op(x, fused)
        for block in self.blocks:
            x = block(x, fused)
        if self.final is not None:
            x = self.final(x, fused)
        return x

    def _fused_wins(self, x: Tensor) -> bool:
        """Whether fused kernels are faster for x's shape at this thread count (cached)."""
        key = (*x.shape, torch.get_num_threads())
        choice = self.choices.get(key)
        if choice is None:
            with torch.inference_mode():
                self._body(x, True)  # warm-up: packing, oneDNN primitives, allocations
                self._body(x, False)
                best = {True: math.inf, False: math.inf}
                for _ in range(2):
                    for fused in (True, False):
                        start = time.perf_counter()
                        self._body(x, fused)
                        best[fused] = min(best[fused], time.perf_counter() - start)
            choice = best[True] <= best[False]
            kept = list(self.choices.items())[-(MAX_CHOICES - 1) :]
            self.choices = {**dict(kept), key: choice}  # a new dict: threads may read it
        return choice

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Logits with a classifier; otherwise the last hidden state."""
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"pixel_values must have shape (batch, {self.num_channels}, height, width), "
                f"got {tuple(pixel_values.shape)}"
            )
        if self.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        fused = self.fused and (
            not self.auto or (pixel_values.is_cpu and self._fused_wins(pixel_values))
        )
        x = self._body(pixel_values, fused)
        if self.classifier is None:
            return x
        return self.classifier(x.mean((2, 3)))


def inference_model(
    model: RegNetForImageClassification | RegNetModel,
    *,
    channels_last: bool = True,
    fused_kernels: bool | None = None,
) -> InferenceRegNet:
    """The folded inference form of an eager model (which is left unchanged), in eval mode.

    `fused_kernels=True` prepacks the weights for oneDNN and fuses ReLU and the residual add
    into the convolutions; the result then runs on the CPU only and does not export. The
    default (None), when oneDNN is available and the form is channels-last, times both
    kernels on the first call for each input shape and thread count (six forwards) and uses
    the faster from then on; both give outputs equal within float32 rounding. Use
    `fused_kernels=False` for torch.export / ONNX.
    """
    auto = fused_kernels is None
    if fused_kernels is None:
        fused_kernels = channels_last and fused_kernels_available()
    if fused_kernels and not fused_kernels_available():
        raise BuildError("fused_kernels=True needs a PyTorch build with oneDNN (mkldnn)")
    if isinstance(model, RegNetForImageClassification):
        base, linear = model.regnet, model.classifier[1]
        classifier = copy.deepcopy(linear) if isinstance(linear, nn.Linear) else nn.Identity()
    elif isinstance(model, RegNetModel):
        base, classifier = model, None
    else:
        raise BuildError(f"expected a RegNet model, got {type(model).__name__}")
    with torch.no_grad():
        fast = InferenceRegNet(
            base, classifier, channels_last, fused_kernels, auto and fused_kernels
        )
    fast.eval().requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast
