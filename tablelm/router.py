"""The router: which sub-models of a split model a prompt goes to, from the counts alone.

No training: the router reads its own table, multitoken → {sub-model → document frequency}
(written by the split build, tablelm/submodels.py). Each matched multitoken ``t`` of the
plan carries the weight the ranker gives it, ``w_t = q_t · idf(t)`` (idf over the scope), and
each sub-model ``s`` holds the share ``df_s(t) / df(t)`` of the entities that contain it. The
sub-model's *coverage* of the prompt is

    coverage(s) = Σ_t w_t · df_s(t) / df(t)  /  Σ_t w_t        (in [0, 1]; the sub-models sum to 1)

the share of the prompt's weighted evidence that lies in ``s``: a sub-model holding most of
the entities that have the rare words of the prompt covers it best. The router asks the
best sub-model and the next ones whose coverage is at least ``route_ratio`` times the best,
at most ``route_max`` in all. ``route="all"`` asks every sub-model of the scope (the unsplit
model's answer); ``submodels=[...]`` pins them. A prompt with no matched multitoken has
nothing to route on: every sub-model is asked (none scores anything, at no cost).
"""

from __future__ import annotations

import numpy as np

#: sub-models asked at most by default, and the coverage (relative to the best) a second one needs
DEFAULT_MAX = 2
DEFAULT_RATIO = 0.5
#: rows of the routing explanation shown in an answer
SHOWN = 5


def coverage(split, scope, tables, terms) -> tuple[np.ndarray, dict]:
    """(coverage of every sub-model of the collection (0 outside the scope), {sub: [(term text, df_s)]})."""
    from .query.rank import idf

    n_sub = len(split.names)
    cov = np.zeros(n_sub)
    evidence: dict[int, list] = {}
    if not terms:
        return cov, evidence
    r = split.router.arrays
    indptr, subs, dfs = r["route_indptr"], r["route_sub"], r["route_df"]
    weights = np.asarray([t.weight for t in terms]) * idf(_Stats(tables), [t.mt for t in terms])
    total = weights.sum()
    if total <= 0:
        return cov, evidence
    in_scope = np.zeros(n_sub, dtype=bool)
    in_scope[list(scope.subs)] = True
    for t, w in zip(terms, weights.tolist()):
        lo, hi = int(indptr[t.mt]), int(indptr[t.mt + 1])
        s, df = np.asarray(subs[lo:hi], dtype=np.int64), np.asarray(dfs[lo:hi], dtype=np.float64)
        keep = in_scope[s] & (df > 0)
        s, df = s[keep], df[keep]
        if not len(s):
            continue
        cov[s] += w * df / df.sum()
        for si, d in zip(s.tolist(), df.tolist()):
            evidence.setdefault(si, []).append((t.text, int(d)))
    return cov / total, evidence


class _Stats:
    """idf's view of a scope: ``n_docs`` and ``tables.df``."""

    def __init__(self, tables):
        self.tables, self.n_docs = tables, tables.n_docs


def choose(split, scope, tables, plan, pinned, mode: str, route_max: int, ratio: float):
    """The sub-models to ask (ids, best first) and the routing explanation of the answer."""
    names = split.names
    terms = [t for t in plan.active() if t.role in ("prompt", "forced", "contained")]
    cov, evidence = coverage(split, scope, tables, terms)
    ranked = sorted(scope.subs, key=lambda s: (-cov[s], names[s]))
    if pinned is not None:
        chosen, why = list(pinned), "pinned by the caller (-s / submodels)"
    elif mode == "all":
        chosen, why = list(ranked), "route=all: every sub-model this caller may read"
    elif not terms or cov.max() <= 0:
        chosen, why = list(ranked), "no matched multitoken to route on: every sub-model asked"
    else:
        best = cov[ranked[0]]
        chosen = [s for s in ranked[:route_max] if cov[s] > 0 and cov[s] >= ratio * best]
        why = (f"highest coverage of the prompt's multitokens (share of their idf-weighted document frequency); "
               f"others asked when within {ratio:g} x the best, at most {route_max}")
    rows = []
    for s in ranked[:max(SHOWN, len(chosen))]:
        ev = sorted(evidence.get(s, []), key=lambda x: -x[1])
        rows.append({"submodel": names[s], "label": split.manifest["submodels"][s]["label"],
                     "coverage": round(float(cov[s]), 6), "asked": s in chosen,
                     "evidence": [{"multitoken": m, "entities": n} for m, n in ev[:5]]})
    routing = {"asked": [names[s] for s in chosen], "why": why, "mode": "pinned" if pinned is not None else mode,
               "submodels_in_scope": len(scope.subs), "candidates": rows}
    return chosen, routing
