"""Memory a forward pass needs, estimated from the plan, and the memory this machine has free."""

from __future__ import annotations

import os
from pathlib import Path

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


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable, capped by a cgroup limit); None if unknown."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit.isdigit():
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return max(0, min(found))


def human_bytes(n: int) -> str:
    """1.5 GB-style size."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
