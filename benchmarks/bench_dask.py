"""The build on Dask against the single-process build: time, peak memory per process, same model.

Prefixes of ``scale/mix-1m.jsonl.gz`` (1M short real documents, see ../shared/data/README.md)
are written to a scratch folder (a temporary one unless ``--scratch``), never into the
repository. Each size is built by three configurations, each in a fresh subprocess (this script
with ``--worker``), taking turns:

local          ``tablelm.build(src, out)`` with the default ``--memory 2048`` (one shard up to
               ~16M characters of text, more above)
local-shards   the same with ``memory_mb=256``: shards of the size the Dask build uses
               (tables/distributed.py SHARD_CHARS, 2M characters), so the cost of sharding is
               told apart from the cost (or gain) of the cluster
dask-N         ``engine="dask"`` on a ``LocalCluster`` of ``--workers`` (2) single-threaded worker
               processes (``processes=True``), started before the clock starts (its start is
               reported apart)

Measured: build s (``time.perf_counter`` around ``tablelm.build``, the model saved); peak MB
(``ru_maxrss``) of the building process (for Dask: the client, which also hosts the local
cluster's scheduler) and of each Dask worker (``client.run`` of ``getrusage`` before the cluster
closes); whether the model directory is the same as the local build's (the manifest's ``folder``
name hashes every file). The load average is printed before and after: on a shared machine only
the ratios within one run mean anything.

Usage (from the repository root)::

    python benchmarks/bench_dask.py                       # 100k documents
    python benchmarks/bench_dask.py --sizes 10k,100k,1M --out docs/distributed-bench.md
    python benchmarks/bench_dask.py --quick               # 2,000 documents, seconds
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIX = REPO.parent / "shared" / "data" / "scale" / "mix-1m.jsonl.gz"


def _size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if text[-1:] in "km" else text) * mult)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(kind: str, src: Path, out: Path, workers: int, result: Path) -> None:
    sys.path.insert(0, str(REPO))
    import tablelm
    from tablelm.tables.distributed import dask_client

    rec: dict = {"kind": kind}
    if kind.startswith("dask"):
        t = time.perf_counter()
        with dask_client(None, n_workers=workers) as client:
            rec["cluster_start_s"] = time.perf_counter() - t
            report: dict = {}
            t = time.perf_counter()
            tablelm.build([src], out, engine="dask", scheduler=client, report=report)
            rec["build_s"] = time.perf_counter() - t
            rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            rec["worker_peak_mb"] = sorted(rss.values())
            rec.update(shards=report.get("shards"), merge_levels=report.get("merge_levels"),
                       phases=report.get("dask_seconds"))
    else:
        report = {}
        t = time.perf_counter()
        tablelm.build([src], out, memory_mb=256 if kind == "local-shards" else 2048, report=report)
        rec["build_s"] = time.perf_counter() - t
        rec["shards"] = report.get("shards", 1)
    rec["peak_mb"] = _maxrss_mb()
    rec["folder"] = json.loads((out / "manifest.json").read_text())["folder"]
    result.write_text(json.dumps(rec))


def _prefix(n: int, scratch: Path) -> Path:
    path = scratch / f"mix-{n}.jsonl"
    if not path.exists():
        with gzip.open(MIX, "rt", encoding="utf-8") as f, open(path, "w", encoding="utf-8") as out:
            for i, line in enumerate(f):
                if i >= n:
                    break
                out.write(line)
    return path


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k", help="comma-separated document counts (10k, 100k, 1M)")
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    ap.add_argument("--kinds", default="local,local-shards,dask", help="configurations to run, in turn")
    ap.add_argument("--scratch", type=Path, help="folder for the corpus prefixes and models (default: temporary)")
    ap.add_argument("--out", type=Path, help="write the Markdown table here too")
    ap.add_argument("--quick", action="store_true", help="2,000 documents")
    ap.add_argument("--worker", nargs=4, metavar=("KIND", "SRC", "OUT", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, src, out, result = args.worker
        worker(kind, Path(src), Path(out), args.workers, Path(result))
        return
    if not MIX.exists():
        raise SystemExit(f"the scale corpus is not at {MIX} (see ../shared/data/README.md)")
    sizes = [2000] if args.quick else [_size(s) for s in args.sizes.split(",")]
    kinds = [k if k != "dask" else f"dask-{args.workers}" for k in args.kinds.split(",")]
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    scratch.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    rows = []
    try:
        for n in sizes:
            src = _prefix(n, scratch)
            for kind in kinds:
                out, result = scratch / f"model-{n}-{kind}", scratch / f"result-{n}-{kind}.json"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [sys.executable, str(Path(__file__).resolve()), "--workers", str(args.workers),
                       "--worker", kind, str(src), str(out), str(result)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(f"{kind} at {n:,} failed:\n{proc.stderr[-3000:]}")
                rec = json.loads(result.read_text())
                rec.update(docs=n, load=_load())
                rows.append(rec)
                print(json.dumps(rec), flush=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    lines = [f"Load average (1, 5, 15 min) before: {load_before}; after: {_load()}. "
             f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}.", "",
             "| docs | build | shards | build s | vs local | client peak MB | worker peak MB | same model |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next(x for x in rows if x["docs"] == r["docs"] and x["kind"] == "local") if "local" in kinds else r
        workers = " / ".join(f"{m:,.0f}" for m in r.get("worker_peak_mb", [])) or "–"
        lines.append(f"| {r['docs']:,} | {r['kind']} | {r['shards']} | {r['build_s']:.1f} | "
                     f"{r['build_s'] / base['build_s']:.2f} | {r['peak_mb']:,.0f} | {workers} | "
                     f"{'yes' if r['folder'] == base['folder'] else 'NO'} |")
    dask_rows = [r for r in rows if "phases" in r]
    for r in dask_rows:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in (r["phases"] or {}).items())
        lines.append("")
        lines.append(f"{r['docs']:,} docs, {r['kind']}: cluster start {r['cluster_start_s']:.1f} s (not in build s); "
                     f"{phases}; merge levels on the workers: {r['merge_levels']}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
