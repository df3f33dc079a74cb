"""Sub-models and the router against the unsplit model: quality, latency and memory per prompt.

Collections (each built twice into a scratch folder: unsplit, and split with ``--split-by``):

cacm        CACM split by the top ACM CR category (``metadata.cr_categories`` before '.'): 8
            sub-models, 1,780 of 3,204 abstracts without a category in ``_none``. 52 judged
            queries: nDCG@10 and Recall@100 of the routed model (``route_max=1``, ``route_coverage``
            0.5, 0.8 and the default 0.9) against the unsplit one, paired randomization test
            (tablelm.evaluation.compare_runs).
enterprise  the xLLM enterprise repository split by category (at most 8 sub-models); its 33
            ``prompt | reference answer`` lines: coverage of the reference by the top 10
            (tablelm.evaluation.prompt_coverage).
pydocs      the built-in corpus (Python's documentation) split by top package (at most 16);
            benchmarks/everyday_python.txt: top-1 / top-3 hits (benchmarks/everyday.py).

For every collection, also the top-10 agreement (the share of the unsplit top 10 that the
routed top 10 keeps), and per prompt, side by side in one process and taking turns:

latency    median ms of ``search(prompt, k=10)`` (plan, route, rank, merge), unsplit vs routed
           vs every sub-model (``route=all``), after one warm-up pass (the BM25 impacts cache);
postings   the share of the collection's postings held by the sub-models a prompt is routed
           to (what its ranking reads at most);
RSS        in fresh processes answering one prompt each (``--rss`` prompts): the resident set
           after the answer minus after loading (/proc/self/statm; memory-mapped tables: the
           pages a prompt touches, and the impacts it computes, count).

Usage (from the repository root)::

    python benchmarks/bench_submodels.py                     # cacm and enterprise
    python benchmarks/bench_submodels.py --collections cacm,enterprise,pydocs --out /tmp/sub.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

import tablelm  # noqa: E402
from tablelm import evaluation as E  # noqa: E402

COLLECTIONS = {
    "cacm": {"sources": [DATA / "cacm" / "corpus.jsonl"], "split": {"split_by": "metadata.cr_categories",
                                                                     "split_sep": "."}},
    "enterprise": {"sources": [DATA / "xllm-enterprise" / "repository3.txt"],
                   "split": {"split_by": "category", "max_submodels": 8}},
    "pydocs": {"sources": None, "split": {"split_by": "category", "max_submodels": 16}},
}


def prompts_of(name: str) -> dict[str, str]:
    if name == "cacm":
        qs = E.read_queries(DATA / "cacm" / "queries.jsonl")
        judged = E.read_qrels(DATA / "cacm" / "qrels" / "test.tsv")
        return {q: qs[q] for q in judged}
    if name == "enterprise":
        return {str(i): p for i, (p, _) in enumerate(E.read_prompts(DATA / "xllm-enterprise" / "sample_prompts.txt"))}
    from everyday import read_questions

    return {str(i): p for i, (p, _) in enumerate(read_questions(ROOT / "benchmarks" / "everyday_python.txt"))}


def rss_mb() -> float:
    """The resident set now (file-backed pages of the memory-mapped tables included), in MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: the peak, which only shows growth beyond the load's own peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(model_dir: str, prompt: str, mode: str) -> None:
    """One fresh process: load, answer one prompt, print the peak RSS growth."""
    model = tablelm.load(model_dir)
    before = rss_mb()
    kw = {} if mode == "unsplit" else {"route": "all"} if mode == "all" else {}
    model.ask(prompt, k=10, **kw)
    print(json.dumps({"rss_mb": rss_mb() - before}))


def rss_row(unsplit_dir, split_dir, prompts: list[str]) -> dict:
    out: dict[str, list[float]] = {"unsplit": [], "routed": [], "all": []}
    for p in prompts:
        for mode, path in (("unsplit", unsplit_dir), ("routed", split_dir), ("all", split_dir)):
            r = subprocess.run([sys.executable, __file__, "--worker", str(path), p, mode], capture_output=True,
                               text=True, check=True, cwd=ROOT)
            out[mode].append(json.loads(r.stdout)["rss_mb"])
    return {m: round(statistics.median(v), 2) for m, v in out.items()}


def timed(repeat: int, fn, *args, **kw) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args, **kw)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def run_collection(name: str, scratch: Path, repeat: int, n_rss: int) -> dict:
    spec = COLLECTIONS[name]
    sources = spec["sources"]
    t = time.perf_counter()
    unsplit = tablelm.build(sources, scratch / f"{name}-unsplit")
    t_unsplit = time.perf_counter() - t
    t = time.perf_counter()
    split = tablelm.build(sources, scratch / f"{name}-split", **spec["split"])
    t_split = time.perf_counter() - t
    prompts = prompts_of(name)
    row: dict = {"collection": name, "entities": unsplit.n_docs, "submodels": len(split.names),
                 "largest_submodel": max(s["entities"] for s in split.submodels), "prompts": len(prompts),
                 "build_s": {"unsplit": round(t_unsplit, 2), "split": round(t_split, 2)}}
    base = unsplit.search_many(prompts, 100)
    every = split.search_many(prompts, 100, route="all")
    row["all_equals_unsplit"] = sum(base[q] == every[q] for q in prompts) / len(prompts)
    quality = {}
    for label, kw in (("route_max=1", {"route_max": 1}), ("route_coverage=0.5", {"route_coverage": 0.5}),
                      ("route_coverage=0.8", {"route_coverage": 0.8}), ("route_coverage=0.9 (default)", {})):
        routed = split.search_many(prompts, 100, **kw)
        n_asked = statistics.mean(len(split.ask(p, k=1, **kw).routing["asked"]) for p in prompts.values())
        agree = statistics.mean(len({d for d, _ in routed[q][:10]} & {d for d, _ in base[q][:10]})
                                / max(1, min(10, len(base[q]))) for q in prompts)
        q = {"top10_agreement": round(agree, 4), "submodels_asked": round(n_asked, 2)}
        if name == "cacm":
            judged = E.read_qrels(DATA / "cacm" / "qrels" / "test.tsv")
            cmp = E.compare_runs(routed, base, judged, ("ndcg@10", "recall@100"), n_resamples=10000)
            for m, tst in cmp.tests.items():
                q[m] = {"routed": round(tst["mean_a"], 4), "unsplit": round(tst["mean_b"], 4),
                        "p": round(tst["p_randomization"], 4)}
        quality[label] = q
    if name == "enterprise":
        pairs = E.read_prompts(DATA / "xllm-enterprise" / "sample_prompts.txt")
        quality["coverage@10"] = {"unsplit": round(E.prompt_coverage(unsplit, pairs, k=10).mean_coverage, 4),
                                  "routed": round(E.prompt_coverage(split, pairs, k=10).mean_coverage, 4)}
    if name == "pydocs":
        from everyday import evaluate, read_questions

        qs = read_questions(ROOT / "benchmarks" / "everyday_python.txt")
        quality["everyday"] = {"unsplit": _hits(evaluate(unsplit, qs)), "routed": _hits(evaluate(split, qs))}
    row["quality"] = quality
    # latency, side by side, after a warm-up of every path
    for p in prompts.values():
        unsplit.search(p, 10)
        split.search(p, 10)
        split.search(p, 10, route="all")
    lat: dict[str, list[float]] = {"unsplit": [], "routed": [], "all": []}
    share, asked = [], []
    total_postings = sum(split.submodel(n).tables.post_docs.shape[0] for n in split.names)
    for p in prompts.values():
        lat["unsplit"].append(timed(repeat, unsplit.search, p, 10))
        lat["routed"].append(timed(repeat, split.search, p, 10))
        lat["all"].append(timed(repeat, split.search, p, 10, route="all"))
        names = split.ask(p, k=1).routing["asked"]
        asked.append(len(names))
        share.append(sum(split.submodel(n).tables.post_docs.shape[0] for n in names) / total_postings)
    row["latency_ms_median"] = {m: round(statistics.median(v), 3) for m, v in lat.items()}
    row["submodels_asked_mean"] = round(statistics.mean(asked), 2)
    row["postings_share_mean"] = round(statistics.mean(share), 4)
    if n_rss:
        row["rss_mb_median"] = rss_row(scratch / f"{name}-unsplit", scratch / f"{name}-split",
                                       list(prompts.values())[:n_rss])
    return row


def _hits(report: dict) -> dict:
    return {k: round(report[k], 4) for k in ("top1", "top3", "top10") if k in report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collections", default="cacm,enterprise")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per prompt and path (median)")
    ap.add_argument("--rss", type=int, default=8, help="prompts answered in fresh processes (0: none)")
    ap.add_argument("--scratch", type=Path, help="where the models go (default: a temporary folder)")
    ap.add_argument("--out", type=Path, help="write the rows as JSON")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "PROMPT", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="tablelm-sub-") as tmp:
        scratch = args.scratch or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        if "pydocs" in args.collections:
            os.environ.setdefault("TABLELM_CACHE", str(scratch / "cache"))
        for name in args.collections.split(","):
            row = run_collection(name.strip(), scratch, args.repeat, args.rss)
            print(json.dumps(row), flush=True)
            rows.append(row)
    load = os.getloadavg()
    result = {"load_average": [round(x, 2) for x in load], "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"load_average": result["load_average"]}))


if __name__ == "__main__":
    main()
