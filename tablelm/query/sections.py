"""Embeddings (PMI neighbours) and the answer's sections.

Embeddings are not vectors: the embedding of multitoken A is the variable-length
list of multitokens B that occur near A (the pairs table), weighted by PMI,
derived at query time from raw counts so that ``pmi``, ``min_pmi`` and
``nab_min`` can change on every call:

- ``sqrt``: n_AB / sqrt(n_A · n_B) (the xLLM reference formula);
- ``log2``: log2(W · n_AB / (n_A · n_B)), W the number of words in the corpus
  (Church & Hanks, "Word association norms, mutual information, and
  lexicography", 1990).

Sections group what the context tables say about the distilled prompt
multitokens: each label (category, tag, title, related item) scores
Σ_t idf(t) · (1 + ln count(t, label)), over the prompt multitokens t linked to it
strongly enough: count(t, label) ≥ ``section_min_count`` and

    log PMI(t, label) = ln(T · count(t, label) / (count(t, ·) · count(·, label))) ≥ ``section_min_pmi``

(T the total count of the context table; Church & Hanks 1990 again). Without it a label that
goes with everything (the tag "method", the glossary every page links to) or a label reached
through one generic word ("get current" → ``inspect`` functions) fills the section.

Follow-up prompts (the embeddings section) must read like prompts: words of letters only,
more than one letter to most words, a corpus count of at least ``section_min_count``, not one
common word, and not a phrase inside (or around) one already shown.
"""

from __future__ import annotations

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
    n_a = float(model.tables.mt_total[mt])
    n_b = model.tables.mt_total[cols].astype(np.float64)
    if params["pmi"] == "sqrt":
        pmi = n_ab / np.sqrt(np.maximum(n_a * n_b, 1.0))
    else:
        pmi = np.log2(np.maximum(model.tables.n_words * n_ab, 1.0) / np.maximum(n_a * n_b, 1.0))
    ok = (n_ab >= params["nab_min"]) & (pmi >= params["min_pmi"]) & \
        (model.tables.mt_len[cols] >= params["embedding_values_min_size"])
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


def embedding_rows(model, plan, params: dict) -> list[dict]:
    """Related multitokens of the prompt's multitokens: suggested follow-up prompts."""
    t_ = model.tables
    limit = params["max_rows"]
    keys = [t for t in plan.terms if t.role in ("prompt", "forced") and t.n >= params["embedding_key_min_size"]]
    in_prompt = {t.mt for t in plan.terms}
    prompt_words = {int(w) for t in plan.terms for w in t_.mt_words[t.mt] if w >= 0}
    floor = params["section_min_count"]
    best: dict[int, dict] = {}
    for t in keys:
        for mt, pmi, n_ab in neighbours(model, t.mt, params, 4 * limit + len(in_prompt)):
            if mt in in_prompt or t_.mt_total[mt] < floor:
                continue
            words = {int(w) for w in t_.mt_words[mt] if w >= 0}
            if words <= prompt_words:
                continue  # only words of the prompt: nothing to follow up
            text = t_.display(mt)
            if not readable(text):
                continue
            if len(words) == 1 and int(t_.df([mt])[0]) * 100 > t_.n_docs:
                continue  # one common word ("list", "want") is no follow-up
            if mt not in best or pmi > best[mt]["pmi"]:
                best[mt] = {"multitoken": text, "pmi": round(pmi, 6), "n_ab": n_ab, "via": [t.text]}
    rows: list[dict] = []
    for r in sorted(best.values(), key=lambda r: (-r["pmi"], r["multitoken"])):
        # "convert tz", "convert tz time", "convert tz time zone": one of them is enough
        mine = f" {r['multitoken']} "
        if any(mine in f" {o['multitoken']} " or f" {o['multitoken']} " in mine for o in rows):
            continue
        rows.append(r)
        if len(rows) >= limit:
            break
    return rows


def context_terms(plan, params: dict):
    """The prompt multitokens that feed the context sections."""
    return [t for t in plan.terms if t.role in ("prompt", "forced") and t.n >= params["context_multitoken_min_size"]]


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


def context_rows(model, plan, name: str, params: dict) -> list[dict]:
    table = _TABLE[name]
    terms = context_terms(plan, params)
    names = model.tables.context(table).names
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


def build_sections(model, plan, params: dict) -> dict:
    out = {}
    for name in params["sections"]:
        if name == "embeddings":
            out[name] = embedding_rows(model, plan, params)
        else:
            out[name] = context_rows(model, plan, name, params)
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
