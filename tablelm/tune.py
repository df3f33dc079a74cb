"""Self-tuning: optimize the query parameters directly against an evaluation metric.

No training and no proxy loss: the metric users care about (nDCG@10 on judged
prompts, by default) is computed for parameter sets chosen by a deterministic
derivative-free search, and the best set becomes a named *profile* stored in the
model's manifest, used by default afterwards and shown by ``tablelm info``.

Search: coordinate ascent (each parameter in turn over a grid around the current
best, the others fixed), repeated in rounds with a finer grid until the budget
of metric evaluations is spent or a round improves nothing. It is the simplest
method that is deterministic, explainable step by step (the path is kept), and
good on a handful of smooth, nearly independent parameters.

Users' choices count too: with usage recording switched on (``TABLELM_RECORD_USAGE=1``
or ``record_usage=True``), every ``ask`` that sets parameters appends them to a
local file; :func:`profile_from_usage` promotes the most popular value of each
parameter to the model's defaults.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

from . import params as P
from .evaluation import evaluate_run, parse_metric

#: Parameters searched, with the range searched (inside each parameter's own bounds).
SPACE = {
    "k1": (0.4, 3.0),
    "b": (0.2, 1.0),
    "w_title": (0.0, 5.0),
    "w_tags": (0.0, 3.0),
    "w_category": (0.0, 3.0),
    "w_meta": (0.0, 1.0),
    "phrase_weight": (0.0, 1.0),
    "qtf_k3": (0.0, 20.0),
    "contained_weight": (0.2, 1.0),
    "prf_weight": (0.0, 0.6),
    "expansion_weight": (0.0, 0.3),
}


def _score(model, queries, qrels, metric, params, k) -> float:
    judged = {q: queries[q] for q in qrels if q in queries}
    run = model.search_many(judged, k=k, **params)
    return float(evaluate_run(run, qrels, [metric])["mean"][metric])


def _grid(name, centre, radius, points=5):
    lo, hi = SPACE[name]
    p = P.REGISTRY[name]
    lo, hi = max(lo, p.constraint.lo), min(hi, p.constraint.hi)
    step = (hi - lo) * radius / (points - 1) * 2
    values = {round(min(hi, max(lo, centre + (i - points // 2) * step)), 4) for i in range(points)}
    values.discard(round(centre, 4))
    return sorted(values)


def tune(model, queries, qrels, *, metric="ndcg@10", budget=60, space=None, heldout=None, progress=None):
    """Coordinate search of the query parameters maximizing ``metric``.

    Parameters
    ----------
    model : Model
    queries, qrels
        Judged prompts to tune on (e.g. SciFact train).
    metric : str
        Any metric of :mod:`tablelm.evaluation` (``ndcg@10``, ``map@100``, ``recall@100`` ...).
    budget : int
        Largest number of metric evaluations.
    heldout : (queries, qrels), optional
        Reported before and after, never used to choose: overfitting shows as a gap.
    progress : callable, optional
        Called with each path entry as it is evaluated.

    Returns
    -------
    dict
        ``params`` (the winning values that differ from the defaults), ``metric``,
        ``train`` and ``heldout`` scores before and after, and the ``path``.
    """
    _, cut = parse_metric(metric)
    k = max(cut, 100)
    names = [n for n in (space or SPACE) if n in SPACE]
    current = {n: model.defaults[n] for n in names}
    best = _score(model, queries, qrels, metric, current, k)
    path = [{"step": 0, "params": dict(current), "score": best, "accepted": True}]
    if progress:
        progress(path[-1])
    start = best
    evals, radius = 1, 0.25
    while evals < budget:
        improved = False
        for name in names:
            for value in _grid(name, current[name], radius):
                if evals >= budget:
                    break
                trial = dict(current, **{name: value})
                score = _score(model, queries, qrels, metric, trial, k)
                evals += 1
                accepted = score > best + 1e-9
                path.append({"step": evals - 1, "params": {name: value}, "score": score, "accepted": accepted})
                if progress:
                    progress(path[-1])
                if accepted:
                    best, current, improved = score, trial, True
        if not improved:
            if radius < 0.05:
                break
            radius /= 2
    changed = {n: v for n, v in current.items() if v != P.REGISTRY[n].default}
    out = {"metric": metric, "params": changed, "train": {"before": start, "after": best},
           "evaluations": evals, "path": path}
    if heldout is not None:
        hq, hr = heldout
        out["heldout"] = {"before": _score(model, hq, hr, metric, {n: model.defaults[n] for n in names}, k),
                          "after": _score(model, hq, hr, metric, current, k)}
    out["worse_heldout"] = worse_heldout(out)
    return out


def worse_heldout(result: dict) -> str | None:
    """Why the winner of :func:`tune` should not replace the current profile, or None.

    The search maximizes the train score, so a winner can fit the train queries'
    noise: when its held-out score is *below* the current profile's (the
    parameters the model uses now), saving it would silently make the model
    worse. Equal held-out scores are no reason to refuse (the train score rose).
    """
    held = result.get("heldout")
    if held and held["after"] < held["before"] - 1e-12:
        return (f"the winner's held-out {result['metric']} {held['after']:.4f} is below the current "
                f"profile's {held['before']:.4f}")
    return None


# ----------------------------------------------------------------------------- usage
def usage_path(model) -> Path:
    """The local usage file of a model (by corpus fingerprint), in the user data dir."""
    from platformdirs import user_data_dir

    root = Path(os.environ.get("TABLELM_DATA") or user_data_dir("tablelm"))
    return root / "usage" / f"{model.manifest['fingerprint'][:32]}.jsonl"


_usage_warned = False  # a failed write is said once per process, not on every answer


def record_usage(model, overrides: dict) -> None:
    """Append the parameters a user set (opt-in) to the model's usage file."""
    global _usage_warned
    if not overrides:
        return
    path = usage_path(model)
    clean = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(overrides.items())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean, sort_keys=True) + "\n")
    except OSError as e:  # recording is a side note of an answer: it must never cost the answer
        if not _usage_warned:
            _usage_warned = True
            print(f"tablelm: usage not recorded: cannot write {path} ({e.strerror or e}); set TABLELM_DATA to a "
                  "writable folder or unset TABLELM_RECORD_USAGE.", file=sys.stderr)


def profile_from_usage(model, min_count: int = 3) -> dict:
    """The most popular value of each parameter users set at least ``min_count`` times."""
    path = usage_path(model)
    if not path.exists():
        return {"params": {}, "records": 0, "file": str(path)}
    counts: dict[str, Counter] = {}
    records = 0
    for line in path.read_text("utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line of an interrupted write
        records += 1
        for k, v in rec.items():
            if k in P.REGISTRY and P.REGISTRY[k].stage in ("query", "render"):
                counts.setdefault(k, Counter())[json.dumps(v)] += 1
    chosen = {}
    for k, c in sorted(counts.items()):
        value, n = min(c.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= min_count:
            chosen[k] = P.REGISTRY[k].validate(json.loads(value))
    return {"params": chosen, "records": records, "file": str(path)}
