"""Each store says whether many processes may open it (``Store.shared``): the Ray engine's workers
write to shared stores themselves and leave the others to the driver, so the core names no scheme."""

from __future__ import annotations

import pytest

from lfm_retrieval import open_store


@pytest.mark.parametrize(
    ("uri", "shared"),
    [
        ("memory://products", False),
        ("qdrant+local://{folder}/products", False),
        ("qdrant+edge://{folder}/products", False),
        ("milvus+lite://{folder}/index.db/products", False),
        ("qdrant://127.0.0.1:1/products", True),  # clients connect on first use: no server needed here
        ("postgresql://user@127.0.0.1:1/db?table=products", True),
    ],
)
def test_a_store_says_whether_other_processes_may_open_it(uri: str, shared: bool, tmp_path) -> None:
    scheme = uri.split("://")[0]
    if scheme != "memory":
        pytest.importorskip(
            {"qdrant": "lfm_retrieval_qdrant", "milvus": "lfm_retrieval_milvus"}.get(
                scheme.split("+")[0], "lfm_retrieval_pgvector"
            )
        )
    store = open_store(uri.format(folder=tmp_path))
    try:
        assert store.shared is shared
    finally:
        store.close()
