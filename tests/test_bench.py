"""The benchmark script's bookkeeping: repeats become medians, and its quick run works end to end."""

from __future__ import annotations

import importlib.util
import itertools
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
    assert ev.rates(rows) == {"top1": 0.25, "top3": 0.5, "top10": 0.75, "mrr10": (1 + 1 / 3 + 1 / 7) / 4}
    # the benchmark's own file: the 50 first questions split 25 / 25, the 16 held-out ones and the
    # 85 of the second held-out group apart, in that order
    groups = ev.question_groups(ev.DEFAULT_FILE)
    assert len(ev.read_questions(ev.DEFAULT_FILE)) == len(groups)
    assert [g for g, _ in itertools.groupby(groups[50:])] == ["held-out", "held-out-2"]
    assert [groups.count(g) for g in ("A", "B", "held-out", "held-out-2")] == [25, 25, 16, 85]


def test_everyday_second_held_out_group_is_apart_and_keeps_the_first_groups(tmp_path):
    ev = _everyday()
    f = tmp_path / "q.txt"
    f.write_text("one | a\ntwo | b\nthree | c\n# --- held out: later\nfour | d\n"
                 "# --- held out 2 (written later, before any result)\nfive | e\n\nsix | f\n", "utf-8")
    assert ev.question_groups(f) == ["A", "B", "A", "held-out", "held-out-2", "held-out-2"]
    # a second group straight after A / B: the alternation before it is unchanged
    f.write_text("one | a\ntwo | b\n# --- held out 2\nthree | c\n", "utf-8")
    assert ev.question_groups(f) == ["A", "B", "held-out-2"]
    # and --compare tests it apart
    base = [{"prompt": str(i), "rank": r} for i, r in enumerate([1, 1, None])]
    rows = [{"prompt": str(i), "rank": r} for i, r in enumerate([1, 1, 2])]
    out = ev.compare(rows, base, ev.question_groups(f))
    assert list(out) == ["all", "A", "B", "held-out-2"]
    assert (out["held-out-2"]["n"], out["held-out-2"]["mean_a"], out["held-out-2"]["wins"]) == (1, 0.5, 1)


def test_everyday_compare_tests_reciprocal_ranks_per_group():
    ev = _everyday()
    groups = ["A", "B", "A", "B", "held-out"]
    base = [{"prompt": str(i), "rank": r} for i, r in enumerate([2, 1, None, 1, 5])]
    rows = [{"prompt": str(i), "rank": r} for i, r in enumerate([1, 1, 1, 2, 5])]
    out = ev.compare(rows, base, groups)
    assert list(out) == ["all", "A", "B", "held-out"]
    a, b, held = out["A"], out["B"], out["held-out"]
    assert (a["n"], a["mean_a"], a["mean_b"], a["wins"], a["losses"]) == (2, 1.0, 0.25, 2, 0)
    assert (b["n"], b["mean_a"], b["mean_b"], b["wins"], b["ties"], b["losses"]) == (2, 0.75, 1.0, 0, 1, 1)
    assert held["p_randomization"] == 1.0 and held["delta"] == 0.0
    assert out["all"]["n"] == 5 and out["all"]["delta"] == (0.5 + 1.0 - 0.5) / 5
    # a rank past 10 is no hit, as in the rates
    assert ev.reciprocal_rank(11) == 0.0 and ev.reciprocal_rank(None) == 0.0 and ev.reciprocal_rank(4) == 0.25
    with pytest.raises(ValueError, match="same questions"):
        ev.compare(rows[::-1], base, groups)


def test_everyday_prefix_is_put_in_front_of_every_question():
    ev = _everyday()
    asked = []

    class Model:
        def ask(self, prompt, k, **params):
            asked.append(prompt)

            class Card:
                id = "fn:open"
            return type("Answer", (), {"cards": [Card()]})()

    rep = ev.evaluate(Model(), [("read a file", ["open"]), ("x", ["y"])], prefix="how do I ")
    assert asked == ["how do I read a file", "how do I x"]
    assert [r["rank"] for r in rep["rows"]] == [1, None] and rep["mrr10"] == 0.5
