"""Query expansion: PMI neighbours (embeddings) and pseudo-relevance feedback.

Both add weighted terms to the plan (roles ``expansion`` and ``feedback``, shown in the
answer's plan) and rescore with the same ranker, so an expanded answer explains itself
like any other.
"""

from __future__ import annotations

import numpy as np

from .plan import Term
from .rank import field_weights, idf, top_k
from .sections import neighbours


def expand(model, plan, scorer, scores, params):
    """Add PMI neighbours and pseudo-relevance-feedback terms to the plan and rescore."""
    present = {t.mt for t in plan.terms}
    extra: list[Term] = []
    if params["expansion_weight"] > 0:
        for t in [t for t in plan.terms if t.role in ("prompt", "forced")
                  and t.n >= params["embedding_key_min_size"]]:
            nb = neighbours(model, t.mt, params, params["expansion_terms"] + len(present))
            top = max((v for _, v, _ in nb), default=1.0) or 1.0
            for mt, v, _ in nb:
                if mt not in present and len(extra) < 10 * params["expansion_terms"]:
                    present.add(mt)
                    extra.append(Term(mt, model.tables.display(mt), int(model.tables.mt_len[mt]), "expansion",
                                      params["expansion_weight"] * v / top, via=t.text))
    if params["prf_weight"] > 0:
        extra += feedback_terms(model, scores, present, params)
    if not extra:
        return scores
    plan.terms.extend(extra)
    return scores + scorer.tablelm(extra)


def feedback_terms(model, scores, present, params):
    """Terms that characterize the top answers: pseudo-relevance feedback over the tables.

    Relevance model RM3 (Lavrenko & Croft, "Relevance-based language models", SIGIR 2001;
    Abdul-Jaleel et al., UMass at TREC 2004): P(t|R) ∝ Σ_d score(d) · tf(t, d) / |d| over the
    ``prf_docs`` best entities, here multiplied by idf(t) so that corpus-wide words do not win,
    read from the forward index (entity → postings) instead of re-reading texts.
    """
    top = top_k(scores, params["prf_docs"])
    if len(top) == 0:
        return []
    w_doc = scores[top] / scores[top].sum()
    fw_mt, fw_post, fw_ptr = model.tables.fwd_mt, model.tables.fwd_post, model.tables.fwd_indptr
    lens = fw_ptr[top + 1] - fw_ptr[top]
    idx = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(fw_ptr[top], lens)
    mts = fw_mt[idx].astype(np.int64)
    tf = model.tables.post_tf[fw_post[idx]].astype(np.float64) @ field_weights(params)
    dl = np.maximum(np.repeat(model.doc_len_weighted(tuple(field_weights(params)))[top], lens), 1.0)
    val = np.repeat(w_doc, lens) * tf / dl
    keep = np.ones(len(mts), dtype=bool)
    if present:
        keep &= ~np.isin(mts, np.fromiter(present, dtype=np.int64))
    keep &= model.tables.mt_len[mts] == 1  # single words: phrases of the top entities say less about the topic
    mts, val = mts[keep], val[keep]
    if len(mts) == 0:
        return []
    uniq, inv = np.unique(mts, return_inverse=True)
    weight = np.bincount(inv, weights=val) * idf(model, uniq.tolist())
    order = np.lexsort((uniq, -weight))[: params["prf_terms"]]
    best, top_w = uniq[order], weight[order[0]]
    return [Term(int(mt), model.tables.display(int(mt)), int(model.tables.mt_len[mt]), "feedback",
                 params["prf_weight"] * float(w) / top_w) for mt, w in zip(best, weight[order])]
