"""Passage scoring (query/passages.py): an entity scored by its best window of words, checked against
a brute force over every window of the real SciFact abstracts."""

from __future__ import annotations

import bisect

import numpy as np
import pytest

from tablelm.answer.citations import _words, find_spans
from tablelm.query.rank import FIELD_WEIGHTS, Scorer, idf


def _brute_force(model, plan, d: int, params: dict) -> float:
    """The best window score of entity ``d``, every start tried, occurrences found by the citations."""
    terms = plan.active()
    e = model.entity_at(d)
    text = e.text
    words = _words(model, text)
    width = params["passage_words"]
    at = [w[1] for w in words]  # a span starts at its first word (a letter multitoken: the word next to it)
    keys = {tuple(int(x) for x in model.tables.mt_words[t.mt] if x >= 0): t.text for t in terms}
    occ = {t.text: [] for t in terms}
    for s, _, mt in find_spans(model, text, keys, max(len(k) for k in keys)):
        occ[mt].append(min(bisect.bisect_left(at, s), len(words) - 1))
    fw = np.array([1.0] + [params[p] for p in FIELD_WEIGHTS])
    scorer = Scorer(model, params)
    other_tf = [float(scorer.term_tf(t.mt, np.array([d]))[0, 1:] @ fw[1:]) for t in terms]
    lens = np.asarray(model.tables.doc_len[d], dtype=np.float64)
    plen = width + float(lens[1:] @ fw[1:])
    k1, b = params["k1"], params["b"]
    norm = k1 * (1 - b + b * plen / model.avg_len(tuple(fw.tolist())))
    w = np.asarray([t.weight for t in terms]) * idf(model, [t.mt for t in terms])
    best = 0.0
    for s in range(0, len(words) - width + 1):
        parts = []
        for j, t in enumerate(terms):
            tf = sum(s <= p < s + width for p in occ[t.text]) + other_tf[j]
            parts.append(w[j] * tf * (k1 + 1) / (tf + norm))
        total = sum(p for j, p in enumerate(parts) if terms[j].stretch is None)
        for g in {t.stretch for t in terms if t.stretch is not None}:
            total += max(p for j, p in enumerate(parts) if terms[j].stretch == g)
        best = max(best, total)
    return best


PROMPT = "vitamin deficiency and bone mineral density in older women"


@pytest.mark.parametrize("prompt, width", [(PROMPT, 40), (PROMPT, 15), ("gene expression in cancer cells", 25),
                                           ("vitamin D and T cells in tuberculosis", 20)])
def test_passage_score_is_the_best_window_and_never_lowers(scifact_model, prompt, width):
    m = scifact_model
    p = m.params(passage_words=width, passage_pool=30)
    plan, _, whole, _, _ = m._rank(prompt, m.params())
    _, _, scores, _, factors = m._rank(prompt, p)
    f = factors["best passage"]
    assert (f >= 1.0).all() and (f > 1.0).sum() >= 3
    # the prior-free score is the whole entity's or its best window's, whichever is higher
    assert np.allclose(scores, whole * f)
    lens = np.asarray(m.tables.doc_len[:, 0])
    assert (f[lens <= width] == 1.0).all()  # an entity of at most W words is its own passage
    pool = np.argsort(-whole, kind="stable")[:30]
    for d in pool[lens[pool] > width].tolist():
        assert scores[d] == pytest.approx(max(whole[d], _brute_force(m, plan, d, p)), rel=1e-9)
    for d in np.flatnonzero(f > 1.0).tolist():
        s, e = factors.spans[d]
        assert len(_words(m, m.entity_at(d).text[s:e])) == width
    # a long entity that is not among the passage_pool best is left as it is
    assert set(np.flatnonzero(f > 1.0).tolist()) <= set(pool.tolist())


def test_passage_weight_takes_a_share_and_zero_words_is_off(scifact_model):
    m = scifact_model
    _, _, whole, _, none = m._rank(PROMPT, m.params())
    assert "best passage" not in none
    _, _, full, _, f1 = m._rank(PROMPT, m.params(passage_words=40))
    _, _, half, _, f2 = m._rank(PROMPT, m.params(passage_words=40, passage_weight=0.5))
    assert np.allclose(f2["best passage"] - 1.0, 0.5 * (f1["best passage"] - 1.0))
    assert np.allclose(half, whole + 0.5 * (full - whole))
    # search (the batch path) and ask rank alike with passages on
    ids = [c.id for c in m.ask(PROMPT, k=10, passage_words=40).cards]
    assert [i for i, _ in m.search(PROMPT, k=10, passage_words=40)] == ids
    assert ids != [i for i, _ in m.search(PROMPT, k=10)]


def test_the_card_says_which_passage_scored(scifact_model):
    a = scifact_model.ask(PROMPT, k=10, passage_words=40)
    shown = [f for c in a.cards for f in c.factors if f["name"] == "best passage"]
    assert shown and all(f["multiplier"] > 1.0 and f["span"][1] > f["span"][0] for f in shown)
    from tablelm.answer.render import render_text

    assert "best passage (characters " in render_text(a, verbose=True)
