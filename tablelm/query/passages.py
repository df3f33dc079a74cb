"""Passage-level scoring inside long entities: an entity may score as its best window of words.

BM25F's length normalization judges an entity as a whole: a tutorial section of 300 words whose
one paragraph is exactly the answer ("For reading lines from a file, you can loop over the file
object") loses to a 30-word API entry that says the prompt's words in passing. Passage retrieval
(Callan, "Passage-level evidence in document retrieval", SIGIR 1994; Kaszkiel & Zobel, "Effective
ranking with arbitrary passages", JASIS 2001) scores a document by its best passage instead.

With ``passage_words = W > 0``, each of the ``passage_pool`` best entities (by their whole-entity
score) whose text is longer than W words is also scored as its best window of W consecutive text
words: the same BM25F sum (same ``q_t · idf(t)``, k1, b and field weights; the title, category,
tags and metadata fields are the entity's own, the text field is the window), with the window's
weighted length ``W + Σ w_f len_f`` in the length norm. The entity keeps the larger of the two
scores, so an entity of at most W words, or one whose matches are spread all over, scores as
before: the factor ``best passage`` (a line in ``why``, with the window's character span) is that
score over the whole-entity one, ≥ 1 (``passage_weight`` < 1 takes only that share of the gain).
Both are of the prompt's own terms: with expansion or feedback on, the factor multiplies their
terms too.

Measured (off by default: ``passage_words=0``): on the everyday questions' choosing half (A,
``benchmarks/everyday.py --split``) every width tried lowered MRR@10 (0.599 with it off; W=40:
0.455, 80: 0.490, 150: 0.555; with passage_weight=0.5: 0.510 / 0.539 / 0.556), on half B it
rose a little (0.588 -> 0.614 at W=80, weight 0.5): long prose sections and pages that say the
prompt's words in one paragraph overtake the API entries the questions expect. On the judged
collections no width changed nDCG@10 significantly (SciFact's train queries 0.7034 -> 0.7005 /
0.7048 at W=50 / 100, Cranfield 0.3940 -> 0.3885 / 0.3925, CACM 0.5330 -> 0.5410 / 0.5317; paired
randomization p >= 0.18).

Word positions are not stored (they would double the model): the candidates' texts are
re-tokenized with the build's analyzer and clause rule (answer/citations.py), as citations are,
so a window counts exactly the occurrences the counting pass counted (a letter multitoken, "vitamin
A", at the word next to its letter: the letter is not a word of the window). A window may start at any
occurrence of a matched multitoken (an optimal window can always be moved right until its first
word is one, losing none), so only those starts are tried.
"""

from __future__ import annotations

import numpy as np

from .rank import FIELD_WEIGHTS, idf

__all__ = ["Factors", "passage_factor"]


class Factors(dict):
    """An answer's score factors, ``{name: per-entity multiplier}``, and the character span of the
    best passage of each entity that ``best passage`` raises (``spans``, for ``why``)."""

    def __init__(self):
        super().__init__()
        self.spans: dict[int, tuple[int, int]] = {}


def _best_docs(scores: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` best positive scores' entities, ties at the cut by entity order (ascending ids)."""
    docs = np.flatnonzero(scores > 0)
    if len(docs) > n:
        s = scores[docs]
        kth = -np.partition(-s, n - 1)[n - 1]
        above = docs[s > kth]
        docs = np.concatenate([above, docs[s == kth][:n - len(above)]])
    return np.sort(docs)


def _occurrences(stems: np.ndarray, clauses: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
    """Word positions where the multitoken of stem ids ``key`` starts (its words consecutive, in
    one clause: the counting pass's rule)."""
    n = len(key)
    if n == 1:
        return np.flatnonzero(stems == key[0])
    m = len(stems) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    ok = stems[:m] == key[0]
    for j in range(1, n):
        ok &= (stems[j:j + m] == key[j]) & (clauses[j:j + m] == clauses[:m])
    return np.flatnonzero(ok)


def passage_factor(model, plan, scores: np.ndarray, scorer, params: dict):
    """``(factor, spans)``: the per-entity multiplier of the best passage (module notes) and, for
    each entity it raises, the window's ``(start, end)`` characters in its text; None when
    ``passage_words`` is 0 or no entity gains."""
    width = int(params["passage_words"])
    terms = plan.active()
    if width <= 0 or not terms or params["passage_weight"] <= 0:
        return None
    from ..answer.citations import _letter_pairs, _words

    m = model
    docs = _best_docs(scores, int(params["passage_pool"]))
    docs = docs[np.asarray(m.tables.doc_len[docs, 0], dtype=np.int64) > width] if len(docs) else docs
    if not len(docs):
        return None
    fw = np.array([1.0] + [params[p] for p in FIELD_WEIGHTS])
    k1, b = float(params["k1"]), float(params["b"])
    avg = max(m.avg_len(tuple(fw.tolist())), 1e-9)
    lens = np.asarray(m.tables.doc_len[docs], dtype=np.float64)
    other_len = lens[:, 1:] @ fw[1:]
    norm = k1 * (1.0 - b + b * (width + other_len) / avg)  # the window's length norm, per entity
    w = np.asarray([t.weight for t in terms]) * idf(m, [t.mt for t in terms])
    # the fields other than the text count for every window: their weighted tf, per entity and term
    other_tf = np.stack([scorer.term_tf(t.mt, docs)[:, 1:] @ fw[1:] for t in terms], axis=1)
    keys = [tuple(int(x) for x in m.tables.mt_words[t.mt] if x >= 0) for t in terms]
    letter_ids = {m.tables.stem_ids.get(x, -1) for x in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"} - {-1} \
        if getattr(m.analyzer, "letters", False) else set()
    letter_terms = [j for j, k in enumerate(keys) if len(k) == 2 and letter_ids.intersection(k)]
    groups: dict[int, list[int]] = {}
    free: list[int] = []
    for j, t in enumerate(terms):
        (groups.setdefault(t.stretch, []) if t.stretch is not None else free).append(j)
    kp1 = k1 + 1.0
    lam = float(params["passage_weight"])
    factor = np.ones(len(scores))
    spans = {}
    for i, d in enumerate(docs.tolist()):
        text = m.entity_at(d).text
        words = _words(m, text)
        if len(words) <= width:
            continue
        stems = np.fromiter((x[0] for x in words), dtype=np.int64, count=len(words))
        clauses = np.fromiter((x[3] for x in words), dtype=np.int64, count=len(words))
        pos = [_occurrences(stems, clauses, k) for k in keys]
        if letter_terms:  # "vitamin A": a letter multitoken at its content word (the letter is no word)
            at = np.fromiter((x[1] for x in words), dtype=np.int64, count=len(words))
            found: dict[tuple, list[int]] = {}
            for key, start, _ in _letter_pairs(m, text):
                found.setdefault(key, []).append(int(np.searchsorted(at, start)))
            for j in letter_terms:
                pos[j] = np.unique(np.minimum(np.asarray(found.get(keys[j], []), dtype=np.int64), len(words) - 1))
        # no match in the text (the title's only): every window scores alike, the first one stands for them
        starts = np.unique(np.concatenate(pos)) if any(len(p) for p in pos) else np.zeros(1, dtype=np.int64)
        starts = np.minimum(starts, len(words) - width)  # a window near the end: the last W words
        tf = np.stack([np.searchsorted(p, starts + width) - np.searchsorted(p, starts) for p in pos])
        tf = tf + other_tf[i][:, None]
        part = w[:, None] * tf * kp1 / (tf + norm[i])  # (terms, windows)
        total = part[free].sum(axis=0) if free else np.zeros(len(starts))
        for cols in groups.values():
            total = total + part[cols].max(axis=0)
        best = int(np.argmax(total))
        whole = float(scores[d])
        if total[best] > whole > 0:
            factor[d] = 1.0 + lam * (total[best] / whole - 1.0)
            s = int(starts[best])
            spans[d] = (words[s][1], words[min(s + width, len(words)) - 1][2])
    if not spans:
        return None
    return factor, spans
