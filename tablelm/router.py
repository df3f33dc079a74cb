"""The router: which sub-models of a split model a prompt goes to, from the counts alone.

No training: the router reads its own table, multitoken → {sub-model → document frequency}
(written by the split build, tablelm/submodels.py). Each matched multitoken ``t`` of the
plan carries the weight the ranker gives it, ``w_t = q_t · idf(t)`` (idf over the scope), and
each sub-model ``s`` holds the share ``df_s(t) / df(t)`` of the entities that contain it. The
sub-model's *coverage* of the prompt is

    coverage(s) = Σ_t w_t · df_s(t) / df(t)  /  Σ_t w_t        (in [0, 1]; the sub-models sum to 1)

the share of the prompt's weighted evidence that lies in ``s``: a sub-model holding most of
the entities that have the rare words of the prompt covers it best. The router asks the
sub-models in order of coverage until those asked hold ``route_coverage`` of the evidence
(0.9 by default: on CACM this keeps nDCG@10 within noise of the unsplit model while asking
about half of the sub-models, docs/submodels.md), at most ``route_max`` of them.
``route="all"`` asks every sub-model of the scope (the unsplit model's answer);
``submodels=[...]`` pins them. A prompt with no matched multitoken has
nothing to route on: every sub-model is asked (none scores anything, at no cost).
"""

from __future__ import annotations

import numpy as np

#: the share of the prompt's evidence the asked sub-models must hold, and the most asked (None: no cap)
DEFAULT_COVERAGE = 0.9
DEFAULT_MAX: int | None = None
#: how a sub-model's coverage is estimated: "pairs" (entities expected to hold two of the prompt's
#: multitokens) or "share" (the share of their document frequency); see coverage()
DEFAULT_METHOD = "pairs"
#: rows of the routing explanation shown in an answer
SHOWN = 5


#: the plan roles the router weighs (what the prompt says; not expansion or feedback terms)
ROUTED_ROLES = ("prompt", "forced", "contained")


def coverage(split, scope, tables, terms, explain: bool = True, method: str = "pairs") -> tuple[np.ndarray, dict]:
    """(coverage of every sub-model of the collection (0 outside the scope), {sub: [(term text, df_s)]});
    the evidence only with ``explain``. ``method``: ``"pairs"`` (the default, see :func:`_pairs`) or
    ``"share"`` (the share of the prompt's weighted document frequency)."""
    cov, (term, sub, df) = coverage_many(split, scope, tables, [terms], method)
    evidence: dict[int, list] = {}
    for j, s_, d in zip(term.tolist(), sub.tolist(), df.tolist()) if explain else ():
        evidence.setdefault(s_, []).append((terms[j].text, int(d)))
    return cov[0], evidence


def coverage_many(split, scope, tables, term_lists: list, method: str = "pairs"):
    """:func:`coverage` of several prompts at once: an array (prompts, sub-models) and the router
    entries read, (term index in the concatenated terms, sub-model, df there). One idf lookup and
    one gather in the router's table for the whole batch; each prompt's sums run over its own
    entries in order, so a prompt gets the same floats alone or in any batch."""
    from .query.rank import gather, idf
    from .submodels import route_columns

    n_sub, nq = len(split.names), len(term_lists)
    flat = [t for ts in term_lists for t in ts]
    if not flat:
        none = np.zeros(0, dtype=np.int64)
        return np.zeros((nq, n_sub)), (none, none, np.zeros(0))
    owner = np.repeat(np.arange(nq), [len(ts) for ts in term_lists])
    mts = np.fromiter((t.mt for t in flat), dtype=np.int64, count=len(flat))
    weights = np.fromiter((t.weight for t in flat), dtype=np.float64, count=len(flat)) * idf(_Stats(tables), mts)
    total = np.bincount(owner, weights=weights, minlength=nq)
    in_scope = np.zeros(n_sub, dtype=bool)
    in_scope[list(scope.subs)] = True
    term, idx = gather(split.router_arrays["route_indptr"], mts)  # one gather for every (term, sub-model)
    sub, df = route_columns(split.router_arrays, idx)
    df = df.astype(np.float64)
    keep = in_scope[sub] & (df > 0) & (total[owner[term]] > 0)
    term, sub, df = term[keep], sub[keep], df[keep]
    per_term = np.bincount(term, weights=df, minlength=len(flat))
    key = owner[term] * n_sub + sub
    cov = np.bincount(key, weights=weights[term] * df / np.maximum(per_term[term], 1.0),
                      minlength=nq * n_sub).reshape(nq, n_sub) / np.maximum(total, np.finfo(np.float64).tiny)[:, None]
    if method == "pairs":
        cov = _pairs(split, weights[term] * df, key, nq, n_sub, cov)
    return cov, (term, sub, df)


def _pairs(split, a, key, nq, n_sub, share):
    """Where the entities that hold *two* of the prompt's multitokens are expected: in sub-model
    ``s``, with its ``N_s`` entities and the terms independent within it, ``df_s(t)·df_s(u)/N_s``
    entities hold both ``t`` and ``u``; weighted by ``w_t·w_u`` and summed over the pairs,

        pairs(s) = ((Σ_t a_t)² − Σ_t a_t²) / (2·N_s),   a_t = w_t · df_s(t)

    normalized to sum to 1. The top of a ranking is made of entities that match several terms,
    and those lie where the prompt's words occur *together*, not only where most of its words
    occur: a large sub-model that holds many entities with one common word of the prompt each
    gets less than its document-frequency share. A prompt of one multitoken, or one whose
    multitokens no sub-model holds together, keeps ``share`` (the weighted df share).
    ``a``: a_t of each router entry, ``key``: its prompt · n_sub + sub-model; one row per prompt."""
    s1 = np.bincount(key, weights=a, minlength=nq * n_sub).reshape(nq, n_sub)
    s2 = np.bincount(key, weights=a * a, minlength=nq * n_sub).reshape(nq, n_sub)
    sizes = np.asarray([max(m["entities"], 1) for m in split.manifest["submodels"]], dtype=np.float64)
    got = np.maximum(s1 * s1 - s2, 0.0) / (2.0 * sizes)
    total = got.sum(axis=1)
    some = total > 0
    share[some] = got[some] / total[some, None]
    return share


class _Stats:
    """idf's view of a scope: ``n_docs`` and ``tables.df``."""

    def __init__(self, tables):
        self.tables, self.n_docs = tables, tables.n_docs


def choose(split, scope, tables, plan, pinned, mode: str, route_max: int | None, share: float,
           explain: bool = True, method: str = "pairs"):
    """The sub-models to ask (ids, best first) and the routing explanation of the answer (None
    without ``explain``: a search needs only the choice)."""
    terms = routed_terms(plan)
    cov, evidence = coverage(split, scope, tables, terms, explain, method)
    chosen, ranked, why = _choice(split, scope, cov, bool(terms), pinned, mode, route_max, share, method)
    if not explain:
        return chosen, None
    names = split.names
    rows = []
    for s in ranked[:max(SHOWN, len(chosen))]:
        ev = sorted(evidence.get(s, []), key=lambda x: -x[1])
        rows.append({"submodel": names[s], "label": split.manifest["submodels"][s]["label"],
                     "coverage": round(float(cov[s]), 6), "asked": s in chosen,
                     "evidence": [{"multitoken": m, "entities": n} for m, n in ev[:5]]})
    routing = {"asked": [names[s] for s in chosen], "why": why, "mode": "pinned" if pinned is not None else mode,
               "submodels_in_scope": len(scope.subs), "candidates": rows}
    return chosen, routing


def choose_many(split, scope, tables, plans, pinned, mode: str, route_max: int | None, share: float,
                method: str = "pairs") -> list[list[int]]:
    """:func:`choose` of each plan (the choice only), routed in one batch: the same sub-models.
    Pinned, or ``route="all"``: no coverage is computed (the order of the asked sub-models does
    not change a search's merged ranking)."""
    if pinned is not None:
        return [list(pinned) for _ in plans]
    if mode == "all":
        return [list(scope.subs) for _ in plans]
    terms = [routed_terms(plan) for plan in plans]
    cov, _ = coverage_many(split, scope, tables, terms, method)
    return [_choice(split, scope, cov[i], bool(terms[i]), pinned, mode, route_max, share, method)[0]
            for i in range(len(plans))]


def routed_terms(plan) -> list:
    return [t for t in plan.active() if t.role in ROUTED_ROLES]


def _choice(split, scope, cov, has_terms: bool, pinned, mode, route_max, share, method):
    """(chosen sub-models, the scope's sub-models by coverage, why) from one prompt's coverage."""
    names = split.names
    ranked = sorted(scope.subs, key=lambda s: (-cov[s], names[s]))
    if pinned is not None:
        return list(pinned), ranked, "pinned by the caller (-s / submodels)"
    if mode == "all":
        return list(ranked), ranked, "route=all: every sub-model this caller may read"
    if not has_terms or cov.max() <= 0:
        return list(ranked), ranked, "no matched multitoken to route on: every sub-model asked"
    cum = np.cumsum([cov[s] for s in ranked])
    n = int(np.searchsorted(cum, share - 1e-9)) + 1  # the fewest that hold ``share`` of the evidence
    chosen = [s for s in ranked[:min(n, route_max or n)] if cov[s] > 0]
    held = float(sum(cov[s] for s in chosen))
    what = ("entities expected to hold two of its multitokens, idf-weighted" if method == "pairs"
            else "idf-weighted document frequency of its multitokens")
    why = (f"the sub-models holding the most of the prompt's evidence ({what}), until {share:g} of it"
           + (f", at most {route_max}" if route_max else "") + f": these hold {held:.2f}")
    return chosen, ranked, why
