"""`tablelm eval` and `tablelm tune`: metrics from the CLI, profiles saved and used, usage promotion."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import tablelm
from tablelm.evaluation import evaluate_run, read_qrels, read_queries
from tablelm.interfaces.cli import main
from tablelm.tables.store import read_manifest

from conftest import DATA

CRAN = DATA / "cranfield"
XLLM_PROMPTS = DATA / "xllm-enterprise" / "sample_prompts.txt"


@pytest.fixture(scope="module")
def cran_dir(tmp_path_factory):
    if not CRAN.is_dir():
        pytest.skip(f"test data not found at {CRAN}")
    out = tmp_path_factory.mktemp("cran") / "model"
    tablelm.build([CRAN / "corpus.jsonl"], out)
    return out


def _run(*args, env=None):
    res = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert res.exit_code == 0, res.output
    return res.output


def test_eval_matches_the_evaluation_module(cran_dir):
    out = json.loads(_run("eval", "-m", cran_dir, "--queries", CRAN / "queries.jsonl",
                          "--qrels", CRAN / "qrels" / "test.tsv", "--json"))
    model = tablelm.load(cran_dir)
    qrels = read_qrels(CRAN / "qrels" / "test.tsv")
    queries = read_queries(CRAN / "queries.jsonl")
    run = model.search_many({q: queries[q] for q in qrels}, 100)
    expected = evaluate_run(run, qrels, ("ndcg@10", "map@100", "recall@100", "mrr@10", "exhaustivity@10"))["mean"]
    assert out["metrics"] == pytest.approx(expected)
    assert out["n_queries"] == len(qrels)
    assert out["latency_ms_p50"] > 0 and out["latency_ms_p95"] >= out["latency_ms_p50"]


def test_eval_reports_prompt_coverage_for_reference_prompt_files(xllm_model_dir):
    out = json.loads(_run("eval", "-m", xllm_model_dir, "--queries", XLLM_PROMPTS, "--json"))
    assert len(out["per_prompt"]) == sum(1 for line in open(XLLM_PROMPTS, encoding="utf-8") if "|" in line)
    assert 0.0 < out["mean_coverage"] <= 1.0


def test_tune_improves_train_saves_profile_and_is_used(cran_dir, tmp_path):
    # tune on the odd query ids, hold out the even ones
    qrels = read_qrels(CRAN / "qrels" / "test.tsv")
    train, held = tmp_path / "train.tsv", tmp_path / "held.tsv"
    with open(train, "w") as ft, open(held, "w") as fh:
        for f in (ft, fh):
            f.write("query-id\tcorpus-id\tscore\n")
        for q, docs in qrels.items():
            for d, r in docs.items():
                (ft if int(q) % 2 else fh).write(f"{q}\t{d}\t{r}\n")
    out = json.loads(_run("tune", "-m", cran_dir, "--queries", CRAN / "queries.jsonl", "--qrels", train,
                          "--heldout-qrels", held, "--budget", 8, "--json", "--force"))
    assert out["saved"] and out["source"] == "tune"
    assert out["train"]["after"] >= out["train"]["before"]
    assert set(out["heldout"]) == {"before", "after"}
    assert 1 <= len(out["path"]) <= 8
    manifest = read_manifest(cran_dir)
    assert manifest["profile"]["params"] == out["params"]
    model = tablelm.load(cran_dir)
    for name, value in out["params"].items():
        assert model.defaults[name] == value
    info = json.loads(_run("info", "-m", cran_dir, "--json"))
    assert info["profile"]["name"] == "tuned"
    _run("tune", "-m", cran_dir, "--reset")
    assert tablelm.load(cran_dir).defaults == tablelm.params.resolve({}, stage=("query", "render"))


def test_tune_keeps_the_current_profile_when_the_winner_is_worse_held_out(cran_dir, tmp_path):
    # Held-out "judgments" = the current ranking's first answer of each query: the current profile
    # scores nearly 1 there, so a winner that reorders any first answer is worse held out.
    qrels = read_qrels(CRAN / "qrels" / "test.tsv")
    queries = read_queries(CRAN / "queries.jsonl")
    model = tablelm.load(cran_dir)
    train, held = tmp_path / "train.tsv", tmp_path / "held.tsv"
    with open(train, "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{r}\n" for q in list(qrels)[:10] for d, r in qrels[q].items())
    top = model.search_many({q: queries[q] for q in list(qrels)[100:]}, 1)
    with open(held, "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{hits[0][0]}\t1\n" for q, hits in top.items() if hits)
    before = read_manifest(cran_dir).get("profile", {})
    args = ("tune", "-m", cran_dir, "--queries", CRAN / "queries.jsonl", "--qrels", train,
            "--heldout-qrels", held, "--budget", 12)
    out = json.loads(_run(*args, "--json"))
    assert out["train"]["after"] > out["train"]["before"]
    assert out["heldout"]["after"] < out["heldout"]["before"]
    assert not out["saved"] and "below the current profile" in out["kept_current"]
    assert read_manifest(cran_dir).get("profile", {}) == before
    text = _run(*args)
    assert "not saved" in text and "--force" in text
    forced = json.loads(_run(*args, "--json", "--force"))
    assert forced["saved"] and read_manifest(cran_dir)["profile"]["params"] == forced["params"]
    _run("tune", "-m", cran_dir, "--reset")


def test_eval_compare_reports_the_paired_test(cran_dir, tmp_path):
    queries, qrels = CRAN / "queries.jsonl", CRAN / "qrels" / "test.tsv"
    same, other = tmp_path / "same.run", tmp_path / "other.run"
    _run("search", "-m", cran_dir, "--queries", queries, "-o", same)
    _run("search", "-m", cran_dir, "--queries", queries, "-o", other, "-p", "k1=0.3", "-p", "b=0.2")
    out = json.loads(_run("eval", "-m", cran_dir, "--queries", queries, "--qrels", qrels, "--compare", same,
                          "--json"))
    t = out["compare"]["tests"]["ndcg@10"]
    assert t["delta"] == 0.0 and t["ties"] == 225 and t["p_randomization"] == 1.0
    out = json.loads(_run("eval", "-m", cran_dir, "--queries", queries, "--qrels", qrels, "--compare", other,
                          "--json", "--resamples", 2000))
    t = out["compare"]["tests"]["ndcg@10"]
    assert t["delta"] == pytest.approx(out["metrics"]["ndcg@10"] - t["mean_b"])
    assert t["wins"] + t["ties"] + t["losses"] == 225 and 0 < t["p_randomization"] <= 1
    pq = out["compare"]["per_query"]
    assert len(pq) == 225 and all(v["ndcg@10"][2] == pytest.approx(v["ndcg@10"][0] - v["ndcg@10"][1])
                                  for v in pq.values())
    text = _run("eval", "-m", cran_dir, "--queries", queries, "--qrels", qrels, "--compare", other)
    assert "p(rand)" in text and "wins/ties/losses" in text
    bad = tmp_path / "bad.run"
    bad.write_text("zzz Q0 1 1 1.0 x\n")
    res = CliRunner().invoke(main, ["eval", "-m", str(cran_dir), "--queries", str(queries), "--qrels", str(qrels),
                                    "--compare", str(bad)])
    assert res.exit_code == 2 and "no run for any of the 225 judged queries" in res.output


def test_tune_from_usage_promotes_the_most_chosen_values(cran_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TABLELM_DATA", str(tmp_path))
    monkeypatch.setenv("TABLELM_RECORD_USAGE", "1")
    model = tablelm.load(cran_dir)
    for k1 in (1.1, 1.1, 1.1, 0.9):
        model.ask("boundary layer flow", k=3, k1=k1)
    model.ask("boundary layer flow", k=3)  # no parameter set: nothing recorded
    env = {"TABLELM_DATA": str(tmp_path)}
    out = json.loads(_run("tune", "-m", cran_dir, "--from-usage", "--name", "popular", "--json", env=env))
    assert out["params"] == {"k1": 1.1} and out["records"] == 4
    assert tablelm.load(cran_dir).defaults["k1"] == 1.1
    _run("tune", "-m", cran_dir, "--reset")


def test_usage_is_not_recorded_without_opt_in(cran_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TABLELM_DATA", str(tmp_path))
    monkeypatch.delenv("TABLELM_RECORD_USAGE", raising=False)
    tablelm.load(cran_dir).ask("boundary layer flow", k=3, k1=1.3)
    assert not any(tmp_path.rglob("*.jsonl"))
