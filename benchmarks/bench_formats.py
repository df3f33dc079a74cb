"""Two builds of one corpus side by side: bytes per table, and query speed with the same code.

    python benchmarks/bench_formats.py sizes OLD_MODEL NEW_MODEL CORPUS [--top 20]
    python benchmarks/bench_formats.py speed OLD_MODEL NEW_MODEL CORPUS [--docs N] [--asks 150]

``sizes`` prints a Markdown table of each model's tables (the manifests' ``bytes``), largest first,
and the models' sizes against the corpus file. ``speed`` loads both models in this one process and
queries them interleaved (so that a shared machine's load falls on both alike): a first batch of
1,000 of ``bench_scale.py``'s mix queries (the rows it touches are decoded and their impacts filled),
three steady batches, then ``ask`` (k=10) query by query, alternating. Used for docs/scaling.md's
"Model on disk: format 6".
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _tables(model: Path) -> tuple[int, dict]:
    manifest = json.loads((model / "manifest.json").read_text())
    return manifest["format_version"], {k: (v.get("bytes", 0), v.get("codec") or "")
                                        for k, v in manifest["tables"].items()}


def sizes(old: Path, new: Path, corpus: Path, top: int) -> str:
    fa, a = _tables(old)
    fb, b = _tables(new)
    names = sorted(set(a) | set(b), key=lambda n: -max(a.get(n, (0, ""))[0], b.get(n, (0, ""))[0]))
    lines = [f"| table | format {fa} MB | format {fb} MB | after/before | codec |", "|---|---|---|---|---|"]
    rest_a = rest_b = 0
    for i, n in enumerate(names):
        x, y = a.get(n, (0, ""))[0], b.get(n, (0, ""))[0]
        if i < top:
            ratio = f"{y / x:.2f}" if x else "new"
            lines.append(f"| {n} | {x / 1e6:.2f} | {y / 1e6:.2f} | {ratio} | {b.get(n, (0, ''))[1]} |")
        else:
            rest_a, rest_b = rest_a + x, rest_b + y
    ta, tb = sum(v[0] for v in a.values()), sum(v[0] for v in b.values())
    size = corpus.stat().st_size
    lines += [f"| (the rest) | {rest_a / 1e6:.2f} | {rest_b / 1e6:.2f} | | |",
              f"| **total** | **{ta / 1e6:.1f}** | **{tb / 1e6:.1f}** | {tb / ta:.2f} | |", "",
              f"model / corpus file ({size / 1e6:.1f} MB): before {ta / size:.2f}x, after {tb / size:.2f}x"]
    return "\n".join(lines)


def speed(old: Path, new: Path, corpus: Path, n_docs: int, n_ask: int) -> str:
    from bench_scale import mix_queries

    import tablelm
    from tablelm.query import kernel

    queries = mix_queries(corpus, n_docs, 1000)
    batch = dict(enumerate(queries))
    models = {"old": tablelm.load(old), "new": tablelm.load(new)}
    kernel.warm()
    first: dict[str, float] = {}
    for name, m in models.items():
        m.ask(queries[0], k=10)
        t = time.perf_counter()
        m.search_many(batch, k=10)
        first[name] = time.perf_counter() - t
    steady: collections.Counter = collections.Counter()
    asks: collections.Counter = collections.Counter()
    for _ in range(3):
        for name, m in models.items():
            t = time.perf_counter()
            m.search_many(batch, k=10)
            steady[name] += time.perf_counter() - t
    for m in models.values():
        for q in queries[:50]:
            m.ask(q, k=10)
    for _ in range(2):
        for q in queries[50:50 + n_ask]:
            for name, m in models.items():
                t = time.perf_counter()
                m.ask(q, k=10)
                asks[name] += time.perf_counter() - t
    lines = ["| model | first batch q/s | steady batch q/s | ask mean ms |", "|---|---|---|---|"]
    for name, path in (("old", old), ("new", new)):
        lines.append(f"| {path} | {len(queries) / first[name]:,.0f} | {3 * len(queries) / steady[name]:,.0f} "
                     f"| {asks[name] / (2 * n_ask) * 1000:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("sizes", "speed"))
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--top", type=int, default=20, help="tables listed one by one (20)")
    ap.add_argument("--docs", type=int, default=100_000, help="documents of the corpus the queries come from")
    ap.add_argument("--asks", type=int, default=150, help="asks per model and round (150)")
    args = ap.parse_args(argv)
    if args.what == "sizes":
        print(sizes(args.old, args.new, args.corpus, args.top))
    else:
        print(speed(args.old, args.new, args.corpus, args.docs, args.asks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
