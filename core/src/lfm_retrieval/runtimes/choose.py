"""Which runtime runs a model: a server for ``base_url``, llama.cpp for a ``.gguf`` file, else torch."""

from __future__ import annotations

import logging
from typing import Any

from lfm_retrieval.errors import ModelLoadError
from lfm_retrieval.runtimes.base import DenseRuntime, MultiVectorRuntime, Runtime
from lfm_retrieval.runtimes.model_ids import LFM25_COLBERT, LFM25_EMBEDDING
from lfm_retrieval.runtimes.model_thread import run_on_model_thread

RUNTIMES = ("auto", "torch", "gguf", "remote")
# What each local runtime loads models with; its extra (``lfm-retrieval[torch]``, ``[gguf]``) installs them.
LIBRARIES = {"torch": ("torch", "transformers", "sentence_transformers"), "gguf": ("llama_cpp",)}


def runtime_kind(model: str | None, runtime: str, base_url: str | None) -> str:
    """``"torch"``, ``"gguf"`` or ``"remote"``: what ``runtime="auto"`` picks, or ``runtime`` checked
    against the other arguments."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if base_url is not None:
        if runtime not in ("auto", "remote"):
            raise ValueError(f"base_url={base_url!r} runs the model on a server; runtime={runtime!r} contradicts it")
        return "remote"
    if runtime == "remote":
        raise ValueError("runtime='remote' needs base_url=, the server's URL")
    is_gguf = str(model or "").lower().endswith(".gguf")
    if runtime == "auto":
        return "gguf" if is_gguf else "torch"
    if runtime == "torch" and is_gguf:
        raise ValueError(f"{model!r} is a GGUF file: it runs with runtime='gguf' (llama.cpp), not torch")
    return runtime


def dense_runtime(
    model: str | None,
    *,
    runtime: str | Runtime = "auto",
    base_url: str | None = None,
    prompts: dict[str, str] | str | None = None,
    api_key: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    **torch_options: Any,
) -> DenseRuntime:
    """The runtime a :class:`~lfm_retrieval.encoders.DenseEncoder` runs on. ``torch_options``
    (device, dtype, quantize, normalize, batch settings) apply to the torch runtime."""
    if not isinstance(runtime, str):
        return runtime  # type: ignore[return-value]
    kind = runtime_kind(model, runtime, base_url)
    if kind == "remote":
        from lfm_retrieval.runtimes.remote import RemoteDenseRuntime

        return RemoteDenseRuntime(
            model,
            base_url,
            prompts=prompts,
            api_key=api_key,
            headers=headers,
            timeout=timeout,  # type: ignore[arg-type]
        )
    if prompts is not None and not isinstance(prompts, dict):
        raise ValueError(f"prompts={prompts!r} only applies to a server (base_url=); pass a dict of prompts")
    if kind == "torch" and prompts is not None:
        raise ValueError("prompts= applies to GGUF files and servers; a torch model reads its own prompts")
    gguf_options = {"prompts": prompts}
    return _local_runtime(kind, "Dense", model or LFM25_EMBEDDING, gguf_options, torch_options, runtime == "auto")


def multivector_runtime(
    model: str | None,
    *,
    runtime: str | Runtime = "auto",
    base_url: str | None = None,
    api: str = "auto",
    api_key: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    **torch_options: Any,
) -> MultiVectorRuntime:
    """The runtime a :class:`~lfm_retrieval.encoders.ColBERTEncoder` runs on. ``api``: the kind of
    server at ``base_url`` (:class:`~lfm_retrieval.runtimes.remote.RemoteColBERTRuntime`).
    ``torch_options`` (backend, device, dtype, quantize, batch settings) apply to the torch runtime."""
    if not isinstance(runtime, str):
        return runtime  # type: ignore[return-value]
    kind = runtime_kind(model, runtime, base_url)
    if kind == "remote":
        from lfm_retrieval.runtimes.remote import RemoteColBERTRuntime

        return RemoteColBERTRuntime(model, base_url, api=api, api_key=api_key, headers=headers, timeout=timeout)  # type: ignore[arg-type]
    if api != "auto":
        raise ValueError(f"api={api!r} names the kind of server at base_url=, which is not given")
    return _local_runtime(kind, "ColBERT", model or LFM25_COLBERT, {}, torch_options, runtime == "auto")


def _local_runtime(
    kind: str,
    model_kind: str,
    model: str,
    gguf_options: dict[str, Any],
    torch_options: dict[str, Any],
    auto: bool,
) -> Any:
    """``GGUF{model_kind}Runtime`` for a ``.gguf`` file, else ``Torch{model_kind}Runtime``, on the model thread.
    With every default (``auto``), a model folder holding GGUF files of its weights gets, per side, the
    faster of torch and llama.cpp (:mod:`lfm_retrieval.runtimes.per_side`)."""
    if kind == "gguf":
        gguf = _import_runtime("gguf", "lfm_retrieval.runtimes.gguf")
        # loading, calibration and every forward pass on one thread: runtimes/model_thread.py
        return run_on_model_thread(getattr(gguf, f"GGUF{model_kind}Runtime"), model, **gguf_options)
    torch_runtime = _import_runtime("torch", "lfm_retrieval.runtimes.torch_runtime")
    runtime = run_on_model_thread(getattr(torch_runtime, f"Torch{model_kind}Runtime"), model, **torch_options)
    if auto and _measures_runtimes(torch_options) and runtime.on_cpu:
        from lfm_retrieval.runtimes.per_side import fastest_per_side, gguf_files_beside, gguf_loader

        ggufs = gguf_files_beside(model)
        if ggufs and _installed("llama_cpp", model, ggufs):
            return run_on_model_thread(fastest_per_side, runtime, ggufs, gguf_loader(model_kind, runtime))
    return runtime


def _measures_runtimes(torch_options: dict[str, Any]) -> bool:
    """Whether the torch options are the defaults, under which the runtime per side is measured."""
    return (
        torch_options.get("quantize", "auto") == "auto"
        and torch_options.get("dtype") is None
        and torch_options.get("device") in (None, "cpu")
    )


def _installed(library: str, model: str, ggufs: list) -> bool:
    import importlib.util

    if importlib.util.find_spec(library) is not None:
        return True
    logging.getLogger("lfm_retrieval").info(
        "%s holds %s; pip install 'lfm-retrieval[gguf]' to measure llama.cpp against torch at load",
        model, ", ".join(path.name for path in ggufs),
    )  # fmt: skip
    return False


def _import_runtime(kind: str, module: str) -> Any:
    """Import a local runtime's module and the libraries it loads models with, or fail in one line
    naming the extra that installs them."""
    import importlib

    try:
        for library in LIBRARIES[kind]:
            importlib.import_module(library)
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or str(exc)
        if missing.startswith("lfm_retrieval"):
            raise
        raise ModelLoadError(
            f"the {kind} runtime needs {missing!r}, which is not installed: pip install 'lfm-retrieval[{kind}]'"
        ) from exc
