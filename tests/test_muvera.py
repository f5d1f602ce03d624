"""MUVERA encodings: deterministic for one config, checked input, and a first stage that finds MaxSim's top 10."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_retrieval.muvera import Muvera
from lfm_retrieval.scoring import maxsim_scores

WIDTH = 32


def clustered_corpus(rng: np.random.Generator, documents: int, queries: int, width: int) -> tuple[list, list]:
    """Unit token vectors drawn from topic vocabularies (like text: documents share topics), mixed lengths;
    each query takes noisy tokens of one document plus off-topic tokens."""
    vocabulary = rng.normal(size=(600, width))
    topics = [rng.choice(len(vocabulary), size=40, replace=False) for _ in range(30)]

    def tokens(count: int, topic: int, noise: float) -> np.ndarray:
        ids = np.concatenate([rng.choice(topics[topic], size=count - count // 4), rng.choice(600, size=count // 4)])
        x = vocabulary[ids] + noise * rng.normal(size=(count, width))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    docs = [tokens(int(rng.integers(5, 150)), int(rng.integers(30)), 0.3) for _ in range(documents)]
    qs = []
    for index in rng.choice(documents, size=queries, replace=False):
        picked = docs[index][rng.choice(len(docs[index]), size=min(8, len(docs[index])), replace=False)]
        noisy = picked + 0.1 * rng.normal(size=picked.shape)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        qs.append(np.concatenate([noisy, tokens(8, int(rng.integers(30)), 0.3)]).astype(np.float32))
    return docs, qs


def test_same_config_same_encoding_and_the_config_round_trips() -> None:
    rng = np.random.default_rng(0)
    docs = [rng.normal(size=(n, WIDTH)).astype(np.float32) for n in (1, 7, 40)]
    first, second = Muvera(WIDTH), Muvera.from_config(Muvera(WIDTH).config())
    assert first == second
    np.testing.assert_array_equal(first.encode_documents(docs), second.encode_documents(docs))
    np.testing.assert_array_equal(first.encode_queries(docs), second.encode_queries(docs))
    other_seed = Muvera(WIDTH, seed=7)
    assert not np.array_equal(first.encode_documents(docs), other_seed.encode_documents(docs))
    encoded = first.encode_documents(docs)
    assert encoded.shape == (3, first.embedding_size) and encoded.dtype == np.float32


def test_defaults_fit_pgvector_halfvec_hnsw() -> None:
    muvera = Muvera()
    assert muvera.config() == {"dim": 128, "k_sim": 3, "dim_proj": 16, "r_reps": 20, "seed": 42}
    assert muvera.embedding_size == 20 * 2**3 * 16 <= 4000


@pytest.mark.parametrize(
    "tokens",
    [np.zeros((0, WIDTH)), np.ones((3, WIDTH + 1)), np.ones(WIDTH), np.full((2, WIDTH), np.nan)],
    ids=["empty", "wrong-width", "one-dimensional", "nan"],
)
def test_bad_token_vectors_are_refused_by_name(tokens: np.ndarray) -> None:
    with pytest.raises(ValueError, match="document 1"):
        Muvera(WIDTH).encode_documents([np.ones((2, WIDTH)), tokens])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dim": 8, "k_sim": 3, "dim_proj": 16, "r_reps": 2, "seed": 1}, "dim_proj"),
        ({"dim": 8, "k_sim": 0, "dim_proj": 4, "r_reps": 2, "seed": 1}, "k_sim"),
        ({"dim": 8, "k_sim": 2, "dim_proj": 4, "r_reps": 2}, "missing"),
        ({"dim": 8, "k_sim": 2, "dim_proj": 4, "r_reps": 2, "seed": 1, "x": 1}, "unknown"),
    ],
)
def test_bad_configs_are_refused(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Muvera.from_config(config)


def test_muvera_top_100_holds_exact_maxsim_top_10() -> None:
    rng = np.random.default_rng(3)
    docs, queries = clustered_corpus(rng, documents=600, queries=30, width=128)
    muvera = Muvera()  # the defaults, on ColBERT's 128-d token vectors
    approx = muvera.encode_queries(queries) @ muvera.encode_documents(docs).T
    exact = maxsim_scores(queries, docs)
    recalls = [
        len(set(np.argsort(-exact[i])[:10]) & set(np.argsort(-approx[i])[:100])) / 10 for i in range(len(queries))
    ]
    print(f"MUVERA recall of exact MaxSim top-10 within top-100 of 600: {np.mean(recalls):.3f}")
    assert np.mean(recalls) >= 0.9


def test_batched_encodings_equal_fastembeds_one_at_a_time() -> None:
    from fastembed.postprocess import Muvera as FastEmbedMuvera

    rng = np.random.default_rng(5)
    texts = [rng.normal(size=(n, WIDTH)).astype(np.float32) for n in (1, 2, 3, 9, 40, 150)]
    for settings in ({}, {"k_sim": 4, "dim_proj": 8, "r_reps": 3, "seed": 9}, {"dim_proj": WIDTH}):
        ours = Muvera(WIDTH, **settings)
        # ours computes in float32 (FastEmbed in float64); the stores keep encodings in float16 or float32
        theirs = FastEmbedMuvera(WIDTH, ours.k_sim, ours.dim_proj, ours.r_reps, ours.seed)
        np.testing.assert_allclose(
            ours.encode_documents(texts), [theirs.process_document(t) for t in texts], rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            ours.encode_queries(texts), [theirs.process_query(t) for t in texts], rtol=1e-4, atol=1e-5
        )
