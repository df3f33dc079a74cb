"""tablelm against bm25s on judged collections: quality, build time, speed, memory.

Each (system, collection) pair runs in its own subprocess (this script with
``--worker``), so that peak memory is that process's own
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` and a crash or a missing engine
fails one row, not the table. Every pair runs ``--repeat`` times (3), the systems
taking turns, and the table shows the median of each timing and memory figure,
with the range of build times: single runs on a shared machine vary by ±30%.
Quality uses ``tablelm.evaluation`` (trec_eval definitions, top 100); it must be
the same in every repeat.

Usage (from the repository root)::

    python benchmarks/bench_bm25.py                       # scifact, cranfield, cacm; all systems
    python benchmarks/bench_bm25.py --quick               # cranfield only
    python benchmarks/bench_bm25.py --systems bm25s --collections cacm,scifact
    python benchmarks/bench_bm25.py --out docs/benchmarks.md

Systems
-------
bm25s               bm25s Lucene BM25 (k1=1.5, b=0.75), English stopwords + Snowball
                    stemmer, document = title + " " + text (as BEIR), one thread, its fastest
                    backend: numba when it is installed, else numpy (``--bm25s-backend``; the
                    report says which ran).
tablelm             ``tablelm.build([corpus.jsonl])`` then ``model.search``, default parameters.
tablelm-reference   the same model queried with ``ranker="reference"``.
anserini-bm25       Anserini (Lucene) BM25 with its defaults k1=0.9, b=0.4, Porter stemmer and
                    Lucene's English stopwords, document = title + " " + text; the Anserini jar
                    that the ``pyserini`` package ships (``pip install --no-deps pyserini==0.25.0``,
                    Java 11+; later pyserini releases need Java 21).
anserini-rm3        the same with RM3 pseudo-relevance feedback (Lavrenko & Croft 2001; Anserini's
                    defaults: 10 feedback documents, 10 terms, original query weight 0.5).
anserini-sdm        the same with the Sequential Dependence Model (Metzler & Croft 2005), a
                    proximity model: terms 0.85, ordered windows 0.1, unordered windows 0.05.
                    The Anserini rows measure quality only: each build and search is a Java
                    process, so their timings are not comparable and are not shown.

Paired test
-----------
Every system is compared with bm25s query by query (``tablelm.evaluation.compare_runs``):
the mean difference of nDCG@10 and Recall@100, wins/ties/losses, and the two-sided
p-values of the paired randomization test (10,000 sign flips, seed 0) and the paired
t-test. A difference with p >= 0.05 can be noise: small collections move by
±0.01-0.02 between equally good systems.

What is measured
----------------
build s     corpus file → searchable index (bm25s: read JSONL + tokenize + index;
            tablelm: ``tablelm.build``), ``time.perf_counter``, in a fresh process.
            Library imports are not timed, for either system: ``import bm25s``
            imports SciPy; tablelm imports SciPy only when it builds (queries do
            not need it), so the worker imports it before the timer starts.
first ms    the first query of the process, one call, right after the build: what a
            one-shot process pays (bm25s numba: its JIT compile; tablelm: its lazy
            loads; tablelm scores with numpy until numba pays off, see
            tablelm/query/kernel.py).
warm s      the warm-up: bm25s one batch (its numba JIT); tablelm ``kernel.warm()``
            (import numba, load its on-disk cache or compile) and one batch.
q/s         all judged queries in one batch call (bm25s: tokenize + retrieve;
            tablelm: ``search_many``), one thread, after the warm-up; the
            batch is repeated until at least 1 s has been timed.
q/s cpu     the same batches per second of the worker's CPU time (``time.process_time``): both
            systems query in one thread, so on a loaded machine, where wall time includes
            waiting for a core, this is the comparable rate.
p50/p95 ms  the same queries one call at a time (after the warm-up).
peak MB     ``ru_maxrss`` of the worker process (includes the interpreter, imports,
            queries and qrels); Δ MB = peak − ``ru_maxrss`` just before the build,
            i.e. what building and querying added.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "data").resolve()
COLLECTIONS = {  # name → qrels file evaluated
    "scifact": "qrels/test.tsv",
    "cranfield": "qrels/test.tsv",
    "cacm": "qrels/test.tsv",
}
#: system → (build parameters, query parameters) for tablelm; bm25s is separate.
TABLELM_SYSTEMS = {
    "tablelm": ({}, {}),
    "tablelm-reference": ({}, {"ranker": "reference"}),
}
#: Anserini system → SearchCollection flags (after ``-bm25``); see the module docstring.
ANSERINI_SYSTEMS = {
    "anserini-bm25": [],
    "anserini-rm3": ["-rm3"],
    "anserini-sdm": ["-sdm"],
}
SYSTEMS = ["bm25s", *TABLELM_SYSTEMS, *ANSERINI_SYSTEMS]
#: Systems whose timings are not measured (a Java process per call): run once, quality only.
QUALITY_ONLY = set(ANSERINI_SYSTEMS)
K = 100
METRICS = ("ndcg@10", "recall@100", "map@100")
BM25_PARAMS = dict(method="lucene", k1=1.5, b=0.75)


# --------------------------------------------------------------------------- worker side


def _maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _percentile(values, q):
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float) * 1000.0, q))


def bm25s_backend(choice: str = "auto") -> str:
    """bm25s's fastest backend here: numba when it is installed."""
    if choice == "auto":
        import importlib.util

        return "numba" if importlib.util.find_spec("numba") else "numpy"
    return choice


def _bm25s_engine(corpus_path: Path, backend: str):
    """Build bm25s; return (build seconds, batch search fn, single search fn)."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    t0 = time.perf_counter()
    ids, texts = [], []
    with corpus_path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                doc = json.loads(line)
                ids.append(str(doc["_id"]))
                texts.append((doc.get("title") or "") + " " + (doc.get("text") or ""))
    retriever = bm25s.BM25(**BM25_PARAMS, backend=backend)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    build_s = time.perf_counter() - t0
    del texts

    def search_many(queries: dict[str, str]):
        qids = list(queries)
        tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer,
                                show_progress=False, return_ids=False)
        k = min(K, len(ids))
        docs, scores = retriever.retrieve(tokens, k=k, n_threads=1, show_progress=False, backend_selection=backend)
        return {q: [(ids[j], float(s)) for j, s in zip(docs[i], scores[i])] for i, q in enumerate(qids)}

    def search(text: str):
        return search_many({"q": text})["q"]

    return build_s, search_many, search


def _tablelm_engine(corpus_path: Path, build_params: dict, query_params: dict):
    try:
        import tablelm
    except ImportError as exc:
        raise SystemExit(f"cannot import tablelm ({exc}); run from the repository root or pip install -e .") from exc
    if not callable(getattr(tablelm, "build", None)):
        raise SystemExit(f"tablelm.build is missing (tablelm imported from "
                         f"{getattr(tablelm, '__file__', None) or list(getattr(tablelm, '__path__', []))}); "
                         "the engine is not there yet")
    import scipy.sparse  # noqa: F401  (an import of the build, not build time; see "What is measured")

    t0 = time.perf_counter()
    model = tablelm.build([str(corpus_path)], out_dir=None, **build_params)
    build_s = time.perf_counter() - t0

    def search_many(queries):
        return {q: list(r) for q, r in model.search_many(queries, k=K, **query_params).items()}

    def search(text):
        return list(model.search(text, k=K, **query_params))

    return build_s, search_many, search


def anserini_jar() -> Path:
    """The Anserini fat jar shipped in the ``pyserini`` package (found without importing pyserini,
    whose import needs faiss and torch that the benchmark does not)."""
    import importlib.util

    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pyserini is not installed; pip install --no-deps pyserini==0.25.0 (needs Java 11+)")
    jars = sorted(Path(next(iter(spec.submodule_search_locations)), "resources", "jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise SystemExit("pyserini has no resources/jars/anserini-*-fatjar.jar; reinstall pyserini==0.25.0")
    return jars[-1]


def _java(jar: Path, main: str, args: list[str]) -> None:
    proc = subprocess.run(["java", "-cp", str(jar), main, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise SystemExit(f"{main} failed ({lines[-1] if lines else proc.returncode}); is Java 11+ installed?")


def run_anserini(system: str, folder: Path, queries: dict[str, str], tmp: Path) -> dict:
    """Index ``folder``'s corpus with Anserini and run the queries; returns the run."""
    jar = anserini_jar()
    docs = tmp / "docs"
    docs.mkdir()
    with (folder / "corpus.jsonl").open(encoding="utf-8") as src, (docs / "docs.jsonl").open("w") as dst:
        for line in src:
            if line.strip():
                doc = json.loads(line)
                text = (doc.get("title") or "") + " " + (doc.get("text") or "")
                dst.write(json.dumps({"id": str(doc["_id"]), "contents": text}) + "\n")
    # positions for SDM's windows, document vectors for RM3's feedback terms
    _java(jar, "io.anserini.index.IndexCollection",
          ["-collection", "JsonCollection", "-input", str(docs), "-index", str(tmp / "index"),
           "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1", "-storePositions",
           "-storeDocvectors"])
    topics = tmp / "topics.tsv"
    # TsvString topics: one line per query, so newlines and tabs inside a query become spaces
    topics.write_text("".join(f"{q}\t{' '.join(t.split())}\n" for q, t in queries.items()), encoding="utf-8")
    out = tmp / "run.txt"
    _java(jar, "io.anserini.search.SearchCollection",
          ["-index", str(tmp / "index"), "-topics", str(topics), "-topicReader", "TsvString",
           "-output", str(out), "-hits", str(K), "-threads", "1", "-bm25", *ANSERINI_SYSTEMS[system]])
    from tablelm.evaluation import read_trec_run

    return read_trec_run(out)


def run_worker(system: str, folder: Path, qrels_name: str, backend: str = "auto") -> dict:
    """Measure one system on one collection; return a JSON-able dict."""
    from tablelm.evaluation import evaluate_run, read_qrels, read_queries

    queries = read_queries(folder / "queries.jsonl")
    qrels = read_qrels(folder / qrels_name)
    judged = {q: queries[q] for q in qrels}
    if system in ANSERINI_SYSTEMS:
        with tempfile.TemporaryDirectory() as tmp:
            run = run_anserini(system, folder, judged, Path(tmp))
        scores = evaluate_run(run, qrels, METRICS)
        return {"system": system, "collection": folder.name, "n_queries": len(judged), **scores["mean"],
                "per_query": scores["per_query"], **{key: None for key in TIMED}}
    rss_before = _maxrss_mb()
    backend = bm25s_backend(backend)
    if system == "bm25s":
        build_s, search_many, search = _bm25s_engine(folder / "corpus.jsonl", backend)
    elif system in TABLELM_SYSTEMS:
        build_s, search_many, search = _tablelm_engine(folder / "corpus.jsonl", *TABLELM_SYSTEMS[system])
    else:
        raise SystemExit(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")

    first_text = next(iter(judged.values()))
    t0 = time.perf_counter()
    search(first_text)  # the process's first query: lazy loads, and bm25s numba's JIT
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if system in TABLELM_SYSTEMS:
        from tablelm.query import kernel

        kernel.warm()  # numba now (from its on-disk cache), not after a second of numpy scoring
        backend = kernel.backend()
    search_many(judged)  # warm-up: first-call costs (lazy loads, caches, numba/JIT) are not throughput
    warm_s = time.perf_counter() - t0
    # Repeat the batch until ≥ 1 s has been timed: 52 CACM queries alone take a few ms.
    repeats, batch_s, batch_cpu = 0, 0.0, 0.0
    while repeats == 0 or batch_s < 1.0:
        t0, c0 = time.perf_counter(), time.process_time()
        run = search_many(judged)
        batch_s += time.perf_counter() - t0
        batch_cpu += time.process_time() - c0
        repeats += 1
    latencies = []
    for text in judged.values():
        t = time.perf_counter()
        search(text)
        latencies.append(time.perf_counter() - t)
    scores = evaluate_run(run, qrels, METRICS)
    peak = _maxrss_mb()
    return {
        "system": system, "collection": folder.name, "n_queries": len(judged), **scores["mean"],
        "per_query": scores["per_query"],
        "build_s": build_s, "qps": repeats * len(judged) / batch_s,
        "qps_cpu": repeats * len(judged) / max(batch_cpu, 1e-9), "first_ms": first_s * 1000.0,
        "warm_s": warm_s, "backend": backend,
        "p50_ms": _percentile(latencies, 50), "p95_ms": _percentile(latencies, 95),
        "peak_mb": peak, "delta_mb": peak - rss_before,
    }


# --------------------------------------------------------------------------- driver side


def machine_facts(argv: list[str], script: str = "benchmarks/bench_bm25.py") -> list[str]:
    """Markdown bullets: CPU, Python and library versions, commit, date, and the command run."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    versions = []
    for pkg in ("tablelm", "bm25s", "pyserini", "numpy", "scipy", "PyStemmer", "numba"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{pkg} not installed")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "none"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return [
        f"- CPU: {cpu}; cores: {os.cpu_count()}; {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {'; '.join(versions)}",
        f"- git commit: {commit}; date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- command: `{shlex.join(['python', script, *argv])}`",
    ]


def spawn(system: str, folder: Path, qrels_name: str, timeout: float, backend: str = "auto") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", system,
               "--folder", str(folder), "--qrels", qrels_name, "--result", str(out), "--bm25s-backend", backend]
        env = dict(os.environ)
        # The worker imports tablelm from this checkout even when it is not installed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"system": system, "collection": folder.name, "error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            return {"system": system, "collection": folder.name,
                    "error": f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"}
        return json.loads(out.read_text())


TIMED = ("build_s", "first_ms", "warm_s", "qps", "qps_cpu", "p50_ms", "p95_ms", "peak_mb", "delta_mb")


def combine(runs: list[dict]) -> dict:
    """One row from the repeats of a (system, collection): medians of the timed figures."""
    import statistics

    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    first = runs[0]
    for r in runs[1:]:
        if any(abs(r[m] - first[m]) > 1e-9 for m in METRICS):
            return {"system": first["system"], "collection": first["collection"],
                    "error": "quality differs between repeats (not deterministic)"}
    timed = {k: [r[k] for r in runs if r.get(k) is not None] for k in TIMED}
    row = dict(first, **{k: statistics.median(v) if v else None for k, v in timed.items()})
    row["build_runs"] = sorted(timed["build_s"])
    return row


PAIRED = ("ndcg@10", "recall@100")


def paired_rows(results: list[dict]) -> list[str]:
    """Markdown rows: each system against bm25s on the same queries (randomization test and t-test)."""
    from tablelm.evaluation import paired_test

    base = {r["collection"]: r for r in results if r["system"] == "bm25s" and "error" not in r}
    rows = []
    for r in results:
        b = base.get(r["collection"])
        if r["system"] == "bm25s" or "error" in r or b is None:
            continue
        cells = []
        for metric in PAIRED:
            qids = list(b["per_query"])
            t = paired_test([r["per_query"][q][metric] for q in qids], [b["per_query"][q][metric] for q in qids])
            real = "**yes**" if t["p_randomization"] < 0.05 else "no"
            cells.append(f"{t['delta']:+.4f} | {t['wins']}/{t['ties']}/{t['losses']} | {t['p_randomization']:.4f} "
                         f"| {t['p_ttest']:.4f} | {real}")
        rows.append(f"| {r['collection']} | {r['system']} | " + " | ".join(cells) + " |")
    return rows


def fmt(x, digits):
    return "–" if x is None else f"{x:,.{digits}f}"


def build_range(runs: list[float]) -> str:
    return f"{fmt(runs[0], 2)}–{fmt(runs[-1], 2)}" if runs else "–"


def render(results: list[dict], facts: list[str], runs: int) -> str:
    lines = ["# tablelm vs bm25s", "",
             f"Top-{K}, trec_eval metrics (tablelm.evaluation). Each row: the median of {runs} worker "
             "processes, the systems taking turns (build range: fastest–slowest build); peak MB = "
             "ru_maxrss of a worker, Δ MB = growth from just before the build. Single runs vary by "
             "±30% on a shared machine: compare rows of the same run.", "",
             "| collection | system | backend | queries | nDCG@10 | Recall@100 | MAP@100 | build s | build range "
             "| first ms | warm s | q/s | q/s cpu | p50 ms | p95 ms | peak MB | Δ MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['collection']} | {r['system']} | | FAILED: {r['error'].replace('|', '/')} "
                         "| | | | | | | | | | | | | | |")
            continue
        lines.append(f"| {r['collection']} | {r['system']} | {r.get('backend') or '–'} | {r['n_queries']} "
                     f"| {r['ndcg@10']:.3f} | {r['recall@100']:.3f} | {r['map@100']:.3f} | {fmt(r['build_s'], 2)} "
                     f"| {build_range(r['build_runs'])} | {fmt(r.get('first_ms'), 1)} | {fmt(r.get('warm_s'), 2)} "
                     f"| {fmt(r['qps'], 0)} | {fmt(r.get('qps_cpu'), 0)} | {fmt(r['p50_ms'], 2)} "
                     f"| {fmt(r['p95_ms'], 2)} | {fmt(r['peak_mb'], 0)} | {fmt(r['delta_mb'], 0)} |")
    ratios = []
    by_key = {(r["collection"], r["system"]): r for r in results if "error" not in r}
    for r in results:
        base = by_key.get((r["collection"], "bm25s"))
        if r["system"] == "bm25s" or "error" in r or base is None:
            continue

        def ratio(key, r=r, base=base):
            if not base.get(key) or r.get(key) is None:
                return "–"
            v = r[key] / base[key]
            return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"  # a first query 3,000x faster is not "0.00"

        ratios.append(f"| {r['collection']} | {r['system']} | {ratio('ndcg@10')} | {ratio('recall@100')} "
                      f"| {ratio('map@100')} | {ratio('build_s')} | {ratio('first_ms')} | {ratio('qps')} "
                      f"| {ratio('qps_cpu')} "
                      f"| {ratio('p50_ms')} | {ratio('p95_ms')} | {ratio('peak_mb')} |")
    if ratios:
        lines += ["", "Ratios tablelm / bm25s, same run (quality and q/s: higher is better for tablelm; "
                  "build s, first query, p50/p95 and memory: lower is better):", "",
                  "| collection | system | nDCG@10 | Recall@100 | MAP@100 | build s | first ms | q/s | q/s cpu "
                  "| p50 ms | p95 ms | peak MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|", *ratios]
    paired = paired_rows(results)
    if paired:
        lines += ["", "Paired tests against bm25s, query by query (Δ = system − bm25s; W/T/L = queries the "
                  "system wins/ties/loses; p: two-sided, paired randomization test with 10,000 sign flips "
                  "and paired t-test; real = p(rand) < 0.05):", "",
                  "| collection | system | Δ nDCG@10 | W/T/L | p rand | p t | real | Δ Recall@100 | W/T/L "
                  "| p rand | p t | real |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|", *paired]
    lines += ["", "Machine:", "", *facts, ""]
    return "\n".join(lines)


def parse_list(value: str, allowed: list[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad or value!r}; choose from {', '.join(allowed)}")
    return items


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help=f"folder holding the collections (default: ../shared/data from the repo root = "
                         f"{DEFAULT_DATA})")
    ap.add_argument("--collections", type=lambda v: parse_list(v, list(COLLECTIONS), "collection"),
                    default=list(COLLECTIONS), help=f"comma-separated, from {', '.join(COLLECTIONS)}")
    ap.add_argument("--systems", type=lambda v: parse_list(v, SYSTEMS, "system"), default=SYSTEMS,
                    help=f"comma-separated, from {', '.join(SYSTEMS)}")
    ap.add_argument("--quick", action="store_true", help="cranfield only")
    ap.add_argument("--out", type=Path, help="also write the Markdown report here (e.g. docs/benchmarks.md)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="worker processes per (system, collection); the table shows medians (3)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per worker process (1800)")
    ap.add_argument("--bm25s-backend", choices=["auto", "numba", "numpy"], default="auto",
                    help="bm25s's backend: auto = numba when installed (its fastest), else numpy")
    # worker mode (internal)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--qrels", help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        result = run_worker(args.worker, args.folder, args.qrels, args.bm25s_backend)
        args.result.write_text(json.dumps(result))
        return 0

    # the paired tests use this checkout's tablelm.evaluation, as the workers do (see spawn)
    sys.path.insert(0, str(REPO))
    collections = ["cranfield"] if args.quick else args.collections
    missing = [c for c in collections if not (args.data / c / "corpus.jsonl").exists()]
    if missing:
        ap.error(f"no corpus.jsonl for {', '.join(missing)} under {args.data}; pass --data FOLDER")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    results = []
    for name in collections:
        runs = {system: [] for system in args.systems}
        for i in range(args.repeat):
            for system in args.systems:
                if i and system in QUALITY_ONLY:
                    continue  # deterministic and untimed: one run says it all
                print(f"[bench] {system} on {name} ({i + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
                r = spawn(system, args.data / name, COLLECTIONS[name], args.timeout, args.bm25s_backend)
                status = r["error"] if "error" in r else f"nDCG@10 {r['ndcg@10']:.3f}, build {fmt(r['build_s'], 2)} s"
                print(f"[bench]   {status}", file=sys.stderr, flush=True)
                runs[system].append(r)
        results += [combine(runs[system]) for system in args.systems]
    report = render(results, machine_facts(argv), args.repeat)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
