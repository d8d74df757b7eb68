"""Memory a forward pass needs, estimated from the plan."""

from __future__ import annotations

from .generator import Plan

# Tensors alive at once in a block's forward pass (its input, the shortcut, two intermediates).
_LIVE_TENSORS = 4
_FLOAT32 = 4


def forward_bytes(plan: Plan, params: int, batch: int = 1) -> int:
    """Peak bytes of an inference forward pass (float32): the `params` weights plus the largest
    activations.

    An estimate from the largest tensor of the plan (the image, the stem output, each stage's
    widest tensor at its input resolution) times the tensors a block keeps alive at once.
    """
    largest = plan.num_channels * plan.input_size**2
    largest = max(largest, plan.stem_width * plan.stem_size**2)
    for s in plan.stages:
        widest = max(s.in_width, s.width, s.bottleneck_width)
        largest = max(largest, widest * s.in_size**2)
    return _FLOAT32 * (params + _LIVE_TENSORS * batch * largest)
