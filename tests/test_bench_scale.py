"""The scaling benchmark: sizes, growth exponents, the corpora it writes, and a quick run end to end."""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest

from conftest import DATA, cli_env, needs_data, tablelm_cmd

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"
MIX = DATA / "scale" / "mix-1m.jsonl.gz"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sizes_read_like_people_write_them():
    b = _bench()
    assert b.parse_sizes("100k,10k,1M,10k") == [10_000, 100_000, 1_000_000]
    assert b.parse_sizes("2500") == [2500] and b.parse_sizes("1.5k") == [1500]
    assert b.parse_sizes("0") == []
    for bad in ("ten", "0.5", "-3k"):
        with pytest.raises(argparse.ArgumentTypeError, match="size"):
            b.parse_sizes(bad)
    assert [b.human(n) for n in (10_000, 1_000_000, 2500)] == ["10k", "1M", "2,500"]


def test_growth_exponent_is_the_slope_of_a_power_law():
    b = _bench()
    sizes = [1e3, 1e4, 1e5, 1e6]
    assert b.growth_exponent(sizes, [3 * s ** 0.5 for s in sizes]) == pytest.approx(0.5)
    assert b.growth_exponent(sizes, [7.0 / s for s in sizes]) == pytest.approx(-1.0)
    # a missing or non-positive measure has no exponent, nor does a single size
    assert b.growth_exponent(sizes, [1.0, None, 3.0, 4.0]) is None
    assert b.growth_exponent(sizes, [1.0, 0.0, 3.0, 4.0]) is None
    assert b.growth_exponent([1e3], [2.0]) is None


def test_repeats_combine_into_medians_and_a_failure_fails_the_row():
    b = _bench()
    run = {"build_s": 1.0, "qps": 10.0, "add_s": None, "update_note": "n/a (command not available)"}
    row = b.combine([dict(run, build_s=3.0), run, dict(run, build_s=2.0, qps=30.0)])
    assert row["build_s"] == 2.0 and row["qps"] == 10.0 and row["build_runs"] == [1.0, 2.0, 3.0]
    assert row["add_s"] is None and row["update_note"] == "n/a (command not available)"
    assert b.combine([run, {"error": "build: boom"}])["error"] == "build: boom"


@needs_data
def test_mix_prefixes_are_the_first_lines_of_the_scale_corpus(tmp_path):
    b = _bench()
    out = b.write_mix_prefixes(MIX, [5, 300], tmp_path)
    with gzip.open(MIX, "rt", encoding="utf-8") as f:
        head = list(islice(f, 300))
    for n in (5, 300):
        assert Path(out[n]["path"]).read_text(encoding="utf-8") == "".join(head[:n])
        assert out[n]["words"] == sum(b._doc_words(json.loads(line)) for line in head[:n])
    # the ids a delete removes: every 3rd of 300, 100 of them; all 5 of 5
    assert out[300]["ids"] == [json.loads(line)["_id"] for line in head[::3]]
    assert out[5]["ids"] == [json.loads(line)["_id"] for line in head[:5]]
    queries = b.mix_queries(Path(out[300]["path"]), 300, 100)
    assert len(queries) == 100 and all(1 <= len(q.split()) <= b.QUERY_WORDS for q in queries)


@needs_data
def test_the_long_set_repeats_the_abstracts_with_distinct_ids(tmp_path):
    b = _bench()
    n = 20_000  # more than the ~8,200 abstracts with text: every one repeats at least twice
    out = b.write_long(DATA, n, tmp_path)
    docs = [json.loads(line) for line in Path(out["path"]).read_text(encoding="utf-8").splitlines()]
    assert len(docs) == n and len({d["_id"] for d in docs}) == n
    assert all(d["title"] or d["text"] for d in docs)
    first = {d["_id"]: d for d in docs if "#" not in d["_id"]}
    again = [d for d in docs if d["_id"].endswith("#2")]
    assert again and all(dict(d, _id=d["_id"][:-2]) == first[d["_id"][:-2]] for d in again)
    assert len(out["ids"]) == b.CHANGE and set(out["ids"]) <= {d["_id"] for d in docs}
    assert len(b.long_queries(DATA, 1000)) == 1000
    additions = [json.loads(line) for line in b.write_additions(DATA, tmp_path / "add.jsonl").read_text().splitlines()]
    assert len(additions) == b.CHANGE and not {a["_id"] for a in additions} & {d["_id"] for d in docs}


@needs_data
@pytest.mark.slow
def test_quick_run_measures_both_systems(tmp_path):
    out, rows_file = tmp_path / "scale.md", tmp_path / "scale.json"
    # numpy backend: numba's JIT warm-up would add seconds per worker to a smoke test
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--repeat", "1", "--bm25s-backend", "numpy",
                           "--scratch", str(tmp_path / "scratch"), "--out", str(out), "--json", str(rows_file)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text(encoding="utf-8")
    for heading in ("## Corpora", "## Measures", "## Growth exponents", "## Ratios tablelm / bm25s",
                    "bm25s backend: **numpy**", "command: `python benchmarks/bench_scale.py --quick"):
        assert heading in table
    assert "FAILED" not in table
    rows = json.loads(rows_file.read_text())["rows"]
    assert {(r["kind"], r["docs"], r["system"]) for r in rows} == {
        (kind, docs, system) for kind, docs in (("mix", 1000), ("mix", 2000), ("long", 1000))
        for system in ("bm25s", "tablelm")}
    add_works = subprocess.run(tablelm_cmd("add", "--help"), capture_output=True,
                               env=cli_env(tmp_path / "cache")).returncode == 0
    for r in rows:
        assert f"| {r['kind']} | {r['docs']:,} | {r['system']} |" in table
        assert r["indexed_docs"] == r["docs"], r  # both systems index every document
        assert r["n_queries"] == 100
        assert 0 < r["build_s"] < 600 and 0 < r["load_s"] < 60 and r["first_ms"] > 0
        assert 0 <= r["build_delta_mb"] <= r["build_peak_mb"] < 8000
        assert 0 < r["model_mb"] and r["qps"] > 1 and 0 < r["p50_ms"] <= r["p95_ms"]
        if r["system"] == "tablelm":
            assert r["model_mb"] > r["store_mb"] > 0
            if add_works:
                assert r["add_s"] > 0 and r["delete_s"] > 0 and r["update_note"] is None, r
            else:
                assert r["add_s"] is None and r["update_note"] == "n/a (command not available)"
    assert ("n/a (command not available)" in table) != add_works
    # the mix corpus doubles: its model grows, and every exponent is a finite number
    mix = {r["system"]: r for r in rows if r["kind"] == "mix" and r["docs"] == 2000}
    small = {r["system"]: r for r in rows if r["kind"] == "mix" and r["docs"] == 1000}
    assert all(mix[s]["model_mb"] > small[s]["model_mb"] for s in mix)
    growth = [line for line in table.splitlines() if line.startswith("| mix | tablelm | 1k, 2k |")]
    assert growth and all(math.isfinite(float(c)) for c in growth[0].split("|")[4:8])
