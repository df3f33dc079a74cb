"""Entity ranking: the tablelm ranker and the reference four-score ranker.

tablelm ranker
    BM25F (Robertson, Zaragoza & Taylor, "Simple BM25 extension to multiple
    weighted fields", CIKM 2004) over multitokens instead of words. The
    term frequency of multitoken ``t`` in entity ``d`` is the weighted sum over
    fields, ``tf = tf_text + w_title·tf_title + w_category·tf_category + w_tags·tf_tags + w_meta·tf_meta``,
    the length the same weighted sum of field lengths, and

        score(d) = Σ_t  q_t · idf(t) · tf·(k1 + 1) / (tf + k1·(1 − b + b·len(d)/avglen))

    with Lucene's ``idf(t) = ln(1 + (N − df + 0.5)/(df + 0.5))``. ``q_t`` is the
    plan's weight of the term: 1 for a prompt word, ``phrase_weight`` for a
    multitoken of two or more words (an ordered-phrase match that BM25 on words
    cannot see), ``contained_weight`` for a distilled word, ``expansion_weight``·PMI
    for an embedding neighbour; times the query-term-frequency factor
    ``(k3 + 1)·qtf / (k3 + qtf)`` of Robertson et al., "Okapi at TREC-3" (1994), with
    ``k3 = qtf_k3``, for a term the prompt says ``qtf`` times.

    Phrases of one *stretch* of the prompt (matched phrases sharing words, see
    ``Planner._stretches``) count once per entity with ``phrase_mode="stretch"``:
    the stretch adds its best phrase's term, max instead of sum, so a long match
    and its overlapping sub-phrases are one piece of evidence, not seven.

reference ranker
    The xLLM "PageRank for RAG": per entity, s1 = Σ 1/count(t)^β over the matched
    text multitokens, s2 = their number, s3 and s4 the same over multitokens in the
    knowledge-graph fields; each turned into a dense rank (1 = best) and combined
    as 2·r1 + r2 + r3 + r4, lower is better. Reported score: 1 / combined rank.
"""

from __future__ import annotations

import numpy as np

from . import kernel
from .kernel import gather

FIELD_WEIGHTS = ("w_title", "w_category", "w_tags", "w_meta")

__all__ = ["FIELD_WEIGHTS", "Scorer", "field_weights", "gather", "idf", "top_k"]


def field_weights(params: dict) -> np.ndarray:
    return np.array([1.0] + [params[p] for p in FIELD_WEIGHTS])


def idf(model, mts) -> np.ndarray:
    df = model.tables.df(mts).astype(np.float64)
    c = getattr(model, "collection", None)  # a sub-model scores with its collection's N (tablelm/submodels.py)
    n = model.n_docs if c is None else c.n_docs
    return np.log1p((n - df + 0.5) / (df + 0.5))


class Scorer:
    """Scores entities for a list of weighted terms under one parameter set."""

    def __init__(self, model, params: dict):
        self.model = model
        self.params = params

    @property
    def postings(self) -> kernel.Postings:
        """The postings with this parameter set's BM25F length norms (kept by the model)."""
        return self.model.postings_for(self.params)

    def prepare(self, terms):
        """(multitokens, weights, groups) of ``terms`` for the kernels (kernel.prepare)."""
        return kernel.prepare(terms, lambda mts: idf(self.model, mts))

    def tablelm(self, terms):
        """The score of every entity (zero where no term matches)."""
        if not terms:
            return np.zeros(self.model.n_docs)
        return kernel.accumulate(self.postings, *self.prepare(terms))

    def explain(self, terms, docs: np.ndarray) -> np.ndarray:
        """Contribution of each term (columns) to each entity in ``docs`` (rows); rows sum to the scores."""
        m = self.model
        out = np.zeros((len(docs), len(terms)))
        if not terms or len(docs) == 0:
            return out
        post = self.postings
        weights = np.asarray([t.weight for t in terms]) * idf(m, [t.mt for t in terms])
        for j, t in enumerate(terms):
            hit, at = self._postings(t.mt, docs)
            out[hit, j] = weights[j] * kernel.impacts_at(post, at[hit])
        for s in {t.stretch for t in terms if t.stretch is not None}:
            cols = [j for j, t in enumerate(terms) if t.stretch == s]
            best = np.asarray(cols)[np.argmax(out[:, cols], axis=1)]
            mask = np.zeros_like(out, dtype=bool)
            mask[:, cols] = True
            mask[np.arange(len(docs)), best] = False
            out[mask] = 0.0
        return out

    def _postings(self, mt: int, docs: np.ndarray):
        """For each of ``docs``: whether ``mt`` occurs in it, and the posting's index."""
        m = self.model
        s, e = int(m.tables.post_indptr[mt]), int(m.tables.post_indptr[mt + 1])
        row_docs = self.postings.row_docs(mt, s, e)
        # the entities in the row's own type (they fit: it holds entity indices), else numpy would
        # convert the whole row to the type of ``docs`` on every call: O(its postings), 75 µs for a
        # common word at 1M, ~100 calls an ask
        at = docs.astype(row_docs.dtype) if docs.dtype != row_docs.dtype and row_docs.dtype.kind in "iu" else docs
        pos = np.minimum(np.searchsorted(row_docs, at), max(e - s - 1, 0))
        hit = (row_docs[pos] == docs) if e > s else np.zeros(len(docs), dtype=bool)
        return hit, s + pos

    def term_tf(self, mt: int, docs: np.ndarray) -> np.ndarray:
        """Field term frequencies (len(docs), number of fields) of one multitoken in ``docs``."""
        m = self.model
        hit, post = self._postings(mt, docs)
        tf = np.zeros((len(docs), m.tables.post_tf.shape[1]))
        tf[hit] = m.tables.post_tf[post[hit]]
        return tf

    def reference(self, terms):
        """Four dense ranks combined; returns (scores (N,), the four raw scores (N, 4))."""
        m, p = self.model, self.params
        mts = [t.mt for t in terms if t.role in ("prompt", "forced")]
        raw = np.zeros((m.n_docs, 4))
        if not mts:
            return np.zeros(m.n_docs), raw
        term, idx = gather(m.tables.post_indptr, mts)
        docs, tf = m.tables.post_docs[idx], m.tables.post_tf[idx]
        spec = 1.0 / np.power(np.maximum(m.tables.mt_total[mts].astype(np.float64), 1.0), p["beta"])
        in_text = tf[:, 0] > 0
        in_graph = tf[:, 1:].sum(axis=1) > 0
        raw[:, 0] = np.bincount(docs[in_text], weights=spec[term[in_text]], minlength=m.n_docs)
        raw[:, 1] = np.bincount(docs[in_text], minlength=m.n_docs)
        raw[:, 2] = np.bincount(docs[in_graph], weights=spec[term[in_graph]], minlength=m.n_docs)
        raw[:, 3] = np.bincount(docs[in_graph], minlength=m.n_docs)
        cand = np.flatnonzero(raw.sum(axis=1) > 0)
        combined = np.zeros(m.n_docs)
        if len(cand):
            ranks = np.zeros((len(cand), 4))
            for j in range(4):
                # dense rank, highest score = 1
                _, inv = np.unique(-raw[cand, j], return_inverse=True)
                ranks[:, j] = inv + 1
            combined[cand] = 2 * ranks[:, 0] + ranks[:, 1] + ranks[:, 2] + ranks[:, 3]
        scores = np.zeros(m.n_docs)
        scores[cand] = 1.0 / combined[cand]
        return scores, raw


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` best positive scores; ties broken by entity order."""
    return kernel.top_k(scores, k, exclude)
