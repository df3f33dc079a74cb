"""LangChain and LlamaIndex retrievers over a tablelm model, against the real packages.

A LangChain chain and a LlamaIndex query engine each get the cards with their scores and
citations; the metadata is the same in both and matches ``Model.ask``.
"""

from __future__ import annotations

import pytest

import tablelm

PROMPT = "read a file line by line"


def _check_metadata(meta: dict, card, model) -> None:
    assert meta["id"] == card.id and meta["score"] == card.score and meta["rank"] == card.rank
    assert meta["title"] == card.title and meta["tags"] == list(card.tags)
    assert meta["category_path"] == list(card.category) and meta["category"] == " > ".join(card.category)
    assert meta["why"] and {w["multitoken"] for w in meta["why"]} == {w["multitoken"] for w in card.why}
    assert meta["citations"]
    for c in meta["citations"]:  # each citation points at the exact text of its field
        e = model.entity(c["entity"])
        field = {"text": e.text, "title": e.title}.get(c["field"])
        assert field is None or field[c["start"]:c["end"]] == c["text"]


def test_langchain_retriever_and_chain(tiny_model):
    pytest.importorskip("langchain_core", reason="pip install 'tablelm[langchain]'")
    from langchain_core.documents import Document
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    from tablelm.integrations.langchain import TablelmRetriever

    retriever = TablelmRetriever(model=tiny_model, k=2, params={"phrase_weight": 0.5})
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke(PROMPT)
    want = tiny_model.ask(PROMPT, k=2, phrase_weight=0.5).cards
    assert all(isinstance(d, Document) for d in docs) and [d.id for d in docs] == [c.id for c in want]
    for d, card in zip(docs, want):
        assert d.page_content == tiny_model.entity(card.id).text
        _check_metadata(d.metadata, card, tiny_model)
    # a model directory works too, and a bad parameter is the registry's error
    assert [d.id for d in TablelmRetriever(model=str(tiny_model.path), k=2).invoke(PROMPT)] == \
        [c.id for c in tiny_model.ask(PROMPT, k=2).cards]
    with pytest.raises(tablelm.ParamError, match="phrase_weight"):
        TablelmRetriever(model=tiny_model, params={"phrase_weight": -1}).invoke(PROMPT)

    def cite(docs):
        return "\n".join(f"[{i}] {d.metadata['title']} ({d.id}): {d.metadata['citations'][0]['text']!r}"
                         for i, d in enumerate(docs, 1))

    prompt = ChatPromptTemplate.from_template("Answer from the sources and cite them.\n{context}\nQ: {question}")
    chain = {"context": retriever | RunnableLambda(cite), "question": RunnablePassthrough()} | prompt
    text = chain.invoke(PROMPT).to_string()
    assert "[1] Reading files (files/read):" in text and f"Q: {PROMPT}" in text


def test_llamaindex_retriever_and_query_engine(tiny_model):
    pytest.importorskip("llama_index.core", reason="pip install 'tablelm[llamaindex]'")
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import CitationQueryEngine
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import MetadataMode, NodeWithScore

    from tablelm.integrations.llamaindex import TablelmRetriever

    retriever = TablelmRetriever(tiny_model, k=3)
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve(PROMPT)
    want = tiny_model.ask(PROMPT, k=3).cards
    assert all(isinstance(n, NodeWithScore) for n in nodes)
    assert [(n.node.id_, n.score) for n in nodes] == [(c.id, c.score) for c in want]
    for n, card in zip(nodes, want):
        assert n.node.text == tiny_model.entity(card.id).text
        _check_metadata(n.node.metadata, card, tiny_model)
    # what an LLM reads: the title and text, not the citation structures
    shown = nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert "title: Reading files" in shown and "citations" not in shown

    # a query engine that numbers its sources; MockLLM (llama-index-core's own offline LLM)
    # answers with the prompt it was given, so the cited context is what we can check
    engine = CitationQueryEngine.from_args(index=None, retriever=retriever, llm=MockLLM())
    response = engine.query(PROMPT)
    assert [n.node.metadata["id"] for n in response.source_nodes] == [c.id for c in want]
    assert "Source 1:" in response.source_nodes[0].node.get_content()
    assert response.source_nodes[0].node.metadata["citations"][0]["entity"] == "files/read"

