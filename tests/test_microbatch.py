"""The query micro-batcher: concurrent callers share model calls and get exactly their own vectors."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lfm_retrieval import ColBERTEncoder, DenseEncoder, InvalidTextError
from lfm_retrieval.encoders.microbatch import MicroBatcher
from lfm_retrieval.errors import BatcherClosed, QueueFull

CALLERS = 32
# Two token lengths among 32 queries: a coalesced batch holds both (padded, or two equal-length calls).
QUERIES = [f"waterproof trail shoes size {i}" if i % 2 else f"blue kettle {i}" for i in range(CALLERS)]
WIDE_WINDOW = {"max_wait_s": 0.5, "max_batch_texts": CALLERS}  # a loaded machine starts threads slowly


@pytest.fixture()
def dense_enc(dense_path: Path) -> DenseEncoder:
    return DenseEncoder(str(dense_path), device="cpu", batch_size=64)


@pytest.fixture()
def colbert_enc(colbert_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder(str(colbert_path), device="cpu", batch_size=64)


def serial(encoder: DenseEncoder | ColBERTEncoder) -> tuple[list[np.ndarray], int]:
    """Each query alone, one after another; and the model calls that took."""
    before = encoder.stats.model_calls
    vectors = [encoder.encode_queries([query])[0] for query in QUERIES]
    return vectors, encoder.stats.model_calls - before


def in_threads(encoder: DenseEncoder | ColBERTEncoder, queries: list[object]) -> list[object]:
    """Every query from its own thread, all released at once; results or exceptions."""
    barrier = threading.Barrier(len(queries))

    def call(query: object) -> object:
        barrier.wait(timeout=30)
        try:
            return encoder.encode_queries([query])[0]  # type: ignore[list-item]
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(queries)) as pool:
        return list(pool.map(call, queries, timeout=120))


@pytest.mark.parametrize("kind", ["dense", "colbert"])
def test_threads_get_serial_vectors_in_fewer_model_calls(kind: str, request: pytest.FixtureRequest) -> None:
    encoder = request.getfixturevalue(f"{kind}_enc")
    expected, serial_calls = serial(encoder)
    assert serial_calls == CALLERS
    encoder.set_query_batching(**WIDE_WINDOW)
    before = encoder.stats.model_calls
    got = in_threads(encoder, QUERIES)
    calls = encoder.stats.model_calls - before
    assert calls < serial_calls, f"{calls} model calls for {CALLERS} concurrent queries"
    assert encoder.query_batcher.stats.largest_batch > 1
    for vector, reference in zip(got, expected, strict=True):
        assert isinstance(vector, np.ndarray)
        np.testing.assert_allclose(vector, reference, rtol=0, atol=1e-6)


def test_one_bad_thread_fails_only_itself(dense_enc: DenseEncoder) -> None:
    expected, _ = serial(dense_enc)
    dense_enc.set_query_batching(**WIDE_WINDOW)
    queries: list[object] = list(QUERIES)
    queries[5], queries[17] = "   ", None
    got = in_threads(dense_enc, queries)
    assert isinstance(got[5], InvalidTextError) and "empty or only whitespace" in str(got[5])
    assert isinstance(got[17], InvalidTextError) and "None" in str(got[17])
    for i, (vector, reference) in enumerate(zip(got, expected, strict=True)):
        if i not in (5, 17):
            np.testing.assert_allclose(vector, reference, rtol=0, atol=1e-6)  # type: ignore[arg-type]


def test_langchain_aembed_query_coalesces(dense_enc: DenseEncoder) -> None:
    from langchain_lfm import LFMEmbeddings

    embeddings = LFMEmbeddings.from_encoder(dense_enc)
    expected = [embeddings.embed_query(query) for query in QUERIES]
    dense_enc.set_query_batching(**WIDE_WINDOW)
    before = dense_enc.stats.model_calls
    bad = [*list(QUERIES), ""]

    async def run() -> list[object]:
        return await asyncio.wait_for(
            asyncio.gather(*(embeddings.aembed_query(q) for q in bad), return_exceptions=True), 120
        )

    got = asyncio.run(run())
    assert dense_enc.stats.model_calls - before < CALLERS
    assert isinstance(got[-1], InvalidTextError)
    for vector, reference in zip(got[:-1], expected, strict=True):
        np.testing.assert_allclose(vector, reference, rtol=0, atol=1e-6)  # type: ignore[arg-type]


def test_llamaindex_aget_query_embedding_coalesces(dense_enc: DenseEncoder) -> None:
    from llama_index.embeddings.lfm import LFMEmbedding

    embedding = LFMEmbedding(encoder=dense_enc)
    expected = [embedding.get_query_embedding(query) for query in QUERIES]
    dense_enc.set_query_batching(**WIDE_WINDOW)
    before = dense_enc.stats.model_calls
    bad: list[object] = [*list(QUERIES), 7]

    async def run() -> list[object]:
        return await asyncio.wait_for(
            asyncio.gather(*(embedding.aget_query_embedding(q) for q in bad), return_exceptions=True), 120
        )

    got = asyncio.run(run())
    assert dense_enc.stats.model_calls - before < CALLERS
    assert isinstance(got[-1], InvalidTextError) and "int" in str(got[-1])
    for vector, reference in zip(got[:-1], expected, strict=True):
        np.testing.assert_allclose(vector, reference, rtol=0, atol=1e-6)  # type: ignore[arg-type]


def test_aencode_queries_matches_encode_queries(dense_enc: DenseEncoder, colbert_enc: ColBERTEncoder) -> None:
    dense = asyncio.run(dense_enc.aencode_queries(QUERIES[:3]))
    np.testing.assert_allclose(dense, dense_enc.encode_queries(QUERIES[:3]), rtol=0, atol=1e-6)
    assert asyncio.run(dense_enc.aencode_queries([])).shape == (0, dense_enc.dimension)
    tokens = asyncio.run(colbert_enc.aencode_queries(QUERIES[:2]))
    for got, want in zip(tokens, colbert_enc.encode_queries(QUERIES[:2]), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    with pytest.raises(InvalidTextError, match="single string"):
        dense_enc.encode_queries("one string")


# -- the batcher itself, over a plain function -------------------------------------------------
class Gate:
    """An encode function that blocks until released and records each batch it saw."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[str]:
        self.entered.set()
        assert self.open.wait(30), "test gate never opened"
        self.batches.append(list(texts))
        if "poison" in texts:
            raise RuntimeError("poison in batch")
        return [text.upper() for text in texts]


def test_full_queue_raises_and_batcher_keeps_serving() -> None:
    gate = Gate()
    batcher: MicroBatcher[str] = MicroBatcher(gate, max_wait_s=0, max_queue=2)
    running = batcher.submit(["a"])
    assert gate.entered.wait(10)
    waiting = [batcher.submit(["b"]), batcher.submit(["c"])]
    assert batcher.queue_depth == 2
    with pytest.raises(QueueFull, match="queue is full"):
        batcher.submit(["d"])
    assert batcher.stats.rejected == 1
    gate.open.set()
    assert running.result(10) == ["A"]
    assert [f.result(10) for f in waiting] == [["B"], ["C"]]
    assert gate.batches[1] == ["b", "c"]  # queued while the model was busy: one call
    assert batcher.encode(["e", "f"]) == ["E", "F"]
    batcher.close(10)


def test_a_failing_shared_call_fails_only_its_caller() -> None:
    gate = Gate()
    batcher: MicroBatcher[str] = MicroBatcher(gate, max_wait_s=0)
    first = batcher.submit(["a"])
    assert gate.entered.wait(10)
    others = [batcher.submit(["b"]), batcher.submit(["poison"]), batcher.submit(["c", "d"])]
    gate.open.set()
    assert first.result(10) == ["A"]
    assert others[0].result(10) == ["B"] and others[2].result(10) == ["C", "D"]
    with pytest.raises(RuntimeError, match="poison"):
        others[1].result(10)
    batcher.close(10)


def test_close_finishes_queued_requests_then_refuses() -> None:
    gate = Gate()
    batcher: MicroBatcher[str] = MicroBatcher(gate, max_wait_s=0)
    futures = [batcher.submit([str(i)]) for i in range(5)]
    closer = threading.Thread(target=batcher.close, args=(30,))
    closer.start()
    with pytest.raises(BatcherClosed):
        for _ in range(1000):  # close() flips the flag at once; bounded wait for it
            batcher.submit(["late"])
            threading.Event().wait(0.01)
    gate.open.set()
    closer.join(30)
    assert not closer.is_alive()
    assert [f.result(0) for f in futures] == [[str(i)] for i in range(5)]


def test_budget_closes_a_batch_before_the_window() -> None:
    seen: list[int] = []
    batcher: MicroBatcher[str] = MicroBatcher(
        lambda texts: seen.append(len(texts)) or texts, max_wait_s=30, max_batch_texts=4
    )
    futures = [batcher.submit([str(i), str(i)]) for i in range(2)]  # 4 texts: the budget
    assert [f.result(10) for f in futures] == [["0", "0"], ["1", "1"]]
    assert seen == [4]
    batcher.close(10)


class SlowModel:
    """A model call that takes ``seconds``, recording each batch and when it began."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[list[str]] = []
        self.started: list[float] = []

    def __call__(self, texts: list[str]) -> list[str]:
        self.started.append(time.monotonic())
        self.batches.append(list(texts))
        time.sleep(self.seconds)
        return texts


def test_under_load_callers_that_come_back_share_the_next_batch() -> None:
    """Closed-loop callers (each sends its next query once answered) stay in one batch: without the
    adaptive window the first one back would run alone while the others queue behind it."""
    gate, model = Gate(), SlowModel(0.5)
    batcher: MicroBatcher[str] = MicroBatcher(lambda t: gate(t) if not gate.open.is_set() else model(t), load_wait=2)
    blocker = batcher.submit(["first"])
    assert gate.entered.wait(10)

    def caller(name: str) -> list[list[str]]:
        return [batcher.encode([f"{name}{i}"]) for i in range(3)]

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(caller, name) for name in "abc"]
        while batcher.queue_depth < 3:  # bounded by the gate's own 30 s
            time.sleep(0.01)
        gate.open.set()
        results = [f.result(60) for f in futures]
    assert blocker.result(10) == ["FIRST"]
    assert results == [[[f"{name}{i}"] for i in range(3)] for name in "abc"]
    assert [sorted(batch) for batch in model.batches] == [[f"{name}{i}" for name in "abc"] for i in range(3)]
    batcher.close(10)


def test_the_adaptive_window_is_bounded_and_a_lone_caller_never_waits() -> None:
    model = SlowModel(0.5)
    batcher: MicroBatcher[str] = MicroBatcher(model, load_wait=2)  # window: 2 x 0.5 s after a shared call
    for _ in range(2):  # the last call served one request: no window
        submitted = time.monotonic()
        assert batcher.encode(["alone"]) == ["alone"]
        assert model.started[-1] - submitted < 0.9
    first = batcher.submit(["x"])  # runs at once (the last call served one)...
    time.sleep(0.1)
    together = [batcher.submit(["y"]), batcher.submit(["z"])]  # ...these two queue behind it
    assert first.result(10) == ["x"] and [f.result(10) for f in together] == [["y"], ["z"]]
    submitted = time.monotonic()
    assert batcher.encode(["back"]) == ["back"]  # the last call served two: wait for a second one, bounded
    waited = model.started[-1] - submitted
    assert 0.8 < waited < 10
    assert model.batches[-1] == ["back"]
    first = batcher.submit(["t"])  # the last call served one: at once...
    time.sleep(0.1)
    together = [batcher.submit(["u"]), batcher.submit(["v"])]  # ...and these two share the next call...
    assert first.result(10) == ["t"] and [f.result(10) for f in together] == [["u"], ["v"]]
    assert model.batches[-1] == ["u", "v"]
    time.sleep(1.2)  # ...but the load is over: the window (1 s after that call) has passed
    submitted = time.monotonic()
    assert batcher.encode(["later"]) == ["later"]
    assert model.started[-1] - submitted < 0.8
    batcher.close(10)


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_async_retrievers_coalesce(dense_enc: DenseEncoder, colbert_enc: ColBERTEncoder, framework: str) -> None:
    from lfm_retrieval.catalog import CatalogJob
    from lfm_retrieval.stores import open_store

    store = open_store(f"memory://microbatch-{framework}", kind="hybrid")
    records = [{"sku": f"S{i}", "text": query} for i, query in enumerate(QUERIES)]
    options = {"text": "{text}", "key": "{sku}", "payload": ["text"], "colbert": colbert_enc, "progress": False}
    CatalogJob(dense_enc, store, **options).run(records)
    if framework == "langchain":
        from langchain_lfm import LFMRetriever

        retriever = LFMRetriever(store=store, dense_encoder=dense_enc, colbert_encoder=colbert_enc, k=3)
        keys = lambda docs: [doc.id for doc in docs]  # noqa: E731
        serial_call, async_call = retriever.invoke, retriever.ainvoke
    else:
        from llama_index.retrievers.lfm import LFMRetriever as LlamaRetriever

        retriever = LlamaRetriever(store, embed_model=dense_enc, colbert=colbert_enc, similarity_top_k=3)
        keys = lambda nodes: [node.node.id_ for node in nodes]  # noqa: E731
        serial_call, async_call = retriever.retrieve, retriever.aretrieve
    expected = [keys(serial_call(query)) for query in QUERIES]
    for encoder in (dense_enc, colbert_enc):
        encoder.set_query_batching(**WIDE_WINDOW)
    before = dense_enc.stats.model_calls + colbert_enc.stats.model_calls

    async def run() -> list:
        return await asyncio.wait_for(asyncio.gather(*(async_call(q) for q in QUERIES)), 120)

    got = [keys(result) for result in asyncio.run(run())]
    assert got == expected
    assert dense_enc.stats.model_calls + colbert_enc.stats.model_calls - before < 2 * CALLERS
