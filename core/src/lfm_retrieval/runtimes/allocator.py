"""Let glibc's malloc keep freed memory for reuse, so CPU batches stop paying page faults.

torch allocates every CPU tensor with ``malloc`` and frees it as soon as it is dead. glibc gives
large freed blocks straight back to the kernel (``mmap``'d blocks, and the heap's top beyond its
trim threshold), so the next layer's tensor of the same size lands on fresh pages, each one a
page fault that zero-fills 4 KiB: millions of faults per pass over a catalog, which the two
thresholds below take to almost none (figures: docs/benchmarks.md). PyTorch's CPU tuning guide gets
the same effect by preloading jemalloc or tcmalloc; this needs no preload.
Written by hand because no library sets it: it is two ``mallopt`` calls through ``ctypes``.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap and are reused (glibc's ceiling on 64-bit systems):
# a 1,024-token batch's largest tensor, 1,024 x 4,608 float32 in the MLP, is 18 MiB.
MMAP_THRESHOLD = 32 * 2**20
# Freed memory the heap keeps at its top instead of trimming it: a batch's working set.
TRIM_THRESHOLD = 512 * 2**20
# Set to "0" to leave malloc as it is (the user's own GLIBC_TUNABLES / MALLOC_* settings are always left alone).
ENV_SWITCH = "LFM_REUSE_FREED_MEMORY"
logger = logging.getLogger("lfm_retrieval")


def user_tunes_malloc() -> bool:
    """Whether this process's malloc was configured by its user (environment or a preloaded allocator)."""
    env = os.environ
    return (
        "glibc.malloc" in env.get("GLIBC_TUNABLES", "")
        or any(name.startswith("MALLOC_") for name in env)
        or "malloc" in env.get("LD_PRELOAD", "")  # jemalloc, tcmalloc, mimalloc
    )


@functools.cache
def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process (Linux with glibc only) so freed
    tensors' memory is reused rather than returned to the kernel and faulted in again.

    The process then keeps up to :data:`TRIM_THRESHOLD` of freed memory. Returns whether the
    settings were applied; a no-op where the user set malloc up, or with ``LFM_REUSE_FREED_MEMORY=0``.
    """
    if not sys.platform.startswith("linux") or os.environ.get(ENV_SWITCH) == "0" or user_tunes_malloc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if applied:
        logger.debug("malloc keeps freed blocks up to %d MiB for reuse", MMAP_THRESHOLD >> 20)
    return applied
