"""Model scaling ("Fast and Accurate Model Scaling", Dollar et al., CVPR 2021), as pycls does it.

To scale flops by s, depth is scaled by s**e_d, width by s**(e_w / 2), resolution by
s**(e_r / 2), with e_d + e_w + e_r = 1 (flops grow as depth x width^2 x resolution^2). The
weights name the split: "d1_w8_g8_r1" (the paper's fast compound scaling, the default) gives
e_d = 0.1, e_w = 0.8, e_r = 0.1 and scales group width like width; "dw" splits evenly between
depth and width; --alpha A is e_w = A, e_d = e_r = (1 - A) / 2, group width like width.

Re-quantization follows pycls's scaler: depth max(1, round(d x f_d)); widths to multiples of
8 (q for w0); group width round(g x f_g), then 1, 2, 4 or a multiple of 8; input size to a
multiple of 4. A parametric spec stays parametric: d and w0 are scaled as above, wm is kept
and wa becomes wa x f_w / f_d, so that every block keeps its relative position in the width
profile (stage boundaries move with depth; the quantized widths scale by f_w). An explicit
spec is scaled stage by stage, as pycls scales an AnyNet. Both end with the block
compatibility rule of the generator.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..core.complexity import Complexity, count
from ..core.errors import PlanError, SpecError
from ..core.generator import MAX_INPUT_SIZE, adjust_pycls
from ..core.spec import ExplicitSpec, ParametricSpec, Spec, dump_spec, spec_from_dict
from ..infra.dumping import yaml_comment
from ..infra.errors import RegNetSpaceError

DEFAULT_WEIGHTS = "d1_w8_g8_r1"
MAX_FACTOR = 1e4
CORRECTION = 0.15  # width multipliers tried around the rule's: exp(+-0.15) = 0.86 ... 1.16
CORRECTION_STEPS = 30
TOLERANCE = 0.02  # a flop factor within 2 % of the asked one counts as on target
_WEIGHT_RE = re.compile(r"([dwgr])(\d+(?:\.\d+)?)")


class ScaleError(RegNetSpaceError, ValueError):
    """A scaling request that cannot be honoured (bad factor or weights)."""


@dataclass(frozen=True)
class ScaleFactors:
    """Multipliers of depth, width, group width and input resolution."""

    depth: float
    width: float
    group_width: float
    resolution: float

    @property
    def flops(self) -> float:
        """The flop factor these multipliers aim at: depth x width^2 x resolution^2."""
        return self.depth * self.width**2 * self.resolution**2


@dataclass(frozen=True)
class Scaled:
    """A scaled spec with its new input size, and the counts before and after."""

    source: Spec
    spec: Spec
    asked: float
    weights: str
    factors: ScaleFactors
    input_size_before: int
    input_size: int
    flops_before: int
    flops: int
    params_before: int
    params: int
    acts_before: int
    acts: int

    @property
    def achieved(self) -> float:
        """Achieved flop factor: flops(new spec, new input) / flops(old spec, old input)."""
        return self.flops / self.flops_before

    @property
    def miss(self) -> float:
        """Relative miss of the asked flop factor: achieved / asked - 1 (+5.49 is +549 %)."""
        return self.achieved / self.asked - 1

    def as_dict(self) -> dict[str, object]:
        """Machine-readable summary (paper-convention counts)."""
        return {
            "source": self.source.name,
            "name": self.spec.name,
            "weights": self.weights,
            "asked_flop_factor": self.asked,
            "achieved_flop_factor": self.achieved,
            "factors": {
                "depth": self.factors.depth,
                "width": self.factors.width,
                "group_width": self.factors.group_width,
                "resolution": self.factors.resolution,
            },
            "input_size_before": self.input_size_before,
            "input_size": self.input_size,
            "before": {"flops": self.flops_before, "params": self.params_before},
            "after": {"flops": self.flops, "params": self.params, "acts": self.acts},
            "spec": self.spec.model_dump(mode="json", exclude_none=True),
        }


def parse_weights(text: str) -> dict[str, float]:
    """pycls's scaling types: letters ("dw", "dwr") or weighted parts ("d1_w8_g8_r1")."""
    if text and all(c in "dwgr" for c in text) and len(set(text)) == len(text):
        return {s: 1.0 if s in text else 0.0 for s in "dwgr"}
    weights = dict.fromkeys("dwgr", 0.0)
    seen = set()
    for part in text.split("_"):
        m = _WEIGHT_RE.fullmatch(part)
        if m is None or m.group(1) in seen:
            raise ScaleError(
                f"--weights: expected letters of d, w, g, r (e.g. dw) or parts like "
                f"d1_w8_g8_r1, got {text!r}"
            )
        seen.add(m.group(1))
        weights[m.group(1)] = float(m.group(2))
    return weights


def scaling_factors(
    factor: float, weights: str | None = None, alpha: float | None = None
) -> tuple[ScaleFactors, str]:
    """Depth, width, group-width and resolution multipliers for a flop factor, and the weights."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise ScaleError(f"the flop factor must be a number, got {factor!r}")
    if not (math.isfinite(factor) and 0 < factor <= MAX_FACTOR):
        raise ScaleError(f"the flop factor must be in (0, {MAX_FACTOR:g}], got {factor}")
    if weights is not None and alpha is not None:
        raise ScaleError("give --weights or --alpha, not both")
    if alpha is not None:
        if not (math.isfinite(alpha) and 0 <= alpha <= 1):
            raise ScaleError(f"--alpha must be between 0 and 1, got {alpha}")
        w = {"d": (1 - alpha) / 2, "w": alpha, "g": alpha, "r": (1 - alpha) / 2}
        label = f"alpha={alpha:g}"
    else:
        label = weights or DEFAULT_WEIGHTS
        w = parse_weights(label)
    total = w["d"] + w["w"] + w["r"] or w["g"] / 2 or 1.0  # pycls's normalisation
    f = ScaleFactors(
        depth=factor ** (w["d"] / total),
        width=factor ** (w["w"] / total / 2),
        group_width=factor ** (w["g"] / total / 2),
        resolution=factor ** (w["r"] / total / 2),
    )
    return f, label


def round_group_width(g: float) -> int:
    """pycls's group-width quantization: 1 or 2 as they are, 3-5 to 4, else a multiple of 8."""
    gi = max(1, round(g))
    return gi if gi <= 2 else 4 if gi <= 5 else round(gi / 8) * 8


def scale_input_size(size: int, resolution: float) -> int:
    """Input side scaled and rounded to a multiple of 4 (pycls), within the allowed range."""
    new = max(4, round(size * resolution / 4) * 4)
    if new > MAX_INPUT_SIZE:
        raise ScaleError(f"the scaled input size {new} exceeds {MAX_INPUT_SIZE}")
    return new


def _scale_parametric(
    spec: ParametricSpec, f: ScaleFactors, c: float, dd: int
) -> dict[str, object]:
    depth = max(1, round(spec.depth * f.depth) + dd)
    q = spec.q
    w0 = max(q, round(spec.w0 * f.width * c / q) * q)
    # Keep each block's relative position in the width profile: u(j d'/d) = f_w u(j).
    wa = round(spec.wa * f.width * c * spec.depth / depth, 2)
    g = round_group_width(spec.group_width * f.group_width * c)
    return {"depth": depth, "w0": w0, "wa": float(wa), "group_width": g}


def _scale_explicit(spec: ExplicitSpec, f: ScaleFactors, c: float, dd: int) -> dict[str, object]:
    stages = []
    # A depth correction goes to the deepest stage (where one block changes flops least).
    deepest = max(range(len(spec.stages)), key=lambda i: spec.stages[i].depth)
    for i, st in enumerate(spec.stages):
        width = max(1, round(st.width * f.width * c / 8)) * 8
        g = round_group_width(st.group_width * f.group_width * c)
        width, g = adjust_pycls(width, st.bottleneck_multiplier, g)
        depth = max(1, round(st.depth * f.depth) + (dd if i == deepest else 0))
        stage = st.model_dump(exclude_none=True)
        stage.update(depth=depth, width=width, group_width=g)
        stages.append(stage)
    return {"stages": stages}


def _candidate(
    spec: Spec, f: ScaleFactors, c: float, dd: int, name: str, size: int
) -> tuple[Spec, Complexity] | None:
    data = spec.model_dump(mode="json", exclude_none=True)
    data["input_size"] = size
    if isinstance(spec, ParametricSpec):
        data.update(_scale_parametric(spec, f, c, dd))
    else:
        data.update(_scale_explicit(spec, f, c, dd))
    data["name"] = name
    try:
        new = spec_from_dict(data, "scaled spec")
        return new, count(new)
    except (SpecError, PlanError):
        return None


def scale_spec(
    spec: Spec,
    factor: float,
    *,
    weights: str | None = None,
    alpha: float | None = None,
    input_size: int | None = None,
    correct: bool = True,
) -> Scaled:
    """Scale a spec's flops by about `factor` (pycls's rules), re-quantize and count.

    With `correct` (default), when the rule's design misses the asked flop factor by more
    than TOLERANCE (rounding to multiples of 8 and of the group width can miss by 20 % on
    small models), nearby designs are tried: width multipliers within exp(+-CORRECTION) of
    the rule's and depth +-1; the nearest to the rule among the closest in flops wins.
    The source is counted at `input_size` (default: its own); the new spec carries its new
    input size as its `input_size` field.
    """
    f, label = scaling_factors(factor, weights, alpha)
    if input_size is None:
        input_size = spec.input_size
    new_size = scale_input_size(input_size, f.resolution)
    before = count(spec, input_size)
    name = f"{spec.name} x{factor:g}"[:200]
    tries = [(1.0, 0)]
    if correct:
        grid = np.exp(np.linspace(-CORRECTION, CORRECTION, 2 * CORRECTION_STEPS + 1)).tolist()
        tries += [(c, dd) for dd in (0, -1, 1) for c in grid]
    # Nearest the rule first, so the first design within tolerance is the answer.
    tries.sort(key=lambda t: (abs(t[1]), abs(math.log(t[0]))))
    best: tuple[tuple[float, int, float], Spec, Complexity] | None = None
    for c, dd in tries:
        found = _candidate(spec, f, c, dd, name, new_size)
        if found is None:
            continue
        miss = abs(math.log(found[1].flops / before.flops / factor))
        key = (max(miss, math.log1p(TOLERANCE)), abs(dd), abs(math.log(c)))
        if best is None or key < best[0]:
            best = (key, *found)
        if miss <= math.log1p(TOLERANCE):
            break
    if best is None:
        raise ScaleError(f"{spec.name}: no valid design at flop factor {factor:g}")
    _, new, after = best
    return Scaled(
        source=spec,
        spec=new,
        asked=float(factor),
        weights=label,
        factors=f,
        input_size_before=input_size,
        input_size=new_size,
        flops_before=before.flops,
        flops=after.flops,
        params_before=before.params,
        params=after.params,
        acts_before=before.acts,
        acts=after.acts,
    )


def scaled_spec_text(scaled: Scaled) -> str:
    """The scaled spec as YAML (its input size a field), its provenance in a comment on top."""
    header = yaml_comment(
        f"{scaled.source.name} scaled by regnet-space scale: flops x{scaled.asked:g} asked, "
        f"x{scaled.achieved:.3f} achieved ({scaled.weights}); the source was counted at "
        f"{scaled.input_size_before}"
    )
    return header + dump_spec(scaled.spec)
