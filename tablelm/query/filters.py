"""Which entities an answer leaves out: ``!word`` exclusions, "exact phrases", category/tag filters.

* ``!word``: the entities whose postings hold the word's stem, as the reference does; when a
  prompt word has the same stem ("public conference !publication"), only the entities whose
  own text contains the excluded word itself (whole word, any case) among the scored ones, so
  an exclusion never empties the prompt.
* ``"exact phrase"``: the entities that do not contain the phrase's multitoken.
* ``filter`` (``category=json``, ``tag=example``, or a bare name for either): the entities
  with no category (at any level of its path, or its last part) or tag of that name; several
  filters must all hold.
"""

from __future__ import annotations

import re

import numpy as np

#: Most scored entities checked word by word for an exclusion that shares a prompt word's stem.
MAX_EXACT_CHECKS = 5000
#: Top scored entities whose text is checked for a letter phrase ("vitamin A"). 200 cost SciFact's batch
#: search 2.5-3x its queries/s for +0.002 nDCG@10 (not significant); 100 left its nDCG@10 as without
#: letter phrases (0.707) at about half that cost.
MAX_LETTER_CHECKS = 100
_TABLES = {"category": ("category",), "tag": ("tags",), "tags": ("tags",), "": ("category", "tags")}


def _postings(model, mt: int) -> np.ndarray:
    return model.tables.postings(mt)[0]


def parse_filter(item: str) -> tuple[str, str]:
    """``"category=json"`` -> ``("category", "json")``; a bare name is ``("", name)``."""
    key, sep, value = item.partition("=")
    if not sep:
        return "", item.strip()
    key = key.strip().lower()
    if key not in _TABLES:
        from ..errors import ParamError

        raise ParamError(f"The 'filter' parameter takes category=NAME or tag=NAME (or NAME for either). "
                         f"Got {item!r}.")
    return key, value.strip()


def _label_ids(model, table: str, name: str) -> np.ndarray:
    """Labels of a context table equal to ``name`` (any case), or whose last path part is it
    (or starts with it and a dash: Sphinx's module pages, "csv — CSV File Reading and Writing")."""
    want = name.casefold()
    out = []
    for i, lab in enumerate(model.tables.context(table).names):
        last = lab.rsplit(" > ", 1)[-1].casefold()
        if lab.casefold() == want or last == want or last.startswith((want + " \u2014 ", want + " - ")):
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def filter_mask(model, filters) -> np.ndarray | None:
    """Entities that pass every filter (True), or None when there is no filter."""
    if not filters:
        return None
    keep = np.ones(model.n_docs, dtype=bool)
    for item in filters:
        key, name = parse_filter(item)
        ok = np.zeros(model.n_docs, dtype=bool)
        for table in _TABLES[key]:
            labels = _label_ids(model, table, name)
            if not len(labels):
                continue
            ctx = model.tables.context(table)
            indptr, doc_labels = ctx.doc_indptr, np.asarray(ctx.doc_labels, dtype=np.int64)
            owner = np.repeat(np.arange(model.n_docs), np.diff(indptr))
            ok[owner[np.isin(doc_labels, labels)]] = True
        keep &= ok
    return keep


def excluded_entities(model, plan, scores: np.ndarray) -> np.ndarray | None:
    """Indices of the entities the answer must leave out (see the module notes), or None."""
    parts = []
    for sid, word, shares_stem in plan.exclusions:
        docs = _postings(model, sid)
        if shares_stem:
            docs = docs[scores[docs] > 0]
            if len(docs) > MAX_EXACT_CHECKS:
                docs = docs[np.argsort(-scores[docs], kind="stable")[:MAX_EXACT_CHECKS]]
            pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
            docs = np.asarray([d for d in docs.tolist() if _mentions(model, d, pattern)], dtype=np.int64)
        parts.append(docs)
    keep = filter_mask(model, plan.filters)
    for mt in plan.required_mts:
        has = np.zeros(model.n_docs, dtype=bool)
        has[_postings(model, mt)] = True
        keep = has if keep is None else keep & has
    if keep is not None:
        parts.append(np.flatnonzero(~keep))
    if not parts:
        return None
    return np.unique(np.concatenate(parts).astype(np.int64))


def letter_factor(model, plan, scores: np.ndarray, scorer) -> np.ndarray | None:
    """Per-entity multiplier for the letter phrases of the prompt (``plan.letter_patterns``).

    Single letters are not indexed, so "vitamin A" scores "vitamin" only. Among the top
    :data:`MAX_LETTER_CHECKS` scored entities, one whose text has the word and the letter next
    to each other ("vitamins A, D", "Vitamin-A", not "vitamin D") scores the word once more, as
    if "vitamin a" were a matched phrase weighing as much as its word (a letter between two
    words, "conventional T cells": the larger of the two): the multiplier is
    (score + that bonus) / score. None when no entity has a letter phrase.
    """
    if not plan.letter_patterns:
        return None
    docs = np.flatnonzero(scores > 0)
    if not len(docs):
        return None
    if len(docs) > MAX_LETTER_CHECKS:
        # the best MAX_LETTER_CHECKS, ties at the cut by entity order (a partition, not a sort of all)
        s = scores[docs]
        kth = -np.partition(-s, MAX_LETTER_CHECKS - 1)[MAX_LETTER_CHECKS - 1]
        above = docs[s > kth]
        docs = np.concatenate([above, docs[s == kth][:MAX_LETTER_CHECKS - len(above)]])
    bonus = letter_bonus(model, plan, docs, scorer)
    if not bonus.any():
        return None
    factor = np.ones(len(scores))
    hit = docs[bonus > 0]
    factor[hit] = (scores[hit] + bonus[bonus > 0]) / scores[hit]
    return factor


def letter_bonus(model, plan, docs: np.ndarray, scorer) -> np.ndarray:
    """The letter phrases' bonus of each entity of ``docs`` (see :func:`letter_factor`; 0: none)."""
    from .plan import Term

    bonus = np.zeros(len(docs))
    sides = [(i, pattern, sid, alone) for i, letter in enumerate(plan.letter_patterns)
             for pattern, sid, alone in letter if sid >= 0]
    if not sides or not len(docs):
        return bonus
    # each side's word: its own score in each entity (the term sum of the word alone), one column a side
    words = scorer.explain([Term(sid, "", 1, "prompt", 1.0) for _, _, sid, _ in sides], docs)
    # the raw records (title, text, labels; JSON with ensure_ascii=False: no parse) of the entities
    # a side's word is in, fetched together
    need = np.flatnonzero((words > 0).any(axis=1))
    records = dict(zip(need.tolist(), model.entity_records(docs[need])))
    for i in range(len(plan.letter_patterns)):  # one letter: the larger bonus of the words it is next to
        best = [0.0] * len(docs)
        stands: dict[int, bool] = {}  # per entity: whether the letter stands alone in it (its sides share it)
        for c, (owner, pattern, _, alone) in enumerate(sides):
            if owner != i:
                continue
            for j, w in enumerate(words[:, c].tolist()):
                if w <= best[j]:
                    continue
                text = records[j]
                ok = stands.get(j)
                if ok is None:
                    ok = stands[j] = alone.search(text) is not None
                if ok and pattern.search(text):
                    best[j] = w
        bonus += np.asarray(best)
    return bonus


def rescore_letters(model, plan, idx: np.ndarray, scores: np.ndarray, scorer, k: int):
    """The top ``k`` (entities, scores) with the letter factor applied, from the top ``max(k,
    MAX_LETTER_CHECKS)`` without it (``idx``, ``scores``: best first, ties by entity order, as
    ``top_k`` gives them). The factor only raises the first MAX_LETTER_CHECKS, which rank above
    every entity left out, so this is the top ``k`` of the dense scores times
    :func:`letter_factor`, float for float."""
    n = min(len(idx), MAX_LETTER_CHECKS)
    if not plan.letter_patterns or not n:
        return idx[:k], scores[:k]
    bonus = letter_bonus(model, plan, idx[:n], scorer)
    if not bonus.any():
        return idx[:k], scores[:k]
    scores = np.array(scores, dtype=np.float64)
    hit = np.flatnonzero(bonus > 0)
    s = scores[hit]
    scores[hit] = s * ((s + bonus[hit]) / s)  # as scores * letter_factor
    order = np.lexsort((idx, -scores))[:k]
    return idx[order], scores[order]


def _mentions(model, d: int, pattern) -> bool:
    e = model.entity_at(d)
    return any(pattern.search(x) for x in (e.title, e.text, *e.category, *e.tags))
