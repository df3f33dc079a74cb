"""The benchmark script's bookkeeping: repeats become medians, and its quick run works end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_data

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_bm25.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_bm25", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(build_s, ndcg=0.5, **extra):
    return {"system": "tablelm", "collection": "cacm", "n_queries": 3, "ndcg@10": ndcg, "recall@100": 0.7,
            "map@100": 0.3, "build_s": build_s, "qps": 10.0 * build_s, "p50_ms": 1.0, "p95_ms": 2.0,
            "peak_mb": 100.0, "delta_mb": 50.0, **extra}


def test_repeats_combine_into_medians_with_the_build_range():
    row = _bench().combine([_run(3.0), _run(1.0), _run(2.0)])
    assert row["build_s"] == 2.0 and row["qps"] == 20.0
    assert row["build_runs"] == [1.0, 2.0, 3.0]
    assert row["ndcg@10"] == 0.5


def test_repeats_with_different_quality_are_an_error():
    row = _bench().combine([_run(1.0), _run(1.0, ndcg=0.6)])
    assert "not deterministic" in row["error"]


def test_a_failed_repeat_fails_the_row():
    row = _bench().combine([_run(1.0), {"system": "tablelm", "collection": "cacm", "error": "exit 1: boom"}])
    assert row["error"] == "exit 1: boom"


def test_quality_only_rows_have_no_timings_and_are_tested_against_bm25s():
    bench = _bench()
    def pq(vals):
        return {f"q{i}": {"ndcg@10": v, "recall@100": v} for i, v in enumerate(vals)}

    base = dict(_run(1.0), system="bm25s", per_query=pq([0.2, 0.4, 0.6, 0.8]))
    other = {"system": "anserini-rm3", "collection": "cacm", "n_queries": 4, "ndcg@10": 0.6, "recall@100": 0.6,
             "map@100": 0.3, "per_query": pq([0.3, 0.5, 0.7, 0.9]), **{k: None for k in bench.TIMED}}
    row = bench.combine([other])
    assert row["build_s"] is None and row["build_runs"] == []
    rows = bench.paired_rows([bench.combine([base]), row])
    assert len(rows) == 1 and rows[0].startswith("| cacm | anserini-rm3 | +0.1000 | 4/0/0 |")
    table = bench.render([bench.combine([base]), row], ["- machine"], 1)
    assert "| cacm | anserini-rm3 | – | 4 | 0.600 |" in table and "Paired tests against bm25s" in table


@needs_data
@pytest.mark.slow
def test_quick_benchmark_runs_both_systems(tmp_path):
    out = tmp_path / "bench.md"
    # bm25s's numpy backend: its numba JIT would add ~10 s to a smoke test
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--repeat", "1", "--systems", "bm25s,tablelm",
                           "--bm25s-backend", "numpy", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text()
    ours = "numba" if importlib.util.find_spec("numba") else "numpy"
    for row in ("| cranfield | bm25s | numpy | 225 |", f"| cranfield | tablelm | {ours} | 225 |"):
        assert row in table
    assert "FAILED" not in table


def _everyday():
    spec = importlib.util.spec_from_file_location("everyday", SCRIPT.parent / "everyday.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_everyday_groups_alternate_before_the_held_out_mark(tmp_path):
    ev = _everyday()
    f = tmp_path / "q.txt"
    f.write_text("# comment\none | a\ntwo | b\n\nthree | c\n# --- held out: later\nfour | d\nfive | e\n", "utf-8")
    assert [p for p, _ in ev.read_questions(f)] == ["one", "two", "three", "four", "five"]
    assert ev.question_groups(f) == ["A", "B", "A", "held-out", "held-out"]
    rows = [{"rank": 1}, {"rank": 3}, {"rank": None}, {"rank": 7}]
    assert ev.rates(rows) == {"top1": 0.25, "top3": 0.5, "top10": 0.75}
    # the benchmark's own file: the 50 first questions split 25 / 25, the 16 held-out ones apart
    groups = ev.question_groups(ev.DEFAULT_FILE)
    assert len(ev.read_questions(ev.DEFAULT_FILE)) == len(groups)
    assert (groups.count("A"), groups.count("B"), groups.count("held-out")) == (25, 25, 16)
