"""Feature pyramids: the stem's and each stage's feature maps, for detection and segmentation.

`feature_info(plan)` describes every level (name, channels, stride, side at the plan's input
size) without torch work; `RegNetBackbone` returns the chosen levels as an ordered
`dict[str, Tensor]` (torchvision's FPN takes it as it is) and stops after the deepest one.
Level 0 is the stem (stride 2; 1 for the CIFAR stem), level i the i-th stage. The backbone
shares its modules with the model it wraps, so weights loaded into one are in the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

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


def feature_info(plan: Plan) -> tuple[FeatureInfo, ...]:
    """Every level of the plan: the stem, then each stage (cumulative strides)."""
    levels = [FeatureInfo(0, "stem", plan.stem_width, plan.stem_stride, plan.stem_size)]
    stride = plan.stem_stride
    for st in plan.stages:
        stride *= st.stride
        levels.append(
            FeatureInfo(st.index + 1, f"stage{st.index + 1}", st.width, stride, st.out_size)
        )
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

    def __init__(self, model: RegNetModel, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        levels = feature_info(model.plan)
        self.out_indices = _resolve_indices(out_indices, len(levels))
        self.feature_info = tuple(levels[i] for i in self.out_indices)
        self.embedder = model.embedder
        self.encoder = model.encoder

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
        hidden = self.embedder(pixel_values)
        out: dict[str, Tensor] = {}
        if 0 in names:
            out[names[0]] = hidden
        for i, stage in enumerate(self.encoder.stages[:last], start=1):
            hidden = stage(hidden)
            if i in names:
                out[names[i]] = hidden
        return out


def backbone_from_model(
    model: RegNetForImageClassification | RegNetModel, out_indices: Sequence[int] | None = None
) -> RegNetBackbone:
    """A backbone sharing the modules (and weights) of a built model."""
    if isinstance(model, RegNetForImageClassification):
        model = model.regnet
    if not isinstance(model, RegNetModel):
        raise BuildError(f"expected a RegNet model, got {type(model).__name__}")
    return RegNetBackbone(model, out_indices)


def build_backbone(
    spec_or_plan: ParametricSpec | ExplicitSpec | Plan,
    out_indices: Sequence[int] | None = None,
    *,
    force: bool = False,
) -> RegNetBackbone:
    """Build a freshly initialised backbone; default levels: every stage (not the stem)."""
    return backbone_from_model(build_model(spec_or_plan, False, force=force), out_indices)
