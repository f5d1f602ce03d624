"""The fastest runtime per side, measured at load: torch, or llama.cpp on a GGUF of the same weights.

A model folder may hold GGUF files of its own weights (``lfm-retrieval gguf MODEL MODEL/model-q8_0.gguf``).
Where it does, and the encoder was built with its defaults (``runtime="auto"``, ``quantize="auto"``,
no ``dtype``, on the CPU), :func:`fastest_per_side` loads each GGUF next to the torch model and, for
each side, keeps whichever of them is faster among those that agree with torch's float32 vectors on
real text: every text's vector (dense) or every token's (ColBERT, the token counts equal) at cosine >=
:data:`MIN_COSINE`, the bar the runtimes benchmark sets a llama.cpp type. Documents are timed on a
batch of catalog texts, queries on one query, in alternating rounds
(:func:`~lfm_retrieval.runtimes.precision.fastest`). A GGUF of other weights, of the
other model kind, or one that does not load is never chosen: it is logged and dropped.

Which CPU wins is not known in advance: on CPUs with AMX or AVX-512 VNNI torch's bfloat16/int8 paths
beat llama.cpp; on others llama.cpp's quantised kernels may win. Hence measured, once, at load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lfm_retrieval.errors import ModelLoadError
from lfm_retrieval.int8 import CALIBRATION_QUERIES, row_cosines
from lfm_retrieval.runtimes.base import Runtime, Side
from lfm_retrieval.runtimes.model_ids import model_id_of
from lfm_retrieval.runtimes.precision import fastest

logger = logging.getLogger("lfm_retrieval")

TORCH = "torch"
MIN_COSINE = 0.99  # the least cosine, per text or per token, to torch float32 a GGUF must keep on a side
# What each side is checked on: real queries and catalog texts in four scripts (Latin, Japanese, Arabic,
# Cyrillic), few enough that loading a real-size GGUF beside the model stays a matter of seconds.
CALIBRATION_TEXTS = {
    Side.QUERY: [CALIBRATION_QUERIES[i] for i in (0, 2, 3, 7, 9, 10)],
    Side.DOCUMENT: [
        "Waterproof trail running shoe for women with a grippy rubber outsole, breathable mesh upper and a "
        "cushioned midsole for long distances on mixed terrain. Weight 280 g (size 39).",
        "Kaffeevollautomat mit Milchaufschäumer, Kegelmahlwerk aus Edelstahl, 15 bar Pumpendruck und "
        "herausnehmbarer Brühgruppe. Wassertank 1,8 l, Bohnenbehälter 250 g, Reinigungsprogramm.",
        "防水ハイキングシューズ メンズ。ゴアテックス採用、滑りにくいビブラムソール、幅広設計。",
        "Детское автокресло группы 1/2/3 (от 9 до 36 кг) с креплением Isofix и регулируемым подголовником.",
    ],
}


@dataclass
class SideChoice:
    """What the load measured for one side: each GGUF's agreement with torch float32 (least cosine
    per text or token) and, of those that agree, its best time in seconds; ``chosen`` is the fastest of them."""

    chosen: str = TORCH
    agreement: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def gguf_files_beside(model: str) -> list[Path]:
    """The GGUF files in a local model folder (none for a Hub id or a file)."""
    folder = Path(model).expanduser()
    return sorted(folder.glob("*.gguf")) if folder.is_dir() else []


def pick(choice: SideChoice) -> str:
    """The fastest candidate of ``choice.seconds`` that agrees (torch always does), torch on a tie."""
    agreeing = {name: s for name, s in choice.seconds.items() if _agrees(choice.agreement.get(name, 0.0))}
    agreeing.setdefault(TORCH, choice.seconds.get(TORCH, float("inf")))
    return min(agreeing, key=lambda name: (agreeing[name], name != TORCH))


class PerSideRuntime:
    """Queries on one runtime, documents on another (the fastest of each, :func:`fastest_per_side`).

    Each call goes to its side's runtime, which applies that side's prompt or prefix once; batch
    settings are the documents runtime's. Other attributes (``model``, ``prompts``, ...) are the torch
    runtime's, which is one of the two."""

    uses_model_thread = True

    def __init__(self, runtimes: dict[Side, Any], torch_runtime: Any, choices: dict[Side, SideChoice]) -> None:
        self.runtimes = runtimes
        self.torch_runtime = torch_runtime
        self.runtime_choice = choices
        documents = runtimes[Side.DOCUMENT]
        self.model_name = torch_runtime.model_name
        self.dimension = torch_runtime.dimension
        self.max_length = max(runtime.max_length for runtime in runtimes.values())
        self.batch_size = documents.batch_size
        self.max_batch_tokens = documents.max_batch_tokens
        self.max_padding = documents.max_padding
        self.precision = runtimes[Side.QUERY].precision  # what queries run in (the encoders' query_precision)

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: the torch runtime's own attributes
        if name in ("torch_runtime", "runtimes"):
            raise AttributeError(name)
        return getattr(self.torch_runtime, name)

    def token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        return self.runtimes[side].token_lengths(texts, side)

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        return self.runtimes[side].encode_batch(texts, side)


def fastest_per_side(torch_runtime: Any, ggufs: list[Path], load_gguf: Callable[[Path], Runtime]) -> Any:
    """``torch_runtime``, a GGUF runtime, or a :class:`PerSideRuntime` of both: per side, the fastest
    that agrees with torch float32 (see the module doc). Run it on the model thread."""
    texts = CALIBRATION_TEXTS
    reference = {side: torch_runtime.float32_vectors(texts[side], side) for side in Side}
    candidates: dict[str, Any] = {}
    choices = {side: SideChoice() for side in Side}
    for path in ggufs:
        try:
            runtime = load_gguf(path)
            for side in Side:
                vectors = runtime.encode_batch(texts[side], side)
                choices[side].agreement[path.name] = least_cosine(reference[side], vectors)
        except (ModelLoadError, ValueError, RuntimeError) as exc:
            logger.warning("%s: %s is not used: %s", model_id_of(torch_runtime.model_name), path.name, exc)
            continue
        candidates[path.name] = runtime
    for side in Side:
        choice = choices[side]
        agreeing = {name: candidates[name] for name, cosine in choice.agreement.items() if _agrees(cosine)}
        if agreeing:
            sample = texts[side] if side is Side.DOCUMENT else texts[side][:1]  # documents: a batch; queries: one
            ops = {name: _timer(runtime, sample, side) for name, runtime in {TORCH: torch_runtime, **agreeing}.items()}
            # each has just run these texts (the agreement check): warm, so two alternating rounds each
            _, choice.seconds = fastest(ops, rounds=2, warmups=0)
        choice.chosen = pick(choice)
    _log(torch_runtime.model_name, choices)
    candidates[TORCH] = torch_runtime
    chosen = {side: candidates[choices[side].chosen] for side in Side}
    if chosen[Side.QUERY] is chosen[Side.DOCUMENT]:
        chosen[Side.QUERY].runtime_choice = choices
        return chosen[Side.QUERY]
    return PerSideRuntime(chosen, torch_runtime, choices)


def gguf_loader(kind: str, torch_runtime: Any) -> Callable[[Path], Runtime]:
    """Loads a GGUF with the torch model's own settings: its prompts and length (dense), or its
    prefixes and query and document lengths (ColBERT), so that both apply the same rules."""
    from lfm_retrieval.runtimes.gguf import GGUFColBERTRuntime, GGUFDenseRuntime

    if kind == "Dense":
        prompts = {side.value: torch_runtime.prompts[side] for side in Side}
        return lambda path: GGUFDenseRuntime(path, prompts=prompts, max_length=torch_runtime.max_length)
    return lambda path: GGUFColBERTRuntime(
        path,
        query_prefix=torch_runtime.query_prefix,
        document_prefix=torch_runtime.document_prefix,
        query_length=torch_runtime.query_length,
        document_length=torch_runtime.document_length,
    )


def least_cosine(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """The least cosine between matching rows (vectors, or tokens of (tokens, dim) arrays); 0.0 where
    any shape differs (another token count or width)."""
    if any(np.shape(a) != np.shape(b) for a, b in zip(reference, candidate, strict=True)):
        return 0.0
    return float(np.min(row_cosines(reference, candidate)))


def _agrees(cosine: float) -> bool:
    return cosine >= MIN_COSINE


def _timer(runtime: Any, texts: list[str], side: Side) -> Callable[[], object]:
    return lambda: runtime.encode_batch(texts, side)


def _log(model_name: str, choices: dict[Side, SideChoice]) -> None:
    for side, choice in choices.items():
        agreement = ", ".join(f"{name} {cosine:.4f}" for name, cosine in choice.agreement.items())
        timing = ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in choice.seconds.items())
        logger.info(
            "%s: %s on %s (GGUF least cosine to torch float32: %s%s)",
            model_id_of(model_name), "queries" if side is Side.QUERY else "documents", choice.chosen, agreement,
            f"; timed: {timing}" if timing else "",
        )  # fmt: skip
