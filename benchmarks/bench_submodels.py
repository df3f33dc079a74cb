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
mix         the scale corpus's first ``--mix-lines`` lines (300,000) plus every abstract line
            after them (scifact, cacm, cranfield: so that their judgments apply), split by the
            source of the id (``--split-by id --split-sep :``: pypi, npm, deb, scifact, cacm,
            cranfield). Judged prompts: the scifact test claims, the CACM and the Cranfield
            queries (577, their qrels with the ids prefixed as in the corpus): nDCG@10 routed vs
            unsplit, paired test. Cost prompts: those judged prompts (they route to the small
            abstract sub-models) and the everyday Python questions (they route to the largest
            one, pypi: no saving to expect), reported apart.

For every collection, the top-10 agreement (the share of the unsplit top 10 that the routed
top 10 keeps), and per prompt, side by side in one process and taking turns:

latency    p50 / p95 over the prompts of the median ms of ``--repeat`` ``search(prompt, k=10)``
           (plan, route, rank, merge), unsplit vs routed vs every sub-model (``route=all``) vs
           pinned (``submodels=[the sub-model the router ranks first]``, as ``-s NAME``),
           after one warm-up pass with the compiled kernels loaded;
postings   the share of the collection's postings held by the sub-models a prompt is routed
           to (what its ranking reads at most);
memory     in fresh processes (one per mode, numpy kernels): the growth of the resident set
           (/proc/self/statm) from after loading (and one prompt that matches nothing) to after
           answering the cost prompts, and the pages of the model's memory-mapped files that
           the process has touched (Rss of those mappings in /proc/self/smaps) after loading and
           after the prompts; and per prompt, in a fresh process per prompt (``--rss`` of
           them), the growth of both from loading to after one ``search``.

Measured (2026-12-02, 2 shared cores, load 5-7; the tables and the conditions in docs/submodels.md):
mix, 577 judged prompts, default routing: 2.16 sub-models asked (28 % of the postings), search p50
2.09 ms vs 4.28 unsplit (0.49x), p95 15.1 vs 18.7; nDCG@10 0.418 vs 0.386 unsplit (p 0.0001). The
same prompts with route_method="share": 1.31x, nDCG@10 0.388. The everyday Python questions on the
mix (routed to PyPI): 1.38x. CACM / enterprise / Python docs: 1.9x / 2.3x / 2.2x the unsplit p50
(sub-millisecond prompts, about 4 sub-models asked); CACM nDCG@10 0.523 vs 0.533 (p 0.083). Memory:
not cut (mix after 200 prompts: 186.6 MB RSS, 104.9 MB of the model touched, vs 200.2 and 99.6).
Rerun 2026-12-04 with a pinned arm (``submodels=[the router's first]``): routed 2.11x / 2.33x / 2.15x
the unsplit p50 on CACM / enterprise / Python docs, pinned 1.10x / 1.24x / 1.07x (docs/submodels.md).

Usage (from the repository root)::

    python benchmarks/bench_submodels.py                     # cacm and enterprise
    python benchmarks/bench_submodels.py --collections cacm,enterprise,pydocs,mix --out /tmp/sub.json
    python benchmarks/bench_submodels.py --collections mix --scratch /tmp/sub --reuse   # keep the builds
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
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

ABSTRACTS = ("scifact", "cacm", "cranfield")
COLLECTIONS = {
    "cacm": {"sources": [DATA / "cacm" / "corpus.jsonl"], "split": {"split_by": "metadata.cr_categories",
                                                                     "split_sep": "."}},
    "enterprise": {"sources": [DATA / "xllm-enterprise" / "repository3.txt"],
                   "split": {"split_by": "category", "max_submodels": 8}},
    "pydocs": {"sources": None, "split": {"split_by": "category", "max_submodels": 16}},
    "mix": {"sources": None, "split": {"split_by": "id", "split_sep": ":"}},
}


def mix_corpus(scratch: Path, lines: int) -> Path:
    """The first ``lines`` lines of the scale corpus and every abstract line after them."""
    out = scratch / f"mix-{lines}.jsonl"
    if out.exists():
        return out
    tmp = out.with_suffix(".part")
    with gzip.open(DATA / "scale" / "mix-1m.jsonl.gz", "rt", encoding="utf-8") as f, open(tmp, "w") as w:
        for i, line in enumerate(f):
            if i < lines or json.loads(line)["_id"].split(":", 1)[0] in ABSTRACTS:
                w.write(line)
    tmp.replace(out)
    return out


def judged_mix() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The scifact test, CACM and Cranfield queries and judgments, ids prefixed as in the mix."""
    queries, qrels = {}, {}
    for name in ABSTRACTS:
        qs = E.read_queries(DATA / name / "queries.jsonl")
        for q, docs in E.read_qrels(DATA / name / "qrels" / "test.tsv").items():
            if q in qs:
                queries[f"{name}:{q}"] = qs[q]
                qrels[f"{name}:{q}"] = {f"{name}:{d}": r for d, r in docs.items()}
    return queries, qrels


def everyday_prompts() -> dict[str, str]:
    from everyday import read_questions

    return {f"everyday:{i}": p for i, (p, _) in enumerate(read_questions(ROOT / "benchmarks" / "everyday_python.txt"))}


def prompts_of(name: str) -> dict[str, str]:
    if name == "cacm":
        qs = E.read_queries(DATA / "cacm" / "queries.jsonl")
        judged = E.read_qrels(DATA / "cacm" / "qrels" / "test.tsv")
        return {q: qs[q] for q in judged}
    if name == "enterprise":
        return {str(i): p for i, (p, _) in enumerate(E.read_prompts(DATA / "xllm-enterprise" / "sample_prompts.txt"))}
    if name == "mix":
        return judged_mix()[0]
    return everyday_prompts()


# --------------------------------------------------------------------------- memory
def rss_mb() -> float:
    """The resident set now (file-backed pages of the memory-mapped tables included), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def mapped_mb(model_dir: str) -> float:
    """The resident pages of this process's mappings of the model's files (the tables it touched), MB."""
    root = os.path.realpath(model_dir)
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 6)
            if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                inside = len(head) == 6 and head[5].strip().startswith(root)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total / 1024


def worker(model_dir: str, prompts_file: str, mode: str) -> None:
    """One fresh process: load, answer the prompts of the file, print RSS and touched pages.

    Scored by the numpy kernels (``TABLELM_KERNEL=numpy``, set by the caller): loading numba's
    compiled functions on a first call would add tens of MB that are the same for every model.
    A prompt of words no model has is answered first, so that the growth is the prompts' own
    (the query modules imported, nothing scored).
    """
    prompts = json.loads(Path(prompts_file).read_text())  # pinned: [prompt, sub-model] pairs
    model = tablelm.load(model_dir)
    kw = {"route": "all"} if mode == "all" else {}
    model.search("qqzxv wwxyq", 10, **kw)  # pinned: the unknown words go to every sub-model (none loaded)
    r0 = rss_mb()
    out = {"load_rss": 0.0, "load_mapped": mapped_mb(model_dir), "process_loaded": r0}
    for i, p in enumerate(prompts):
        if mode == "pinned":
            p, kw = p[0], {"submodels": [p[1]]}
        model.search(p, 10, **kw)
        if i == 0:
            out["first_rss"], out["first_mapped"] = rss_mb() - r0, mapped_mb(model_dir)
    out["all_rss"], out["all_mapped"], out["process_after"] = rss_mb() - r0, mapped_mb(model_dir), rss_mb()
    print(json.dumps(out))


def memory_row(unsplit_dir: Path, split_dir: Path, prompts: list[str], n_single: int, scratch: Path,
               top: dict | None = None) -> dict:
    """Fresh processes per mode: after load / after all the prompts; and per prompt (one process each).
    ``top``: the router's first sub-model of each prompt, for the pinned mode (``-s NAME``)."""
    every = scratch / "prompts-all.json"
    every.write_text(json.dumps(prompts))
    modes: tuple = (("unsplit", unsplit_dir), ("routed", split_dir), ("all", split_dir))
    if top is not None:
        modes += (("pinned", split_dir),)
        (scratch / "prompts-all-pinned.json").write_text(json.dumps([[p, top[p]] for p in prompts]))
    env = dict(os.environ, TABLELM_KERNEL="numpy")
    run = lambda path, f, mode: json.loads(subprocess.run(
        [sys.executable, __file__, "--worker", str(path), str(f), mode], capture_output=True, text=True, check=True,
        cwd=ROOT, env=env).stdout)
    out: dict = {}
    pinned_file = lambda f, mode: f.with_name(f.stem + "-pinned.json") if mode == "pinned" else f
    for mode, path in modes:
        got = run(path, pinned_file(every, mode), mode)
        out[mode] = {"process_rss_loaded_mb": round(got["process_loaded"], 1),
                     f"process_rss_after_{len(prompts)}_prompts_mb": round(got["process_after"], 1),
                     f"rss_growth_{len(prompts)}_prompts_mb": round(got["all_rss"], 1),
                     "mapped_after_load_mb": round(got["load_mapped"], 1),
                     f"mapped_after_{len(prompts)}_prompts_mb": round(got["all_mapped"], 1)}
    one: dict[str, dict[str, list]] = {m: {"rss": [], "mapped": []} for m, _ in modes}
    step = max(1, len(prompts) // max(n_single, 1))
    for p in prompts[::step][:n_single]:
        f = scratch / "prompt-one.json"
        f.write_text(json.dumps([p]))
        if top is not None:
            (scratch / "prompt-one-pinned.json").write_text(json.dumps([[p, top[p]]]))
        for mode, path in modes:
            got = run(path, pinned_file(f, mode), mode)
            one[mode]["rss"].append(got["first_rss"] - got["load_rss"])
            one[mode]["mapped"].append(got["first_mapped"] - got["load_mapped"])
    for mode, _ in modes:
        if one[mode]["rss"]:
            out[mode]["per_prompt_rss_mb_median"] = round(statistics.median(one[mode]["rss"]), 2)
            out[mode]["per_prompt_mapped_mb_median"] = round(statistics.median(one[mode]["mapped"]), 2)
    return out


# --------------------------------------------------------------------------- latency
def timed(repeat: int, fn, *args, **kw) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args, **kw)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def cost_row(unsplit, split, prompts: dict[str, str], repeat: int, **routing) -> dict:
    """Latency p50/p95 (unsplit, routed, every sub-model), sub-models asked and their postings share."""
    # pinned (-s NAME): the sub-model the router ranks first for the prompt, as a user who knows it would pin
    top = top_submodels(split, prompts, **routing)
    for p in prompts.values():  # warm-up of every path (impacts norms, string blocks, kernels)
        unsplit.search(p, 10)
        split.search(p, 10, **routing)
        split.search(p, 10, route="all")
        split.search(p, 10, submodels=[top[p]])
    lat: dict[str, list[float]] = {"unsplit": [], "routed": [], "all": [], "pinned": []}
    for p in prompts.values():  # taking turns, prompt by prompt
        lat["unsplit"].append(timed(repeat, unsplit.search, p, 10))
        lat["routed"].append(timed(repeat, split.search, p, 10, **routing))
        lat["all"].append(timed(repeat, split.search, p, 10, route="all"))
        lat["pinned"].append(timed(repeat, split.search, p, 10, submodels=[top[p]]))
    postings = {n: split.submodel(n).tables.post_docs.shape[0] for n in split.names}
    total = sum(postings.values())
    share, asked, largest = [], [], max(split.submodels, key=lambda s: s["entities"])["name"]
    with_largest = 0
    for p in prompts.values():
        names = split.ask(p, k=1, **routing).routing["asked"]
        asked.append(len(names))
        with_largest += largest in names
        share.append(sum(postings[n] for n in names) / total)
    row = {"prompts": len(prompts),
           "latency_ms_p50": {m: round(pct(v, 0.5), 3) for m, v in lat.items()},
           "latency_ms_p95": {m: round(pct(v, 0.95), 3) for m, v in lat.items()},
           "submodels_asked_mean": round(statistics.mean(asked), 2),
           "largest_asked_share": round(with_largest / len(prompts), 3),
           "postings_share_mean": round(statistics.mean(share), 4)}
    row["routed_over_unsplit_p50"] = round(row["latency_ms_p50"]["routed"] / row["latency_ms_p50"]["unsplit"], 2)
    row["pinned_over_unsplit_p50"] = round(row["latency_ms_p50"]["pinned"] / row["latency_ms_p50"]["unsplit"], 2)
    return row


def top_submodels(split, prompts: dict[str, str], **routing) -> dict[str, str]:
    """The router's first candidate sub-model of each prompt (by coverage)."""
    return {p: split.ask(p, k=1, **routing).routing["candidates"][0]["submodel"] for p in prompts.values()}


# --------------------------------------------------------------------------- one collection
def build_pair(name: str, scratch: Path, reuse: bool, mix_lines: int):
    spec = COLLECTIONS[name]
    sources = spec["sources"]
    if name == "mix":
        sources = [mix_corpus(scratch, mix_lines)]
    out = {}
    for kind, kw in (("unsplit", {}), ("split", spec["split"])):
        path = scratch / f"{name}-{kind}"
        if reuse and (path / "manifest.json").exists():
            out[kind] = (tablelm.load(path), None)
            continue
        t = time.perf_counter()
        model = tablelm.build(sources, path, **kw)
        out[kind] = (model, round(time.perf_counter() - t, 2))
    return out["unsplit"], out["split"]


def run_collection(name: str, scratch: Path, repeat: int, n_rss: int, reuse: bool, mix_lines: int) -> dict:
    (unsplit, t_unsplit), (split, t_split) = build_pair(name, scratch, reuse, mix_lines)
    prompts = prompts_of(name)
    row: dict = {"collection": name, "entities": unsplit.n_docs, "submodels": len(split.names),
                 "sizes": {s["name"]: s["entities"] for s in split.submodels}, "prompts": len(prompts),
                 "build_s": {"unsplit": t_unsplit, "split": t_split}}
    base = unsplit.search_many(prompts, 100)
    every = split.search_many(prompts, 100, route="all")
    row["all_equals_unsplit"] = sum(base[q] == every[q] for q in prompts) / len(prompts)
    quality = {}
    settings = (("route_max=1", {"route_max": 1}), ("route_coverage=0.5", {"route_coverage": 0.5}),
                ("route_coverage=0.8", {"route_coverage": 0.8}), ("route_coverage=0.9 (default)", {}),
                ("route_method=share (0.9; the df share)", {"route_method": "share"}))
    judged = (E.read_qrels(DATA / "cacm" / "qrels" / "test.tsv") if name == "cacm"
              else judged_mix()[1] if name == "mix" else None)
    for label, kw in settings:
        routed = split.search_many(prompts, 100, **kw)
        n_asked = statistics.mean(len(split.ask(p, k=1, **kw).routing["asked"]) for p in prompts.values())
        agree = statistics.mean(len({d for d, _ in routed[q][:10]} & {d for d, _ in base[q][:10]})
                                / max(1, min(10, len(base[q]))) for q in prompts)
        q = {"top10_agreement": round(agree, 4), "submodels_asked": round(n_asked, 2)}
        if judged is not None:
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
    from tablelm.query import kernel

    kernel.warm()  # latency with the compiled kernels, as a server runs
    row["cost"] = {"prompts": cost_row(unsplit, split, prompts, repeat)}
    mem_prompts = list(prompts.values())
    row["cost"]["prompts, route_method=share"] = cost_row(unsplit, split, prompts, repeat, route_method="share")
    if name == "mix":  # prompts that route to the largest sub-model, measured apart
        row["cost"]["everyday"] = cost_row(unsplit, split, everyday_prompts(), repeat)
        mem_prompts = mem_prompts[:200]
    top = top_submodels(split, {p: p for p in mem_prompts})
    row["memory"] = memory_row(scratch / f"{name}-unsplit", scratch / f"{name}-split", mem_prompts, n_rss, scratch,
                               top)
    return row


def _hits(report: dict) -> dict:
    return {k: round(report[k], 4) for k in ("top1", "top3", "top10") if k in report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collections", default="cacm,enterprise")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per prompt and path (median)")
    ap.add_argument("--rss", type=int, default=8, help="prompts answered in a fresh process each (0: none)")
    ap.add_argument("--mix-lines", type=int, default=300_000, help="lines of the scale corpus in 'mix'")
    ap.add_argument("--scratch", type=Path, help="where the models go (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="load the models already in --scratch instead of building")
    ap.add_argument("--out", type=Path, help="write the rows as JSON")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "PROMPTS", "MODE"), help=argparse.SUPPRESS)
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
            row = run_collection(name.strip(), scratch, args.repeat, args.rss, args.reuse, args.mix_lines)
            print(json.dumps(row), flush=True)
            rows.append(row)
            if args.out:
                args.out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    load = os.getloadavg()
    result = {"load_average": [round(x, 2) for x in load], "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"load_average": result["load_average"]}))


if __name__ == "__main__":
    main()
