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
#: rows of the routing explanation shown in an answer
SHOWN = 5


def coverage(split, scope, tables, terms, explain: bool = True) -> tuple[np.ndarray, dict]:
    """(coverage of every sub-model of the collection (0 outside the scope), {sub: [(term text, df_s)]});
    the evidence only with ``explain``."""
    from .query.rank import gather, idf

    n_sub = len(split.names)
    if not terms:
        return np.zeros(n_sub), {}
    r = split.router_arrays
    weights = np.asarray([t.weight for t in terms]) * idf(_Stats(tables), [t.mt for t in terms])
    total = weights.sum()
    if total <= 0:
        return np.zeros(n_sub), {}
    in_scope = np.zeros(n_sub, dtype=bool)
    in_scope[list(scope.subs)] = True
    term, idx = gather(r["route_indptr"], [t.mt for t in terms])  # one gather for every (term, sub-model)
    sub, df = r["route_sub"][idx].astype(np.int64), r["route_df"][idx].astype(np.float64)
    keep = in_scope[sub] & (df > 0)
    term, sub, df = term[keep], sub[keep], df[keep]
    per_term = np.bincount(term, weights=df, minlength=len(terms))
    cov = np.bincount(sub, weights=weights[term] * df / np.maximum(per_term[term], 1.0), minlength=n_sub) / total
    evidence: dict[int, list] = {}
    for j, s_, d in zip(term.tolist(), sub.tolist(), df.tolist()) if explain else ():
        evidence.setdefault(s_, []).append((terms[j].text, int(d)))
    return cov, evidence


class _Stats:
    """idf's view of a scope: ``n_docs`` and ``tables.df``."""

    def __init__(self, tables):
        self.tables, self.n_docs = tables, tables.n_docs


def choose(split, scope, tables, plan, pinned, mode: str, route_max: int | None, share: float,
           explain: bool = True):
    """The sub-models to ask (ids, best first) and the routing explanation of the answer (None
    without ``explain``: a search needs only the choice)."""
    names = split.names
    terms = [t for t in plan.active() if t.role in ("prompt", "forced", "contained")]
    cov, evidence = coverage(split, scope, tables, terms, explain)
    ranked = sorted(scope.subs, key=lambda s: (-cov[s], names[s]))
    if pinned is not None:
        chosen, why = list(pinned), "pinned by the caller (-s / submodels)"
    elif mode == "all":
        chosen, why = list(ranked), "route=all: every sub-model this caller may read"
    elif not terms or cov.max() <= 0:
        chosen, why = list(ranked), "no matched multitoken to route on: every sub-model asked"
    else:
        cum = np.cumsum([cov[s] for s in ranked])
        n = int(np.searchsorted(cum, share - 1e-9)) + 1  # the fewest that hold ``share`` of the evidence
        chosen = [s for s in ranked[:min(n, route_max or n)] if cov[s] > 0]
        held = float(sum(cov[s] for s in chosen))
        why = (f"the sub-models holding the most of the prompt's evidence (idf-weighted document frequency of "
               f"its multitokens), until {share:g} of it" + (f", at most {route_max}" if route_max else "")
               + f": these hold {held:.2f}")
    if not explain:
        return chosen, None
    rows = []
    for s in ranked[:max(SHOWN, len(chosen))]:
        ev = sorted(evidence.get(s, []), key=lambda x: -x[1])
        rows.append({"submodel": names[s], "label": split.manifest["submodels"][s]["label"],
                     "coverage": round(float(cov[s]), 6), "asked": s in chosen,
                     "evidence": [{"multitoken": m, "entities": n} for m, n in ev[:5]]})
    routing = {"asked": [names[s] for s in chosen], "why": why, "mode": "pinned" if pinned is not None else mode,
               "submodels_in_scope": len(scope.subs), "candidates": rows}
    return chosen, routing
