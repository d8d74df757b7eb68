"""fvcore's counts for `build --verify`: one trace against fvcore's two analyses, interleaved.

Three ways to get the counts of one model, timed in turn each round (order rotated) and
reported as medians: fvcore's FlopCountAnalysis then ActivationCountAnalysis (two traces, as
`--verify` used to), our one-trace `fvcore_counts` (flops and activations from one trace, and
the parameter count), and FlopCountAnalysis alone (one trace, flops only). The counts of the
first two are checked equal.

    python benchmarks/bench_verify.py [--spec specs/y040.yaml] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from regnet_space.core.generator import make_plan
from regnet_space.core.reader import load_spec
from regnet_space.nn.counters import _TupleOutput, fvcore_counts
from regnet_space.nn.model import build_model

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "y040.yaml"), help="spec file")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    p = make_plan(load_spec(args.spec))
    model = build_model(p).eval()
    wrapped = _TupleOutput(model)
    x = torch.zeros(1, p.num_channels, p.input_size, p.input_size)

    def two_traces() -> tuple[int, int]:
        f, a = FlopCountAnalysis(wrapped, x), ActivationCountAnalysis(wrapped, x)
        for analysis in (f, a):
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(f.total()), int(a.total())

    def one_trace() -> tuple[int, int]:
        c = fvcore_counts(model, p.num_channels, p.input_size)
        return c.flops, c.acts

    def flops_only() -> tuple[int, int]:
        f = FlopCountAnalysis(wrapped, x)
        f.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(f.total()), 0

    runs: dict[str, Callable[[], tuple[int, int]]] = {
        "two traces (fvcore's two analyses)": two_traces,
        "one trace (fvcore_counts)": one_trace,
        "flops only (one analysis)": flops_only,
    }
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert two_traces() == one_trace(), "one trace must count exactly as two"
        for r in range(args.rounds):
            for n in names[r % 3 :] + names[: r % 3]:
                start = time.perf_counter()
                runs[n]()
                times[n].append(time.perf_counter() - start)
    med = {n: statistics.median(v) for n, v in times.items()}
    base = med[names[2]]
    print(f"{p.name} at {p.input_size}x{p.input_size}, {args.rounds} interleaved rounds, medians")
    for n in names:
        print(f"{n:<38}{med[n]:>8.3f} s{med[n] / base:>8.2f}x flops-only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
