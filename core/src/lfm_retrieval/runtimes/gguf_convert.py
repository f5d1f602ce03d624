"""Convert an LFM2 sentence-transformers / PyLate checkpoint to GGUF with llama.cpp's own converter.

The converter (``convert_hf_to_gguf.py``, its ``conversion`` package and the matching ``gguf-py``) ships
only in the llama-cpp-python source distribution (``vendor/llama.cpp``), not in its wheel: it is unpacked
once from the sdist of the *installed* llama-cpp-python version (``pip download``), so converter and
runtime always agree. Quantised types the converter cannot write (``q4_k_m``, ...) go through
llama.cpp's quantiser, ``llama_cpp.llama_model_quantize``.

The converter recognises a BPE tokenizer by a hash of its output: a tokenizer it does not know (the
project's small test tokenizers) is mapped to the llama.cpp pre-tokenizer that splits exactly like it,
and every conversion is checked by tokenising sample texts both ways; no equivalent, no conversion.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from lfm_retrieval.errors import ModelLoadError

# written by the converter itself
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
# written by llama.cpp's quantiser from an f32 conversion: name -> llama_ftype constant in llama_cpp
QUANTISER_TYPES = {
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}
GGUF_TYPES = CONVERTER_TYPES + tuple(QUANTISER_TYPES)
# The least cosine a converted file's vectors may have to the checkpoint's float32 torch vectors
# (dense: per text, both sides; ColBERT: per document token); 4- to 6-bit types get a sanity floor.
MIN_AGREEMENT = {"f32": 0.9999, "f16": 0.999, "bf16": 0.99, "q8_0": 0.99}
QUANTISED_FLOOR = 0.9
# Texts the tokenisation check compares (spaces, digits, punctuation, accents, CJK, emoji, newlines).
TOKENIZER_CHECK_TEXTS = (
    "query: Wireless noise-cancelling headphones, 30 hours!",
    "document: Kabellose Kopfhörer mit Geräuschunterdrückung (30 Stunden Akkulaufzeit).",
    "  two  spaces,\ttab and\nnewline; 3.14 1234567 $9.99 'quoted' don't",
    "Casque sans fil à réduction de bruit — 30 heures d'autonomie. 我想在apple工作 🚀",
    "[Q] What is the return policy? [D] Stainless steel bottle, 750 ml",
)


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version, or a one-line error naming the extra that installs it."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            "GGUF needs llama-cpp-python, which is not installed: pip install 'lfm-retrieval[gguf]'"
        ) from None


def cache_dir() -> Path:
    """Where unpacked converters are kept: ``$LFM_RETRIEVAL_CACHE`` or ``~/.cache/lfm-retrieval``."""
    root = os.environ.get("LFM_RETRIEVAL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "lfm-retrieval"
    return Path(root).expanduser()


def converter_dir(version: str | None = None) -> Path:
    """The folder holding llama.cpp's ``convert_hf_to_gguf.py`` for llama-cpp-python ``version``
    (default: the installed one), unpacked from its sdist on first use."""
    version = version or llama_cpp_version()
    target = cache_dir() / f"llama.cpp-converter-{version}"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="lfm-gguf-sdist-") as tmp:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--dest", tmp, f"llama-cpp-python=={version}"],
            capture_output=True, text=True,
        )  # fmt: skip
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if not sdists:
            raise ModelLoadError(
                f"could not download the llama-cpp-python {version} sdist that holds llama.cpp's converter: "
                + (download.stderr.strip().splitlines() or ["pip printed nothing"])[-1]
            )
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=_made(target.parent)))
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/")
        with tarfile.open(sdists[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile()]
            members = [m for m in members if m.name[len(prefix) :].startswith(wanted)]
            for member in members:
                member.name = member.name[len(prefix) :]
            archive.extractall(staging, members=members, filter="data")
        if not (staging / "convert_hf_to_gguf.py").is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelLoadError(f"the llama-cpp-python {version} sdist has no vendor/llama.cpp/convert_hf_to_gguf.py")
        try:
            staging.rename(target)  # atomic: a concurrent process either sees all of it or none
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process unpacked it first
    return target


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def equivalent_pre_tokenizer(model_dir: str | Path) -> str | None:
    """The llama.cpp pre-tokenizer that splits text exactly as the checkpoint's ``tokenizer.json``, for a
    tokenizer the converter does not recognise by its hash; ``None`` where none is known to.

    A byte-level BPE whose only pre-tokenizer is ``ByteLevel`` with its regex and no prefix space splits
    with GPT-2's regex: llama.cpp's ``gpt-2`` pre-tokenizer."""
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    spec = json.loads(path.read_text())
    pre, normalizer, model = spec.get("pre_tokenizer") or {}, spec.get("normalizer"), spec.get("model") or {}
    if (
        model.get("type") == "BPE"
        and normalizer is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", False)
    ):
        return "gpt-2"
    return None


def convert(model_dir: str | Path, out: str | Path, outtype: str = "f16", *, verify: bool = True) -> Path:
    """Write ``model_dir`` (a sentence-transformers dense or PyLate ColBERT LFM2 folder) as GGUF ``out``
    of type ``outtype`` (one of :data:`GGUF_TYPES`), check its tokenisation and (``verify``) its vectors
    (:func:`check_vectors`); returns ``out``. A file that fails a check is deleted.

    The conversion runs in a child process (the converter imports torch and its own ``gguf``)."""
    model_dir, out = Path(model_dir).expanduser(), Path(out).expanduser()
    if outtype not in GGUF_TYPES:
        raise ValueError(f"outtype must be one of {', '.join(GGUF_TYPES)}, not {outtype!r}")
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{str(model_dir)!r} is not a model folder (no config.json)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if outtype in QUANTISER_TYPES:
        with tempfile.TemporaryDirectory(prefix="lfm-gguf-", dir=out.parent) as tmp:
            source = convert(model_dir, Path(tmp) / "f32.gguf", "f32")
            quantize(source, out, outtype)
    else:
        _run_converter(model_dir, out, outtype)
    try:
        check_tokenizer(model_dir, out)
        if verify:
            check_vectors(model_dir, out, outtype)
    except Exception:
        out.unlink(missing_ok=True)
        raise
    return out


def _run_converter(model_dir: Path, out: Path, outtype: str) -> None:
    folder = converter_dir()
    pre = equivalent_pre_tokenizer(model_dir)
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # the converter's own gguf-py
    done = subprocess.run(
        [sys.executable, "-m", "lfm_retrieval.runtimes.gguf_convert", str(folder), pre or "",
         str(model_dir), "--outfile", str(out), "--outtype", outtype],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if done.returncode != 0 or not out.is_file():
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "no output")
        if "pre-tokenizer was not recognized" in done.stderr:
            reason = (
                "its BPE tokenizer is not one llama.cpp's converter recognises, and it has no exact "
                "llama.cpp equivalent (only a plain byte-level BPE maps to 'gpt-2')"
            )
        raise ModelLoadError(f"llama.cpp's converter could not convert {str(model_dir)!r}: {reason}")


def quantize(source: str | Path, out: str | Path, outtype: str) -> Path:
    """Quantise the GGUF ``source`` to ``out`` with llama.cpp's quantiser (``llama_model_quantize``)."""
    if outtype not in QUANTISER_TYPES:
        raise ValueError(f"quantize: outtype must be one of {', '.join(QUANTISER_TYPES)}, not {outtype!r}")
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTISER_TYPES[outtype])
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if status != 0:
        raise ModelLoadError(f"llama.cpp could not quantise {str(source)!r} to {outtype} (status {status})")
    return Path(out)


def check_tokenizer(model_dir: str | Path, gguf_path: str | Path) -> None:
    """Refuse a GGUF whose vocabulary tokenises :data:`TOKENIZER_CHECK_TEXTS` other than the checkpoint's
    own tokenizer (BOS included)."""
    from tokenizers import Tokenizer

    from lfm_retrieval.runtimes.gguf_model import load_vocab, tokenize

    reference = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    vocab = load_vocab(gguf_path)
    for text in TOKENIZER_CHECK_TEXTS:
        expected = reference.encode(text).ids
        got = tokenize(vocab, text)
        if got != expected:
            raise ModelLoadError(
                f"{str(gguf_path)!r} tokenises {text!r} as {got} but the checkpoint's tokenizer as {expected}: "
                "the GGUF's pre-tokenizer does not match; not written"
            )


def is_colbert(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` is a PyLate ColBERT folder (a ``Dense`` projection module), not a dense one."""
    path = Path(model_dir) / "modules.json"
    modules = json.loads(path.read_text()) if path.is_file() else []
    return any(module.get("type", "").endswith("Dense") for module in modules)


def check_vectors(model_dir: str | Path, gguf_path: str | Path, outtype: str) -> float:
    """Encode :data:`TOKENIZER_CHECK_TEXTS` with the checkpoint (torch, float32) and with the GGUF, and
    refuse the GGUF below :data:`MIN_AGREEMENT`; returns the least cosine. Dense: per text, both sides.
    ColBERT: per document token (llama.cpp's queries differ by design: docs/runtimes/gguf.md)."""
    from lfm_retrieval.runtimes.base import Runtime, Side
    from lfm_retrieval.runtimes.choose import dense_runtime, multivector_runtime
    from lfm_retrieval.runtimes.gguf import GGUFColBERTRuntime, GGUFDenseRuntime
    from lfm_retrieval.runtimes.model_thread import run_on_model_thread

    def one_by_one(runtime: Runtime, side: Side) -> list[np.ndarray]:  # no padding: each text its own batch
        return [run_on_model_thread(runtime.encode_batch, [text], side)[0] for text in texts]

    model_dir, texts = Path(model_dir), list(TOKENIZER_CHECK_TEXTS)
    if is_colbert(model_dir):
        settings = json.loads((model_dir / "config_sentence_transformers.json").read_text())
        keys = ("query_prefix", "document_prefix", "query_length", "document_length", "skiplist_words")
        gguf = GGUFColBERTRuntime(gguf_path, **{key: settings[key] for key in keys if key in settings})
        reference = multivector_runtime(str(model_dir), runtime="torch", quantize=None)
        pairs = list(zip(one_by_one(reference, Side.DOCUMENT), gguf.encode_batch(texts, Side.DOCUMENT), strict=True))
    else:
        reference = dense_runtime(str(model_dir), runtime="torch", quantize=None)
        prompts = {side.value: prompt for side, prompt in reference.prompts.items()}  # type: ignore[attr-defined]
        gguf = GGUFDenseRuntime(gguf_path, prompts=prompts, max_length=reference.max_length)
        pairs = [
            (theirs, ours)
            for side in (Side.QUERY, Side.DOCUMENT)
            for theirs, ours in zip(one_by_one(reference, side), gguf.encode_batch(texts, side), strict=True)
        ]
    if any(np.shape(theirs) != np.shape(ours) for theirs, ours in pairs):
        raise ModelLoadError(f"{str(gguf_path)!r} gives other token counts than the checkpoint; not written")
    least = min(float(np.min(np.sum(theirs * ours, axis=-1))) for theirs, ours in pairs)
    floor = MIN_AGREEMENT.get(outtype, QUANTISED_FLOOR)
    if least < floor:
        raise ModelLoadError(
            f"{str(gguf_path)!r} ({outtype}) agrees with the checkpoint at cosine {least:.5f} only "
            f"(< {floor}); not written"
        )
    return least


def _child(argv: list[str]) -> None:
    """Run in a child process: llama.cpp's converter, with an unrecognised tokenizer hash mapped to ``pre``."""
    folder, pre, *converter_args = argv
    sys.path.insert(0, folder)
    import convert_hf_to_gguf  # the unpacked converter, on sys.path only here
    from conversion.base import TextModel

    recognise = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return recognise(self, tokenizer)
        except NotImplementedError:
            if not pre:
                raise
            return pre

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = ["convert_hf_to_gguf.py", *converter_args]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    _child(sys.argv[1:])
