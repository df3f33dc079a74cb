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
    for an embedding neighbour.

reference ranker
    The xLLM "PageRank for RAG": per entity, s1 = Σ 1/count(t)^β over the matched
    text multitokens, s2 = their number, s3 and s4 the same over multitokens in the
    knowledge-graph fields; each turned into a dense rank (1 = best) and combined
    as 2·r1 + r2 + r3 + r4, lower is better. Reported score: 1 / combined rank.
"""

from __future__ import annotations

import numpy as np

FIELD_WEIGHTS = ("w_title", "w_category", "w_tags", "w_meta")


def field_weights(params: dict) -> np.ndarray:
    return np.array([1.0] + [params[p] for p in FIELD_WEIGHTS])


def _gather(model, mts):
    """Concatenated postings of ``mts``: (term index, doc, tf (n, 4))."""
    indptr = model.post_indptr
    starts = np.asarray([indptr[t] for t in mts], dtype=np.int64)
    ends = np.asarray([indptr[t + 1] for t in mts], dtype=np.int64)
    lens = ends - starts
    total = int(lens.sum())
    idx = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    term = np.repeat(np.arange(len(mts)), lens)
    return term, model.post_docs[idx], model.post_tf[idx], lens


def idf(model, mts) -> np.ndarray:
    df = np.asarray([model.post_indptr[t + 1] - model.post_indptr[t] for t in mts], dtype=np.float64)
    n = model.n_docs
    return np.log1p((n - df + 0.5) / (df + 0.5))


class Scorer:
    """Scores entities for a list of weighted terms under one parameter set."""

    def __init__(self, model, params: dict):
        self.model = model
        self.params = params

    def tablelm(self, terms):
        """Return ``(scores (N,), contribution function)``."""
        m, p = self.model, self.params
        mts = [t.mt for t in terms]
        scores = np.zeros(m.n_docs)
        if not mts:
            return scores
        fw = field_weights(p)
        dl = m.doc_len_weighted(tuple(fw))
        k1, b = p["k1"], p["b"]
        norm = k1 * (1.0 - b + b * dl / max(dl.mean(), 1e-9))
        term, docs, tf, _ = _gather(m, mts)
        tfw = tf @ fw
        qw = np.asarray([t.weight for t in terms]) * idf(m, mts)
        contrib = qw[term] * tfw * (k1 + 1.0) / (tfw + norm[docs])
        return np.bincount(docs, weights=contrib, minlength=m.n_docs)

    def explain(self, terms, docs: np.ndarray) -> np.ndarray:
        """Contribution of each term (columns) to each entity in ``docs`` (rows)."""
        m, p = self.model, self.params
        out = np.zeros((len(docs), len(terms)))
        if not terms or len(docs) == 0:
            return out
        fw = field_weights(p)
        dl = m.doc_len_weighted(tuple(fw))
        k1, b = p["k1"], p["b"]
        norm = k1 * (1.0 - b + b * dl[docs] / max(dl.mean(), 1e-9))
        weights = np.asarray([t.weight for t in terms]) * idf(m, [t.mt for t in terms])
        for j, t in enumerate(terms):
            tf = self.term_tf(t.mt, docs) @ fw
            out[:, j] = weights[j] * tf * (k1 + 1.0) / (tf + norm)
        return out

    def term_tf(self, mt: int, docs: np.ndarray) -> np.ndarray:
        """Field term frequencies (len(docs), 4) of one multitoken in ``docs``."""
        m = self.model
        s, e = int(m.post_indptr[mt]), int(m.post_indptr[mt + 1])
        row_docs = m.post_docs[s:e]
        pos = np.searchsorted(row_docs, docs)
        hit = (pos < len(row_docs)) & (row_docs[np.minimum(pos, len(row_docs) - 1)] == docs) if e > s else \
            np.zeros(len(docs), dtype=bool)
        tf = np.zeros((len(docs), m.post_tf.shape[1]))
        tf[hit] = m.post_tf[s + pos[hit]]
        return tf

    def reference(self, terms):
        """Four dense ranks combined; returns (scores (N,), the four raw scores (N, 4))."""
        m, p = self.model, self.params
        mts = [t.mt for t in terms if t.role in ("prompt", "forced")]
        raw = np.zeros((m.n_docs, 4))
        if not mts:
            return np.zeros(m.n_docs), raw
        term, docs, tf, _ = _gather(m, mts)
        spec = 1.0 / np.power(np.maximum(m.mt_total[mts].astype(np.float64), 1.0), p["beta"])
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
    cand = np.flatnonzero(scores > 0)
    if exclude is not None and len(exclude):
        cand = cand[~np.isin(cand, exclude)]
    if len(cand) > k:
        kth = np.partition(scores[cand], len(cand) - k)[len(cand) - k]
        cand = cand[scores[cand] >= kth]
    order = np.lexsort((cand, -scores[cand]))
    return cand[order][:k]
