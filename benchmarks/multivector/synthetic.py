"""Synthetic ColBERT-like data and the timing rows the multivector benchmarks share."""

from __future__ import annotations

import statistics
import time

import numpy as np

WIDTH = 128


def corpus(
    n_docs: int, n_queries: int, seed: int = 0, *, expansion_on_topic: bool = True
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Unit token vectors from 200 topic vocabularies, documents of 20 to 180 tokens, 32-token queries:
    16 noisy tokens of one document plus 16 drawn from its topic (``expansion_on_topic``, like ColBERT's
    query expansion) or from a random topic."""
    rng = np.random.default_rng(seed)
    vocabulary = rng.normal(size=(5000, WIDTH))
    topics = [rng.choice(len(vocabulary), size=60, replace=False) for _ in range(200)]

    def tokens(count: int, topic: int, noise: float) -> np.ndarray:
        ids = np.concatenate([rng.choice(topics[topic], size=count - count // 4), rng.choice(5000, size=count // 4)])
        x = vocabulary[ids] + noise * rng.normal(size=(count, WIDTH))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    if expansion_on_topic:
        topic_of = rng.integers(200, size=n_docs)
        docs = [tokens(int(rng.integers(20, 181)), int(topic), 0.3) for topic in topic_of]
    else:
        docs = [tokens(int(rng.integers(20, 181)), int(rng.integers(200)), 0.3) for _ in range(n_docs)]
    queries = []
    for index in rng.choice(n_docs, size=n_queries, replace=False):
        picked = docs[index][rng.choice(len(docs[index]), size=min(16, len(docs[index])), replace=False)]
        noisy = picked + 0.1 * rng.normal(size=picked.shape)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        topic = topic_of[index] if expansion_on_topic else int(rng.integers(200))
        queries.append(np.concatenate([noisy, tokens(32 - len(noisy), topic, 0.3)]).astype(np.float32))
    return docs, queries


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


def timed(search, queries) -> tuple[list[list[str]], list[float]]:
    """Each query's results and its wall time."""
    found, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        found.append(search(query))
        seconds.append(time.perf_counter() - started)
    return found, seconds


def row(method: str, found, seconds, truth, extra: dict | None = None) -> dict:
    """One table row: p50 / p95 in ms and recall@10 against ``truth``."""
    ms = sorted(s * 1000 for s in seconds)
    recall = float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))
    return {"method": method, "p50_ms": statistics.median(ms), "p95_ms": ms[round(0.95 * (len(ms) - 1))],
            "recall@10": recall, **(extra or {})}  # fmt: skip
