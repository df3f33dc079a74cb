"""Load test of ``tablelm serve``: N concurrent clients for T seconds on loopback.

Each client keeps one HTTP/1.1 connection and sends ``GET /ask`` requests back to back
(prompts taken in turn from the server's ``/samples`` plus a few fixed ones, with a
parameter changed on every other request, as a user tuning in real time would). It
reports throughput, latency percentiles and errors; any error makes the exit status 1.

Usage::

    python benchmarks/load_test.py -m MODEL_DIR              # starts a server, 50 clients x 30 s
    python benchmarks/load_test.py --clients 20 --seconds 10  # the built-in model
    python benchmarks/load_test.py --url http://127.0.0.1:8000  # a server already running

Only loopback addresses are accepted: this is a benchmark, not a tool to load someone
else's server. Every loop is bounded (time and a request cap per client).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx

FIXED_PROMPTS = ["data governance policy", "how to publish a data product", "what is a data steward",
                 "gen ai platform best practices", "sales forecasting", "!policy governance"]
TUNING = [{}, {"beta": "0.7"}, {}, {"ranker": "reference"}, {}, {"w_title": "3"}, {}, {"k": "20"}]


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str | None, port: int, workers: int = 1) -> subprocess.Popen:
    """``tablelm serve`` on 127.0.0.1 in a subprocess (its own interpreter, so clients and server
    do not share a GIL)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "tablelm.interfaces.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--log-level", "warning"]
    if model_dir:
        cmd += ["-m", model_dir]
    return subprocess.Popen(cmd, env=env)


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} was not ready after {timeout:.0f} s")


async def client(i: int, url: str, prompts: list[str], deadline: float, cap: int, latencies: list[float],
                 errors: Counter) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        for n in range(cap):  # bounded: at most `cap` requests per client ...
            if time.monotonic() >= deadline:  # ... and no new request after the deadline
                break
            params = {"q": prompts[(i + n) % len(prompts)], **TUNING[(i + n) % len(TUNING)]}
            t0 = time.perf_counter()
            try:
                r = await http.get("/ask", params=params)
                ok = r.status_code == 200 and "cards" in r.json()
                if not ok:
                    errors[f"HTTP {r.status_code}"] += 1
            except (httpx.HTTPError, ValueError) as e:
                ok = False
                errors[type(e).__name__] += 1
            if ok:
                latencies.append(time.perf_counter() - t0)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[idx]


async def run(url: str, clients: int, seconds: float, cap: int) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        samples = (await http.get("/samples")).json().get("prompts", [])
    prompts = FIXED_PROMPTS + samples
    latencies: list[float] = []
    errors: Counter = Counter()
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(*(client(i, url, prompts, deadline, cap, latencies, errors) for i in range(clients)))
    elapsed = time.monotonic() - start
    lat = sorted(x * 1e3 for x in latencies)
    return {
        "url": url, "clients": clients, "seconds": round(elapsed, 2), "requests": len(lat) + sum(errors.values()),
        "ok": len(lat), "errors": sum(errors.values()), "error_kinds": dict(errors),
        "throughput_rps": round(len(lat) / elapsed, 1),
        "latency_ms": {"p50": round(percentile(lat, 50), 1), "p90": round(percentile(lat, 90), 1),
                       "p99": round(percentile(lat, 99), 1), "max": round(lat[-1], 1) if lat else None,
                       "mean": round(statistics.fmean(lat), 1) if lat else None},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="A running server on loopback (default: start one on a free port).")
    ap.add_argument("-m", "--model", help="Model directory for the server it starts (default: built-in).")
    ap.add_argument("--workers", type=int, default=1, help="Server worker processes for the server it starts.")
    ap.add_argument("--clients", type=int, default=50, help="Concurrent clients (default 50).")
    ap.add_argument("--seconds", type=float, default=30.0, help="Duration (default 30).")
    ap.add_argument("--max-requests", type=int, default=100_000, help="Cap on requests per client.")
    ap.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = ap.parse_args(argv)
    if not (1 <= args.clients <= 1000 and 0 < args.seconds <= 3600):
        ap.error("--clients must be in [1, 1000] and --seconds in (0, 3600]")

    proc = None
    url = args.url.rstrip("/") if args.url else None
    if url and not is_loopback(url):
        ap.error(f"{url} is not a loopback address; this load test only runs against 127.0.0.1 / localhost")
    try:
        if url is None:
            url = f"http://127.0.0.1:{free_port()}"
            proc = start_server(args.model, int(url.rsplit(":", 1)[1]), args.workers)
        wait_ready(url, proc, timeout=180)
        report = asyncio.run(run(url, args.clients, args.seconds, args.max_requests))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat = report["latency_ms"]
        print(f"{report['clients']} clients x {report['seconds']} s against {report['url']}")
        print(f"  requests   {report['requests']:,} ({report['ok']:,} ok, {report['errors']:,} errors"
              f"{' ' + str(report['error_kinds']) if report['errors'] else ''})")
        print(f"  throughput {report['throughput_rps']:,} requests/s")
        print(f"  latency    p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
