"""A LangChain retriever over a tablelm model (``pip install 'tablelm[langchain]'``).

>>> from tablelm.integrations.langchain import TablelmRetriever   # doctest: +SKIP
>>> retriever = TablelmRetriever(model="models/scifact", k=5)      # doctest: +SKIP
>>> docs = retriever.invoke("vitamin D deficiency")                # doctest: +SKIP
>>> docs[0].metadata["score"], docs[0].metadata["citations"][0]    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, field_validator

from . import as_model, retrieve


class TablelmRetriever(BaseRetriever):
    """LangChain ``BaseRetriever``: ranked, cited tablelm cards as ``Document`` objects.

    Each document's ``page_content`` is the entity's full text and its ``id`` the entity id;
    its metadata carries the score, rank, why, citations and knowledge-graph fields (see
    :func:`tablelm.integrations.retrieve`).

    Fields: ``model`` (a loaded model or a model directory), ``k`` (documents per query) and
    ``params`` (registry parameters for every query, e.g. ``{"phrase_weight": 0.5}``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any
    k: int = 4
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model", mode="before")
    @classmethod
    def _load(cls, value):
        return as_model(value)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [Document(page_content=text, metadata=meta, id=meta["id"])
                for text, _score, meta in retrieve(self.model, query, self.k, self.params)]
