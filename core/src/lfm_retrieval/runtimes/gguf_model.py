"""A GGUF embedding model in this process through llama-cpp-python: load (after a probe in a child
process), tokenise, and run token-id sequences to pooled or per-token float32 arrays.

Settings: the LFM2.5 models attend bidirectionally, and llama.cpp runs a non-causal model only with all
tokens of one call in one micro-batch, so ``n_ctx = n_batch = n_ubatch`` (the most tokens one call
takes); every token is an output. Threads default to the CPU cores this process may use.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lfm_retrieval.errors import ModelLoadError

DEFAULT_BATCH_TOKENS = 4096  # n_ctx = n_batch = n_ubatch
_PROBED: set[tuple[str, bool]] = set()  # (path, pooling) that ran in a child process here


def import_llama_cpp() -> Any:
    """``llama_cpp``, or a one-line error naming the extra that installs it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError(
            f"the gguf runtime needs llama-cpp-python ({exc.name or exc}), which is not installed: "
            "pip install 'lfm-retrieval[gguf]'"
        ) from None
    return llama_cpp


THREADS_VARIABLE = "LFM_RETRIEVAL_GGUF_THREADS"


def default_threads() -> int:
    """``$LFM_RETRIEVAL_GGUF_THREADS`` where set, else the cores this process may run on.

    ggml's threads wait for each other by spinning: where other processes keep the cores busy, every
    thread beyond the free cores slows each call many times over (a tiny model on 2 busy cores: 0.58 s
    with 1 thread, 19.7 s with 2). A shared machine sets the variable to the cores it can count on."""
    value = os.environ.get(THREADS_VARIABLE)
    if value is not None:
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, not {value!r}")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load_vocab(path: str | Path) -> Any:
    """The GGUF's vocabulary alone (no weights, no compute): a ``llama_cpp.Llama`` to tokenise with."""
    llama_cpp = import_llama_cpp()
    check_gguf_file(path)
    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


def tokenize(llm: Any, text: str) -> list[int]:
    """``text``'s token ids as the GGUF's vocabulary gives them (BOS first where the model adds it);
    special-token text in ``text`` is read as plain text, as a Hugging Face tokenizer reads it."""
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)


def token_id(llm: Any, token: str) -> int:
    """The id of the vocabulary entry ``token`` (an added token such as ``[Q] ``), or an error."""
    ids = llm.tokenize(token.encode("utf-8"), add_bos=False, special=True)
    if len(ids) != 1:
        raise ModelLoadError(f"{token!r} is not one token of this GGUF's vocabulary (it tokenises as {ids})")
    return ids[0]


def token_ids_of(llm: Any, words: Sequence[str]) -> frozenset[int]:
    """The ids of the vocabulary entries spelt exactly as ``words`` (the others are not in it)."""
    import llama_cpp

    wanted = {word.encode("utf-8") for word in words}
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return frozenset(
        i for i in range(llama_cpp.llama_vocab_n_tokens(vocab)) if llama_cpp.llama_vocab_get_text(vocab, i) in wanted
    )


class GGUFModel:
    """One GGUF embedding model in this process. ``pooled=True``: one vector per sequence (the file's
    own pooling, CLS for LFM2.5-Embedding); ``False``: one vector per token (after the ColBERT
    projection where the file has one)."""

    def __init__(
        self,
        path: str | Path,
        *,
        pooled: bool,
        n_threads: int | None = None,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        probe_first: bool = True,
    ) -> None:
        llama_cpp = import_llama_cpp()
        self.path = check_gguf_file(path)
        self.pooled = pooled
        self.n_threads = n_threads or default_threads()
        self.batch_tokens = batch_tokens
        pooling = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if pooled else llama_cpp.LLAMA_POOLING_TYPE_NONE
        if probe_first:
            probe(self.path, pooled)
        self.llm = llama_cpp.Llama(
            str(self.path),
            embedding=True,
            pooling_type=pooling,
            n_ctx=batch_tokens,
            n_batch=batch_tokens,
            n_ubatch=batch_tokens,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            verbose=False,
        )
        if pooled and self.llm.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            raise ModelLoadError(f"{str(self.path)!r} declares no pooling: it is not a dense (single-vector) model")
        self.dimension = llama_cpp.llama_model_n_embd_out(self.llm.model)
        self.max_sequences = self.llm.context_params.n_seq_max
        self._batch = llama_cpp.llama_batch_init(batch_tokens, 0, 1)

    def __del__(self) -> None:
        batch = getattr(self, "_batch", None)
        if batch is not None:
            import llama_cpp

            llama_cpp.llama_batch_free(batch)
            self._batch = None

    def run(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Each token-id sequence's output: a (dimension,) vector when pooled, else (tokens, dimension);
        float32, not normalised. Sequences go to llama.cpp in calls of at most ``batch_tokens`` tokens."""
        for ids in sequences:
            if not 0 < len(ids) <= self.batch_tokens:
                raise ValueError(f"a sequence of {len(ids)} tokens: each must have 1 to {self.batch_tokens}")
        outputs: list[np.ndarray] = []
        start = 0
        while start < len(sequences):
            end, tokens = start, 0
            while (
                end < len(sequences)
                and end - start < self.max_sequences
                and tokens + len(sequences[end]) <= self.batch_tokens
            ):
                tokens += len(sequences[end])
                end += 1
            outputs += self._decode(sequences[start:end])
            start = end
        return outputs

    def _decode(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        # llama_cpp.Llama.embed reads per-token rows with the trunk's width, not the projection's
        # (n_embd_out), and copies them into Python lists: the batch is filled and read here.
        import llama_cpp

        batch, ctx = self._batch, self.llm.ctx
        n = 0
        for seq, ids in enumerate(sequences):
            for pos, token in enumerate(ids):
                batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.logits[n] = token, pos, 1, True
                batch.seq_id[n][0] = seq
                n += 1
        batch.n_tokens = n
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        status = llama_cpp.llama_decode(ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama.cpp could not run a batch of {n} tokens (llama_decode returned {status})")
        width = self.dimension
        if self.pooled:
            rows = [llama_cpp.llama_get_embeddings_seq(ctx, seq) for seq in range(len(sequences))]
            return [_floats(row, width).copy() for row in rows]
        table = _floats(llama_cpp.llama_get_embeddings(ctx), n * width).reshape(n, width)
        bounds = np.cumsum([0] + [len(ids) for ids in sequences])
        return [table[a:b].copy() for a, b in itertools.pairwise(bounds)]


def _floats(pointer: Any, count: int) -> np.ndarray:
    if not pointer:
        raise RuntimeError("llama.cpp returned no embeddings")
    return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(count,))


def check_gguf_file(path: str | Path) -> Path:
    """``path`` as a Path, or a ModelLoadError: no such file, or not a GGUF file (its first bytes)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"no GGUF file at {str(path)!r}")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelLoadError(f"{str(path)!r} is not a GGUF file (its first bytes are not 'GGUF')")
    return path


def probe(path: Path, pooled: bool) -> None:
    """Load ``path`` and run one text in a child process first, once per file and pooling: a CPU
    instruction the llama.cpp build uses but this CPU lacks (SIGILL) then raises here, instead of
    killing this process."""
    key = (str(path.resolve()), pooled)
    if key in _PROBED:
        return
    code = (
        "import sys\n"
        "from lfm_retrieval.runtimes.gguf_model import GGUFModel, tokenize\n"
        "model = GGUFModel(sys.argv[1], pooled=sys.argv[2] == '1', n_threads=1, batch_tokens=64, probe_first=False)\n"
        "model.run([tokenize(model.llm, 'probe: one short text')])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), "1" if pooled else "0"], capture_output=True, text=True
    )
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        hint = (
            " The llama-cpp-python build uses a CPU instruction this machine lacks (on Intel AMX Xeons: the"
            " AMX backend of a GGML_NATIVE build); reinstall it built with the project's CMAKE_ARGS"
            " (docs/runtimes/gguf.md)."
            if name == "SIGILL"
            else ""
        )
        raise ModelLoadError(f"llama.cpp died with {name} running {str(path)!r} in a child process.{hint}")
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise ModelLoadError(f"llama.cpp could not load {str(path)!r}: {lines[-1] if lines else 'no output'}")
    _PROBED.add(key)
