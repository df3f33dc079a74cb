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
                          "--heldout-qrels", held, "--budget", 8, "--json"))
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
