"""Feature pyramids: the stem's and each stage's feature maps, for detection and segmentation.

`feature_info(plan)` describes every level (name, channels, stride, side at the plan's input
size) without torch work; `RegNetBackbone` returns the chosen levels as an ordered
`dict[str, Tensor]` (torchvision's FPN takes it as it is) and stops after the deepest one.
Level 0 is the stem's stride-2 map (its output; 1 for the CIFAR stem; inside the tiered and
resnet stems, the output of their last stride-2 conv layer, as timm taps them), level i the
i-th stage. With `head_conv=True` the last level is taken after the head conv (`head_width`),
as timm's ByobNet models (regnetz_b16 ... e8) list their features. Dilated stages
(`output_stride`) keep the stride of the stage before. The backbone shares its modules with
the model it wraps, so weights loaded into one are in the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from ..core.blocks import ConvLayer, stem_layers
from ..core.errors import BuildError
from ..core.generator import Plan
from ..core.spec import ExplicitSpec, ParametricSpec
from .model import RegNetForImageClassification, RegNetModel, build_model

__all__ = [
    "FeatureInfo",
    "RegNetBackbone",
    "backbone_from_model",
    "build_backbone",
    "feature_info",
]


@dataclass(frozen=True)
class FeatureInfo:
    """One pyramid level: index (0 = stem), name, channels, stride, side at the input size."""

    index: int
    name: str
    channels: int
    stride: int
    size: int


def feature_info(plan: Plan, *, head_conv: bool = False) -> tuple[FeatureInfo, ...]:
    """Every level of the plan: the stem's stride-2 map, then each stage (cumulative strides);
    with `head_conv`, the last one after the head conv."""
    stem = stem_layers(plan)
    tap = stem.units[stem.tap]
    if not isinstance(tap, ConvLayer):  # pragma: no cover - the definitions tap a conv
        raise BuildError("the stem's feature map is a conv layer's")
    # every stem taps its first stride-2 conv's output (the CIFAR stem has none: stride 1)
    levels = [FeatureInfo(0, "stem", tap.conv.c_out, min(plan.stem_stride, 2), tap.conv.h_out)]
    stride = plan.stem_stride
    for st in plan.stages:
        stride *= st.stride
        levels.append(
            FeatureInfo(st.index + 1, f"stage{st.index + 1}", st.width, stride, st.out_size)
        )
    if head_conv and plan.head_width:
        last = levels[-1]
        levels[-1] = FeatureInfo(last.index, "head", plan.head_width, last.stride, last.size)
    return tuple(levels)


def _resolve_indices(out_indices: Sequence[int] | None, n_levels: int) -> tuple[int, ...]:
    """Sorted, distinct level indices; negative ones count from the end (-1 = last stage)."""
    if out_indices is None:
        return tuple(range(1, n_levels))
    resolved = []
    for i in out_indices:
        if not isinstance(i, int) or isinstance(i, bool):
            raise BuildError(f"out_indices: expected integers, got {i!r}")
        j = i + n_levels if i < 0 else i
        if not 0 <= j < n_levels:
            raise BuildError(
                f"out_indices: {i} is out of range; levels are 0 (stem) to {n_levels - 1}"
            )
        resolved.append(j)
    if not resolved:
        raise BuildError("out_indices: choose at least one level")
    if len(set(resolved)) != len(resolved):
        raise BuildError(f"out_indices: {list(out_indices)} names a level twice")
    return tuple(sorted(resolved))


class RegNetBackbone(nn.Module):
    """The stem and stages of a RegNetModel, returning the chosen levels' feature maps."""

    def __init__(
        self,
        model: RegNetModel,
        out_indices: Sequence[int] | None = None,
        *,
        head_conv: bool = False,
    ) -> None:
        super().__init__()
        levels = feature_info(model.plan, head_conv=head_conv)
        self.out_indices = _resolve_indices(out_indices, len(levels))
        self.feature_info = tuple(levels[i] for i in self.out_indices)
        self.embedder = model.embedder
        self.encoder = model.encoder
        if head_conv and model.plan.head_width:
            self.final = model.final

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each returned level, in order."""
        return tuple(f.channels for f in self.feature_info)

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride (input side / feature side, for sides divisible by it) of each level."""
        return tuple(f.stride for f in self.feature_info)

    def forward(self, pixel_values: Tensor) -> dict[str, Tensor]:
        names = {f.index: f.name for f in self.feature_info}
        last = self.out_indices[-1]
        hidden, tap = self.embedder.forward_with_tap(pixel_values)
        out: dict[str, Tensor] = {}
        if 0 in names:
            out[names[0]] = tap
        stages = self.encoder.stages
        for i, stage in enumerate(stages[:last], start=1):
            hidden = stage(hidden)
            if i == len(stages) and hasattr(self, "final"):
                hidden = self.final(hidden)
            if i in names:
                out[names[i]] = hidden
        return out


def backbone_from_model(
    model: RegNetForImageClassification | RegNetModel,
    out_indices: Sequence[int] | None = None,
    *,
    head_conv: bool = False,
) -> RegNetBackbone:
    """A backbone sharing the modules (and weights) of a built model."""
    if isinstance(model, RegNetForImageClassification):
        model = model.regnet
    if not isinstance(model, RegNetModel):
        raise BuildError(f"expected a RegNet model, got {type(model).__name__}")
    return RegNetBackbone(model, out_indices, head_conv=head_conv)


def build_backbone(
    spec_or_plan: ParametricSpec | ExplicitSpec | Plan,
    out_indices: Sequence[int] | None = None,
    *,
    head_conv: bool = False,
    force: bool = False,
) -> RegNetBackbone:
    """Build a freshly initialised backbone; default levels: every stage (not the stem)."""
    model = build_model(spec_or_plan, False, force=force)
    return backbone_from_model(model, out_indices, head_conv=head_conv)
