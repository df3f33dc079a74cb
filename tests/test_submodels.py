"""Sub-models and the router (tablelm/submodels.py, tablelm/router.py) on real collections.

The central claim: every sub-model scores with the statistics of the collection, so asking all
of them and merging gives the unsplit model's ranking, entity for entity and score for score.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import tablelm
from tablelm.corpus.entity import TextEntity
from tablelm.errors import ModelError, TablelmError
from tablelm.evaluation import read_queries
from tablelm.interfaces.cli import main
from tablelm.submodels import SplitModel, assign, split_value

from conftest import CACM, XLLM, cached_model

PROMPTS = ["data governance policy", "sales forecast dashboard", "marketing campaign budget",
           "supplier contract procurement", "machine learning model deployment", "finance report !sales",
           '"data quality" rules', "onboarding~process", "customer churn", "zzzz unknownword"]


@pytest.fixture(scope="session")
def xllm_split_dir(tmp_path_factory):
    """The enterprise repository split by category into 8 sub-models (7 categories and the rest)."""
    if not XLLM.exists():
        pytest.skip(f"test data not found at {XLLM}")
    out = tmp_path_factory.mktemp("xllm-split") / "model"
    return cached_model(out, ["split", XLLM.read_bytes(), "category", 8],
                        lambda path: tablelm.build([XLLM], path, split_by="category", max_submodels=8))


@pytest.fixture()
def xllm_split(xllm_split_dir):
    return tablelm.load(xllm_split_dir)


# --------------------------------------------------------------------------- the split key
def _e(i, **kw):
    return TextEntity(id=str(i), text=f"text {i}", **kw)


def test_split_value_reads_the_top_of_a_field():
    e = _e(1, category=("os", "os.path"), tags=("io", "files"), metadata={"cr": ["3.73", "4.2"], "n": 7})
    assert split_value(e, "category") == "os"
    assert split_value(e, "tags") == "io"
    assert split_value(e, "metadata.cr") == "3.73"
    assert split_value(e, "metadata.cr", ".") == "3"
    assert split_value(e, "metadata.n") == "7"
    assert split_value(e, "metadata.missing") is None
    assert split_value(_e(2), "category") is None
    assert split_value(TextEntity(id="npm:left-pad", text="x"), "id", ":") == "npm"
    with pytest.raises(TablelmError, match="--split-by takes category, tags"):
        split_value(e, "colour")


def test_assign_caps_the_number_of_submodels_and_names_them_safely():
    ents = ([_e(i, category=("Big Area",)) for i in range(5)] + [_e(10 + i, category=("small/one",)) for i in range(2)]
            + [_e(20, category=("tiny",)), _e(21, category=("Tiny",)), _e(30)])
    names, labels, group = assign(ents, "category", max_submodels=4)
    assert labels == ["Big Area", "small/one", "(none)", "(other)"]
    assert names == ["big-area", "small-one", "_none", "_other"]
    assert [names[g] for g in group.tolist()] == ["big-area"] * 5 + ["small-one"] * 2 + ["_other"] * 2 + ["_none"]
    names, labels, _ = assign(ents, "category", max_submodels=10)
    assert names[labels.index("Tiny")] != names[labels.index("tiny")]  # same slug: told apart
    with pytest.raises(TablelmError, match="No entity has a value in 'tags'"):
        assign(ents, "tags")
    with pytest.raises(TablelmError, match="max_submodels must be an int >= 2"):
        assign(ents, "category", max_submodels=1)


# --------------------------------------------------------------------------- merged = unsplit
def _same_search(unsplit, split, queries, k=100, **kw):
    a = unsplit.search_many(queries, k)
    b = split.search_many(queries, k, route="all", **kw)
    return [q for q in queries if a[q] != b[q]], a, b


def test_all_submodels_merge_to_the_unsplit_ranking(xllm_model, xllm_split):
    """Same ids, same order, same float scores, on every prompt (syntax included)."""
    queries = dict(enumerate(PROMPTS))
    differ, a, _ = _same_search(xllm_model, xllm_split, queries)
    assert differ == []
    assert sum(len(v) for v in a.values()) > 300  # the prompts do match entities
    for prompt in PROMPTS[:4]:
        u, s = xllm_model.ask(prompt, k=10), xllm_split.ask(prompt, k=10, route="all")
        assert [(c.id, c.score) for c in u.cards] == [(c.id, c.score) for c in s.cards]
        assert [c.why for c in u.cards] == [c.why for c in s.cards]  # the same evidence and contributions
        assert s.plan["multitokens_matched"] == u.plan["multitokens_matched"]
        assert {c.submodel for c in s.cards} <= set(xllm_split.names)


@pytest.mark.slow
def test_cacm_split_by_cr_category_merges_to_the_unsplit_ranking(tmp_path):
    """CACM split by the top ACM CR category (8 sub-models): all 64 queries, top 100, identical."""
    if not CACM.exists():
        pytest.skip(f"test data not found at {CACM}")
    unsplit = tablelm.build([CACM], tmp_path / "u")
    split = tablelm.build([CACM], tmp_path / "s", split_by="metadata.cr_categories", split_sep=".")
    assert [s["name"] for s in split.submodels] == ["1", "2", "3", "4", "5", "6", "8", "_none"]
    queries = read_queries(CACM.parent / "queries.jsonl")
    differ, a, b = _same_search(unsplit, split, queries)
    assert differ == [] and len(a) == 64
    assert sum(map(len, b.values())) == sum(map(len, a.values()))


# --------------------------------------------------------------------------- routing
def test_the_router_says_which_submodels_it_asked_and_why(xllm_split):
    a = xllm_split.ask("sales forecast dashboard", k=10)
    r = a.routing
    assert r["mode"] == "auto" and 1 <= len(r["asked"]) < len(xllm_split.names) and "evidence" in r["why"]
    cov = {row["submodel"]: row["coverage"] for row in r["candidates"]}
    assert r["asked"][0] == max(cov, key=cov.get)
    held = [cov[n] for n in r["asked"]]
    assert sum(held) >= 0.9 - 1e-6 and sum(held[:-1]) < 0.9  # the fewest that hold 0.9 of the evidence
    assert held == sorted(held, reverse=True)
    one = xllm_split.ask("sales forecast dashboard", route_max=1, route_coverage=0.5).routing
    assert one["asked"] == r["asked"][:1] and "at most 1" in one["why"]
    with pytest.raises(TablelmError, match=r"route_coverage in \(0, 1\]"):
        xllm_split.ask("sales", route_coverage=1.5)
    assert all(row["asked"] == (row["submodel"] in r["asked"]) for row in r["candidates"])
    assert {c.submodel for c in a.cards} <= set(r["asked"])
    d = json.loads(a.to_json())
    assert d["routing"]["asked"] == r["asked"] and all("submodel" in c for c in d["cards"])
    from tablelm.answer.markdown import render_markdown
    from tablelm.answer.render import render_text

    assert "sub-models asked: " + ", ".join(r["asked"]) in render_text(a)
    assert "Sub-models asked: " in render_markdown(a)


def test_a_batch_is_routed_and_ranked_as_each_prompt_alone(xllm_split):
    """search_many routes the whole batch at once (router.coverage_many) and merges with arrays:
    each prompt gets the sub-models ask() names for it, and the ranking search() gives it alone."""
    from tablelm.router import choose_many

    queries = dict(enumerate(PROMPTS))
    batch = xllm_split.search_many(queries, k=20)
    scope, tables, planner, _ = xllm_split._state()
    p = xllm_split.params()
    plans = planner.plan_many(PROMPTS, p)
    routed = choose_many(xllm_split, scope, tables, plans, None, "auto", None, 0.9)
    names = xllm_split.names
    asked = [[names[s] for s in r] for r in routed]
    assert asked == [xllm_split.ask(q, k=1).routing["asked"] for q in PROMPTS]
    assert any(1 <= len(a) < len(names) for a in asked)  # the router did leave sub-models out
    assert batch == {i: xllm_split.search(q, k=20) for i, q in enumerate(PROMPTS)}
    assert sum(len(v) for v in batch.values()) > 50


def test_coverage_sums_to_one_over_the_scope(xllm_split):
    from tablelm.router import coverage

    scope, tables, planner, _ = xllm_split._state()
    plan = planner.plan("marketing campaign budget", xllm_split.params())
    cov, evidence = coverage(xllm_split, scope, tables, plan.active())
    assert cov.sum() == pytest.approx(1.0) and (cov >= 0).all()
    for s, items in evidence.items():  # the evidence is the router's own counts: the entities with the term
        sub = xllm_split._load(s)
        for text, n in items:
            mt = next(t.mt for t in plan.active() if t.text == text)
            assert int(sub.tables.df([mt])[0]) == n


def test_the_pairs_coverage_is_where_two_of_the_prompts_multitokens_are_expected(xllm_split):
    """coverage(method="pairs") from each sub-model's own tables: Σ_{t<u} w_t·w_u·df_s(t)·df_s(u)/N_s,
    normalized; "share" is Σ_t w_t·df_s(t)/df(t) / Σ_t w_t."""
    from tablelm.query.rank import idf
    from tablelm.router import coverage

    scope, tables, planner, facade = xllm_split._state()
    for prompt in ("marketing campaign budget", "data quality rules for the sales pipeline"):
        terms = [t for t in planner.plan(prompt, xllm_split.params()).active()]
        w = np.asarray([t.weight for t in terms]) * idf(facade, [t.mt for t in terms])
        mts = [t.mt for t in terms]
        df = np.asarray([np.asarray(xllm_split._load(s).tables.df(mts), dtype=np.float64)
                         for s in range(len(xllm_split.names))])  # sub-model x term
        n_s = np.asarray([m["entities"] for m in xllm_split.manifest["submodels"]], dtype=np.float64)
        want = np.asarray([sum(w[i] * w[j] * df[s, i] * df[s, j] for i in range(len(w)) for j in range(i + 1, len(w)))
                           / n_s[s] for s in range(len(n_s))])
        got, _ = coverage(xllm_split, scope, tables, terms, method="pairs")
        assert got == pytest.approx(want / want.sum())
        share, _ = coverage(xllm_split, scope, tables, terms, method="share")
        assert share == pytest.approx((w * df / np.maximum(df.sum(axis=0), 1)).sum(axis=1) / w.sum())
        names = xllm_split.names
        assert xllm_split.ask(prompt, route_method="share").routing["asked"][0] == names[int(np.argmax(share))]
        assert xllm_split.ask(prompt).routing["asked"][0] == names[int(np.argmax(got))]  # "pairs": the default
    with pytest.raises(TablelmError, match="route_method must be 'pairs' or 'share'"):
        xllm_split.search("sales", route_method="dense")


def test_a_routed_answer_equals_the_unsplit_answer_restricted_to_the_asked_submodels(xllm_model, xllm_split):
    """Routing only leaves sub-models out: the scores of what it asks are the unsplit ones."""
    prompt = "supplier contract procurement"
    routed = xllm_split.ask(prompt, k=50, route_max=1)
    (asked,) = routed.routing["asked"]
    members = set(xllm_split.submodel(asked).ids)
    full = [(d, s) for d, s in xllm_model.search(prompt, k=2000) if d in members][:50]
    assert [(c.id, c.score) for c in routed.cards] == [(d, round(s, 6)) for d, s in full]


def test_pinning_asks_only_that_submodel_and_loads_only_it(xllm_split_dir):
    split = tablelm.load(xllm_split_dir)
    assert isinstance(split, SplitModel) and split._models == {}  # lazy: nothing loaded yet
    a = split.ask("sales forecast", k=20, submodels=["sales"])
    assert a.routing["mode"] == "pinned" and a.routing["asked"] == ["sales"]
    assert a.cards and {c.submodel for c in a.cards} == {"sales"}
    assert set(c.id for c in a.cards) <= set(split.submodel("sales").ids)
    assert list(split._models) == [split.names.index("sales")]
    hits = split.search("sales forecast", k=20, submodels="sales,finance")
    owners = {d: n for n in ("sales", "finance") for d in split.submodel(n).ids}
    assert hits and all(d in owners for d, _ in hits)
    with pytest.raises(TablelmError, match="No sub-model 'nope' in this model; it has: finance, logistics"):
        split.ask("sales", submodels=["nope"])
    with pytest.raises(TablelmError, match="route must be 'auto' or 'all'"):
        split.ask("sales", route="some")


def test_a_submodel_is_a_model_of_its_own(xllm_split_dir, xllm_split):
    folder = Path(xllm_split_dir) / xllm_split.manifest["folder"] / "finance"
    sub = tablelm.load(folder)
    assert sub.n_docs == 150 and sub.collection is None  # standalone: its own statistics
    assert sub.ask("finance report").cards
    assert tablelm.load(folder).manifest["corpus"]["split"] == {"by": "category", "sep": None, "name": "finance",
                                                                 "label": "Finance"}


def test_a_pinned_submodel_uses_its_own_profile(xllm_split_dir, tmp_path):
    import shutil

    path = tmp_path / "m"
    shutil.copytree(xllm_split_dir, path)
    split = tablelm.load(path)
    split.submodel("sales").set_profile({"name": "sales", "params": {"k1": 0.9}})
    split = tablelm.load(path)
    assert split.ask("sales forecast", submodels=["sales"]).params["k1"] == 0.9
    assert split.ask("sales forecast", route="all").params["k1"] == 1.5  # several: the collection's profile
    split.set_profile({"name": "all", "params": {"k1": 1.2}})
    assert tablelm.load(path).ask("sales forecast", route="all").params["k1"] == 1.2


def test_the_full_scope_maps_the_statistics_the_build_summed(xllm_split_dir):
    """The whole collection's df, counts and display words are written by the build and mapped at
    load (no pass over the dictionary); they equal the sums over the sub-models' rows, which a
    restricted scope (and a split model built before those tables) computes."""
    from tablelm.submodels import Scope, ScopeTables
    from tablelm.tables.schema import StemIds

    split = tablelm.load(xllm_split_dir)
    scope, tables, _, _ = split._state()
    assert scope.full and isinstance(tables.stem_ids, StemIds)
    assert not np.asarray(split.router_arrays["all_stats"]).flags.owndata  # a view of the mapped file
    every = np.arange(len(split.router_arrays["mt_words"]))
    a = split.router_arrays
    old = SplitModel(split.path, split.manifest, split.router)
    del old.router_arrays["all_stats"]
    summed = Scope(old, scope.subs)
    assert not summed.full
    assert (summed.df == scope.df[every]).all() and (summed.mt_total == scope.mt_total[every]).all()
    assert scope.df[every].dtype == np.int64 and scope.n_present() == summed.n_present() > 0
    assert list(summed.display) == list(scope.display)
    rows = np.repeat(np.arange(len(a["mt_words"])), np.diff(a["route_indptr"]))
    summed_df = np.bincount(rows, weights=a["route_entry"][:, 1], minlength=len(a["mt_words"]))
    assert (a["all_stats"][:, 0] == summed_df).all()
    for s in range(len(split.names)):  # each entry's first posting is the sub-model's own row pointer
        sub = split._load(s).tables
        mine = a["route_entry"][:, 0] == s
        assert (a["route_entry"][mine, 2] == np.asarray(sub.post_indptr)[rows[mine]]).all()
        assert (a["route_entry"][mine, 1] == sub.df(rows[mine])).all()
    slow = ScopeTables(old, summed)
    for stem in ("sales", "data", "zzzunknown"):
        assert slow.stem_ids.get(stem) == tables.stem_ids.get(stem)
    queries = dict(enumerate(PROMPTS))
    assert old.search_many(queries, 50) == split.search_many(queries, 50)


def test_scores_in_a_scope_use_only_its_statistics(xllm_split):
    """A scope of one sub-model scores like that sub-model alone (its own N, df, lengths): nothing of
    the others enters its scores."""
    part = xllm_split.scoped(["finance"])
    sub = xllm_split.submodel("finance")
    scope = part._state()[0]
    assert scope.n_docs == sub.n_docs
    assert (scope.df == np.diff(np.asarray(sub.tables.post_indptr))).all()
    view = part._view(xllm_split.names.index("finance"))
    fw = (1.0, 2.0, 0.3, 1.0, 0.1)
    assert view.avg_len(fw) == sub.avg_len(fw)
    for prompt in ("finance report", "budget forecast quarterly"):
        assert part.search(prompt, k=30) == sub.search(prompt, k=30)


# --------------------------------------------------------------------------- files and commands
def test_split_model_directory_is_written_atomically_and_replaced_cleanly(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"_id": str(i), "title": f"t{i}", "text": f"alpha beta gamma {i % 3} delta",
                                       "category": ["a", "b", "c"][i % 3]}) + "\n" for i in range(30)))
    out = tmp_path / "m"
    fm = {"category_field": "category"}
    from tablelm.corpus import FieldMap

    tablelm.build([src], out, field_map=FieldMap(**fm), split_by="category")
    first = json.loads((out / "manifest.json").read_text())["folder"]
    tablelm.build([src], out, field_map=FieldMap(**fm), split_by="category", max_submodels=2)
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["manifest.json", json.loads((out / "manifest.json").read_text())["folder"]] != [first]
    assert [s["name"] for s in tablelm.load(out).submodels] == ["a", "_other"]
    tablelm.build([src], out, field_map=FieldMap(**fm))  # a plain model over a split one: the split goes
    assert not any(p.name.startswith("split-") for p in out.iterdir())
    assert not isinstance(tablelm.load(out), SplitModel)
    tablelm.build([src], out, field_map=FieldMap(**fm), split_by="category")  # and back
    assert not any(p.name.startswith("tables-") for p in out.iterdir())
    from tablelm.tables.store import read_manifest

    with pytest.raises(ModelError, match=r"is split into sub-models \(a, b, c\); this command reads one model"):
        read_manifest(out)
    folder = json.loads((out / "manifest.json").read_text())["folder"]
    report: dict = {}
    tablelm.load(out).add(entities=[], report=report)  # nothing to change: nothing is written
    assert report["added"] == 0 and json.loads((out / "manifest.json").read_text())["folder"] == folder
    with pytest.raises(TablelmError, match="no entity with id 'x'"):
        tablelm.load(out).delete(["x"])
    split = tablelm.load(out)  # a sub-model changed on its own: the router's counts no longer describe it
    name = split.names[0]
    tablelm.load(out / split.manifest["folder"] / name).delete([split.submodel(name).ids[0]])
    with pytest.raises(ModelError, match=f"sub-model '{name}' was changed after the split was built"):
        tablelm.load(out).search("text", 10, route="all")


def test_cli_builds_asks_pins_and_describes_a_split_model(tmp_path, xllm_split_dir, xllm_model_dir):
    r = CliRunner()
    res = r.invoke(main, ["ask", "-m", str(xllm_split_dir), "-s", "sales", "--json", "sales forecast"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["routing"]["asked"] == ["sales"] and {c["submodel"] for c in d["cards"]} == {"sales"}
    res = r.invoke(main, ["ask", "-m", str(xllm_split_dir), "sales forecast"])
    assert res.exit_code == 0 and "sub-models asked:" in res.output
    res = r.invoke(main, ["info", "-m", str(xllm_split_dir)])
    assert res.exit_code == 0 and "sub-models (split by category)" in res.output and "finance" in res.output
    res = r.invoke(main, ["verify", "-m", str(xllm_split_dir)])
    assert res.exit_code == 0 and "8 sub-models and the router" in res.output
    res = r.invoke(main, ["ask", "-m", str(xllm_model_dir), "-s", "sales", "x"])
    assert res.exit_code == 1 and "is not split into sub-models" in res.output
    res = r.invoke(main, ["build", str(XLLM), "-o", str(tmp_path / "m"), "--split-sep", "."])
    assert res.exit_code == 2 and "go with --split-by FIELD" in res.output
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"_id": str(i), "text": p}) + "\n" for i, p in enumerate(PROMPTS)))
    runs = {}
    for args in ([], ["--route", "all"]):
        res = r.invoke(main, ["search", "-m", str(xllm_split_dir), "--queries", str(queries), *args])
        assert res.exit_code == 0, res.output
        runs[tuple(args)] = res.output
    res = r.invoke(main, ["search", "-m", str(xllm_model_dir), "--queries", str(queries)])
    assert res.output == runs[("--route", "all")] != runs[()]


def test_mcp_tools_pin_a_submodel(xllm_split, xllm_model):
    import asyncio

    pytest.importorskip("mcp", reason="the MCP test needs the SDK: pip install 'tablelm[mcp]'")
    from mcp import Client

    from tablelm.interfaces.mcp import create_server

    async def main():
        async with Client(create_server(xllm_split)) as client:
            r = await client.call_tool("ask", {"prompt": "sales forecast", "k": 5, "submodel": "sales"})
            d = r.structured_content
            assert d["routing"]["asked"] == ["sales"] and {c["submodel"] for c in d["cards"]} == {"sales"}
            r = await client.call_tool("search", {"query": "sales forecast", "k": 5, "submodel": "nope"})
            assert r.is_error and "No sub-model 'nope'" in r.content[0].text
            r = await client.call_tool("describe", {})
            assert [s["name"] for s in r.structured_content["info"]["submodels"]] == xllm_split.names
        async with Client(create_server(xllm_model)) as client:
            r = await client.call_tool("ask", {"prompt": "sales", "submodel": "sales"})
            assert r.is_error and "not split into sub-models" in r.content[0].text

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_parameters_read_from_each_submodels_own_tables_are_named(xllm_split):
    a = xllm_split.ask("data governance policy", route="all", prf_weight=0.3, w_context=0.5)
    assert a.routing["per_submodel"] == ["prf_weight", "w_context"]
    assert "per_submodel" not in xllm_split.ask("data governance policy", route="all").routing


def test_the_collections_dictionary_is_stored_once(tmp_path):
    """The dictionary tables every sub-model shares are hard links to one file (verify still passes)."""
    import os

    from tablelm.corpus import FieldMap
    from tablelm.tables.store import verify

    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"_id": str(i), "text": f"alpha beta word{i} delta epsilon" * (1 + i % 3),
                                       "category": ["a", "b", "c"][i % 3]}) + "\n" for i in range(40)))
    split = tablelm.build([src], tmp_path / "m", field_map=FieldMap(category_field="category"), split_by="category")
    root = tmp_path / "m" / split.manifest["folder"]

    def inodes(name):
        return {os.stat(next((root / n).glob(f"tables-*/{name}"))).st_ino for n in split.names}

    assert len(inodes("stems.txt.z")) == 1 and len(inodes("mt_words.*")) == 1
    assert len(inodes("post_indptr.*")) == len(split.names)  # each sub-model's own postings
    assert all(verify(root / n) == [] for n in split.names)


# --------------------------------------------------------------------------- add, delete, update
def _fresh_split(entities, out, **kw):
    """A split build of ``entities`` as ``tablelm.build`` counts a corpus it has read."""
    from tablelm.submodels import build_split
    from tablelm.text.analyzer import Analyzer

    bp = tablelm.load(kw.pop("like")).build_params  # the default build's parameters
    analyzer = Analyzer(stem=bp["stem"], language=bp["language"])
    return build_split(list(entities), analyzer, bp, {"sources": ["fresh"]}, out, **kw)


def _files(split) -> dict:
    """{folder: {table: sha256}} of the router and every sub-model: what a byte comparison reads."""
    root = Path(split.path) / split.manifest["folder"]
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        man = json.loads((d / "manifest.json").read_bytes())
        out[d.name] = {k: v["sha256"] for k, v in man["tables"].items()} | {"fingerprint": man.get("fingerprint")}
    return out


def _same_answers(a, b, prompts):
    queries = dict(enumerate(prompts))
    for route in ({"route": "all"}, {}):
        assert a.search_many(queries, 100, **route) == b.search_many(queries, 100, **route)
    for prompt in prompts[:5]:
        x, y = a.ask(prompt, k=10), b.ask(prompt, k=10)
        assert [(c.id, c.score, c.submodel) for c in x.cards] == [(c.id, c.score, c.submodel) for c in y.cards]
        assert x.routing["asked"] == y.routing["asked"]


def test_add_update_delete_on_a_split_model_equal_a_fresh_split_build(xllm_split_dir, tmp_path):
    """Deletes in several sub-models, an update, adds to a known and to an unknown category: the
    changed model is, file for file and answer for answer, the split build of the resulting corpus."""
    import shutil

    from tablelm.corpus import read_corpus

    corpus = list(read_corpus([XLLM]))
    # the fresh builder of this test is tablelm.build's own count: same files on the unchanged corpus
    assert _files(_fresh_split(corpus, tmp_path / "f0", like=xllm_split_dir, split_by="category",
                               max_submodels=8)) == _files(tablelm.load(xllm_split_dir))
    path = tmp_path / "m"
    shutil.copytree(xllm_split_dir, path)
    split = tablelm.load(path)
    by_cat: dict = {}
    for e in corpus:
        by_cat.setdefault(e.category[0] if e.category else None, []).append(e)
    gone = [by_cat["Sales"][3].id, by_cat["Finance"][0].id, by_cat["MLTxQuest"][10].id, by_cat["Legal"][0].id]
    report: dict = {}
    split = split.delete(gone, report=report)
    assert report["deleted"] == 4 and split.n_docs == len(corpus) - 4
    old = by_cat["Marketing"][1]
    changed = TextEntity(id=old.id, title=old.title + " revised", text=old.text + " quarterly churn forecast",
                         category=old.category)
    new = [TextEntity(id="new-sales-1", title="Sales pipeline review", text="weekly sales pipeline forecast review "
                      "with regional dashboards and churn risk", category=("Sales",)),
           TextEntity(id="new-cat-1", title="Quantum budget", text="quantum annealing budget for supplier routing",
                      category=("Quantum Lab",))]
    split = split.add(entities=[changed], replace=True)
    report = {}
    split = split.add(entities=new + [corpus[0]], report=report)  # corpus[0] is in the model: skipped
    assert report["added"] == 2 and report["skipped_ids"] == [corpus[0].id]
    expected = [e for e in corpus if e.id not in set(gone) | {old.id}] + [changed] + new
    fresh = _fresh_split(expected, tmp_path / "f", like=xllm_split_dir, split_by="category", max_submodels=8)
    assert tablelm.load(path).names == fresh.names
    assert _files(tablelm.load(path)) == _files(fresh)
    assert tablelm.load(path).manifest["submodels"] == fresh.manifest["submodels"]
    changed_model = tablelm.load(path)
    _same_answers(changed_model, fresh, PROMPTS + ["quantum annealing budget", "sales pipeline forecast review"])
    # each record went to the sub-model of its category (a ninth value joins "(other)" at 8 sub-models)
    assert changed_model._owner("new-sales-1")[0] == changed_model.names.index("sales")
    assert changed_model.names[changed_model._owner("new-cat-1")[0]] == "_other"
    assert changed_model.entity("new-cat-1").title == "Quantum budget"
    with pytest.raises(TablelmError, match="no entity with id 'nope'"):
        changed_model.delete(["nope"])


def test_a_new_value_makes_a_new_submodel_and_an_emptied_one_goes(xllm_split_dir, tmp_path):
    from tablelm.corpus import read_corpus

    corpus = [e for e in read_corpus([XLLM]) if e.category and e.category[0] in ("Finance", "Legal", "Logistics")]
    split = _fresh_split(corpus, tmp_path / "m", like=xllm_split_dir, split_by="category")
    assert split.names == ["finance", "legal", "logistics"]
    legal = [e.id for e in corpus if e.category[0] == "Legal"]
    new = TextEntity(id="hr-1", title="Hiring plan", text="hiring plan for the data team", category=("People",))
    report: dict = {}
    split = tablelm.load(tmp_path / "m").add(entities=[new], report=report)
    assert report["submodels_added"] == ["people"]
    report = {}
    split = split.delete(legal, report=report)
    assert report["submodels_removed"] == ["legal"] and split.names == ["finance", "logistics", "people"]
    fresh = _fresh_split([e for e in corpus if e.id not in legal] + [new], tmp_path / "f", like=xllm_split_dir,
                         split_by="category")
    assert _files(tablelm.load(tmp_path / "m")) == _files(fresh)
    _same_answers(tablelm.load(tmp_path / "m"), fresh, ["hiring plan data team", "finance report", "shipping"])
    assert tablelm.load(tmp_path / "m").ask("hiring plan", submodels=["people"]).cards[0].id == "hr-1"


def test_cli_adds_and_deletes_on_a_split_model(xllm_split_dir, tmp_path):
    import shutil

    path = tmp_path / "m"
    shutil.copytree(xllm_split_dir, path)
    victim = tablelm.load(path).ids[5]
    r = CliRunner().invoke(main, ["delete", "-m", str(path), victim])
    assert r.exit_code == 0, r.output
    assert "1 deleted" in r.output and tablelm.load(path)._owner(victim) is None
    r = CliRunner().invoke(main, ["delete", "-m", str(path), victim])
    assert r.exit_code != 0 and "no entity with id" in r.output


def test_one_pass_over_the_asked_submodels_scores_as_the_unsplit_model(xllm_model, xllm_split):
    """search scores the asked sub-models' postings in one compiled pass (SplitModel._fused): with
    agent intents (the agent factor), stretches ('data quality' rules) and k smaller than the ties."""
    prompts = ["show me an example of a sales forecast", "what is data governance", "how do I deploy a model",
               '"data quality" rules example', "finance", "report"]
    queries = dict(enumerate(prompts))
    for one_pass in (True, False):
        xllm_split.one_pass = one_pass
        for k in (1, 3, 10, 100):
            differ, a, _ = _same_search(xllm_model, xllm_split, queries, k=k)
            assert differ == [] and all(a[q] for q in (0, 4, 5))
    xllm_split.one_pass = True
    planner = xllm_split._state()[2]
    assert planner.plan(prompts[0], xllm_split.params()).agent is not None  # the agent factor is in play
    # a routed prompt equals the unsplit ranking restricted to the asked sub-models, alone or in a batch
    for prompt in prompts:
        routed = xllm_split.ask(prompt, k=10)
        asked = {xllm_split.names.index(n) for n in routed.routing["asked"]}
        alone = xllm_split.search(prompt, 10)
        assert [(i, round(sc, 6)) for i, sc in alone] == [(c.id, round(c.score, 6)) for c in routed.cards]
        assert all(xllm_split._owner(i)[0] in asked for i, _ in alone)


def test_ties_at_the_cut_go_by_corpus_position_as_unsplit(tmp_path):
    """Every entity scores the same for 'alpha': the k kept are the first k of the corpus, whichever
    sub-models they are in (the one-pass kernel numbers entities by corpus position)."""
    from tablelm.corpus import FieldMap

    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"_id": str(i), "title": "same", "text": f"alpha beta gamma delta w{i:02d}x",
                                       "category": ["a", "b", "c"][i % 3]}) + "\n" for i in range(30)))
    fm = FieldMap(category_field="category")
    unsplit = tablelm.build([src], tmp_path / "u", field_map=fm, on_error="skip")
    split = tablelm.build([src], tmp_path / "s", field_map=fm, split_by="category", on_error="skip")
    assert split.names == ["a", "b", "c"] and unsplit.n_docs == 30
    for k, one_pass in ((1, True), (4, True), (7, True), (4, False), (7, False)):
        split.one_pass = one_pass
        want = unsplit.search("alpha", k)
        assert split.search("alpha", k, route="all") == want
        assert [i for i, _ in want] == [str(i) for i in range(k)] and len({sc for _, sc in want}) == 1


@pytest.mark.slow
def test_the_submodels_benchmark_measures_a_pinned_arm(xllm_model_dir, xllm_split_dir, xllm_split, tmp_path):
    """benchmarks/bench_submodels.py: latency of unsplit / routed / every sub-model / pinned, and the
    memory of a fresh process per mode, pinned included (one prompt each: the bookkeeping, not timings)."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_submodels.py"
    spec = importlib.util.spec_from_file_location("bench_submodels", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    prompts = {"a": "sales forecast dashboard", "b": "supplier contract procurement"}
    top = bench.top_submodels(xllm_split, prompts)
    assert top["sales forecast dashboard"] == "sales"
    row = bench.cost_row(tablelm.load(xllm_model_dir), xllm_split, prompts, 1)
    assert set(row["latency_ms_p50"]) == {"unsplit", "routed", "all", "pinned"} and row["pinned_over_unsplit_p50"] > 0
    mem = bench.memory_row(Path(xllm_model_dir), Path(xllm_split_dir), list(prompts.values()), 1, tmp_path, top)
    assert set(mem) == {"unsplit", "routed", "all", "pinned"}
    assert all(m["per_prompt_rss_mb_median"] >= 0 and m["process_rss_loaded_mb"] > 10 for m in mem.values())
