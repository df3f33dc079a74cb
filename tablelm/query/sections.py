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
Σ_t idf(t) · count(t, label).
"""

from __future__ import annotations

import numpy as np

from .rank import idf

CONTEXT_SECTIONS = ("categories", "tags", "titles", "related")
_TABLE = {"categories": "category", "tags": "tags", "titles": "titles", "related": "related"}


def neighbours(model, mt: int, params: dict, limit: int) -> list[tuple[int, float, int]]:
    """The embedding of ``mt``: up to ``limit`` (multitoken, pmi, n_AB), best first."""
    s, e = int(model.pair_indptr[mt]), int(model.pair_indptr[mt + 1])
    if e == s or limit <= 0:
        return []
    cols = np.asarray(model.pair_cols[s:e], dtype=np.int64)
    n_ab = model.pair_adj[s:e].astype(np.float64) + model.pair_ctx[s:e]
    n_a = float(model.mt_total[mt])
    n_b = model.mt_total[cols].astype(np.float64)
    if params["pmi"] == "sqrt":
        pmi = n_ab / np.sqrt(np.maximum(n_a * n_b, 1.0))
    else:
        pmi = np.log2(np.maximum(model.n_words * n_ab, 1.0) / np.maximum(n_a * n_b, 1.0))
    ok = (n_ab >= params["nab_min"]) & (pmi >= params["min_pmi"]) & \
        (model.mt_len[cols] >= params["embedding_values_min_size"])
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return []
    order = np.lexsort((cols[idx], -pmi[idx]))[:limit]
    idx = idx[order]
    return [(int(c), float(v), int(n)) for c, v, n in zip(cols[idx], pmi[idx], n_ab[idx])]


def embedding_rows(model, plan, params: dict) -> list[dict]:
    """Related multitokens of the prompt's multitokens: suggested follow-up prompts."""
    limit = params["max_rows"]
    keys = [t for t in plan.terms if t.role in ("prompt", "forced") and t.n >= params["embedding_key_min_size"]]
    in_prompt = {t.mt for t in plan.terms}
    best = {}
    for t in keys:
        for mt, pmi, n_ab in neighbours(model, t.mt, params, limit + len(in_prompt)):
            if mt in in_prompt:
                continue
            if mt not in best or pmi > best[mt]["pmi"]:
                best[mt] = {"multitoken": model.display(mt), "pmi": round(pmi, 6), "n_ab": n_ab, "via": [t.text]}
    rows = sorted(best.values(), key=lambda r: (-r["pmi"], r["multitoken"]))
    return rows[:limit]


def context_rows(model, plan, name: str, params: dict) -> list[dict]:
    table = _TABLE[name]
    terms = [t for t in plan.terms if t.role in ("prompt", "forced")
             and t.n >= params["context_multitoken_min_size"]]
    if not terms or params["max_rows"] == 0:
        return []
    indptr = model.arrays[f"ctx_{table}_indptr"]
    labels = model.arrays[f"ctx_{table}_labels"]
    counts = model.arrays[f"ctx_{table}_counts"]
    weights = idf(model, [t.mt for t in terms])
    score, count, via = {}, {}, {}
    for t, w in zip(terms, weights):
        s, e = int(indptr[t.mt]), int(indptr[t.mt + 1])
        for lab, c in zip(labels[s:e].tolist(), counts[s:e].tolist()):
            score[lab] = score.get(lab, 0.0) + w * c
            count[lab] = count.get(lab, 0) + c
            via.setdefault(lab, []).append(t.text)
    names = model.strings[f"labels_{table}"]
    best = sorted(score, key=lambda lab: (-score[lab], names[lab]))[: params["max_rows"]]
    rows = []
    for lab in best:
        row = {"label": names[lab], "score": round(score[lab], 6), "count": count[lab], "via": via[lab]}
        if name == "related":
            target = model.index_of(names[lab])
            if target is not None:
                row["title"] = model.entity_at(target).title
        rows.append(row)
    return rows


def build_sections(model, plan, params: dict) -> dict:
    out = {}
    for name in params["sections"]:
        if name == "embeddings":
            out[name] = embedding_rows(model, plan, params)
        else:
            out[name] = context_rows(model, plan, name, params)
    return out
