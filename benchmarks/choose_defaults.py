"""Choose query-parameter defaults without looking at a test split: SciFact train + cross-validation.

The protocol behind the defaults of ``qtf_k3`` and ``phrase_mode`` (issue 12), runnable for
any grid of query parameters:

1. every setting of the grid is run on SciFact's **train** queries (``qrels/train.tsv``) and on
   all judged Cranfield and CACM queries (they have no train split);
2. Cranfield and CACM queries are split into 5 folds (every 5th judged query, in qrels order);
   for each fold the setting with the best *objective* on the other four folds is chosen and
   scored on the held-out fold, which gives an honest estimate of the procedure;
3. the objective is the mean nDCG@10 of the three collections (SciFact train, Cranfield's and
   CACM's training folds), so that no collection's size dominates; the default is the setting
   with the best objective over all of them.

SciFact's test queries are never read. Usage (from the repository root)::

    python benchmarks/choose_defaults.py --grid 'qtf_k3=0,1,3,10,1000' --grid 'phrase_mode=each,stretch'
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tablelm import build  # noqa: E402
from tablelm import params as P  # noqa: E402
from tablelm.evaluation import evaluate_run, read_qrels, read_queries  # noqa: E402

TUNE = {"scifact": "qrels/train.tsv"}  # collection → qrels chosen on in full (no test split read)
FOLDED = {"cranfield": "qrels/test.tsv", "cacm": "qrels/test.tsv"}  # the only judgments: cross-validated
FOLDS = 5


def per_query(model, queries, qrels, setting) -> dict[str, float]:
    run = model.search_many({q: queries[q] for q in qrels}, 100, **setting)
    return {q: v["ndcg@10"] for q, v in evaluate_run(run, qrels, ["ndcg@10"])["per_query"].items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data").resolve())
    ap.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2,...",
                    help="a query parameter and the values to try; repeatable")
    args = ap.parse_args(argv)
    grid = {}
    for item in args.grid:
        name, _, values = item.partition("=")
        grid[name] = [P.resolve({name: v}, stage="query", base={})[name] for v in values.split(",")]
    settings = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    scores = {}  # collection → setting index → {qid: nDCG@10}
    with tempfile.TemporaryDirectory() as tmp:
        for name, qrels_name in {**TUNE, **FOLDED}.items():
            folder = args.data / name
            model = build([str(folder / "corpus.jsonl")], Path(tmp) / name)
            queries, qrels = read_queries(folder / "queries.jsonl"), read_qrels(folder / qrels_name)
            scores[name] = [per_query(model, queries, qrels, s) for s in settings]
            print(f"[choose] {name}: {len(qrels)} queries x {len(settings)} settings", file=sys.stderr)

    def mean(name, i, qids):
        return float(np.mean([scores[name][i][q] for q in qids]))

    folds = {n: [list(scores[n][0])[f::FOLDS] for f in range(FOLDS)] for n in FOLDED}

    def objective(i, held=None):
        parts = [mean(n, i, list(scores[n][i])) for n in TUNE]
        for n in FOLDED:
            parts.append(mean(n, i, [q for f in range(FOLDS) if f != held for q in folds[n][f]]))
        return float(np.mean(parts))

    def best(held=None):  # ties: the first setting
        return max(range(len(settings)), key=lambda i: (objective(i, held), -i))

    cv = {n: [] for n in FOLDED}
    chosen = []
    for f in range(FOLDS):
        i = best(held=f)
        chosen.append(settings[i])
        for n in FOLDED:
            cv[n] += [scores[n][i][q] for q in folds[n][f]]
    final = best()
    print("| setting | " + " | ".join([f"{n} train" for n in TUNE] + list(FOLDED)) + " | objective |")
    print("|---|" + "---|" * (len(TUNE) + len(FOLDED) + 1))
    for i, s in enumerate(settings):
        cells = [f"{mean(n, i, list(scores[n][i])):.4f}" for n in (*TUNE, *FOLDED)]
        print(f"| {json.dumps(s)}{' **default**' if i == final else ''} | " + " | ".join(cells)
              + f" | {objective(i):.4f} |")
    print(f"\nchosen per fold: {[json.dumps(c) for c in chosen]}")
    print("cross-validated nDCG@10 of the procedure: "
          + ", ".join(f"{n} {np.mean(v):.4f}" for n, v in cv.items()))
    print(f"default: {json.dumps(settings[final])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
