"""LFMColBERTRerank: a LlamaIndex node postprocessor that reorders nodes by ColBERT MaxSim."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from lfm_retrieval import LFM25_COLBERT, ColBERTEncoder, InvalidTextError, rerank
from lfm_retrieval.errors import check_query


class LFMColBERTRerank(BaseNodePostprocessor):
    """Rerank any retriever's nodes with LFM2.5-ColBERT-350M (or any PyLate model), best ``top_n`` first.

    The query is encoded on the query side (``[Q] ``, expanded to 32 tokens), each node's
    content on the document side (``[D] ``); the score is MaxSim and replaces the node's
    score (the old one goes to ``metadata["retrieval_score"]`` with
    ``keep_retrieval_score=True``). No index is needed. A node whose content is blank
    cannot be scored and raises InvalidTextError naming it.

    >>> reranker = LFMColBERTRerank(top_n=5)  # doctest: +SKIP
    >>> query_engine = index.as_query_engine(node_postprocessors=[reranker])  # doctest: +SKIP
    """

    model_name: str = Field(default=LFM25_COLBERT, description="Folder or Hub id of the ColBERT model.")
    top_n: int = Field(default=5, gt=0, description="How many nodes to return.")
    device: str | None = Field(default=None, description="Torch device; None picks one.")
    keep_retrieval_score: bool = Field(default=False, description="Keep the old score in metadata.")
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Which node content is scored (as LlamaIndex embeds it by default)."
    )
    _encoder: ColBERTEncoder = PrivateAttr()

    def __init__(
        self,
        top_n: int = 5,
        model_name: str = LFM25_COLBERT,
        *,
        device: str | None = None,
        encoder: ColBERTEncoder | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        keep_retrieval_score: bool = False,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        """Load ``model_name``, or use an already loaded ``encoder`` (its model wins), or the server at
        ``base_url`` (``lfm-retrieval serve --colbert``; ``llama-server --pooling none`` with
        ``model_name`` the model's local folder)."""
        if encoder is None and base_url is not None:
            served = None if model_name == LFM25_COLBERT else str(model_name)  # unnamed: the server's own
            encoder = ColBERTEncoder(served, base_url=base_url, api_key=api_key)
        elif encoder is None:
            encoder = ColBERTEncoder(str(model_name), device=device)
        super().__init__(
            model_name=encoder.model_name,
            top_n=top_n,
            device=device,
            keep_retrieval_score=keep_retrieval_score,
            metadata_mode=metadata_mode,
            callback_manager=callback_manager or CallbackManager(),
            **kwargs,
        )
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "LFMColBERTRerank"

    @property
    def encoder(self) -> ColBERTEncoder:
        """The lfm_retrieval ColBERT encoder behind this reranker."""
        return self._encoder

    def _scored(self, node: NodeWithScore, score: float) -> NodeWithScore:
        """A new NodeWithScore; the input node is not changed (reranking twice gives the same)."""
        if not self.keep_retrieval_score:
            return NodeWithScore(node=node.node, score=score)
        # The old score goes to a copy's metadata, kept out of the content that embedders and
        # rerankers see, so a reranked node scores the same when reranked again.
        copy = node.node.model_copy(
            update={
                "metadata": {**node.node.metadata, "retrieval_score": node.score},
                "excluded_embed_metadata_keys": [*node.node.excluded_embed_metadata_keys, "retrieval_score"],
            }
        )
        return NodeWithScore(node=copy, score=score)

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("LFMColBERTRerank needs the query: pass query_str= or query_bundle=")
        query = check_query(query_bundle.query_str)
        if not nodes:
            return []
        texts = [node.node.get_content(metadata_mode=self.metadata_mode) for node in nodes]
        for node, text in zip(nodes, texts, strict=True):
            if not isinstance(text, str) or not text.strip():
                raise InvalidTextError(f"node {node.node.node_id!r} has no text to rerank (its content is blank)")
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model_name,
                EventPayload.QUERY_STR: query,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            ranked = rerank(query, texts, self._encoder, top_k=self.top_n)
            reranked = [self._scored(nodes[index], score) for index, score in ranked]
            event.on_end(payload={EventPayload.NODES: reranked})
        return reranked
