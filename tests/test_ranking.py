"""The tablelm ranker's query-side weights: damped query term frequency and phrase stretches.

Checked against their definitions on a real SciFact slice: the plan's weights are
(k3+1)qtf/(k3+qtf) times the single-mention weights, a stretch of overlapping phrases adds
its best phrase per entity (max, not sum), and ``why`` still adds up to the score.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tablelm.query.rank import Scorer


def _prompt_with_a_stretch(model):
    """A title of the slice whose plan has a stretch of two or more overlapping phrases."""
    for i in range(model.n_docs):
        title = model.entity_at(i).title
        plan = model._planner.plan(title, model.params())
        sizes = Counter(t.stretch for t in plan.active() if t.stretch is not None)
        if sizes and max(sizes.values()) >= 2:
            return title, plan
    pytest.skip("no title of the slice has overlapping phrases")


def test_repeated_words_weigh_more_with_bm25_saturation(scifact_model):
    m = scifact_model
    once = m._planner.plan("vitamin deficiency tuberculosis", m.params())
    twice = m._planner.plan("vitamin deficiency tuberculosis vitamin", m.params(qtf_k3=10.0))
    flat = m._planner.plan("vitamin deficiency tuberculosis vitamin", m.params(qtf_k3=0.0))
    w1 = {t.text: t.weight for t in once.terms}
    w2 = {t.text: (t.weight, t.qtf) for t in twice.terms}
    assert w2["vitamin"] == (pytest.approx(w1["vitamin"] * 11 * 2 / 12), 2)
    assert w2["deficiency"] == (pytest.approx(w1["deficiency"]), 1)
    # k3 = 0: said once or twice, the same weight (the old behaviour)
    assert {t.text: t.weight for t in flat.terms} == pytest.approx(w1)
    assert [t.to_dict().get("qtf") for t in twice.terms if t.text == "vitamin"] == [2]


def test_qtf_factor_saturates_towards_k3_plus_one(scifact_model):
    m = scifact_model
    base = {t.text: t.weight for t in m._planner.plan("vitamin", m.params(qtf_k3=3.0)).terms}["vitamin"]
    for q in (2, 5, 40):
        plan = m._planner.plan(" ".join(["vitamin"] * q), m.params(qtf_k3=3.0))
        (t,) = [t for t in plan.terms if t.text == "vitamin"]
        assert t.qtf == q and t.weight == pytest.approx(base * 4 * q / (3 + q)) and t.weight < 4 * base


def test_a_stretch_counts_its_best_phrase_once(scifact_model):
    m = scifact_model
    prompt, plan = _prompt_with_a_stretch(m)
    p_stretch = m.params(phrase_mode="stretch")
    p_each = m.params(phrase_mode="each")
    each_plan = m._planner.plan(prompt, p_each)
    assert all(t.stretch is None for t in each_plan.terms)
    active = plan.active()
    assert [t.weight for t in active] == pytest.approx([t.weight for t in each_plan.active()])
    s_stretch = Scorer(m, p_stretch).tablelm(active)
    s_each = Scorer(m, p_each).tablelm(each_plan.active())
    assert np.all(s_stretch <= s_each + 1e-12) and s_stretch.max() > 0
    # the definition, term by term: words add up, each stretch adds its best phrase
    docs = np.flatnonzero(s_each > 0)
    per_term = Scorer(m, p_each).explain(each_plan.active(), docs)
    cols = {}
    for j, t in enumerate(active):
        cols.setdefault(t.stretch if t.stretch is not None else ("word", j), []).append(j)
    expected = sum(per_term[:, c].max(axis=1) for c in cols.values())
    assert s_stretch[docs] == pytest.approx(expected)
    # why adds up: explain's rows are the scores, one phrase per stretch and entity
    contrib = Scorer(m, p_stretch).explain(active, docs)
    assert contrib.sum(axis=1) == pytest.approx(s_stretch[docs])
    for c in cols.values():
        assert ((contrib[:, c] > 0).sum(axis=1) <= 1).all() or len(c) == 1


def test_the_card_says_qtf_and_best_of(scifact_model):
    m = scifact_model
    prompt, _ = _prompt_with_a_stretch(m)
    answer = m.ask(prompt + " " + prompt, k=3)
    why = [w for c in answer.cards for w in c.why]
    assert any(w.get("qtf") == 2 for w in why)
    assert any(w.get("best_of", 0) >= 2 for w in why)
    for card in answer.cards:  # contributions still add up to the score
        assert sum(w["contribution"] for w in card.why) == pytest.approx(card.score, rel=1e-4)
