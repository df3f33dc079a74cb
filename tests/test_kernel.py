"""The scoring kernels: numba and numpy give the same rankings and the same floats, and the
batched search path gives what the general one (``ask``'s) gives."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tablelm
from tablelm.errors import TablelmError
from tablelm.evaluation import read_queries
from tablelm.model import Model
from tablelm.query import kernel

from conftest import DATA, cached_model

CRAN = DATA / "cranfield"
HAS_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")

#: parameter sets that change what the kernels compute: length norms, field weights, stretches, agents
PARAMS = [{}, {"phrase_mode": "each"}, {"k1": 0.9, "b": 0.4, "w_title": 0.0, "w_tags": 3.0},
          {"agent_boost": 2.0, "phrase_weight": 1.0}]


@pytest.fixture
def numpy_kernel(monkeypatch):
    """Queries in this test use the numpy implementation."""
    monkeypatch.setattr(kernel, "_jit_module", False)


@pytest.fixture(scope="module")
def cranfield(tmp_path_factory):
    """The whole Cranfield collection (1,400 documents) and its 225 queries."""
    if not (CRAN / "corpus.jsonl").exists():
        pytest.skip(f"test data not found at {CRAN}")
    out = tmp_path_factory.mktemp("cranfield") / "model"
    src = CRAN / "corpus.jsonl"
    cached_model(out, ["source", "cranfield", src.read_bytes()], lambda path: tablelm.build([src], path))
    return tablelm.load(out), read_queries(CRAN / "queries.jsonl")


def _both(monkeypatch, fn):
    """``fn()`` with the numpy kernels, then with numba."""
    monkeypatch.setattr(kernel, "_jit_module", False)
    with_numpy = fn()
    monkeypatch.delenv("TABLELM_KERNEL", raising=False)
    monkeypatch.setattr(kernel, "_jit_module", None)
    assert kernel.warm() and kernel.backend() == "numba"
    return with_numpy, fn()


@needs_numba
@pytest.mark.parametrize("params", PARAMS, ids=["defaults", "each", "bm25-norms", "agents"])
def test_numba_and_numpy_rank_cranfield_identically(cranfield, monkeypatch, params):
    model, queries = cranfield
    a, b = _both(monkeypatch, lambda: model.search_many(queries, k=100, **params))
    assert a == b  # the same ids in the same order with the same float scores
    assert sum(len(r) for r in a.values()) > 100 * len(queries) * 0.9


@needs_numba
def test_numba_and_numpy_rank_the_scifact_slice_identically(scifact_model, scifact_queries_file, monkeypatch):
    queries = read_queries(scifact_queries_file)
    for k in (1, 3, 1000):  # a heap of one, ties at the cut, more than the candidates
        a, b = _both(monkeypatch, lambda k=k: scifact_model.search_many(queries, k=k))
        assert a == b
        assert all(len(r) <= k for r in a.values())


@needs_numba
def test_the_impact_cache_holds_the_numpy_floats_of_the_rows_queried(cranfield, monkeypatch):
    """The compiled path keeps each queried row's impacts (Postings.imp): a cold pass, a warm
    pass and the numpy kernels give the same rankings, and only the rows queried are filled."""
    model, queries = cranfield
    params = {"k1": 1.1, "b": 0.6}  # a parameter set no other test used: a fresh cache
    monkeypatch.delenv("TABLELM_KERNEL", raising=False)
    monkeypatch.setattr(kernel, "_jit_module", None)
    assert kernel.warm()
    post = model.postings_for(model.params(**params))
    assert not post.ready.any()
    first = dict(list(queries.items())[:20])
    cold = model.search_many(first, k=50, **params)
    filled = np.flatnonzero(post.ready)
    plans = model._planner.plan_many(list(first.values()), model.params(**params))
    asked = {t.mt for plan in plans for t in plan.active()}
    assert set(filled.tolist()) == asked
    _, idx = kernel.gather(post.indptr, filled)
    assert np.array_equal(post.imp[idx], kernel.impacts_at(post, idx))  # the same float32 as numpy's
    untouched = np.ones(len(post.imp), dtype=bool)
    untouched[idx] = False
    assert not post.imp[untouched].any()
    assert model.search_many(first, k=50, **params) == cold  # warm: read from the cache
    monkeypatch.setattr(kernel, "_jit_module", False)
    assert model.search_many(first, k=50, **params) == cold


@needs_numba
def test_dense_scores_and_top_k_agree(cranfield, monkeypatch):
    model, queries = cranfield
    from tablelm.query.rank import Scorer

    plan = model._planner.plan(queries["1"], model.params())
    scorer = Scorer(model, model.params())
    s_np, s_nb = _both(monkeypatch, lambda: scorer.tablelm(plan.active()))
    assert np.array_equal(s_np, s_nb)
    ties = np.round(s_np, 1)  # many equal scores: the order falls back to the entity index
    exclude = np.flatnonzero(ties == ties.max())[:3]
    for k in (1, 10, 500, 5000):
        for ex in (None, exclude):
            a, b = _both(monkeypatch, lambda k=k, ex=ex: kernel.top_k(ties, k, ex))
            assert np.array_equal(a, b)
            order = np.lexsort((np.arange(len(ties)), -ties))
            want = [d for d in order if ties[d] > 0 and (ex is None or d not in ex)][:k]
            assert a.tolist() == want


def test_the_batch_path_gives_what_the_general_path_gives(cranfield, monkeypatch):
    """search_many scores plain plans in one batch; the others (and ask) go through Model._rank."""
    model, queries = cranfield
    some = dict(list(queries.items())[:60])
    for params in PARAMS:
        batch = model.search_many(some, k=50, **params)
        monkeypatch.setattr(Model, "_plain", staticmethod(lambda plan, p: False))
        general = model.search_many(some, k=50, **params)
        monkeypatch.undo()
        assert batch == general
    text = some["1"]
    top = model.search(text, k=10)
    cards = model.ask(text, k=10).cards
    assert [c.id for c in cards] == [d for d, _ in top]
    assert [c.score for c in cards] == [round(s, 6) for _, s in top]


@pytest.fixture(scope="module")
def scifact_letters(tmp_path_factory):
    """The whole SciFact corpus (5,183 abstracts) and its claims with letter phrases ("vitamin A", "T cells")."""
    from conftest import SCIFACT, SCIFACT_QUERIES

    if not SCIFACT.exists():
        pytest.skip(f"test data not found at {SCIFACT}")
    out = tmp_path_factory.mktemp("scifact-full") / "model"
    cached_model(out, ["source", "scifact-full", SCIFACT.read_bytes()], lambda path: tablelm.build([SCIFACT], path))
    model = tablelm.load(out)
    queries = read_queries(SCIFACT_QUERIES)
    plans = model._planner.plan_many(list(queries.values()), model.params())
    return model, {q: t for (q, t), plan in zip(queries.items(), plans) if plan.letter_mts}


@pytest.mark.parametrize("params", [{}, {"agent_boost": 2.0, "b": 0.3}], ids=["defaults", "agents"])
def test_letter_phrases_are_scored_in_the_batch_as_the_general_path_scores_them(scifact_letters, monkeypatch,
                                                                                params):
    """A letter phrase ("vitamin A", "T cells") is a matched multitoken of the plan, so its prompt is
    scored in the compiled batch: the same entities, order and floats as Model._rank, with numba and
    with numpy; and the letter multitokens do change rankings."""
    from tablelm.query.plan import Planner

    model, queries = scifact_letters
    assert len(queries) > 80  # the claims whose letter phrase is a multitoken of SciFact
    for k in (3, 100):
        run = lambda k=k: model.search_many(queries, k=k, **params)
        batch_np, batch = _both(monkeypatch, run) if HAS_NUMBA else (run(), run())
        monkeypatch.setattr(Model, "_plain", staticmethod(lambda plan, p: False))
        general = run()
        monkeypatch.undo()
        assert batch == general and batch_np == general
        # without the letter multitokens: other rankings
        monkeypatch.setattr(Planner, "_letter_pairs", staticmethod(lambda prepared, who, matched: (who, matched)))
        unlettered = run()
        monkeypatch.undo()
        changed = sum(unlettered[q] != batch[q] for q in queries)
        assert changed > 20, changed
        assert all(len(r) <= k for r in batch.values())


def test_unplain_prompts_are_ranked_in_the_same_batch(cranfield):
    """Exclusions, exact phrases and expansion leave the batch for the general path, in order."""
    model, queries = cranfield
    texts = {"a": queries["1"], "b": queries["1"] + " !wing", "c": '"boundary layer" flow', "d": queries["2"]}
    got = model.search_many(texts, k=20)
    assert list(got) == ["a", "b", "c", "d"]
    assert got["a"] == model.search(texts["a"], k=20) and got["d"] == model.search(texts["d"], k=20)
    wing = {d for d, _ in model.search("wing", k=1400)}
    assert got["b"] and not wing & {d for d, _ in got["b"]}
    assert got["c"] == model.search(texts["c"], k=20)


def test_the_numpy_kernel_alone(tiny_model, numpy_kernel):
    """Without numba (forced here) queries work and report the numpy backend."""
    assert kernel.backend() == "numpy"
    got = tiny_model.search("read a file line by line", k=2)
    assert got[0][0] == "files/read" and len(got) == 2 and got[0][1] > got[1][1] > 0


def test_auto_mode_compiles_after_enough_numpy_work(tiny_model, monkeypatch):
    monkeypatch.setattr(kernel, "_jit_module", None)
    monkeypatch.setenv("TABLELM_KERNEL", "auto")
    monkeypatch.setenv("TABLELM_JIT_AFTER", "1e9")
    tiny_model.search("open a file")
    assert kernel._jit_module is None and kernel.backend() == "numpy"  # a one-shot query never loads numba
    monkeypatch.setenv("TABLELM_JIT_AFTER", "0")
    assert kernel.backend() == ("numba" if HAS_NUMBA else "numpy")


def test_a_bad_kernel_setting_says_what_to_use(monkeypatch):
    monkeypatch.setattr(kernel, "_jit_module", None)
    monkeypatch.setenv("TABLELM_KERNEL", "fast")
    with pytest.raises(TablelmError, match=r"TABLELM_KERNEL must be auto, numba or numpy\. Got 'fast'"):
        kernel.backend()


def test_without_numba_installed_search_falls_back(tiny_model, tmp_path):
    """numba made unimportable in a fresh process: ``TABLELM_KERNEL=numba`` still answers, with numpy."""
    script = (
        "import sys, json; sys.modules['numba'] = None\n"
        "import tablelm\nfrom tablelm.query import kernel\n"
        f"m = tablelm.load({str(tiny_model.path)!r})\n"
        "print(json.dumps([kernel.backend(), m.search('read a file line by line', k=4)]))\n")
    env = dict(os.environ, TABLELM_KERNEL="numba", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    backend, hits = json.loads(out.stdout)
    assert backend == "numpy"
    assert [tuple(h) for h in hits] == tiny_model.search("read a file line by line", k=4)


def _terms(plans):
    return [(p.to_dict(), [(t.mt, t.text, t.n, t.role, t.weight, t.via, t.qtf, t.stretch) for t in p.terms])
            for p in plans]


#: planning parameters the compiled planner reads: stretches, qtf, distillation, weights, skips
PLAN_PARAMS = [{}, {"phrase_mode": "each"}, {"qtf_k3": 0.0}, {"qtf_k3": 3.0, "max_token_count": 40},
               {"contained_weight": 0.3, "phrase_weight": 1.0, "match_skip": 2}, {"max_token_count": 1}]


@needs_numba
@pytest.mark.parametrize("params", PLAN_PARAMS, ids=lambda p: ",".join(p) or "defaults")
def test_the_compiled_planner_makes_the_plans_of_the_python_one(cranfield, scifact_letters, monkeypatch, params):
    """Planner.plan_batch finishes plans in one compiled pass (_jit.finish_plans) once numba is loaded:
    the same terms (ids, texts, roles, exact weights, qtf, stretches) as Planner._finish, on every
    Cranfield and SciFact query and on prompts with repeats, forced multitokens and generic words."""
    extra = ["boundary layer boundary layer flow flow flow", "heat~transfer heat transfer coefficient",
             "flow flow", "", "zzqx unknownword", "the of and"]
    for model, queries in (cranfield, scifact_letters):
        texts = list(queries.values()) + extra
        p = model.params(**params)
        python, compiled = _both(monkeypatch, lambda m=model, x=texts, p=p: m._planner.plan_many(x, p))
        assert _terms(python) == _terms(compiled)
        batch = model._planner.plan_batch(texts, p)
        assert batch.compiled.sum() >= len(texts) - 1  # all but the forced prompt stay arrays
        got = batch.kernel_input(list(range(len(texts))), lambda mts: np.ones(len(mts)))
        want = kernel.prepare_many([plan.active() for plan in python], lambda mts: np.ones(len(mts)))
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
        assert not batch._filled[batch.compiled].any()  # the forced prompt's terms alone were made
        roles = {t.role for plan in python for t in plan.terms}
        # every role is reached (a cap of 1 makes every word generic: nothing left to contain)
        assert "prompt" in roles and ("contained" if params.get("max_token_count") != 1 else "generic") in roles
        assert "forced" in roles or model is not cranfield[0]  # heat~transfer: a Cranfield multitoken
        assert "generic" in roles or not params.get("max_token_count")
    if not params:  # the test reaches what it means to: stretches and qtf > 1 are planned
        assert any(t.stretch is not None for plan in python for t in plan.terms)
        assert any(t.qtf > 1 for plan in python for t in plan.terms)


@needs_numba
def test_the_histogram_top_k_is_exact_on_ties_skew_and_exclusions(cranfield):
    """_jit._select keeps the candidates of the top score bins and sorts those only: on real score
    vectors made adversarial (rounded to few values: ties across the cut; one huge score: every other
    in the lowest bin; fewer candidates than k) it gives numpy's order, and the batch gives it too."""
    from tablelm.query import _jit
    from tablelm.query.rank import Scorer

    model, queries = cranfield
    scorer = Scorer(model, model.params())
    rng = np.random.default_rng(0)
    for text in list(queries.values())[:15]:
        s = scorer.tablelm(model._planner.plan(text, model.params()).active())
        skew = s.copy()
        skew[int(np.argmax(s))] = s.max() * 1e9
        few = np.where(s > np.quantile(s, 0.99), s, 0.0)
        for scores in (s, np.round(s, 1), np.round(s * 3) / 3, skew, few):
            exclude = rng.choice(len(scores), 30, replace=False)
            for k in (1, 7, 100, 1000, 5000):
                for ex in (None, exclude):
                    got = _jit.top_k_dense(scores, k, np.zeros(0, dtype=bool) if ex is None
                                           else np.isin(np.arange(len(scores)), ex))
                    masked = scores if ex is None else np.where(np.isin(np.arange(len(scores)), ex), 0.0, scores)
                    want = [d for d in np.lexsort((np.arange(len(scores)), -masked)) if masked[d] > 0][:k]
                    assert got.tolist() == want


#: prompts for the batched prepare: agents, letters, non-ASCII text, syntax, the separator character, empty
BATCH_EXTRAS = ["Vitamin A deficiency", "I am interested in T cells", "how to list the flow", "What is a shock wave?",
                "T cells and B cells", "", "the of and", "na\u00efve \u0130stanbul how flow",
                "boundary\ue000layer flow",
                "heat~transfer flow", '"boundary layer" flow', "!flow boundary layer", "type I and type II error",
                "e.g. U.S. A_b x A", "compare versus vs. flow", "\u65e5\u672c flow", "flow flow flow boundary",
                'a "boundary layer" in a long prompt of more than twelve words about the heat of the flow',
                'one "word" quoted', "Hello flow!", "flow ! boundary", '"boundary layer flow of heat transfer"',
                "the data_type I chose", "TYPE I flow", "a particular I flow", "Type-I error of part I"]


def test_the_batched_prepare_plans_as_prompt_by_prompt(cranfield, scifact_letters, tmp_path, monkeypatch):
    """Planner._prepare_many reads a batch in one pass (tokens by code, agents and letters only where
    their pre-checks find something, words and unknown words made when a plan is filled): the same
    plans (every field, every term) and stem ids as _prepare prompt by prompt, with either kernel, on
    every Cranfield and SciFact-letter query, CACM's, prompts of agents, letters, syntax, non-ASCII
    text and the separator character, a KW_map word of two stems, and a token table emptied between
    batches (TOKEN_CODES) that grows within one."""
    from tablelm.query import plan as P

    src = tmp_path / "kw.jsonl"
    src.write_text("".join(json.dumps({"_id": str(i), "title": "", "text": t}) + "\n" for i, t in enumerate(
        ["the boundary layer of a wing", "heat transfer in a boundary layer", "the bl and the flow", "T cells"] * 3)))
    kw_model = tablelm.build([src], tmp_path / "kw", kw_map={"bl": "boundary layer"})
    cacm = read_queries(DATA / "cacm" / "queries.jsonl") if (DATA / "cacm" / "queries.jsonl").exists() else {}
    cases = [(cranfield[0], list(cranfield[1].values()) + list(cacm.values())),
             (scifact_letters[0], list(scifact_letters[1].values())),
             (kw_model, ["bl flow", "the bl", "heat transfer", "boundary layer flow", "T cells", "a wing"] * 2)]
    for model, texts in cases:
        texts = texts + BATCH_EXTRAS
        p = model.params()
        planner = model._planner

        def plans(batch_min, texts=texts, p=p, planner=planner):
            monkeypatch.setattr(P, "BATCH_MIN", batch_min)
            _, seq, s_ptr, lazy = planner._prepare_many(texts, p)
            return _terms(planner.plan_many(texts, p)), P._unflatten(seq, s_ptr), lazy

        for tiny in (False, True):
            if tiny:  # emptied at the start of each batch, grown past its first capacity within one
                monkeypatch.setattr(P, "TOKEN_CODES", 3)
            numpy_run, jit_run = _both(monkeypatch, lambda: (plans(10**9), plans(8)))
            # the one pass takes every prompt without syntax (quotes of a long prompt, a "!" that starts no
            # word are none), the long way a KW_map word of two stems
            passed = [P._no_syntax(t) and not (model is kw_model and "bl" in t.split()) for t in texts]
            assert sum(passed) >= len(texts) - 20 and not all(passed)
            for one_by_one, batched in (numpy_run, jit_run):
                assert batched[0] == one_by_one[0]
                assert batched[1] == one_by_one[1] == [planner._prepare(t, p)[1] for t in texts]
                assert one_by_one[2] is None and batched[2].tolist() == passed
            assert numpy_run[0][0] == jit_run[0][0]
    # what the pass skips is reached: agents, letters found, unknown words, a KW_map word of two stems
    last = _terms(cases[0][0]._planner.plan_many(cases[0][1] + BATCH_EXTRAS, cases[0][0].params()))
    assert {d["agent"] for d, _ in last} >= {None, "howto", "definition", "compare"}
    assert any(d["letter_phrases"] for d, _ in last) and any(d["unknown"] for d, _ in last)
    assert kw_model._planner._prepare("bl", kw_model.params())[1] == kw_model._planner._prepare(
        "boundary layer", kw_model.params())[1]


def test_a_prompt_plans_and_ranks_alone_as_in_a_batch(cranfield, scifact_letters, monkeypatch):
    """A prompt's plan and results do not depend on the prompts batched with it: one whose known words
    are one stem said twice ("flow flow", "T cells and B cells") matches that stem's two-word
    multitoken alone as among others (the matcher's shortcut for batches without a prompt of two
    words counts a repeated word), with either kernel."""
    for model, texts in ((cranfield[0], ["flow flow"]), (scifact_letters[0], ["cells cells", "T cells and B cells"])):
        others = [t for t in list(cranfield[1].values())[:30]]
        p = model.params()

        def alone_and_among(model=model, texts=texts, others=others, p=p):
            return [(_terms([model._planner.plan(t, p)]), _terms(model._planner.plan_many(others + [t], p)[-1:]),
                     model.search(t, k=20), model.search_many({**dict(enumerate(others)), "x": t}, k=20)["x"])
                    for t in texts]

        for run in _both(monkeypatch, alone_and_among):
            for alone, among, hits_alone, hits_among in run:
                assert alone == among and hits_alone == hits_among
                assert any(t[2] == 2 and len(set(t[1].split())) == 1 for t in alone[0][1])  # "flow flow"


def test_planning_pre_checks_never_change_what_they_skip(cranfield, monkeypatch):
    """detect_agent's needles (an agent's regex tried only when a needle is in the lowercased ASCII
    prompt) and the letter pre-check (no capital one-letter word and no "~": no letter phrase, no single
    letter to say) skip work, never a result: on every Cranfield,
    SciFact and CACM query and on prompts made to hit each agent's words, in any case."""
    from tablelm.query import agents, plan

    texts = list(cranfield[1].values()) + list(read_queries(DATA / "scifact" / "queries.jsonl").values())
    if (DATA / "cacm" / "queries.jsonl").exists():
        texts += list(read_queries(DATA / "cacm" / "queries.jsonl").values())
    words = ["Examples", "SAMPLE CODE", "snippet", "demo", "Show me", "HOW", "how do", "What is", "define",
             "Definition", "meaning of", "difference between", "VS.", "vs", "versus", "Compare", "list", "  Which",
             "enumerate", "howl", "whatever", "vsx", "Kelvin \u212a", "\u017fnippet", "i\u0307", "na\u00efve demo"]
    texts += [f"{a} {w} b" for w in words for a in ("", "x", "the")] + [w for w in words]
    for text in texts:
        slow = next((a.name for a in agents.AGENTS if a.prompt.search(text)), None)
        assert agents.detect_agent(text) == slow, text
    assert {agents.detect_agent(t) for t in texts} == {None, *agents.AGENT_NAMES}
    model = cranfield[0]
    a = model.analyzer
    is_content = lambda w: len(w) > 1 and bool(a.word_stems(w.lower()))
    texts += ["x A", "_a_", "\u00e9a b", "a.b", "x-y", "\u65e5\u672ca", "T", "vitamin~d", "3 D", "a b c", "type I"]

    def plans_and_phrases():
        return ([plan.letter_phrases(t, is_content) for t in texts],
                [p.to_dict() for p in model._planner.plan_many(texts, model.params())])

    fast = plans_and_phrases()
    monkeypatch.setattr(plan, "_may_have_letters", lambda text: True)  # every prompt the long way
    assert plans_and_phrases() == fast
    assert sum(1 for x in fast[0] if x) > 20 and sum(1 for p in fast[1] if p["single_letters"]) > 20


@needs_numba
@pytest.mark.parametrize("skip", [0, 1, 3])
def test_the_compiled_matcher_finds_the_multitokens_the_numpy_one_finds(cranfield, scifact_letters, monkeypatch,
                                                                        skip):
    """Planner._match_pairs's windows, hashes, table lookups and checks in one compiled pass
    (_jit.match_windows, with tables.hashing's hash bit for bit): the same (prompt, multitoken) pairs
    as the numpy pass on every Cranfield and SciFact query, and prompts that repeat and reorder words."""
    from tablelm.query import _jit
    from tablelm.tables.hashing import _POS, hash_rows, sort_rows

    rows = np.random.default_rng(1).integers(-1, 2**31 - 1, size=(2000, 4))
    rows[::3, 2:] = -1
    key = np.empty(4, dtype=np.int64)
    for r in rows[:300]:
        _jit._sorted_row(r, key)
        assert key.tolist() == sort_rows(r[None])[0].tolist()
        assert _jit._hash_row(key, _POS) == hash_rows(key[None])[0]
    for model, queries in (cranfield, scifact_letters):
        texts = list(queries.values()) + ["flow boundary layer layer boundary", "layer boundary", "heat heat heat"]
        p = model.params(match_skip=skip)
        seqs = [seq for _, seq, _ in (model._planner._prepare(t, p) for t in texts)]
        numpy_pairs, compiled_pairs = _both(monkeypatch, lambda m=model, s=seqs, p=p: m._planner._match_pairs(s, p))
        as_set = lambda pairs: sorted(zip(pairs[0].tolist(), pairs[1].tolist()))
        assert as_set(numpy_pairs) == as_set(compiled_pairs)
        assert len(set(as_set(numpy_pairs))) > len(texts)  # phrases are found


# ------------------------------------------------------------------ pruning (_jit._pruned_query)


@needs_numba
@pytest.mark.parametrize("params", PARAMS, ids=["defaults", "each", "bm25-norms", "agents"])
def test_pruned_batches_rank_cranfield_as_the_exhaustive_and_numpy_ones(cranfield, monkeypatch, params):
    """Every query pruned (TABLELM_PRUNE_PER_K=0; by default only queries of many postings are): the same
    ids, order and floats as numpy's and as the compiled loop that scores every posting."""
    model, queries = cranfield
    monkeypatch.setenv("TABLELM_PRUNE_PER_K", "0")
    for k in (1, 10, 100):
        a, pruned = _both(monkeypatch, lambda k=k: model.search_many(queries, k=k, **params))
        monkeypatch.setenv("TABLELM_PRUNE", "0")
        exhaustive = model.search_many(queries, k=k, **params)
        monkeypatch.delenv("TABLELM_PRUNE")
        assert pruned == a == exhaustive


def _postings(indptr, docs, tf, norm):
    tables = type("Tables", (), {"post_indptr": indptr, "post_docs": docs, "post_tf": tf})()
    return kernel.Postings(tables, norm, np.array([1.0, 0.5]), 1.2)


@needs_numba
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pruning_never_drops_a_top_k_entity(data, monkeypatch):
    """Random small indexes made for ties (a few tf values, norms and weights), free terms and stretches,
    agent boosts, k from 1 to past the candidates: the pruned compiled batch gives exactly the top k of
    the exhaustive one and of numpy, ties at the cut included. (Leaving the bounds of the units left out
    of the candidates' test, in _pruned_query, makes it fail.)"""
    n_docs = data.draw(st.integers(2, 40))
    n_rows = data.draw(st.integers(1, 8))
    rows = [np.flatnonzero(data.draw(st.lists(st.booleans(), min_size=n_docs, max_size=n_docs))).tolist()
            for _ in range(n_rows)]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    docs = np.array([d for r in rows for d in r], dtype=np.int32)
    tf = np.array(data.draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=len(docs),
                                     max_size=len(docs))), dtype=np.uint16).reshape(len(docs), 2)
    norm = np.array(data.draw(st.lists(st.sampled_from([0.6, 1.2, 1.8, 2.4]), min_size=n_docs, max_size=n_docs)))
    agents = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n_docs, max_size=n_docs)), dtype=np.uint8)
    queries = []
    for _ in range(data.draw(st.integers(1, 4))):
        n_free = data.draw(st.integers(0, 4))
        stretch = data.draw(st.lists(st.integers(0, 2), max_size=4))  # stretch ids, one term each
        mts = data.draw(st.lists(st.integers(0, n_rows - 1), min_size=n_free + len(stretch),
                                 max_size=n_free + len(stretch)))
        w = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 0.7]), min_size=len(mts), max_size=len(mts)))
        grp = [-1] * n_free + sorted(stretch)
        queries.append((np.array(mts, dtype=np.int64), np.array(w), np.array(grp, dtype=np.int64),
                        data.draw(st.integers(0, 1))))
    k = data.draw(st.integers(1, n_docs + 2))
    boost = data.draw(st.sampled_from([1.0, 2.0, 0.5, 0.0]))

    def run():
        got = kernel.search_batch(_postings(indptr, docs, tf, norm), queries, k, agents, boost)
        return [(i.tolist(), s.tolist()) for i, s in got]

    with monkeypatch.context() as mp:  # undone after each example
        mp.setenv("TABLELM_PRUNE_PER_K", "0")
        mp.delenv("TABLELM_PRUNE", raising=False)
        with_numpy, pruned = _both(mp, run)
        mp.setenv("TABLELM_PRUNE", "0")
        exhaustive = run()
    assert pruned == exhaustive == with_numpy


@needs_numba
def test_pruning_admits_an_entity_that_the_units_after_lift_into_the_top_k(monkeypatch):
    """The admission rule, on its edge: once the threshold is known (here after the rarest unit, whose
    one entity a1 scores 10), an entity met first in a later single-term unit joins when its
    contribution plus the bounds of the units after it can reach the threshold. x scores 6 + 4.01 =
    10.01 (every impact is the same; the weights make the scores): it must be admitted at 6 + a bound of
    4.01, and it is the top 1. A threshold applied 1 % more strictly (or the bounds after left out)
    drops x and answers a1."""
    n_docs = 6
    rows = [[0], [1, 2, 3], [1]]  # A: a1 = entity 0; B: x = 1 and two entities of B alone; C: x
    indptr = np.array([0, 1, 4, 5], dtype=np.int64)
    docs = np.array([d for r in rows for d in r], dtype=np.int32)
    tf = np.tile(np.array([[1, 0]], dtype=np.uint16), (len(docs), 1))
    norm = np.ones(n_docs)
    free = np.array([-1, -1, -1], dtype=np.int64)  # three single-term units
    query = (np.array([0, 1, 2], dtype=np.int64), np.array([10.0, 6.0, 4.01]), free, 0)
    agents = np.zeros(n_docs, dtype=np.uint8)

    def run(k):
        (ids, scores), = kernel.search_batch(_postings(indptr, docs, tf, norm), [query], k, agents, 1.0)
        return ids.tolist(), scores.tolist()

    monkeypatch.setenv("TABLELM_PRUNE_PER_K", "0")  # pruned, the threshold checked before every unit
    for k in (1, 2):
        with_numpy, pruned = _both(monkeypatch, lambda k=k: run(k))
        monkeypatch.setenv("TABLELM_PRUNE", "0")
        exhaustive = run(k)
        monkeypatch.delenv("TABLELM_PRUNE")
        assert pruned == exhaustive == with_numpy
        ids, scores = pruned
        assert ids == [1, 0][:k]
        if k == 2:
            assert scores[0] / scores[1] == pytest.approx(1.001)
