"""Knowledge-graph export and taxonomy reconstruction, checked against plain-Python oracles."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

import tablelm
from tablelm.graph import category_tree, graph_dict, reconstruct_taxonomy, related_links, to_dot
from tablelm.interfaces.cli import main
from tablelm.query.rank import idf

ROOT = Path(__file__).resolve().parents[1]
WOLFRAM = ROOT.parent / "shared" / "data" / "wolfram-sample" / "crawl_final_14501_15000.txt"

RECORDS = [
    {"_id": "a1", "title": "Apple pie", "text": "apple pie with cinnamon and sugar baked", "cat": ["Food", "Dessert"],
     "see": ["a2", "Banana bread"]},
    {"_id": "a2", "title": "Apple crumble", "text": "apple crumble baked with sugar and butter",
     "cat": ["Food", "Dessert"], "see": ["https://example.org/x"]},
    {"_id": "a3", "title": "Banana bread", "text": "banana bread baked with sugar flour", "cat": ["Food", "Bread"],
     "see": []},
    {"_id": "a4", "title": "Rye bread", "text": "rye bread flour yeast baked", "cat": ["Food", "Bread"], "see": ["a3"]},
    {"_id": "c1", "title": "Sedan", "text": "sedan car engine wheels road", "cat": ["Vehicles", "Cars"], "see": []},
    {"_id": "c2", "title": "Coupe", "text": "coupe car engine two doors road", "cat": ["Vehicles", "Cars"], "see": []},
    {"_id": "c3", "title": "Lone truck", "text": "truck engine cargo road wheels", "cat": ["Vehicles"], "see": []},
]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("graph")
    src = d / "c.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    fm = tablelm.corpus.FieldMap(category_field="cat", related_field="see")
    return tablelm.build([src], d / "model", field_map=fm)


def test_category_tree_counts(small_model):
    tree = {c["id"]: c for c in category_tree(small_model)}
    assert tree["Food"] == {"id": "Food", "name": "Food", "parent": None, "depth": 1, "entities": 0, "total": 4}
    assert tree["Food > Dessert"]["parent"] == "Food" and tree["Food > Dessert"]["entities"] == 2
    assert tree["Vehicles"]["entities"] == 1 and tree["Vehicles"]["total"] == 3
    assert len(tree) == 5


def test_related_links_resolve_ids_and_titles(small_model):
    links = related_links(small_model)
    assert {(e["source"], e["target"]) for e in links["edges"]} == {("a1", "a2"), ("a1", "a3"), ("a4", "a3")}
    assert links["external"] == [{"source": "a2", "target": "https://example.org/x"}]
    dot = to_dot(graph_dict(small_model))
    assert dot.startswith("digraph tablelm {") and '"cat:Food" -> "cat:Food > Dessert";' in dot
    assert '"a1" -> "a3" [style=dashed];' in dot and '[label="Food (4)"]' in dot


def _oracle(model, d: int, normalize: bool = False):
    """Leave-one-out category scores of entity d, the slow way: dicts and loops."""
    a = model.tables.arrays
    indptr, docs, tf = a["post_indptr"], a["post_docs"], a["post_tf"]
    own_label = int(a["doc_category_labels"][a["doc_category_indptr"][d]])
    own_tf = {}
    for mt in range(len(indptr) - 1):
        for r in range(indptr[mt], indptr[mt + 1]):
            if docs[r] == d:
                own_tf[mt] = (int(tf[r][:2].sum()), int(tf[r][:4].sum()))
    mass = defaultdict(float)
    ci, cl, cc = a["ctx_category_indptr"], a["ctx_category_labels"], a["ctx_category_counts"]
    for r in range(len(cl)):
        mass[int(cl[r])] += float(cc[r])
    own_mass = sum(v[1] for v in own_tf.values())
    scores = defaultdict(float)
    for mt, (q, own) in own_tf.items():
        if q == 0:
            continue
        w = float(idf(model, [mt])[0])
        for r in range(ci[mt], ci[mt + 1]):
            lab, c = int(cl[r]), float(cc[r])
            if lab == own_label:
                c -= own
            m = mass[lab] - (own_mass if lab == own_label else 0)
            scores[lab] += w * max(c, 0.0) / (max(m, 1.0) if normalize else 1.0)
    return scores


@pytest.mark.parametrize("normalize", [False, True])
def test_taxonomy_matches_loop_oracle_and_leaves_one_out(small_model, normalize):
    r = reconstruct_taxonomy(small_model, normalize=normalize, examples=100)
    labels = small_model.tables.strings("labels_category")
    assert r["evaluated"] == 7 and r["categories"] == 4
    # c3 is alone in "Vehicles": leave-one-out means it can never be matched exactly
    assert r["singletons"] == 1
    predicted = {}
    for d in range(small_model.n_docs):
        s = _oracle(small_model, d, normalize)
        best = max(sorted(s), key=lambda k: s[k]) if s and max(s.values()) > 0 else None
        predicted[small_model.ids[d]] = labels[best] if best is not None else None
    exact = sum(predicted[e["_id"]] == " > ".join(e["cat"]) for e in RECORDS)
    assert r["exact"] == exact
    assert predicted["c3"] != "Vehicles"
    assert predicted["a1"] == "Food > Dessert" and predicted["c1"] == "Vehicles > Cars"
    misses = {m["id"]: m["predicted"] for m in r["misses"]}
    for i, p in predicted.items():
        if i in misses:
            assert misses[i] == p


def test_taxonomy_is_not_fooled_by_the_category_field(tmp_path):
    # every entity's category name appears only in its category field: no text evidence
    recs = [{"_id": str(i), "text": f"same words everywhere n{i}", "cat": [f"Zeta{i % 2}"]}
            for i in range(6)]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    model = tablelm.build([src], tmp_path / "m", field_map=tablelm.corpus.FieldMap(category_field="cat"),
                          on_error="skip")
    r = reconstruct_taxonomy(model)
    assert r["evaluated"] == 6
    # leave-one-out: the other category has 3 members with the shared words, the entity's own
    # only 2 others, so every entity is assigned the other category. Without leave-one-out
    # (or with the category field as evidence) all 6 would be right.
    assert r["exact"] == 0 and r["near"] == 0


@pytest.mark.skipif(not WOLFRAM.exists(), reason=f"test data not found at {WOLFRAM}")
def test_wolfram_taxonomy_and_cli(tmp_path):
    out = tmp_path / "wolfram"
    model = tablelm.build([WOLFRAM], out)
    r = reconstruct_taxonomy(model)
    assert r["evaluated"] == 211 and r["categories"] == 23
    assert 120 <= r["exact"] <= 180  # measured 139; the reference got 141 of 583 on its corpus
    assert r["exact"] + r["near"] >= 180
    runner = CliRunner()
    res = runner.invoke(main, ["taxonomy", "-m", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["exact"] == r["exact"]
    res = runner.invoke(main, ["graph", "-m", str(out), "--format", "dot", "-o", str(tmp_path / "g.dot")])
    assert res.exit_code == 0
    dot = (tmp_path / "g.dot").read_text("utf-8")
    assert ('"cat:Geometry > Solid Geometry > Polyhedra" -> '
            '"cat:Geometry > Solid Geometry > Polyhedra > Uniform Polyhedra";') in dot
    res = runner.invoke(main, ["graph", "-m", str(out)])
    data = json.loads(res.output)
    assert data["counts"]["related_edges"] == 302 and data["entities"] == 211
    cats = {c["id"]: c for c in data["categories"]}
    assert cats["Geometry"]["parent"] is None and cats["Geometry"]["total"] == sum(
        c["entities"] for c in data["categories"] if c["id"].startswith("Geometry"))
    res = runner.invoke(main, ["graph", "-m", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "Error:" in res.output and "Traceback" not in res.output
    # asking uses the categories and the related links
    ans = model.ask("uniform polyhedron dual", k=5)
    assert ans.cards[0].category[-1] == "Uniform Polyhedra"
    assert any(row["label"].endswith("Uniform Polyhedra") for row in ans.sections["categories"])
