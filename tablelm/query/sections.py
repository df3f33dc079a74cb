"""Embeddings (PMI neighbours) and the answer's sections.

Embeddings are not vectors: the embedding of multitoken A is the variable-length
list of multitokens B that occur near A (the pairs table), weighted by PMI,
derived at query time from raw counts so that ``pmi``, ``min_pmi`` and
``nab_min`` can change on every call:

- ``sqrt``: n_AB / sqrt(n_A · n_B) (the xLLM reference formula);
- ``log2``: log2(W · n_AB / (n_A · n_B)), W the number of words in the corpus
  (Church & Hanks, "Word association norms, mutual information, and
  lexicography", 1990).

Sections group what the context tables say about the prompt multitokens that the
answer's cards contain (those that contributed to a card's score, contained ones too:
"get current", matched but in no card, does not fill the sections of "how to get the
current date and time"; the distilled multitokens when the cards carry no contributions,
as with the reference ranker): each label (category, tag, title, related item) scores
Σ_t idf(t) · (1 + ln count(t, label)), over those multitokens t linked to it strongly
enough: count(t, label) ≥ ``section_min_count`` and

    log PMI(t, label) = ln(T · count(t, label) / (count(t, ·) · count(·, label))) ≥ ``section_min_pmi``

(T the total count of the context table; Church & Hanks 1990 again). Without it a label that
goes with everything (the tag "method", the glossary every page links to) or a label reached
through one generic word ("get current" → ``inspect`` functions) fills the section.

Follow-up prompts (the embeddings section) score Σ_t share(t) · pmi(t, follow-up) over the same
multitokens, share(t) being t's part of the cards' scores, and must read like prompts: words of letters only,
more than one letter to most words, a corpus count of at least ``section_min_count``, not one
common word, and not a phrase inside (or around) one already shown.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from .rank import gather, idf

CONTEXT_SECTIONS = ("categories", "tags", "titles", "related")
_TABLE = {"categories": "category", "tags": "tags", "titles": "titles", "related": "related"}


def neighbours(model, mt: int, params: dict, limit: int) -> list[tuple[int, float, int]]:
    """The embedding of ``mt``: up to ``limit`` (multitoken, pmi, n_AB), best first."""
    if limit <= 0:
        return []
    cols, adj, ctx = model.tables.partners(mt)
    if len(cols) == 0:
        return []
    n_ab = adj.astype(np.float64) + ctx
    keep = np.flatnonzero(n_ab >= params["nab_min"])  # first: most pairs occur once, and the gathers
    cols, n_ab = cols[keep], n_ab[keep]               # below are the cost (a common word's partners)
    n_a = float(model.tables.mt_total[mt])
    n_b = model.tables.mt_total[cols].astype(np.float64)
    if params["pmi"] == "sqrt":
        pmi = n_ab / np.sqrt(np.maximum(n_a * n_b, 1.0))
    else:
        pmi = np.log2(np.maximum(model.tables.n_words * n_ab, 1.0) / np.maximum(n_a * n_b, 1.0))
    ok = (pmi >= params["min_pmi"]) & (model.tables.mt_len[cols] >= params["embedding_values_min_size"])
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return []
    order = np.lexsort((cols[idx], -pmi[idx]))[:limit]
    idx = idx[order]
    return [(int(c), float(v), int(n)) for c, v, n in zip(cols[idx], pmi[idx], n_ab[idx])]


def readable(text: str) -> bool:
    """A follow-up prompt a person would type: words of letters (``u1234`` and ``none`` of
    ``parser none`` in code are not), and more than one letter to most words."""
    words = text.split()
    return bool(words) and all(w.isalpha() for w in words) and sum(len(w) > 1 for w in words) * 2 > len(words)


#: a contained prompt word with more links than this (partners in the pairs table, labels in a
#: context table) feeds no section: a common word links to everything ("python": 317,359 partners
#: at 1M documents), and reading its links costs ~5 ms a table
MAX_LINKS = 20_000


def embedding_rows(model, plan, params: dict, shares: dict | None = None) -> list[dict]:
    """Related multitokens of the prompt's multitokens: suggested follow-up prompts.

    With ``shares`` (:func:`answer_shares`), the keys are the prompt multitokens that carry the
    answer, and a follow-up scores Σ_key share(key) · pmi(key, follow-up): one that goes with
    what the answer is about, not with another sense of one word ("current" → "voltage")."""
    t_ = model.tables
    limit = params["max_rows"]
    keys = section_terms(plan, params, shares, params["embedding_key_min_size"])
    keys = [t for t in keys if t.role != "contained" or t_.n_partners(t.mt) <= MAX_LINKS]
    in_prompt = {t.mt for t in plan.terms}
    prompt_words = {int(w) for t in plan.terms for w in t_.mt_words[t.mt] if w >= 0}
    floor = params["section_min_count"]
    found = []  # (key, multitoken, pmi, n_ab): each key's neighbours, best first
    for t in keys:
        found += [(t, mt, pmi, n_ab) for mt, pmi, n_ab in neighbours(model, t.mt, params, 4 * limit + len(in_prompt))
                  if mt not in in_prompt]
    shown = _eligible(t_, sorted({f[1] for f in found}), prompt_words, floor)
    best: dict[int, dict] = {}
    for t, mt, pmi, n_ab in found:
        if mt not in shown:
            continue
        row = best.get(mt)
        if row is None:
            weight = 1.0 if shares is None else shares[t.mt]
            best[mt] = {"score": weight * pmi, "pmi": pmi, "n_ab": n_ab, "via": [t.text]}
        elif shares is None:  # the best key's PMI
            if pmi > row["pmi"]:
                best[mt] = {"score": pmi, "pmi": pmi, "n_ab": n_ab, "via": [t.text]}
        else:  # the keys' shares add up
            row["score"] += shares[t.mt] * pmi
            row["pmi"], row["n_ab"] = max(row["pmi"], pmi), max(row["n_ab"], n_ab)
            row["via"].append(t.text)
    for r in best.values():
        r["score"], r["pmi"] = round(r["score"], 6), round(r["pmi"], 6)
    rows: list[dict] = []
    # best first, ties by their text: a multitoken's text is made only when its score can be shown
    by_score = sorted(best, key=lambda mt: -best[mt]["score"])
    for _, group in itertools.groupby(by_score, key=lambda mt: best[mt]["score"]):
        texts = [(t_.display(mt), mt) for mt in group]
        for text, mt in sorted((text, mt) for text, mt in texts if readable(text)):
            # "convert tz", "convert tz time", "convert tz time zone": one of them is enough
            mine = f" {text} "
            if any(mine in f" {o['multitoken']} " or f" {o['multitoken']} " in mine for o in rows):
                continue
            rows.append({"multitoken": text, **best[mt]})
            if len(rows) >= limit:
                return rows
    return rows


def _eligible(t_, cands: list[int], prompt_words: set[int], floor: int) -> set[int]:
    """The candidate follow-ups that may be shown if readable: counted at least ``floor`` times,
    a word beyond the prompt's, not one common word. The tables are read for all candidates at
    once (a read per candidate cost ~0.1 ms at 1M)."""
    if not cands:
        return set()
    mts = np.asarray(cands, dtype=np.int64)
    total = np.asarray(t_.mt_total[mts])
    rows = np.asarray(t_.mt_words[mts]).tolist()
    df = t_.df(mts).tolist()
    out = set()
    for j, mt in enumerate(cands):
        words = {w for w in rows[j] if w >= 0}
        if total[j] < floor or words <= prompt_words:
            continue  # rare, or only words of the prompt: nothing to follow up
        if len(words) == 1 and df[j] * 100 > t_.n_docs:
            continue  # one common word ("list", "want") is no follow-up
        out.add(mt)
    return out


def context_terms(plan, params: dict):
    """The prompt multitokens that feed the context sections."""
    return [t for t in plan.terms if t.role in ("prompt", "forced") and t.n >= params["context_multitoken_min_size"]]


#: roles of the plan's terms that come from the prompt itself (not expansion or feedback)
PROMPT_ROLES = ("prompt", "forced", "contained")


def answer_shares(plan, cards) -> dict[int, float] | None:
    """Each prompt multitoken's share of the answer: the sum of its contributions to the cards'
    scores over the sum of all of them (``why``). None when the cards carry no contributions
    (the reference ranker, no card): the sections then follow the prompt's multitokens alone."""
    mt_of = {t.text: t.mt for t in plan.terms if t.role in PROMPT_ROLES}
    sums: dict[int, float] = {}
    total = 0.0
    for card in cards:
        for item in card.why:
            value = item.get("contribution")
            if value is None:
                return None
            total += value
            mt = mt_of.get(item["multitoken"])
            if mt is not None:
                sums[mt] = sums.get(mt, 0.0) + value
    if total <= 0:
        return None
    return {mt: v / total for mt, v in sums.items()}


def section_terms(plan, params: dict, shares: dict | None, min_size: int):
    """The prompt multitokens that feed a section: with the answer's ``shares``, those of the
    prompt (contained ones too) that the answer's cards contain; else the distilled ones."""
    if shares is None:
        return [t for t in plan.terms if t.role in ("prompt", "forced") and t.n >= min_size]
    return [t for t in plan.terms if t.role in PROMPT_ROLES and t.n >= min_size and shares.get(t.mt, 0.0) > 0]


def label_scores(model, table: str, terms):
    """Σ_t idf(t)·count(t, label) and Σ_t count(t, label) for every label of a context table."""
    ctx = model.tables.context(table)
    n_lab = len(ctx.names)
    if not terms or n_lab == 0:
        return np.zeros(n_lab), np.zeros(n_lab), None
    term, idx = gather(ctx.indptr, [t.mt for t in terms])
    labels = np.asarray(ctx.labels[idx], dtype=np.int64)
    counts = np.asarray(ctx.counts[idx], dtype=np.float64)
    # log-damped counts: a label is relevant when many prompt multitokens point to it, not when
    # one of them is repeated in a long entity
    w = idf(model, [t.mt for t in terms])[term] * (1.0 + np.log(np.maximum(counts, 1.0)))
    return (np.bincount(labels, weights=w, minlength=n_lab),
            np.bincount(labels, weights=counts, minlength=n_lab), (term, labels))


@lru_cache(maxsize=16)
def _label_totals(model, table: str) -> tuple[np.ndarray, float]:
    """count(·, label) of every label of a context table, and the table's total T (cached)."""
    ctx = model.tables.context(table)
    stored = getattr(model.tables, "arrays", {}).get(f"ctx_{table}_totals")
    if stored is not None:  # the build's sums (format 6): the same integers, so the same floats
        totals = np.asarray(stored, dtype=np.float64)
        return totals, float(totals.sum())
    labels, counts = ctx.labels, ctx.counts
    totals = np.zeros(len(ctx.names))
    # in slices: no copy of the whole table in int64 and float64 (400 MB, 1 s at 1M entities), and
    # the same floats: the counts are integers, whose sums float64 holds exactly in any order
    for a in range(0, len(labels), _SLICE):
        totals += np.bincount(np.asarray(labels[a:a + _SLICE], dtype=np.int64),
                              weights=np.asarray(counts[a:a + _SLICE], dtype=np.float64), minlength=len(ctx.names))
    return totals, float(totals.sum())


_SLICE = 1 << 21  # entries of a context table per bincount in _label_totals


def strong_links(model, table: str, terms, params: dict):
    """The (term index, label, count) links of ``terms`` that pass the count and log PMI floors."""
    ctx = model.tables.context(table)
    term, idx = gather(ctx.indptr, [t.mt for t in terms])
    labels = np.asarray(ctx.labels[idx], dtype=np.int64)
    counts = np.asarray(ctx.counts[idx], dtype=np.float64)
    col, total = _label_totals(model, table)
    row = np.bincount(term, weights=counts, minlength=len(terms))
    pmi = np.log(np.maximum(total * counts, 1e-300) / np.maximum(row[term] * col[labels], 1e-300))
    ok = (counts >= params["section_min_count"]) & (pmi >= params["section_min_pmi"])
    return term[ok], labels[ok], counts[ok]


def context_rows(model, plan, name: str, params: dict, shares: dict | None = None) -> list[dict]:
    """The rows of a context section: labels scoring Σ_t idf(t) · (1 + ln count(t, label)) over the
    strong links of the section's terms (:func:`section_terms`)."""
    table = _TABLE[name]
    ctx = model.tables.context(table)
    terms = [t for t in section_terms(plan, params, shares, params["context_multitoken_min_size"])
             if t.role != "contained" or int(ctx.indptr[t.mt + 1]) - int(ctx.indptr[t.mt]) <= MAX_LINKS]
    names = ctx.names
    if not terms or params["max_rows"] == 0 or len(names) == 0:
        return []
    term, labels, counts = strong_links(model, table, terms, params)
    if len(term) == 0:
        return []
    w = idf(model, [t.mt for t in terms])[term] * (1.0 + np.log(np.maximum(counts, 1.0)))
    score = np.bincount(labels, weights=w, minlength=len(names))
    count = np.bincount(labels, weights=counts, minlength=len(names))
    hits = (term, labels)
    cand = np.flatnonzero(score > 0)
    n_rows = int(params["max_rows"])
    if 0 < n_rows < len(cand):  # the rows are among the labels scoring at least the n-th best score:
        kth = np.partition(score[cand], len(cand) - n_rows)[len(cand) - n_rows]  # sort those only (by name
        cand = cand[score[cand] >= kth]  # for ties), not every label a common word has (10^5 at 1M)
    best = sorted(cand.tolist(), key=lambda lab: (-score[lab], names[lab]))[: params["max_rows"]]
    rows = []
    for lab in best:
        via = sorted({terms[j].text for j in hits[0][hits[1] == lab].tolist()})
        row = {"label": names[lab], "score": round(float(score[lab]), 6), "count": int(count[lab]), "via": via}
        if name == "related":
            target = model.index_of(names[lab])
            if target is not None:
                row["title"] = model.entity_at(target).title
        rows.append(row)
    return rows


def context_factor(model, plan, params: dict) -> np.ndarray | None:
    """Per-entity score factor 1 + w_context · (best score of the entity's categories and tags,
    relative to the best label of the prompt): the knowledge graph's vote for an entity."""
    w = params["w_context"]
    if w <= 0:
        return None
    terms = context_terms(plan, params)
    best = np.zeros(model.n_docs)
    for table in ("category", "tags"):
        score, _, _ = label_scores(model, table, terms)
        if not len(score) or score.max() <= 0:
            continue
        score = score / score.max()
        ctx = model.tables.context(table)
        indptr, labels = ctx.doc_indptr, np.asarray(ctx.doc_labels, dtype=np.int64)
        if len(labels) == 0:
            continue
        has = np.flatnonzero(np.diff(indptr) > 0)
        per_doc = np.maximum.reduceat(score[labels], indptr[has])
        best[has] = np.maximum(best[has], per_doc)
    return 1.0 + w * best


def build_sections(model, plan, params: dict, shares: dict | None = None) -> dict:
    """Every section of ``params['sections']``; ``shares``: :func:`answer_shares` of the answer."""
    out = {}
    for name in params["sections"]:
        if name == "embeddings":
            out[name] = embedding_rows(model, plan, params, shares)
        else:
            out[name] = context_rows(model, plan, name, params, shares)
    return out


def importance_factor(model, params: dict) -> np.ndarray | None:
    """Per-entity prior 1 + w_importance · ln(1 + in-links) / ln(1 + most in-links).

    An entity's in-links are the entities that list it among their related items (the
    knowledge graph's "see also", internal links and docstring references): ``open`` is linked
    from everywhere, ``fileinput.filelineno`` from one page. This is the in-degree form of
    Granville's "new PageRank" for RAG; the log keeps a hub from drowning the text evidence.
    """
    w = params["w_importance"]
    if w <= 0:
        return None

    def compute():
        ctx = model.tables.context("related")
        index = model.tables.indices_of(list(ctx.names))
        targets = index[np.asarray(ctx.doc_labels, dtype=np.int64)] if len(ctx.doc_labels) else np.zeros(0, int)
        inlinks = np.bincount(targets[targets >= 0], minlength=model.n_docs).astype(np.float64)
        top = inlinks.max() if len(inlinks) else 0.0
        return np.log1p(inlinks) / np.log1p(top) if top > 0 else np.zeros(model.n_docs)

    return 1.0 + w * model._cached(("importance",), compute)
