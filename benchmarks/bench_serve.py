"""Resident memory and latency of ``tablelm serve`` over many asks.

Starts ``tablelm serve -m MODEL`` on a free loopback port (one worker, its own
interpreter), then sends ``--asks`` ``GET /ask`` requests one after the other from one
client, with distinct prompts: the first words of the text of every k-th document of
``--prompts-from`` (a JSONL corpus, e.g. the one the model was built from), taken in
turn. Every ``--every`` asks it reads the server process's resident set size
(``VmRSS`` of ``/proc/PID/status``, Linux) and prints it; at the end it prints the RSS
after start, after the first ask, the largest and the last, and the latency
percentiles of the asks (client side, HTTP included). Any failed ask makes the exit
status 1.

Usage (from the repository root)::

    python benchmarks/bench_serve.py -m MODEL --prompts-from corpus.jsonl --asks 10000
    python benchmarks/bench_serve.py -m MODEL --prompts-from corpus.jsonl --asks 300 --json

Only the RSS of the server process itself is read (a ``--workers`` server forks
children, whose memory this script does not add up: it starts one worker).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import free_port, start_server, wait_ready

QUERY_WORDS = 8


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (``VmRSS``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for process {pid}: this script reads Linux's /proc")


def prompts_of(corpus: Path, n: int, scan: int) -> list[str]:
    """Up to ``n`` distinct prompts: the first words of the text of every k-th of the first ``scan``
    documents of ``corpus``."""
    step = max(1, scan // max(n, 1))
    out: list[str] = []
    seen: set[str] = set()
    with corpus.open(encoding="utf-8") as f:
        for i, line in enumerate(itertools.islice(f, scan)):
            if i % step or len(out) >= n or not line.strip():
                continue
            words = (json.loads(line).get("text") or "").split()[:QUERY_WORDS]
            text = " ".join(words)
            if text and text not in seen:
                seen.add(text)
                out.append(text)
    if not out:
        raise SystemExit(f"no prompts found in {corpus} (JSONL records with a 'text' field)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("-m", "--model", required=True, help="Model directory the server loads.")
    ap.add_argument("--prompts-from", type=Path, required=True, help="JSONL corpus the prompts are taken from.")
    ap.add_argument("--asks", type=int, default=10_000, help="Asks to send (10000).")
    ap.add_argument("--prompts", type=int, default=10_000, help="Distinct prompts, used in turn (10000).")
    ap.add_argument("--scan", type=int, default=1_000_000, help="Documents of the corpus to take prompts from.")
    ap.add_argument("-k", type=int, default=10, help="Cards per ask (10).")
    ap.add_argument("--every", type=int, default=500, help="Read the RSS every this many asks (500).")
    ap.add_argument("--timeout", type=float, default=300, help="Seconds to wait for the server to start (300).")
    ap.add_argument("--ask-timeout", type=float, default=600,
                    help="Seconds an ask may take (600: the first one may compile the numba kernels).")
    ap.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = ap.parse_args(argv)
    if args.asks < 1 or args.every < 1:
        raise SystemExit("--asks and --every must be at least 1")
    prompts = prompts_of(args.prompts_from, args.prompts, args.scan)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = start_server(args.model, port)
    try:
        wait_ready(url, proc, args.timeout)
        start_s = time.perf_counter() - t0
        samples = [(0, rss_mb(proc.pid))]
        latencies: list[float] = []
        failed = 0
        with httpx.Client(base_url=url, timeout=args.ask_timeout) as http:
            for n in range(args.asks):
                t = time.perf_counter()
                try:
                    r = http.get("/ask", params={"q": prompts[n % len(prompts)], "k": args.k})
                    ok = r.status_code == 200 and "cards" in r.json()
                except (httpx.HTTPError, ValueError) as e:
                    print(f"[serve] ask {n + 1} failed: {type(e).__name__} {e}", file=sys.stderr, flush=True)
                    ok = False
                latencies.append(time.perf_counter() - t)
                failed += not ok
                if n == 0 or (n + 1) % args.every == 0 or n + 1 == args.asks:
                    samples.append((n + 1, rss_mb(proc.pid)))
                    print(f"[serve] {n + 1:>6} asks  RSS {samples[-1][1]:,.0f} MB", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lat = sorted(x * 1e3 for x in latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q / 100 * len(lat)))]
    report = {"model": args.model, "asks": args.asks, "distinct_prompts": len(prompts), "k": args.k,
              "failed": failed, "start_s": round(start_s, 2),
              "rss_mb": {"started": round(samples[0][1], 1), "first_ask": round(samples[1][1], 1),
                         "max": round(max(s for _, s in samples), 1), "last": round(samples[-1][1], 1)},
              "samples": [(n, round(s, 1)) for n, s in samples],
              "latency_ms": {"p50": round(pct(50), 2), "p95": round(pct(95), 2), "p99": round(pct(99), 2),
                             "mean": round(statistics.fmean(lat), 2), "first": round(latencies[0] * 1e3, 2)}}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        r = report["rss_mb"]
        print(f"tablelm serve -m {args.model}: {args.asks} asks ({len(prompts)} distinct prompts, k={args.k}), "
              f"{failed} failed; started in {start_s:.1f} s")
        print(f"RSS MB: started {r['started']:,.0f}, after the first ask {r['first_ask']:,.0f}, "
              f"max {r['max']:,.0f}, last {r['last']:,.0f}")
        lm = report["latency_ms"]
        print(f"latency ms: first {lm['first']}, p50 {lm['p50']}, p95 {lm['p95']}, p99 {lm['p99']}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
