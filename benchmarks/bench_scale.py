"""How tablelm and bm25s grow with the corpus: build, memory, size on disk, load, queries, updates.

Two kinds of corpus, both written into a scratch folder (a temporary one unless
``--scratch``), never into the repository:

mix    prefixes of ``scale/mix-1m.jsonl.gz`` (1,000,000 short real documents: package
       summaries, Debian descriptions, abstracts; ~14 words each), ``--sizes`` documents
       (default 10k,100k; 1M takes minutes per system and is run only when asked).
long   the abstracts of SciFact, Cranfield and CACM (those with any text), repeated with
       distinct ids up to ``--long-size`` documents (default 100k; ~156 words each). The
       vocabulary stays that of ~8,200 abstracts: this set measures longer documents, not
       a growing vocabulary.

Every (system, corpus) runs in fresh worker subprocesses (this script with
``--worker``): one builds and saves the index, the next one loads it and queries it, so
that peak memory is the build's own ``ru_maxrss`` and load time is that of a cold
process. Each pair runs ``--repeat`` times (3), the systems taking turns, and the
tables show medians. Library imports are not timed, for either system, nor is numba's
JIT compilation of bm25s (it is warmed up on a three-document index first).

Usage (from the repository root)::

    python benchmarks/bench_scale.py                                  # mix 10k,100k + long 100k
    python benchmarks/bench_scale.py --sizes 10k,100k,1M --long-size 100k --out docs/scaling.md
    python benchmarks/bench_scale.py --quick                          # tiny prefixes, seconds

Systems
-------
bm25s     Lucene BM25 (k1=1.5, b=0.75), English stopwords + PyStemmer English stemmer,
          document = title + " " + text, one thread; the numba backend when numba is
          installed (``--bm25s-backend``), the backend that ran is printed.
tablelm   ``tablelm.build`` with default parameters (duplicate-content detection off, so
          that both systems index the same documents: the long set repeats abstracts).

What is measured
----------------
build s        corpus file → index saved on disk (bm25s: read JSONL, tokenize, index, save;
               tablelm: ``tablelm.build(..., out_dir)``), ``time.perf_counter``.
build peak MB  ``ru_maxrss`` of the build process (interpreter and imports included: numba
               alone adds ~150 MB to bm25s's); build Δ MB: peak − ``ru_maxrss`` just
               before the build, i.e. what the build itself added.
model MB       bytes of the saved folder; tablelm's includes its entity store (the
               documents' text, for cards and citations), bm25s's index holds no corpus.
load s         ``tablelm.load`` / ``bm25s.BM25.load`` (arrays read into memory, its
               default) in a fresh process; first query ms: the first query after it.
q/s            the fixed query set in one batch call (tablelm ``search_many``, bm25s
               tokenize + ``retrieve``), k=10, after a warm-up on 50 queries (tablelm:
               after ``kernel.warm()`` too, its compiled kernels), repeated until at least
               1 s has been timed.
p50/p95 ms     one call per query: tablelm ``Model.ask(k=10)`` (cards, citations and
               sections included), bm25s tokenize + ``retrieve(k=10)`` (a query with no
               indexed word returns at once, without ``retrieve``).
add/delete s   wall time of ``tablelm add -m MODEL FILE`` (100 new documents: SciFact
               claims, the same 100 at every size) and then ``tablelm delete -m MODEL
               ID...`` (100 ids of the corpus, every N/100-th), Python start included
               (the start of ``tablelm add --help`` is printed for reference);
               "n/a (command not available)" when ``tablelm add --help`` fails.
growth         the slope of log(measure) against log(documents) over the sizes of one
               corpus kind (1.0 = linear; q/s falls, so its slope is negative).

Queries (the same at every size of a kind): mix: the first 8 words of the text of every
k-th document among the first min(--sizes) documents, k chosen to give ``--queries``
(1,000); long: the queries of SciFact, Cranfield and CACM taken in turn, the first 1,000.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "data").resolve()
MIX = Path("scale") / "mix-1m.jsonl.gz"
LONG_SOURCES = ("scifact", "cranfield", "cacm")
SYSTEMS = ["bm25s", "tablelm"]
K = 10
QUERY_WORDS = 8
CHANGE = 100  # documents added, then deleted


def _bench_bm25():
    """The sibling benchmark, for its measuring helpers (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_bm25", Path(__file__).with_name("bench_bm25.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_b = _bench_bm25()
BM25_PARAMS = _b.BM25_PARAMS
maxrss_mb, percentile_ms, machine_facts, parse_list = _b._maxrss_mb, _b._percentile, _b.machine_facts, _b.parse_list


# --------------------------------------------------------------------------- corpora


def parse_size(text: str) -> int:
    """``"10k"`` → 10000, ``"1M"`` → 1000000, ``"2500"`` → 2500."""
    t = text.strip()
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:].lower(), 1)
    number = t[:-1] if scale != 1 else t
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not a number such as 10k, 100k or 1M") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"size {text!r} must be a whole number of documents, at least 1")
    return int(value)


def parse_sizes(text: str) -> list[int]:
    """A comma-separated list of sizes, sorted, without repeats; empty or "0": none."""
    sizes = sorted({parse_size(v) for v in text.split(",") if v.strip() and v.strip() != "0"})
    return sizes


def human(n: int) -> str:
    """10000 → "10k", 1000000 → "1M", 2500 → "2,500"."""
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n:,}"


def _doc_words(doc: dict) -> int:
    return len(((doc.get("title") or "") + " " + (doc.get("text") or "")).split())


def write_mix_prefixes(source: Path, sizes: list[int], folder: Path) -> dict[int, dict]:
    """Write the first N lines of ``source`` (gzip JSONL) for each N in ``sizes``, in one pass.

    Returns N → {"path", "docs", "words", "ids"}; ``ids`` are every (N/100)-th id (the
    documents a delete removes). Raises SystemExit when the file has fewer than max(sizes)
    lines.
    """
    out, files, words, ids = {}, {}, dict.fromkeys(sizes, 0), {n: [] for n in sizes}
    try:
        for n in sizes:
            files[n] = open(folder / f"mix-{human(n)}.jsonl", "w", encoding="utf-8")
        count = 0
        with gzip.open(source, "rt", encoding="utf-8") as f:
            for line in itertools.islice(f, max(sizes)):
                doc = json.loads(line)
                w = _doc_words(doc)
                for n in sizes:
                    if count < n:
                        files[n].write(line if line.endswith("\n") else line + "\n")
                        words[n] += w
                        if count % max(1, n // CHANGE) == 0 and len(ids[n]) < CHANGE:
                            ids[n].append(str(doc["_id"]))
                count += 1
    finally:
        for fh in files.values():
            fh.close()
    if count < max(sizes):
        raise SystemExit(f"{source} has {count:,} documents, fewer than the {max(sizes):,} asked for with --sizes")
    for n in sizes:
        out[n] = {"path": str(folder / f"mix-{human(n)}.jsonl"), "docs": n, "words": words[n], "ids": ids[n]}
    return out


def _read_jsonl(path: Path):
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def write_long(data: Path, n: int, folder: Path) -> dict:
    """The three collections' abstracts repeated with distinct ids to ``n`` documents."""
    base = []
    for name in LONG_SOURCES:
        for doc in _read_jsonl(data / name / "corpus.jsonl"):
            if _doc_words(doc):  # CACM and Cranfield have records with neither title nor text
                base.append({"_id": f"{name}:{doc['_id']}", "title": doc.get("title") or "",
                             "text": doc.get("text") or ""})
    path = folder / f"long-{human(n)}.jsonl"
    words, ids = 0, []
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            rep, doc = divmod(i, len(base))
            doc = base[doc] if rep == 0 else dict(base[doc], _id=f"{base[doc]['_id']}#{rep}")
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            words += _doc_words(doc)
            if i % max(1, n // CHANGE) == 0 and len(ids) < CHANGE:
                ids.append(doc["_id"])
    return {"path": str(path), "docs": n, "words": words, "ids": ids}


def mix_queries(corpus: Path, n_docs: int, n_queries: int) -> list[str]:
    """The first words of the text of every k-th document among the first ``n_docs``."""
    step = max(1, n_docs // n_queries)
    out = []
    with corpus.open(encoding="utf-8") as f:
        for i, line in enumerate(itertools.islice(f, n_docs)):
            if i % step == 0 and len(out) < n_queries:
                words = (json.loads(line).get("text") or "").split()[:QUERY_WORDS]
                if words:
                    out.append(" ".join(words))
    return out


def long_queries(data: Path, n_queries: int) -> list[str]:
    """The collections' queries taken in turn (one from each while they last)."""
    lists = [[q["text"] for q in _read_jsonl(data / name / "queries.jsonl")] for name in LONG_SOURCES]
    turns = itertools.chain.from_iterable(itertools.zip_longest(*lists))
    return [q for q in turns if q][:n_queries]


def write_additions(data: Path, path: Path) -> Path:
    """100 documents no corpus holds: SciFact claims (every k-th), as BEIR records."""
    claims = list(_read_jsonl(data / "scifact" / "queries.jsonl"))
    step = max(1, len(claims) // CHANGE)
    with path.open("w", encoding="utf-8") as f:
        for q in claims[::step][:CHANGE]:
            f.write(json.dumps({"_id": f"added:{q['_id']}", "title": "", "text": q["text"]}) + "\n")
    return path


# --------------------------------------------------------------------------- worker side


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6


def bm25s_backend(choice: str) -> str:
    if choice == "auto":
        return "numba" if importlib.util.find_spec("numba") else "numpy"
    return choice


def _bm25s_warm(backend: str) -> None:
    """Compile numba's functions on a 3-document index, so that no timer includes the JIT."""
    import bm25s

    if backend != "numba":
        return
    r = bm25s.BM25(**BM25_PARAMS, backend=backend)
    r.index(bm25s.tokenize(["warm up one", "warm two", "three"], show_progress=False), show_progress=False)
    r.retrieve([["warm"]], k=2, n_threads=1, show_progress=False)


def _tablelm_cli(*args) -> list[str]:
    return [sys.executable, "-m", "tablelm.interfaces.cli", *args]


def cli_env() -> dict:
    env = dict(os.environ)
    # Workers and the commands they start import tablelm from this checkout even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def worker_build(system: str, corpus: Path, model_dir: Path, backend: str) -> dict:
    """Build and save one index; the process's peak RSS is the build's."""
    if system == "bm25s":
        import bm25s
        import Stemmer

        _bm25s_warm(backend)
        rss_before = maxrss_mb()
        t0 = time.perf_counter()
        stemmer = Stemmer.Stemmer("english")
        texts = [(d.get("title") or "") + " " + (d.get("text") or "") for d in _read_jsonl(corpus)]
        retriever = bm25s.BM25(**BM25_PARAMS, backend=backend)
        retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                        show_progress=False)
        retriever.save(str(model_dir), show_progress=False)
        build_s = time.perf_counter() - t0
        n_docs, store_mb = len(texts), None
    else:
        import scipy.sparse  # noqa: F401  (an import of the build, not build time)

        import tablelm

        rss_before = maxrss_mb()
        t0 = time.perf_counter()
        model = tablelm.build([str(corpus)], model_dir, reader_options={"dedupe_content": False})
        build_s = time.perf_counter() - t0
        n_docs = model.info()["stats"]["entities"]
        store_mb = sum(p.stat().st_size for p in Path(model_dir).rglob("entities.jsonl*")) / 1e6
    peak = maxrss_mb()
    return {"build_s": build_s, "build_peak_mb": peak, "build_delta_mb": peak - rss_before,
            "model_mb": folder_mb(model_dir), "store_mb": store_mb, "indexed_docs": n_docs}


def _timed_batches(fn, queries) -> float:
    """Queries per second of ``fn(queries)``, after a warm-up, over at least 1 s."""
    fn(queries[:50])
    calls, spent = 0, 0.0
    while calls == 0 or spent < 1.0:
        t0 = time.perf_counter()
        fn(queries)
        spent += time.perf_counter() - t0
        calls += 1
    return calls * len(queries) / spent


def _cli_seconds(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(_tablelm_cli(*args), capture_output=True, text=True, env=cli_env())
    return time.perf_counter() - t0, proc


def add_delete(model_dir: Path, additions: Path, ids: list[str]) -> dict:
    """Time ``tablelm add`` of the additions, then ``tablelm delete`` of ``ids``, on the saved model."""
    import tablelm

    available = all(_cli_seconds([cmd, "--help"])[1].returncode == 0 for cmd in ("add", "delete"))
    if not available:
        return {"add_s": None, "delete_s": None, "update_note": "n/a (command not available)"}

    def docs():
        return tablelm.load(model_dir).info()["stats"]["entities"]

    before = docs()
    add_s, proc = _cli_seconds(["add", "-m", str(model_dir), "--keep-duplicates", str(additions)])
    if proc.returncode:
        return {"add_s": None, "delete_s": None, "update_note": f"add failed: {_last_line(proc)}"}
    after_add = docs()
    delete_s, proc = _cli_seconds(["delete", "-m", str(model_dir), *ids])
    if proc.returncode:
        return {"add_s": add_s, "delete_s": None, "update_note": f"delete failed: {_last_line(proc)}"}
    after_delete = docs()
    note = None
    if (after_add - before, after_delete - after_add) != (CHANGE, -len(ids)):
        note = f"documents {before:,} → {after_add:,} after add → {after_delete:,} after delete"
    return {"add_s": add_s, "delete_s": delete_s, "update_note": note}


def _last_line(proc) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}, no output"


def worker_query(system: str, model_dir: Path, queries: list[str], backend: str, additions: Path | None,
                 ids: list[str]) -> dict:
    """Load the saved index in this fresh process, query it, then (tablelm) add and delete."""
    if system == "bm25s":
        import bm25s
        import Stemmer

        _bm25s_warm(backend)
        stemmer = Stemmer.Stemmer("english")
        t0 = time.perf_counter()
        retriever = bm25s.BM25.load(str(model_dir), backend=backend)
        load_s = time.perf_counter() - t0

        def batch(texts):
            tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False,
                                    return_ids=False)
            # A query with no indexed word has no results; the numba backend rejects a batch
            # whose first query is one, so such queries are left out, as a caller would.
            ids = [q for q in map(retriever.get_tokens_ids, tokens) if q]
            return retriever.retrieve(ids, k=K, n_threads=1, show_progress=False) if ids else None

        def single(text):
            return batch([text])
    else:
        import tablelm

        t0 = time.perf_counter()
        model = tablelm.load(model_dir)
        load_s = time.perf_counter() - t0

        def batch(texts):
            return model.search_many(dict(enumerate(texts)), k=K)

        def single(text):
            return model.ask(text, k=K)

    t0 = time.perf_counter()
    single(queries[0])
    first_ms = (time.perf_counter() - t0) * 1000
    if system == "tablelm":  # the compiled kernels, as bm25s's numba backend had its JIT warm-up
        from tablelm.query import kernel

        kernel.warm()
    qps = _timed_batches(batch, queries)
    latencies = []
    for text in queries:
        t = time.perf_counter()
        single(text)
        latencies.append(time.perf_counter() - t)
    out = {"load_s": load_s, "first_ms": first_ms, "qps": qps, "p50_ms": percentile_ms(latencies, 50),
           "p95_ms": percentile_ms(latencies, 95), "query_peak_mb": maxrss_mb(), "n_queries": len(queries)}
    if system == "tablelm" and additions is not None:
        out.update(add_delete(model_dir, additions, ids))
    return out


# --------------------------------------------------------------------------- driver side


def spawn(job: dict, timeout: float) -> dict:
    """Run one worker job (a JSON-able dict) in a fresh process; its result, or {"error": ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        job_file, out = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps(job))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(job_file), "--result", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=cli_env())
        except subprocess.TimeoutExpired:
            return {"error": f"{job['phase']} timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            return {"error": f"{job['phase']}: {_last_line(proc)}"}
        return json.loads(out.read_text())


def run_worker(job: dict) -> dict:
    if job["phase"] == "build":
        return worker_build(job["system"], Path(job["corpus"]), Path(job["model_dir"]), job["backend"])
    return worker_query(job["system"], Path(job["model_dir"]), job["queries"], job["backend"],
                        Path(job["additions"]) if job.get("additions") else None, job["ids"])


TIMED = ("build_s", "build_peak_mb", "build_delta_mb", "model_mb", "store_mb", "load_s", "first_ms", "qps",
         "p50_ms", "p95_ms", "query_peak_mb", "add_s", "delete_s")


def combine(runs: list[dict]) -> dict:
    """One row from the repeats of a (system, corpus): medians of the measured figures."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return dict(runs[0], error=failed[0]["error"])
    row = dict(runs[0])
    for key in TIMED:
        values = [r.get(key) for r in runs]
        row[key] = statistics.median(values) if all(v is not None for v in values) else None
    row["build_runs"] = sorted(r["build_s"] for r in runs)
    notes = [r["update_note"] for r in runs if r.get("update_note")]
    row["update_note"] = notes[0] if notes else None
    return row


def growth_exponent(sizes: list[float], values: list[float | None]) -> float | None:
    """Least-squares slope of log(value) against log(size); None without 2 sizes or a value ≤ 0."""
    pairs = [(s, v) for s, v in zip(sizes, values) if v is not None]
    if len(pairs) < 2 or len(pairs) < len(values) or any(v <= 0 for _, v in pairs):
        return None
    xs = [math.log(s) for s, _ in pairs]
    ys = [math.log(v) for _, v in pairs]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


GROWTH = (("build_s", "build s"), ("build_peak_mb", "build peak MB"), ("build_delta_mb", "build Δ MB"),
          ("model_mb", "model MB"),
          ("load_s", "load s"), ("first_ms", "first query ms"), ("qps", "q/s"), ("p50_ms", "p50 ms"),
          ("p95_ms", "p95 ms"), ("add_s", "add-100 s"), ("delete_s", "delete-100 s"))
RATIOS = GROWTH[:9]


def fmt(x, digits=2) -> str:
    if x is None:
        return "–"
    if digits == "auto":  # three significant figures, for timings that span 1 ms to minutes
        digits = max(0, 2 - math.floor(math.log10(abs(x)))) if x else 0
    return f"{x:,.{digits}f}"


def render(rows: list[dict], corpora: list[dict], facts: list[str], repeat: int, backend: str) -> str:
    lines = ["# Scaling: tablelm and bm25s as the corpus grows", "",
             f"Each figure is the median of {repeat} run{'s' if repeat > 1 else ''} of fresh worker processes "
             "(one builds and saves, the next loads and queries), the systems taking turns. "
             f"bm25s backend: **{backend}**. Queries are k={K}. Single runs on a shared 2-core machine vary "
             "by ±30% or more: compare the systems within one run (the ratios), not across runs. "
             "What each column measures: `python benchmarks/bench_scale.py --help`.", "",
             "## Corpora", "",
             "| corpus | docs | words | corpus MB | queries |", "|---|---|---|---|---|"]
    for c in corpora:
        lines.append(f"| {c['kind']} | {c['docs']:,} | {c['words']:,} | {fmt(c['corpus_mb'], 1)} "
                     f"| {c['n_queries']:,} |")
    lines += ["", "## Measures", "",
              "| corpus | docs | system | build s | build range | build peak MB | build Δ MB | model MB "
              "| model / corpus | load s | first query ms | q/s | p50 ms | p95 ms | add-100 s | delete-100 s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['kind']} | {r['docs']:,} | {r['system']} |"
        if "error" in r:
            lines.append(f"{head} FAILED: {r['error'].replace('|', '/')} | | | | | | | | | | | | |")
            continue
        if r["system"] != "tablelm":
            add = delete = "–"
        elif r.get("update_note") and r.get("add_s") is None:
            add, delete = r["update_note"], "n/a"
        else:
            add, delete = fmt(r["add_s"]), fmt(r["delete_s"])
            if r.get("update_note"):
                delete += f" ({r['update_note']})"
        lines.append(f"{head} {fmt(r['build_s'], 'auto')} | {fmt(r['build_runs'][0], 'auto')}–"
                     f"{fmt(r['build_runs'][-1], 'auto')} | {fmt(r['build_peak_mb'], 0)} "
                     f"| {fmt(r['build_delta_mb'], 0)} "
                     f"| {fmt(r['model_mb'], 1)} "
                     f"| {fmt(r['model_mb'] / r['corpus_mb'])} | {fmt(r['load_s'], 3)} | {fmt(r['first_ms'], 1)} "
                     f"| {fmt(r['qps'], 0)} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | {add} | {delete} |")
    growth = []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        for system in dict.fromkeys(r["system"] for r in rows):
            mine = [r for r in rows if r["kind"] == kind and r["system"] == system and "error" not in r]
            if len(mine) < 2:
                continue
            docs = [r["docs"] for r in mine]
            slopes = [growth_exponent(docs, [r[key] for r in mine]) for key, _ in GROWTH]
            growth.append(f"| {kind} | {system} | {', '.join(human(d) for d in docs)} | "
                          + " | ".join(fmt(s) for s in slopes) + " |")
    if growth:
        lines += ["", "## Growth exponents", "",
                  "Slope of log(measure) against log(documents): 1.0 grows linearly with the corpus, 0 not at "
                  "all; q/s falls as the corpus grows, so its slope is negative.", "",
                  "| corpus | system | sizes | " + " | ".join(name for _, name in GROWTH) + " |",
                  "|---|---|---|" + "---|" * len(GROWTH), *growth]
    by_key = {(r["kind"], r["docs"], r["system"]): r for r in rows if "error" not in r}
    ratios = []
    for r in rows:
        base = by_key.get((r["kind"], r["docs"], "bm25s"))
        if r["system"] == "bm25s" or "error" in r or base is None:
            continue
        cells = [fmt(r[key] / base[key]) if r.get(key) and base.get(key) else "–" for key, _ in RATIOS]
        ratios.append(f"| {r['kind']} | {r['docs']:,} | {r['system']} | " + " | ".join(cells) + " |")
    if ratios:
        lines += ["", "## Ratios tablelm / bm25s", "",
                  "Below 1 is better for tablelm, except q/s (above 1 is better).", "",
                  "| corpus | docs | system | " + " | ".join(name for _, name in RATIOS) + " |",
                  "|---|---|---|" + "---|" * len(RATIOS), *ratios]
    lines += ["", "Machine:", "", *facts, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help=f"folder holding scale/ and the collections (default: ../shared/data = {DEFAULT_DATA})")
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("10k,100k"),
                    help="mix prefixes, comma-separated, e.g. 10k,100k,1M (default 10k,100k); 0: none")
    ap.add_argument("--long-size", type=parse_sizes, default=parse_sizes("100k"),
                    help="documents of the long set, one size or several (default 100k); 0: none")
    ap.add_argument("--queries", type=int, default=1000, help="queries per corpus (1000)")
    ap.add_argument("--systems", type=lambda v: parse_list(v, SYSTEMS, "system"), default=SYSTEMS,
                    help=f"comma-separated, from {', '.join(SYSTEMS)}")
    ap.add_argument("--bm25s-backend", choices=["auto", "numba", "numpy"], default="auto",
                    help="bm25s scoring backend; auto: numba when it is installed")
    ap.add_argument("--quick", action="store_true",
                    help="mix 1,000 and 2,000, long 1,000, 100 queries (a smoke test)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per (system, corpus); medians are shown (3)")
    ap.add_argument("--scratch", type=Path,
                    help="folder for the corpora and indexes (default: a temporary folder, removed after)")
    ap.add_argument("--out", type=Path, help="also write the Markdown report here (e.g. docs/scaling.md)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per worker process (3600)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        args.result.write_text(json.dumps(run_worker(json.loads(args.worker.read_text()))))
        return 0

    if args.quick:
        args.sizes, args.long_size, args.queries = [1000, 2000], [1000], 100
    if args.repeat < 1 or args.queries < 1:
        ap.error("--repeat and --queries must be at least 1")
    if not args.sizes and not args.long_size:
        ap.error("nothing to measure: --sizes and --long-size are both empty")
    needed = ([MIX] if args.sizes else []) + [Path("scifact") / "queries.jsonl"] + \
        ([Path(n) / "corpus.jsonl" for n in LONG_SOURCES] if args.long_size else [])
    missing = [str(args.data / p) for p in needed if not (args.data / p).exists()]
    if missing:
        ap.error(f"data not found: {', '.join(missing)}; pass --data FOLDER (the shared data folder)")
    backend = bm25s_backend(args.bm25s_backend)
    if backend == "numba" and not importlib.util.find_spec("numba"):
        ap.error("--bm25s-backend numba needs numba: pip install numba")

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="tablelm-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        print(f"[scale] corpora into {scratch} ...", file=sys.stderr, flush=True)
        corpora = []
        if args.sizes:
            prefixes = write_mix_prefixes(args.data / MIX, args.sizes, scratch)
            queries = mix_queries(Path(prefixes[min(args.sizes)]["path"]), min(args.sizes), args.queries)
            corpora += [dict(prefixes[n], kind="mix", queries=queries) for n in args.sizes]
        if args.long_size:
            queries = long_queries(args.data, args.queries)
            corpora += [dict(write_long(args.data, n, scratch), kind="long", queries=queries)
                        for n in args.long_size]
        additions = write_additions(args.data, scratch / "additions.jsonl")
        for c in corpora:
            c["corpus_mb"] = Path(c["path"]).stat().st_size / 1e6
            c["n_queries"] = len(c["queries"])
        rows = []
        for c in corpora:
            runs = {s: [] for s in args.systems}
            for i, system in itertools.product(range(args.repeat), args.systems):
                label = f"{system} on {c['kind']} {human(c['docs'])} ({i + 1}/{args.repeat})"
                model_dir = scratch / f"index-{system}"
                shutil.rmtree(model_dir, ignore_errors=True)
                print(f"[scale] {label}: build ...", file=sys.stderr, flush=True)
                run = spawn({"phase": "build", "system": system, "corpus": c["path"],
                             "model_dir": str(model_dir), "backend": backend}, args.timeout)
                if "error" not in run:
                    print(f"[scale]   {run['build_s']:.2f} s, peak {run['build_peak_mb']:.0f} MB; query ...",
                          file=sys.stderr, flush=True)
                    run.update(spawn({"phase": "query", "system": system, "model_dir": str(model_dir),
                                      "queries": c["queries"], "backend": backend, "additions": str(additions),
                                      "ids": c["ids"]}, args.timeout))
                status = run["error"] if "error" in run else f"{run['qps']:,.0f} q/s, p50 {run['p50_ms']:.2f} ms"
                print(f"[scale]   {status}", file=sys.stderr, flush=True)
                shutil.rmtree(model_dir, ignore_errors=True)
                runs[system].append(run)
            for system in args.systems:
                rows.append(dict(combine(runs[system]), kind=c["kind"], docs=c["docs"], system=system,
                                 corpus_mb=c["corpus_mb"]))
        start_s, _ = _cli_seconds(["add", "--help"])
        facts = machine_facts(argv, "benchmarks/bench_scale.py") + [
            f"- `tablelm add --help` takes {start_s:.2f} s (the Python start inside the add/delete times)"]
        report = render(rows, [{k: v for k, v in c.items() if k not in ("queries", "ids")} for c in corpora],
                        facts, args.repeat, backend)
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"backend": backend, "rows": rows}, indent=1), encoding="utf-8")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
