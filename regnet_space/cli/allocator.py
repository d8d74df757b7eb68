"""The command's process keeps the memory that sampling frees, for the next chunk to reuse.

Sampling generates and counts designs in chunks, each allocating and freeing a few MB of
arrays. glibc's malloc hands the top of its heap back to the kernel once more than its trim
threshold lies free there (128 KiB, or twice the largest mapped block freed so far), and the
next chunk then faults every page in again. Freeing one mapped 4 MiB block raises the
thresholds by glibc's own rule (mmap threshold to the block's size, trim threshold to twice
that). That changes the whole process, so only the command does it, for its own process;
the library never does (benchmarks/bench_sample.py measures both). A process that has freed
larger blocks already is left as it is; other C libraries just allocate and free 4 MiB.
"""

from __future__ import annotations


def keep_freed_memory() -> None:
    """Allocate and free one mapped 4 MiB block (see the module's docstring)."""
    import numpy as np

    np.empty(1 << 19)
