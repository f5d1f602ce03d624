"""The project's tiny test checkpoints as GGUF files, converted with llama.cpp's own converter
(:mod:`lfm_retrieval.runtimes.gguf_convert`). Needs ``lfm-retrieval[gguf]`` and torch."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from lfm_retrieval.runtimes.gguf_convert import convert
from lfm_retrieval.testing.checkpoints import build_colbert_checkpoint, build_dense_checkpoint


def build_gguf_checkpoints(
    kind: Literal["dense", "colbert"], folder: str | Path, outtypes: Iterable[str] = ("f32",), **options: object
) -> tuple[Path, dict[str, Path]]:
    """Build the tiny ``kind`` checkpoint under ``folder`` (``options`` as for
    :func:`~lfm_retrieval.testing.build_dense_checkpoint` / ``build_colbert_checkpoint``) and convert it to
    each GGUF type of ``outtypes``: the checkpoint folder and ``{outtype: gguf path}``."""
    folder = Path(folder)
    build = build_dense_checkpoint if kind == "dense" else build_colbert_checkpoint
    checkpoint = build(folder / kind, **options)
    return checkpoint, {t: convert(checkpoint, folder / f"{kind}-{t}.gguf", t) for t in outtypes}
