"""Block, stem and head definitions: each block kind's layers, written once, as data.

A definition turns a planned block (`BlockPlan`, with the plan's `BlockOptions`) into its layer
list: the units in forward order, each with its module path in our model (Hugging Face's names
for x and y blocks), the shapes of its convolution, and a role by which `PEER_NAMES` gives its
modules' names in timm, torchvision and pycls. Four consumers read the same objects: the model
builder (`nn.model`), the analytic counter (`core.complexity`), the inference form
(`nn.inference`) and the checkpoint mapper (`interop.checkpoints`). A new block kind is one
function here (registered in `DEFINITIONS`), a row of `spec.BLOCK_KINDS`, and its peer names.

Pure data and arithmetic: no numpy, no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .generator import BlockOptions, BlockPlan, Plan, stem_widths


@dataclass(frozen=True)
class Conv:
    """A k x k convolution without bias, padding dilation * (k // 2); sides in and out."""

    c_in: int
    c_out: int
    kernel: int
    h_in: int
    h_out: int
    stride: int = 1
    groups: int = 1
    dilation: int = 1

    @property
    def padding(self) -> int:
        return self.dilation * (self.kernel // 2)


@dataclass(frozen=True)
class ConvLayer:
    """conv, then the norm and the activation where they are on."""

    path: str  # module path in our model (from the block, the embedder or the model)
    role: str  # its name in PEER_NAMES
    conv: Conv
    norm: bool
    act: bool


@dataclass(frozen=True)
class NormAct:
    """A norm (where on) and the activation on a feature map: pre-activation, final activation."""

    path: str
    role: str
    channels: int
    side: int
    norm: bool = True
    act: bool = True


@dataclass(frozen=True)
class SqueezeExcite:
    """Pool, 1x1 conv (bias) to `width`, activation, 1x1 conv (bias) back, sigmoid, multiply."""

    path: str
    role: str
    channels: int
    width: int
    side: int
    activation: str


@dataclass(frozen=True)
class Pool:
    """A pooling layer without state: avg (ceil mode, padding not counted), avg_same (stride
    1, zero-padded right and bottom: timm's AvgPool2dSame) or max."""

    path: str
    kind: Literal["avg", "avg_same", "max"]
    kernel: int
    stride: int
    padding: int
    channels: int
    h_in: int
    h_out: int


Unit = ConvLayer | NormAct | SqueezeExcite | Pool


@dataclass(frozen=True)
class BlockLayers:
    """One block: act(branch(x) + shortcut(x)); with `preact`, both start from its output."""

    preact: NormAct | None  # pre-activation of the block input, feeding both paths
    layer: tuple[Unit, ...]  # the residual branch, paths layer.0, layer.1, ...
    shortcut: tuple[Unit, ...] | None  # projection units; () the identity; None: no add
    act_out: bool  # an activation after the add


@dataclass(frozen=True)
class StemLayers:
    """The stem's units (paths from the embedder) and which one's output is its stride-2 map."""

    units: tuple[Unit, ...]
    tap: int


Definition = Callable[[BlockPlan, BlockOptions], BlockLayers]


def _shortcut(b: BlockPlan, o: BlockOptions, norm: bool, roles: tuple[str, str]) -> tuple | None:
    """Identity where the shape stays; else a 1x1 projection, after a 2x2 average pool for
    shortcut avg (timm's downsample_avg: stride-1 and "same" when dilated), or no add."""
    if not b.has_projection:
        return ()
    if o.shortcut == "none" or not o.residual:
        return None
    if o.shortcut == "conv":
        conv = Conv(b.in_width, b.out_width, 1, b.in_size, b.out_size, stride=b.stride)
        return (ConvLayer("shortcut", roles[0], conv, norm=norm, act=False),)
    conv = Conv(b.in_width, b.out_width, 1, b.out_size, b.out_size)
    layer = ConvLayer("shortcut", roles[1], conv, norm=norm, act=False)
    if b.dilation > 1:
        pool = Pool("shortcut.pool", "avg_same", 2, 1, 0, b.in_width, b.in_size, b.out_size)
    elif b.stride > 1:
        pool = Pool("shortcut.pool", "avg", 2, b.stride, 0, b.in_width, b.in_size, b.out_size)
    else:
        return (layer,)
    return (pool, layer)


def bottleneck(b: BlockPlan, o: BlockOptions) -> BlockLayers:
    """x, y, z, v and w blocks: 1x1 (in -> wb), 3x3 grouped (stride, dilation), [SE], 1x1
    (wb -> out); post-activation (norm and activation after each conv, none after the last)
    or pre-activation (timm's PreBottleneck: the input's norm and activation feed both paths,
    then conv a, norm, act, conv b, SE, norm, act, conv c)."""
    wb = b.bottleneck_width
    a = Conv(b.in_width, wb, 1, b.in_size, b.in_size)
    conv_b = Conv(
        wb, wb, 3, b.in_size, b.out_size, stride=b.stride, groups=b.groups, dilation=b.dilation
    )
    c = Conv(wb, b.out_width, 1, b.out_size, b.out_size)
    # The branch is layer.0, layer.1, ...: SE (where on) is layer.2, what follows it after.
    se, k = [], 2
    if b.se_width:
        se, k = [SqueezeExcite("layer.2", "se", wb, b.se_width, b.out_size, o.se_activation)], 3
    if o.preact:
        layer: tuple[Unit, ...] = (
            ConvLayer("layer.0", "pre_a", a, norm=True, act=True),
            ConvLayer("layer.1", "pre_b", conv_b, norm=False, act=False),
            *se,
            NormAct(f"layer.{k}", "pre_mid", wb, b.out_size),
            ConvLayer(f"layer.{k + 1}", "pre_c", c, norm=False, act=False),
        )
        return BlockLayers(
            preact=NormAct("preact", "pre_in", b.in_width, b.in_size),
            layer=layer,
            shortcut=_shortcut(b, o, False, ("pre_proj", "pre_proj_avg")),
            act_out=False,
        )
    layer = (
        ConvLayer("layer.0", "a", a, norm=True, act=True),
        ConvLayer("layer.1", "b", conv_b, norm=True, act=True),
        *se,
        ConvLayer(f"layer.{k}", "c", c, norm=True, act=False),
    )
    return BlockLayers(
        preact=None,
        layer=layer,
        shortcut=_shortcut(b, o, True, ("proj", "proj_avg")),
        act_out=not o.linear_out,
    )


def _two_convs(b: BlockPlan) -> tuple[Conv, Conv]:
    """The 3x3 convs of vanilla and basic blocks: in -> out (stride), out -> out."""
    a = Conv(
        b.in_width, b.out_width, 3, b.in_size, b.out_size, stride=b.stride, dilation=b.dilation
    )
    return a, Conv(b.out_width, b.out_width, 3, b.out_size, b.out_size, dilation=b.stage_dilation)


def vanilla(b: BlockPlan, o: BlockOptions) -> BlockLayers:
    """pycls's vanilla_block: 3x3 (stride) + norm + act, 3x3 + norm + act; no residual."""
    a, conv_b = _two_convs(b)
    layer = (
        ConvLayer("layer.0", "vanilla_a", a, True, True),
        ConvLayer("layer.1", "vanilla_b", conv_b, True, True),
    )
    return BlockLayers(preact=None, layer=layer, shortcut=None, act_out=False)


def basic(b: BlockPlan, o: BlockOptions) -> BlockLayers:
    """pycls's res_basic_block: 3x3 (stride) + norm + act, 3x3 + norm, plus the shortcut,
    then the activation (none with linear_out)."""
    a, conv_b = _two_convs(b)
    layer = (
        ConvLayer("layer.0", "basic_a", a, True, True),
        ConvLayer("layer.1", "basic_b", conv_b, True, False),
    )
    return BlockLayers(
        preact=None,
        layer=layer,
        shortcut=_shortcut(b, o, True, ("proj", "proj_avg")),
        act_out=not o.linear_out,
    )


# Block kind (spec.BLOCK_KINDS) -> its definition.
DEFINITIONS: dict[str, Definition] = {
    "x": bottleneck,
    "y": bottleneck,
    "z": bottleneck,
    "v": bottleneck,
    "w": bottleneck,
    "vanilla": vanilla,
    "basic": basic,
}


def block_layers(p: Plan, b: BlockPlan) -> BlockLayers:
    """The layers of block `b` of plan `p`, from its kind's definition."""
    return DEFINITIONS[p.block](b, p.options)


def stem_layers(p: Plan) -> StemLayers:
    """The stem: one 3x3 conv (imagenet stride 2, cifar stride 1), a 7x7 stride-2 conv and a
    3x3 stride-2 max-pool (resnet), or three 3x3 convs, strides 2, 1, 2 (tiered). With
    pre-activation blocks the last conv has no norm or activation (the first block's
    pre-activation normalises it), as in timm's RegNetV."""
    c, h, plain = p.num_channels, p.input_size, p.options.preact
    half = (h - 1) // 2 + 1
    if p.stem == "tiered":
        k1, k2, k3 = stem_widths("tiered", p.stem_width)
        units: tuple[Unit, ...] = (
            ConvLayer("embedder.0", "stem1", Conv(c, k1, 3, h, half, stride=2), True, True),
            ConvLayer("embedder.1", "stem2", Conv(k1, k2, 3, half, half), True, True),
            ConvLayer("embedder.2", "stem3", Conv(k2, k3, 3, half, p.stem_size, stride=2),
                      not plain, not plain),
        )  # fmt: skip
        return StemLayers(units, tap=1)
    role = "stem_plain" if plain else "stem"
    if p.stem == "resnet":
        conv = Conv(c, p.stem_width, 7, h, half, stride=2)
        pool = Pool("pool", "max", 3, 2, 1, p.stem_width, half, p.stem_size)
        return StemLayers((ConvLayer("embedder", role, conv, not plain, not plain), pool), tap=0)
    conv = Conv(c, p.stem_width, 3, h, p.stem_size, stride=p.stem_stride)
    return StemLayers((ConvLayer("embedder", role, conv, not plain, not plain),), tap=0)


def head_layers(p: Plan) -> tuple[Unit, ...]:
    """Before pooling: a 1x1 conv + norm + activation to head_width; else the activation alone
    with final_activation (by default after pre-activation or linear-output blocks, as timm's
    RegNet has it); else nothing."""
    last = p.stages[-1]
    if p.head_width:
        conv = Conv(last.width, p.head_width, 1, last.out_size, last.out_size)
        return (ConvLayer("final", "head_conv", conv, norm=True, act=True),)
    if p.options.final_activation:
        return (NormAct("final", "final_act", last.width, last.out_size, norm=False),)
    return ()


# ---------------------------------------------------------------------------------------------
# Peer layouts: each role's module names in timm (regnet.py and byobnet.py), torchvision and
# pycls: (conv or first module, norm or second module); None where the unit has none. Stem
# and head roles are named from the model root, block roles from the block.

Layout = Literal["timm", "timm-byobnet", "torchvision", "pycls"]

PEER_NAMES: dict[str, dict[str, tuple[str | None, str | None]]] = {
    "stem": {
        "timm": ("stem.conv", "stem.bn"),
        "timm-byobnet": ("stem.conv", "stem.bn"),
        "torchvision": ("stem.0", "stem.1"),
        "pycls": ("stem.conv", "stem.bn"),
    },
    "stem_plain": {"timm": ("stem", None)},
    "stem1": {"timm-byobnet": ("stem.conv1.conv", "stem.conv1.bn")},
    "stem2": {"timm-byobnet": ("stem.conv2.conv", "stem.conv2.bn")},
    "stem3": {"timm-byobnet": ("stem.conv3.conv", "stem.conv3.bn")},
    "a": {
        "timm": ("conv1.conv", "conv1.bn"),
        "timm-byobnet": ("conv1_1x1.conv", "conv1_1x1.bn"),
        "torchvision": ("f.a.0", "f.a.1"),
        "pycls": ("f.a", "f.a_bn"),
    },
    "b": {
        "timm": ("conv2.conv", "conv2.bn"),
        "timm-byobnet": ("conv2_kxk.conv", "conv2_kxk.bn"),
        "torchvision": ("f.b.0", "f.b.1"),
        "pycls": ("f.b", "f.b_bn"),
    },
    "se": {
        "timm": ("se.fc1", "se.fc2"),
        "timm-byobnet": ("attn.fc1", "attn.fc2"),
        "torchvision": ("f.se.fc1", "f.se.fc2"),
        "pycls": ("f.se.f_ex.0", "f.se.f_ex.2"),
    },
    "c": {
        "timm": ("conv3.conv", "conv3.bn"),
        "timm-byobnet": ("conv3_1x1.conv", "conv3_1x1.bn"),
        "torchvision": ("f.c.0", "f.c.1"),
        "pycls": ("f.c", "f.c_bn"),
    },
    "proj": {
        "timm": ("downsample.conv", "downsample.bn"),
        "timm-byobnet": ("shortcut.conv", "shortcut.bn"),
        "torchvision": ("proj.0", "proj.1"),
        "pycls": ("proj", "bn"),
    },
    "proj_avg": {
        "timm": ("downsample.1.conv", "downsample.1.bn"),
        "timm-byobnet": ("shortcut.conv.conv", "shortcut.conv.bn"),
    },
    "pre_in": {"timm": (None, "norm1")},
    "pre_a": {"timm": ("conv1", "norm2")},
    "pre_b": {"timm": ("conv2", None)},
    "pre_mid": {"timm": (None, "norm3")},
    "pre_c": {"timm": ("conv3", None)},
    "pre_proj": {"timm": ("downsample", None)},
    "pre_proj_avg": {"timm": ("downsample.1", None)},
    "vanilla_a": {"pycls": ("a", "a_bn")},
    "vanilla_b": {"pycls": ("b", "b_bn")},
    "basic_a": {"pycls": ("f.a", "f.a_bn")},
    "basic_b": {"pycls": ("f.b", "f.b_bn")},
    "head_conv": {
        "timm": ("final_conv.conv", "final_conv.bn"),
        "timm-byobnet": ("final_conv.conv", "final_conv.bn"),
        "pycls": ("head.conv", "head.bn"),
    },
}
# Where each layout puts block j of stage i ({i}, {j} from 1; {s}, {b} from 0) and the
# classifier.
BLOCK_PREFIX: dict[str, str] = {
    "hf": "encoder.stages.{s}.layers.{b}.",
    "timm": "s{i}.b{j}.",
    "timm-byobnet": "stages.{s}.{b}.",
    "torchvision": "trunk_output.block{i}.block{i}-{b}.",
    "pycls": "s{i}.b{j}.",
}
CLASSIFIER: dict[str, str] = {
    "hf": "classifier.1",
    "timm": "head.fc",
    "timm-byobnet": "head.fc",
    "torchvision": "fc",
    "pycls": "head.fc",
}


def timm_layout(plan: Plan) -> str:
    """Which timm file builds the plan: byobnet.py (the tiered stem, bottleneck_in, SE from the
    bottleneck width: timm's RegNetZ b16 ... e8) or regnet.py."""
    o = plan.options
    byobnet = plan.stem == "tiered" or o.bottleneck_in or o.se_from == "bottleneck"
    return "timm-byobnet" if byobnet else "timm"


PEER_MODELS = {
    "timm": "timm's RegNet",
    "timm-byobnet": "timm's ByobNet",
    "torchvision": "torchvision's RegNet",
    "pycls": "pycls's AnyNet",
}


# One check of a peer layout: (refused, field, value, why).
_Check = tuple[bool, str, object, str]


def peer_refusal(plan: Plan, layout: str) -> str | None:
    """Why a peer layout cannot hold the plan exactly (its model would compute another network
    with the same weights): "field: value: why", or None if it can."""
    peer = PEER_MODELS[layout]
    for failed, field, value, why in [
        *_structure_checks(plan, layout, peer),
        *_activation_checks(plan, layout, peer),
    ]:
        if failed:
            text = str(value).lower() if isinstance(value, bool) else value
            return f"{field}: {text}: {why}"
    return _byobnet_bottleneck(plan) if layout == "timm-byobnet" else None


def _structure_checks(plan: Plan, layout: str, peer: str) -> list[_Check]:
    """The stems, blocks, norms, head convs and shortcuts a peer layout has."""
    o = plan.options
    stems = {"timm": ("imagenet",), "torchvision": ("imagenet",)}
    stems |= {"timm-byobnet": ("imagenet", "tiered"), "pycls": ("imagenet", "cifar", "resnet")}
    return [
        (plan.stem not in stems[layout], "stem", plan.stem, f"{peer} has no such stem"),
        (not o.bottleneck and layout != "pycls", "block", plan.block, f"{peer} has none"),
        (o.preact and layout != "timm", "preact", True, f"{peer} has no pre-activation block"),
        (
            o.bottleneck_in and layout != "timm-byobnet",
            "bottleneck_in",
            True,
            "timm's ByobNet only",
        ),
        (
            o.norm != "batch" and layout in ("torchvision", "pycls"),
            "norm",
            o.norm,
            "BatchNorm there",
        ),
        (
            plan.head_width > 0 and layout == "torchvision",
            "head_width",
            plan.head_width,
            "none there",
        ),
        (
            o.shortcut == "avg" and layout in ("torchvision", "pycls"),
            "shortcut",
            "avg",
            "none there",
        ),
    ]


def _activation_checks(plan: Plan, layout: str, peer: str) -> list[_Check]:
    """Where a peer layout adds, activates and squeezes: residual ends, SE, the last stage."""
    o = plan.options
    # pycls's res_bottleneck_linear_block: a linear output and no projection shortcut, together
    pycls_linear = layout == "pycls" and o.bottleneck and o.linear_out and o.shortcut == "none"
    plain = layout in ("torchvision", "pycls") and o.residual and not pycls_linear
    se = plan.se_ratio > 0 and o.bottleneck
    se_act = "relu" if layout == "timm-byobnet" else plan.activation
    # timm's RegNet: an activation after the last stage exactly for preact or linear_out
    final = o.preact or o.linear_out if layout == "timm" else False
    final_act = o.final_activation and not plan.head_width
    return [
        (plain and o.linear_out, "linear_out", True, f"{peer} adds and activates"),
        (plain and o.shortcut == "none", "shortcut", "none", f"{peer} projects"),
        (
            se and o.se_activation != se_act,
            "se_activation",
            o.se_activation,
            f"{peer}'s SE uses {se_act}; set se_activation: {se_act}",
        ),
        (
            layout == "pycls" and plan.head_width > 0 and not plan.num_classes,
            "head_width",
            plan.head_width,
            f"{peer} has a head conv only before its classifier (num_classes >= 1)",
        ),
        (
            final_act != (final and not plan.head_width),
            "final_activation",
            final_act,
            f"{peer} has {'one' if final else 'none'} there",
        ),
    ]


def _byobnet_bottleneck(plan: Plan) -> str | None:
    """timm's ByobNet rounds the bottleneck width with make_divisible(8, round_limit 0.9)."""
    for blk in plan.blocks:
        base = blk.in_width if plan.options.bottleneck_in else blk.out_width
        v = base * plan.stages[blk.stage].bottleneck_multiplier
        made = max(8, int(v + 4) // 8 * 8)
        made += 8 if made < 0.9 * v else 0
        if made != blk.bottleneck_width:
            return (
                f"bottleneck_multiplier: {v:g} channels make a bottleneck of "
                f"{blk.bottleneck_width} here, {made} in timm's ByobNet (stage {blk.stage})"
            )
    return None
