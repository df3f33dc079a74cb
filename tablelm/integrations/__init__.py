"""Adapters that put a tablelm model where RAG frameworks expect a retriever.

Each adapter is an optional extra (``pip install 'tablelm[langchain]'``, ``'tablelm[llamaindex]'``)
and imports its framework only when used. Both share :func:`retrieve`: one ``Model.ask`` call,
each card becoming the entity's full text plus metadata (score, rank, why, citations and the
knowledge-graph fields), so the two frameworks see the same results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Metadata keys holding structures (lists of dicts) rather than short values; the adapters keep
#: them out of the text a framework shows an LLM or embeds, which only wants flat facts.
STRUCTURED_KEYS = ("why", "citations", "factors", "related")


def as_model(model):
    """A loaded model from a Model, or from the path of a model directory."""
    if isinstance(model, (str, Path)):
        from ..model import load

        return load(model)
    return model


def retrieve(model, query: str, k: int, params: dict | None = None) -> list[tuple[str, float, dict[str, Any]]]:
    """The top ``k`` cards for ``query`` as ``(full text, score, metadata)``.

    Parameters
    ----------
    model : tablelm.Model
    query : str
    k : int
        Number of results.
    params : dict, optional
        Registry parameters (``tablelm params``), validated by the registry.

    Returns
    -------
    list of (str, float, dict)
        The metadata holds ``id``, ``rank``, ``score``, ``title``, ``category`` (the path joined
        with `` > ``), ``category_path``, ``tags``, ``related``, ``source``, ``why`` (matched
        multitokens and their contributions), ``citations`` (entity id, field, character span,
        exact text), ``snippet`` and ``factors``.
    """
    answer = model.ask(query, k=k, **(params or {}))
    out = []
    for card in answer.cards:
        d = card.to_dict()
        meta = {
            "id": card.id, "rank": card.rank, "score": card.score, "title": card.title,
            "category": " > ".join(card.category), "category_path": list(card.category), "tags": list(card.tags),
            "related": list(card.related), "source": card.source, "why": d["why"], "citations": d["citations"],
            "snippet": d["snippet"]["text"] if d["snippet"] else "", "factors": d["factors"],
        }
        out.append((model.entity(card.id).text, card.score, meta))
    return out
