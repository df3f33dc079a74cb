"""A LlamaIndex retriever over a tablelm model (``pip install 'tablelm[llamaindex]'``).

>>> from tablelm.integrations.llamaindex import TablelmRetriever   # doctest: +SKIP
>>> retriever = TablelmRetriever("models/scifact", k=5)             # doctest: +SKIP
>>> nodes = retriever.retrieve("vitamin D deficiency")              # doctest: +SKIP
>>> nodes[0].score, nodes[0].node.metadata["citations"][0]          # doctest: +SKIP
"""

from __future__ import annotations

from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from . import STRUCTURED_KEYS, as_model, retrieve


class TablelmRetriever(BaseRetriever):
    """LlamaIndex ``BaseRetriever``: ranked, cited tablelm cards as ``NodeWithScore`` objects.

    Each node's text is the entity's full text and its ``id_`` the entity id; the score is the
    card's; the metadata carries the rank, why, citations and knowledge-graph fields (see
    :func:`tablelm.integrations.retrieve`). The structured keys (why, citations, ...) are kept
    out of what LlamaIndex shows an LLM or embeds; title, category, tags and source stay in.

    Parameters
    ----------
    model, k, params
        As in :func:`tablelm.integrations.retrieve` (``model`` may also be a model directory).
    callback_manager : CallbackManager, optional
        LlamaIndex callbacks.
    """

    def __init__(self, model, k: int = 4, params: dict | None = None,
                 callback_manager: CallbackManager | None = None) -> None:
        self.model = as_model(model)
        self.k = k
        self.params = dict(params or {})
        super().__init__(callback_manager=callback_manager)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hidden = [*STRUCTURED_KEYS, "category_path", "snippet", "score", "rank"]
        return [NodeWithScore(node=TextNode(id_=meta["id"], text=text, metadata=meta,
                                            excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=hidden),
                              score=score)
                for text, score, meta in retrieve(self.model, query_bundle.query_str, self.k, self.params)]
