"""CPU encoders let glibc's malloc reuse freed memory: once warm, a layer's pattern of large
tensors no longer page-faults in fresh memory (counted by the kernel, not timed).

glibc's own behaviour with its defaults depends on what else sits on the heap (a small object
above a freed block keeps it from being trimmed), so the gain is measured, not asserted:
docs/benchmarks.md (1,024-token batches of the 350M model made 2.6 million faults per 12,800 tokens
under the defaults). Here only the settings' own effect is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")

# Each case runs in a fresh interpreter: the setting is process-wide and applied once per process.
# A layer's pattern: four 16 MiB tensors alive at once (an MLP's outputs), touched, then all freed,
# for 20 rounds after a warm-up round. The heap keeps them under the raised thresholds.
PROBE = """
import json, resource, sys, torch
from lfm_retrieval.runtimes.allocator import reuse_freed_memory

def layer_round():
    alive = [torch.empty(4 * 2**20).fill_(1.0) for _ in range(4)]
    del alive

if sys.argv[1] == "encoder":
    from lfm_retrieval import DenseEncoder
    DenseEncoder(sys.argv[2], device="cpu", quantize=None)
applied = reuse_freed_memory()  # cached: an encoder's own call already applied it
layer_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    layer_round()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""
PAGES = 20 * 4 * 16 * 2**20 // 4096  # the pages those rounds' tensors span


def _probe(*args: str, **env: str) -> dict:
    ours = ("GLIBC_TUNABLES", "LD_PRELOAD", "LFM_REUSE_FREED_MEMORY")
    environment = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env={**environment, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_tensors_are_reused_instead_of_faulted_in_again():
    result = _probe("bare")
    assert result["applied"] is True  # glibc accepted both settings
    assert result["faults"] < PAGES / 8, result  # a round or two while the heap settles


def test_a_cpu_encoder_applies_it(minilm_path):
    result = _probe("encoder", str(minilm_path))
    assert result["applied"] is True
    assert result["faults"] < PAGES / 8, result  # a round or two while the heap settles


@pytest.mark.parametrize(
    "env",
    [
        {"LFM_REUSE_FREED_MEMORY": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
        {"MALLOC_ARENA_MAX": "2"},
        {"LD_PRELOAD": "/nonexistent/libjemalloc.so.2"},  # not installed: the loader only warns
    ],
)
def test_left_alone_when_switched_off_or_set_by_the_user(env):
    assert _probe("bare", **env)["applied"] is False
