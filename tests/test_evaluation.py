"""tablelm.evaluation: readers, and metrics checked against trec_eval (pytrec_eval).

The metric tests are differential: every value is compared with pytrec_eval,
the Python binding of trec_eval, on random runs (hypothesis: ties, graded and
non-positive grades, unretrieved relevant documents) and on a real BM25 run
over Cranfield.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tablelm.evaluation as ev
from tablelm.errors import CorpusError

from conftest import DATA, needs_data

pytrec_eval = pytest.importorskip("pytrec_eval")


# our metric name → the trec_eval measure giving the same number (k filled in).
TREC_MEASURE = {"ndcg": "ndcg_cut_{k}", "map": "map_cut_{k}", "recall": "recall_{k}",
                "exhaustivity": "recall_{k}", "p": "P_{k}"}


def trec_eval(run, qrels, metrics):
    """Per-query values from pytrec_eval for our metric names; judged queries absent → 0."""
    out = {q: {} for q in qrels}
    plain, mrr_cuts = set(), set()
    for m in metrics:
        base, k = ev.parse_metric(m)
        if base == "mrr":
            mrr_cuts.add(k)
        else:
            name = TREC_MEASURE[base].format(k=k)  # e.g. "ndcg_cut_10" → request "ndcg_cut.10"
            head, _, cut = name.rpartition("_")
            plain.add(f"{head}.{cut}")
    trec_run = {q: {d: float(s) for d, s in res} for q, res in run.items() if res}
    if plain:
        got = pytrec_eval.RelevanceEvaluator(qrels, plain).evaluate(trec_run)
    for m in metrics:
        base, k = ev.parse_metric(m)
        if base == "mrr":
            # recip_rank has no cutoff: cut the run to its trec_eval top k first.
            cut = {q: {d: float(s) for d, s in res if d in set(ev.rank_run(res)[:k])}
                   for q, res in run.items() if res}
            vals = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
            key = "recip_rank"
        else:
            vals, key = got, TREC_MEASURE[base].format(k=k)
        for q in qrels:
            out[q][m] = vals[q][key] if q in vals else 0.0
    return out


def assert_matches_trec_eval(run, qrels, metrics):
    ours = ev.evaluate_run(run, qrels, metrics)
    ref = trec_eval(run, qrels, metrics)
    assert set(ours["per_query"]) == set(qrels)
    for q in qrels:
        for m in metrics:
            assert ours["per_query"][q][m] == pytest.approx(ref[q][m], abs=1e-9), (q, m)
    for m in metrics:
        mean = sum(ref[q][m] for q in qrels) / len(qrels)
        assert ours["mean"][m] == pytest.approx(mean, abs=1e-9), m


# ------------------------------------------------------------------ metrics vs trec_eval, random

# Ids chosen so that string order differs from numeric order ("10" < "9"), which
# the docid-descending tie-break must follow the way strcmp does.
DOCS = ["1", "2", "9", "10", "11", "a", "B", "b", "doc-7", "é"]
QIDS = ["q1", "q2", "q3"]
scores = st.one_of(st.sampled_from([0.0, 1.0, 1.5, 2.0, -1.0]),  # small pool → many ties
                   st.floats(-5, 5, allow_nan=False, width=32))


@st.composite
def run_and_qrels(draw):
    qrels = {}
    for q in draw(st.lists(st.sampled_from(QIDS), min_size=1, max_size=3, unique=True)):
        judged = draw(st.dictionaries(st.sampled_from(DOCS), st.integers(-1, 4), min_size=1))
        qrels[q] = judged
    run = {}
    for q in draw(st.lists(st.sampled_from(QIDS + ["unjudged"]), max_size=4, unique=True)):
        docs = draw(st.lists(st.sampled_from(DOCS), unique=True, max_size=len(DOCS)))
        run[q] = [(d, draw(scores)) for d in docs]
    return run, qrels


METRICS_SMALL_K = ("ndcg@1", "ndcg@3", "ndcg@10", "map@2", "map@5", "map@100", "recall@3", "recall@100",
                   "mrr@1", "mrr@3", "mrr@10", "exhaustivity@5", "p@3")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run_and_qrels())
def test_metrics_match_trec_eval_on_random_runs(data):
    run, qrels = data
    assert_matches_trec_eval(run, qrels, METRICS_SMALL_K)


def test_ties_broken_by_docid_descending_like_trec_eval():
    qrels = {"q": {"10": 1}}
    # Equal scores: trec_eval ranks "9" before "10" (strcmp, descending), whatever the given order.
    run = {"q": [("10", 1.0), ("9", 1.0)]}
    assert ev.rank_run(run["q"]) == ["9", "10"]
    assert ev.evaluate_run(run, qrels, ["mrr@10"])["mean"]["mrr@10"] == 0.5
    assert_matches_trec_eval(run, qrels, ["mrr@10", "ndcg@10"])
    # sort=False keeps the given order instead.
    assert ev.evaluate_run(run, qrels, ["mrr@10"], sort=False)["mean"]["mrr@10"] == 1.0


def test_hand_computed_values():
    qrels = {"q": {"a": 3, "b": 0, "c": 1, "d": 2, "x": -1}}
    run = {"q": [("c", 4.0), ("b", 3.0), ("a", 2.0), ("x", 1.0)]}  # d not retrieved
    res = ev.evaluate_run(run, qrels, ["ndcg@3", "map@100", "recall@2", "mrr@10", "exhaustivity@10"])["mean"]
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert res["ndcg@3"] == pytest.approx(dcg / idcg)
    assert res["map@100"] == pytest.approx((1 / 1 + 2 / 3) / 3)  # R = 3 (a, c, d)
    assert res["recall@2"] == pytest.approx(1 / 3)
    assert res["mrr@10"] == 1.0
    assert res["exhaustivity@10"] == pytest.approx(2 / 3)


def test_judged_query_without_results_counts_zero_and_unjudged_ignored():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": [("a", 1.0)], "other": [("b", 1.0)]}
    res = ev.evaluate_run(run, qrels, ["ndcg@10", "recall@100"])
    assert res["per_query"]["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0}
    assert res["mean"]["ndcg@10"] == 0.5
    assert res["n_queries"] == 2 and res["n_missing"] == 1


def test_bad_metric_and_duplicate_docs_are_rejected():
    with pytest.raises(ValueError, match="ndcg@k"):
        ev.evaluate_run({}, {"q": {"a": 1}}, ["ndcg10"])
    with pytest.raises(ValueError, match="twice"):
        ev.evaluate_run({"q": [("a", 1.0), ("a", 0.5)]}, {"q": {"a": 1}})


# ------------------------------------------------------------------ metrics vs trec_eval, real BM25 run


@pytest.fixture(scope="module")
def cranfield_bm25_run():
    bm25s = pytest.importorskip("bm25s")
    import Stemmer

    folder = DATA / "cranfield"
    if not folder.is_dir():
        pytest.skip(f"test data not found at {folder}")
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8")]
    queries = ev.read_queries(folder / "queries.jsonl")
    qrels = ev.read_qrels(folder / "qrels" / "test.tsv")
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    retriever.index(bm25s.tokenize([c["title"] + " " + c["text"] for c in corpus], stopwords="en",
                                   stemmer=stemmer, show_progress=False), show_progress=False)
    qids = list(qrels)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer,
                            show_progress=False, return_ids=False)
    docs, scores = retriever.retrieve(tokens, k=100, n_threads=1, show_progress=False)
    run = {q: [(corpus[j]["_id"], float(s)) for j, s in zip(docs[i], scores[i])] for i, q in enumerate(qids)}
    return run, qrels


def test_metrics_match_trec_eval_on_cranfield_bm25(cranfield_bm25_run):
    run, qrels = cranfield_bm25_run
    assert len(qrels) == 225
    assert_matches_trec_eval(run, qrels, ev.DEFAULT_METRICS + ("ndcg@100", "map@10", "p@10"))
    # The documented baseline (shared/data/README.md): same numbers, not just same as pytrec_eval.
    mean = ev.evaluate_run(run, qrels)["mean"]
    assert mean["ndcg@10"] == pytest.approx(0.373, abs=0.001)
    assert mean["recall@100"] == pytest.approx(0.738, abs=0.001)
    assert mean["map@100"] == pytest.approx(0.304, abs=0.001)


# ------------------------------------------------------------------ readers


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_read_queries_and_errors(tmp_path):
    p = write(tmp_path, "q.jsonl", '{"_id": "1", "text": "a b"}\n\n{"_id": 2, "text": "c", "x": 1}\n')
    assert ev.read_queries(p) == {"1": "a b", "2": "c"}
    cases = {
        '{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"\n': "invalid JSON",
        '{"_id": "1", "text": "a"}\n{"id": "2", "text": "b"}\n': "no '_id' field",
        '{"_id": "1", "text": "a"}\n["x"]\n': "JSON object",
        '{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n': "duplicate",
    }
    for text, message in cases.items():
        bad = write(tmp_path, "bad.jsonl", text)
        with pytest.raises(CorpusError, match=message) as exc:
            ev.read_queries(bad)
        assert exc.value.line == 2 and exc.value.path == str(bad)
        assert f"{bad} line 2:" in str(exc.value)
    with pytest.raises(CorpusError, match="not found"):
        ev.read_queries(tmp_path / "nope.jsonl")
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"_id": "1", "text": "a"}\n{"_id": "2", "text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match="UTF-8") as exc:
        ev.read_queries(latin1)
    assert exc.value.line == 2


def test_read_qrels_beir_and_trec_formats(tmp_path):
    beir = write(tmp_path, "test.tsv", "query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\n2\td1\t1\n")
    trec = write(tmp_path, "qrels.txt", "1 0 d1 2\n1 0 d2 0\n2 0 d1 1\n")
    expected = {"1": {"d1": 2, "d2": 0}, "2": {"d1": 1}}
    assert ev.read_qrels(beir) == expected
    assert ev.read_qrels(trec) == expected
    # Same reading as trec_eval's own parser.
    with trec.open() as f:
        assert ev.read_qrels(trec) == pytrec_eval.parse_qrel(f)
    for text, message in {"1 0 d1 2\n1 d1\n": "columns", "1\td1\t2\n1\td2\tx\n": "integer",
                          "1\td1\t2\n1\td2\t1.5\n": "integer"}.items():
        bad = write(tmp_path, "bad.tsv", text)
        with pytest.raises(CorpusError, match=message) as exc:
            ev.read_qrels(bad)
        assert exc.value.line == 2


@needs_data
def test_read_qrels_real_files():
    qrels = ev.read_qrels(DATA / "scifact" / "qrels" / "test.tsv")
    assert len(qrels) == 300
    assert sum(len(v) for v in qrels.values()) == 339


@needs_data
def test_read_prompts(tmp_path):
    pairs = ev.read_prompts(DATA / "xllm-enterprise" / "sample_prompts.txt")
    assert len(pairs) == 34
    assert pairs[3] == ("Which DLZ does the geographical zone APC belong to?",
                        "The geographical zone APC belongs to the AURORA DLZ.")
    p = write(tmp_path, "p.txt", "# comment\nq1 | a | b\n\nq2 | a2\n")
    assert ev.read_prompts(p) == [("q1", "a | b"), ("q2", "a2")]
    for text, message in {"q | a\nno separator\n": "no '\\|'", "q | a\n | a\n": "empty prompt"}.items():
        bad = write(tmp_path, "bad.txt", text)
        with pytest.raises(CorpusError, match=message) as exc:
            ev.read_prompts(bad)
        assert exc.value.line == 2


def test_trec_run_round_trip(tmp_path):
    run = {"q2": [("d3", 2.5), ("d1", 1 / 3)], "q1": [("d1", 1e-17)]}
    path = tmp_path / "run.txt"
    ev.write_trec_run(run, path, tag="bm25")
    lines = path.read_text().splitlines()
    assert lines[0] == "q2 Q0 d3 1 2.5 bm25"
    assert lines[1].split()[3] == "2" and lines[2].startswith("q1 Q0 d1 1 ")
    assert ev.read_trec_run(path) == run
    with path.open() as f:
        assert pytrec_eval.parse_run(f) == {q: dict(r) for q, r in run.items()}
    with pytest.raises(ValueError, match="whitespace"):
        ev.write_trec_run(run, path, tag="my run")
    bad = write(tmp_path, "bad.run", "q Q0 d 1 1.0 t\nq Q0 d 2 high t\n")
    with pytest.raises(CorpusError, match="score") as exc:
        ev.read_trec_run(bad)
    assert exc.value.line == 2


# ------------------------------------------------------------------ drivers, with a fake model


class FakeModel:
    """Ranks documents by how many query words they contain."""

    def __init__(self, docs):
        self.docs = docs
        self.calls = []

    def search(self, query, k=100, **params):
        self.calls.append(params)
        words = set(query.lower().split())
        scored = [(d, float(len(words & set(t.lower().split())))) for d, t in self.docs.items()]
        return sorted([x for x in scored if x[1] > 0], key=lambda x: -x[1])[:k]

    def search_many(self, queries, k=100, **params):
        return {q: self.search(t, k, **params) for q, t in queries.items()}

    def entity(self, docid):
        return SimpleNamespace(title=docid, text=self.docs[docid])


def test_evaluate_model():
    model = FakeModel({"d1": "gaussian distribution", "d2": "poisson process", "d3": "gaussian process"})
    queries = {"q1": "gaussian", "q2": "poisson", "q3": "not judged"}
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 2}}
    rep = ev.evaluate_model(model, queries, qrels, k=100, beta=0.7)
    assert rep.n_queries == 2 and set(rep.run) == {"q1", "q2"}
    assert rep.metrics["recall@100"] == 1.0 and rep.metrics["ndcg@10"] == 1.0
    assert rep.latency_ms_p50 >= 0 and rep.latency_ms_p95 >= rep.latency_ms_p50 and rep.queries_per_s > 0
    assert model.calls == [{"beta": 0.7}] * 2
    batch = ev.evaluate_model(model, queries, qrels, per_query_timing=False)
    assert batch.metrics == rep.metrics and batch.latency_ms_p50 is None
    with pytest.raises(ValueError, match="no text"):
        ev.evaluate_model(model, {"q1": "x"}, qrels)
    with pytest.raises(ValueError, match="cutoff"):
        ev.evaluate_model(model, queries, qrels, k=10)


def test_prompt_coverage():
    model = FakeModel({"d1": "The AURORA zone includes finance and logistics domains",
                       "d2": "Unrelated text about sales"})
    rep = ev.prompt_coverage(model, [("aurora domains", "Domains of AURORA: finance, logistics, sales."),
                                     ("nothing matches", "zzz")], k=1)
    first, second = rep.per_prompt
    # reference stems: domain, aurora, financ, logist, sale → 4 of 5 in d1 (stemming: domains→domain)
    assert first["ids"] == ["d1"] and first["coverage"] == pytest.approx(4 / 5)
    assert first["missing"] == ["sale"]
    assert second["coverage"] == 0.0 and second["ids"] == []
    assert rep.mean_coverage == pytest.approx((0.8 + 0.0) / 2)


# ------------------------------------------------------------------ paired significance


def test_paired_t_test_matches_scipy():
    from scipy import stats

    rng = __import__("numpy").random.default_rng(3)
    a = rng.random(40)
    b = a - 0.03 + rng.normal(0, 0.1, 40)
    got = ev.paired_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert got["t"] == pytest.approx(ref.statistic) and got["p_ttest"] == pytest.approx(ref.pvalue)
    assert got["delta"] == pytest.approx(float((a - b).mean()))
    assert got["wins"] + got["ties"] + got["losses"] == 40


def test_randomization_p_matches_the_exact_enumeration():
    # n = 10 deltas: all 2^10 sign assignments give the exact two-sided p-value
    import itertools

    d = [0.3, -0.1, 0.25, 0.05, 0.2, -0.15, 0.4, 0.1, 0.0, 0.12]
    a, b = [x + 0.5 for x in d], [0.5] * len(d)
    obs = abs(sum(d))
    exact = sum(abs(sum(s * x for s, x in zip(signs, d))) >= obs - 1e-12
                for signs in itertools.product((1, -1), repeat=len(d))) / 2 ** len(d)
    got = ev.paired_test(a, b, n_resamples=200_000, seed=1)
    assert got["p_randomization"] == pytest.approx(exact, abs=0.005)
    assert got["wins"] == 7 and got["ties"] == 1 and got["losses"] == 2
    # deterministic: the same seed gives the same p-value
    assert ev.paired_test(a, b, n_resamples=5000, seed=7) == ev.paired_test(a, b, n_resamples=5000, seed=7)


def test_paired_test_edge_cases():
    same = ev.paired_test([0.2, 0.5, 1.0], [0.2, 0.5, 1.0])
    assert same["p_randomization"] == 1.0 and same["p_ttest"] == 1.0 and same["ties"] == 3
    # a clear, consistent difference: p is as small as the resamples allow
    big = ev.paired_test([1.0] * 30, [0.0] * 30, n_resamples=999)
    assert big["p_randomization"] == pytest.approx(1 / 1000) and big["p_ttest"] == 0.0 and big["wins"] == 30
    with pytest.raises(ValueError, match="same length"):
        ev.paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no queries"):
        ev.paired_test([], [])


def test_compare_runs_per_query_deltas():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    good = {"q1": [("d1", 2.0), ("x", 1.0)], "q2": [("d2", 1.0)], "q3": [("x", 1.0), ("d3", 0.5)]}
    worse = {"q1": [("x", 2.0), ("d1", 1.0)], "q2": [("d2", 1.0)]}  # q3 missing: scores 0
    cmp = ev.compare_runs(good, worse, qrels, ("mrr@10", "recall@100"))
    t = cmp.tests["mrr@10"]
    assert (t["wins"], t["ties"], t["losses"]) == (2, 1, 0)
    assert cmp.per_query["q1"]["mrr@10"] == [1.0, 0.5, 0.5]
    assert cmp.per_query["q3"]["mrr@10"] == [0.5, 0.0, 0.5]
    assert t["delta"] == pytest.approx(1.0 / 3)
    assert cmp.largest("mrr@10", 1) == ([("q1", 0.5)], [])
    with pytest.raises(ValueError, match="same collection"):
        ev.compare_runs({"other": [("d1", 1.0)]}, {}, qrels)
