"""The library changes nothing process-wide: a program that imports regnet_space and runs
sample(), count(), build_model() and the trainer for one epoch finds its process as it was.

Checked in a fresh interpreter (a script named `regnet-space`, the command's own name, so
that nothing may decide from sys.argv that it is the command): the umask, every signal
handler, sys.stdin/stdout/stderr and the hooks, torch's threads, cuDNN and matmul flags,
deterministic mode, default dtype and grad mode, the RNG states of torch, numpy and random
(build_model draws its initial weights from torch's, as torch.nn layers do: that one is
restored after it), the environment, warnings filters and the working folder. And glibc's
mmap threshold (which sets its trim threshold), seen through its behaviour: whether a 3 MiB
block is mapped (mallinfo2's count of mapped blocks). That one is checked around the
numpy-only steps, import, sample() and count(): torch frees large tensors while it builds and
trains, and glibc raises its thresholds on such frees by its own rule, whoever runs them. The
script then frees one 4 MiB numpy block itself and checks that the probe sees the threshold
rise: the probe can tell.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import ctypes, hashlib, json, os, random, signal, sys, warnings

import numpy as np
import sklearn.datasets  # the digits data (the trainer imports it when it loads them)
import torch
import torch._dynamo  # torch.optim imports it on the first step: it sets an environment
                      # variable and sympy a warnings filter, as in any program that trains


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


libc = ctypes.CDLL(None)
GLIBC = hasattr(libc, "mallinfo2")
if GLIBC:
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]


def mapped(size: int = 3 << 20) -> bool | None:
    # Whether a block of this size is mapped (rather than carved from the heap): while
    # glibc's mmap threshold is below it. Never freed: freeing a mapped block is what raises
    # the threshold (and the trim threshold with it), so the probe changes nothing it sees.
    if not GLIBC:
        return None
    before = libc.mallinfo2().hblks
    libc.malloc(size)
    return libc.mallinfo2().hblks == before + 1


def digest(obj) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def umask() -> str:
    with open("/proc/self/status") as f:
        return next(line.split()[1] for line in f if line.startswith("Umask:"))


def state() -> dict:
    return {
        "umask": umask(),
        "signals": {
            int(s): repr(signal.getsignal(s))
            for s in signal.valid_signals()
            if s not in (signal.SIGKILL, signal.SIGSTOP)
        },
        "streams": [id(sys.stdin), id(sys.stdout), id(sys.stderr)],
        "hooks": [id(sys.excepthook), id(sys.unraisablehook), id(sys.displayhook)],
        "recursion": sys.getrecursionlimit(),
        "warnings": len(warnings.filters),
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "threads": [torch.get_num_threads(), torch.get_num_interop_threads()],
        "cudnn": [
            torch.backends.cudnn.enabled,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.allow_tf32,
        ],
        "matmul": [
            torch.backends.cuda.matmul.allow_tf32,
            torch.get_float32_matmul_precision(),
        ],
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "dtype": str(torch.get_default_dtype()),
        "grad": torch.is_grad_enabled(),
        "rng": [
            digest(torch.get_rng_state().tolist()),
            digest(np.random.get_state()[1].tolist()),
            digest(random.getstate()),
        ],
    }


root = sys.argv[1]
out = {"glibc": GLIBC, "mapped": [mapped()]}
before = state()

import regnet_space

result = regnet_space.sample(root + "/specs/spaces/regnety.yaml", 20, seed=0, flops="380M:420M")
counts = regnet_space.count(regnet_space.load_spec(root + "/specs/y040.yaml"))
out["mapped"].append(mapped())

from regnet_space.study.data import DataSpec
from regnet_space.study.recipe import load_recipe
from regnet_space.study.trainer import train

spec = regnet_space.load_spec(
    "name: tiny\nblock: x\nstem_width: 16\nstages:\n"
    "  - {width: 16, depth: 1, group_width: 8, stride: 1}\n"
    "  - {width: 32, depth: 1, group_width: 8}\n"
)
# build_model initializes its weights from torch's global generator, as every torch.nn layer
# does (torch.manual_seed makes it repeatable): the one state it is meant to change.
rng = torch.get_rng_state()
model = regnet_space.build_model(spec)
out["init draws"] = not torch.equal(rng, torch.get_rng_state())
torch.set_rng_state(rng)
recipe = load_recipe(
    {"epochs": 1, "batch_size": 64, "base_lr": 0.2, "train_size": 16, "test_size": 16}
)
trained = train(spec, recipe, DataSpec(name="digits"), threads=1)
after = state()

out["ran"] = [len(result), counts.flops > 0, len(trained.curve)]
out["changed"] = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
np.empty(1 << 19)  # what a side effect on the thresholds looks like to the probe
out["mapped"].append(mapped())
print(json.dumps(out))
"""


def test_the_library_leaves_the_process_as_it_was(tmp_path: Path) -> None:
    script = tmp_path / "regnet-space"  # the command's name: the library must not care
    script.write_text(PROBE)
    # A clean environment: what earlier tests of this session left in os.environ (thread
    # counts, Ray's and torch's variables) must not reach the probe's allocator or threads.
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ran"] == [20, True, 1]
    assert out["changed"] == {}
    assert out["init draws"]
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert out["glibc"]
    if not out["glibc"]:
        pytest.skip("glibc's malloc is not this process's allocator: no trim threshold to probe")
    # A 3 MiB block is mapped before and after the library's numpy steps; after the script's
    # own 4 MiB free (glibc: mmap threshold 4 MiB) it comes from the heap.
    assert out["mapped"] == [True, True, False]
