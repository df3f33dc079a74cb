"""Add, delete and update: after any sequence of changes the model is a full build of the resulting corpus.

Every table, every string table and the entity store are compared byte for byte with a
build of the resulting corpus (the model's entities in order, less the deleted ones,
then the added ones), on random sequences (hypothesis) and on real slices; answers are
compared too, and the CLI commands are run on a saved model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tablelm
from tablelm import params as P
from tablelm.corpus.entity import TextEntity
from tablelm.errors import TablelmError
from tablelm.interfaces.cli import main
from tablelm.model import _count_and_save
from tablelm.text.analyzer import Analyzer
from tablelm.update import apply

from conftest import CACM, XLLM, assert_same_tables, needs_data, read_slice


def in_memory(entities, **bp):
    return _count_and_save(list(entities), Analyzer(), P.resolve(bp, stage="build"), {}, None)


def assert_same_model(a, b):
    assert_same_tables(a, b)
    assert a.manifest["stats"] == b.manifest["stats"]


# --------------------------------------------------------------------------- random sequences

WORDS = ["cell", "growth", "tumor", "file", "read", "line", "data", "model", "table", "count", "graph", "node"]
# capital letters: "cell A", "T cell" are letter multitokens, promoted and demoted as the others
text_st = st.lists(st.sampled_from(WORDS + ["A", "T", "I", ".", ","]), min_size=0, max_size=14).map(" ".join)
ent_st = st.tuples(text_st, st.one_of(st.just(""), st.sampled_from(WORDS)),
                   st.lists(st.sampled_from(["a", "b > c"]), max_size=1), st.lists(st.sampled_from(WORDS), max_size=2))
# a step: ("add", [entities]) or ("delete", [positions among the current entities])
step_st = st.one_of(st.tuples(st.just("add"), st.lists(ent_st, min_size=1, max_size=4)),
                    st.tuples(st.just("delete"), st.lists(st.integers(0, 20), min_size=1, max_size=3)),
                    st.tuples(st.just("update"),
                              st.lists(st.tuples(st.integers(0, 20), ent_st), min_size=1, max_size=2)))
bp_st = st.fixed_dictionaries({"max_ngram": st.integers(2, 4), "max_dist": st.integers(1, 3),
                               "min_multitoken_count": st.integers(1, 3)})


def _entity(i: int, row) -> TextEntity:
    text, title, cat, tags = row
    # a unique word per entity keeps contents distinct (an add drops content duplicates, as a build does)
    return TextEntity(f"e{i}", f"{text} uid{i}", title, tuple(cat), tuple(tags))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ent_st, min_size=1, max_size=5), st.lists(step_st, min_size=1, max_size=4), bp_st)
def test_property_any_sequence_of_changes_equals_a_rebuild(first, steps, bp):
    counter = iter(range(10_000))
    corpus = [_entity(next(counter), r) for r in first]
    model = in_memory(corpus, **bp)
    for kind, arg in steps:
        if kind == "add":
            new = [_entity(next(counter), r) for r in arg]
            model, _ = apply(model, add=new)
            corpus = corpus + new
        elif kind == "delete":
            ids = sorted({corpus[i % len(corpus)].id for i in arg})
            if len(ids) >= len(corpus):
                continue
            model, _ = apply(model, delete=ids)
            corpus = [e for e in corpus if e.id not in ids]
        else:
            repl = {}
            for i, row in arg:
                old = corpus[i % len(corpus)]
                repl[old.id] = TextEntity(old.id, f"{row[0]} uid{next(counter)}", row[1], tuple(row[2]), tuple(row[3]))
            model, _ = apply(model, add=list(repl.values()), replace=True)
            corpus = [e for e in corpus if e.id not in repl] + list(repl.values())
        assert_same_model(model, in_memory(corpus, **bp))


# --------------------------------------------------------------------------- real slices


@pytest.fixture(scope="module")
def cacm_entities():
    if not CACM.exists():
        pytest.skip(f"test data not found at {CACM}")
    return read_slice(CACM, 500)


@needs_data
def test_add_then_delete_on_real_records_equals_rebuilds(cacm_entities):
    ents = cacm_entities
    model, report = apply(in_memory(ents[:350]), add=ents[350:])
    assert report["added"] == 150 and report["promoted"] > 0 and report["recounted"] > 0
    full = in_memory(ents)
    assert_same_model(model, full)
    prompt = "parallel sorting algorithm"
    assert model.ask(prompt, k=10).to_dict()["cards"] == full.ask(prompt, k=10).to_dict()["cards"]
    gone = {e.id for e in ents[100:220]}
    model, report = apply(model, delete=sorted(gone))
    assert report["deleted"] == 120 and report["demoted"] > 0
    assert_same_model(model, in_memory([e for e in ents if e.id not in gone]))


@needs_data
def test_knowledge_graph_records_add_delete(tmp_path):
    ents = read_slice(XLLM, 120)
    model, _ = apply(in_memory(ents[:80], max_dist=2), add=ents[80:], delete=[ents[3].id, ents[50].id])
    assert_same_model(model, in_memory([e for i, e in enumerate(ents) if i not in (3, 50)], max_dist=2))


def test_add_drops_known_ids_and_contents_and_delete_names_unknown_ids():
    base = [TextEntity("a", "read a file line by line"), TextEntity("b", "write a file")]
    model = in_memory(base)
    new, report = apply(model, add=[TextEntity("a", "other text"), TextEntity("c", "Write  a FILE"),
                                    TextEntity("d", "close the file")])
    assert report["skipped_ids"] == ["a"] and report["duplicates"] == ["c"]
    assert new.ids == ["a", "b", "d"]
    with pytest.raises(TablelmError, match=r"already in the model.*tablelm update"):
        apply(model, add=[TextEntity("a", "other text")], on_error="fail")
    with pytest.raises(TablelmError, match="no entity with id 'zz'"):
        apply(model, delete=["zz"])
    with pytest.raises(TablelmError, match="without entities"):
        apply(model, delete=["a", "b"])


def test_model_add_takes_entities_where_the_sources_go(tmp_path):
    """``model.add([TextEntity(...)])`` (entities in the place of the sources) adds them, beside
    a file given with them, instead of a TypeError from reading an entity as a path."""
    model = in_memory([TextEntity("a", "read a file line by line"), TextEntity("b", "write a file")])
    src = _jsonl(tmp_path / "more.jsonl", [TextEntity("c", "append lines to a log file", "")])
    new = model.add([TextEntity("d", "close the file"), src])
    assert new.ids == ["a", "b", "d", "c"]
    assert model.add(TextEntity("e", "rename a file")).ids == ["a", "b", "e"]
    assert model.add(str(src)).ids == ["a", "b", "c"]


# --------------------------------------------------------------------------- the commands


def _jsonl(path, ents):
    path.write_text("".join(json.dumps({"_id": e.id, "title": e.title, "text": e.text}) + "\n" for e in ents))
    return path


@needs_data
def test_cli_add_delete_update_change_the_saved_model_atomically(cacm_entities, tmp_path):
    ents = cacm_entities[:200]
    runner = CliRunner()
    base = _jsonl(tmp_path / "base.jsonl", ents[:150])
    more = _jsonl(tmp_path / "more.jsonl", ents[150:])
    out = tmp_path / "m"
    assert runner.invoke(main, ["build", str(base), "-o", str(out)]).exit_code == 0
    before = tablelm.load(out)  # a reader that has the old model open keeps answering
    old_answer = before.search("computer", k=5)
    r = runner.invoke(main, ["add", "-m", str(out), str(more)])
    assert r.exit_code == 0, r.output
    assert "50 added" in r.output
    assert before.search("computer", k=5) == old_answer
    r = runner.invoke(main, ["delete", "-m", str(out), ents[0].id, ents[1].id])
    assert r.exit_code == 0 and "2 deleted" in r.output, r.output
    changed = TextEntity(ents[5].id, "a new abstract about compilers and parsing", "New title")
    upd = _jsonl(tmp_path / "upd.jsonl", [changed])
    r = runner.invoke(main, ["update", "-m", str(out), str(upd)])
    assert r.exit_code == 0 and "1 added, 1 deleted" in r.output, r.output
    want = [e for e in ents[2:] if e.id != changed.id] + [changed]
    rebuilt = tmp_path / "r"
    assert runner.invoke(main, ["build", str(_jsonl(tmp_path / "want.jsonl", want)), "-o", str(rebuilt)]).exit_code == 0
    got, ref = tablelm.load(out), tablelm.load(rebuilt)
    for name, arr in ref.tables.arrays.items():
        if name != "entity_offsets":  # offsets differ by the lengths of the source strings
            np.testing.assert_array_equal(got.tables.arrays[name], arr, err_msg=name)
    strip = lambda e: dict(e.to_dict(), source="")
    assert [strip(got.entity_at(i)) for i in range(got.n_docs)] == [strip(ref.entity_at(i)) for i in range(ref.n_docs)]
    r = runner.invoke(main, ["delete", "-m", str(out), "no-such-id"])
    assert r.exit_code == 1 and "no entity with id 'no-such-id'" in r.output


@needs_data
def test_a_build_in_shards_writes_the_same_model_directory(tmp_path):
    """The bounded-memory build (a small --memory makes CACM several shards) against one shard: every file."""
    one = tablelm.build([CACM], tmp_path / "one")
    report = {}
    many = tablelm.build([CACM], tmp_path / "many", memory_mb=64, report=report)
    assert report["shards"] >= 3 and report["read"] == one.n_docs
    m1 = json.loads((tmp_path / "one" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "many" / "manifest.json").read_text())
    assert m1["tables"] == m2["tables"] and m1["folder"] == m2["folder"]  # sizes and SHA-256 of every file
    assert many.search("parallel computation", k=10) == one.search("parallel computation", k=10)
    r = CliRunner().invoke(main, ["build", str(CACM), "-o", str(tmp_path / "cli"), "--memory", "64", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["folder"] == m1["folder"]


@needs_data
@pytest.mark.parametrize("range_rows", [13, 997])
def test_a_build_in_shards_merged_and_assembled_range_by_range_writes_the_same_files(tmp_path, monkeypatch,
                                                                                      range_rows):
    """The sharded build merges and assembles its tables a range of rows at a time, spooled to disk:
    with ranges of a dozen rows, or of a thousand, every file equals the one-shard build's."""
    from tablelm.tables import counts

    one = tablelm.build([CACM], tmp_path / "one")
    monkeypatch.setattr(counts, "RANGE_ROWS", range_rows)
    monkeypatch.setattr("tablelm.tables.spill.CHUNK_BYTES", 64 * range_rows)
    report = {}
    tablelm.build([CACM], tmp_path / "many", memory_mb=64, report=report)
    assert report["shards"] >= 3 and report["read"] == one.n_docs
    m1 = json.loads((tmp_path / "one" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "many" / "manifest.json").read_text())
    assert m1["tables"] == m2["tables"] and m1["folder"] == m2["folder"]


@pytest.mark.parametrize("seed", range(5))
def test_a_change_spliced_into_the_model_pairs_sums_as_a_sort_does(seed):
    """The merge adds a change's few pairs into the model's many by search and insertion
    (counts._splice_sums): the same keys and sums as sorting everything (counts._sorted_sums)."""
    from tablelm.tables import counts

    rng = np.random.default_rng(seed)
    big = np.unique(rng.integers(0, 5000, 2000))
    big_adj, big_ctx = rng.integers(0, 4, len(big)), rng.integers(0, 4, len(big))
    keys = [rng.choice(np.concatenate([big, rng.integers(0, 6000, 50)]), 40, replace=False) for _ in range(2)]
    keys = [np.sort(k) for k in keys] + [np.zeros(0, dtype=np.int64)]
    adjs = [rng.integers(-2, 3, len(k)) for k in keys]
    ctxs = [rng.integers(-2, 3, len(k)) for k in keys]
    want = counts._sorted_sums(np.concatenate([big, *keys]), np.concatenate([big_adj, *adjs]),
                               np.concatenate([big_ctx, *ctxs]))
    got = counts._splice_sums(big, big_adj, big_ctx, keys, adjs, ctxs)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)
    assert got[0].dtype == big.dtype


@pytest.mark.parametrize("seed", range(5))
def test_a_change_spliced_into_the_pending_occurrences_sorts_as_lexsort_does(seed):
    from tablelm.tables import counts

    rng = np.random.default_rng(seed)

    def sorted_pairs(n, hashes):
        h, d = rng.choice(hashes, n).astype(np.uint64), rng.integers(0, 30, n).astype(np.int32)
        o = np.lexsort((d, h))
        return h[o], d[o]

    hashes = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    h, d = sorted_pairs(3000, hashes)
    more = [sorted_pairs(n, np.concatenate([hashes[:50], hashes[:20] + np.uint64(1)])) for n in (60, 0, 25)]
    all_h = np.concatenate([h] + [m[0] for m in more])
    all_d = np.concatenate([d] + [m[1] for m in more])
    o = np.lexsort((all_d, all_h))
    got = counts._splice_sorted_pairs(h, d, [m[0] for m in more], [m[1] for m in more])
    np.testing.assert_array_equal(got[0], all_h[o])
    np.testing.assert_array_equal(got[1], all_d[o])
    assert got[0].dtype == np.uint64 and got[1].dtype == np.int32


@needs_data
def test_a_small_change_to_a_larger_model_is_spliced_in_and_equals_rebuilds(cacm_entities, monkeypatch):
    """A change much smaller than the model takes the merge's splice paths (postings, pairs, pending
    occurrences inserted into the model's runs): every table still equals a rebuild's."""
    from tablelm.tables import counts

    used = []
    for name in ("_splice_sums", "_splice_sorted_pairs"):
        real = getattr(counts, name)
        monkeypatch.setattr(counts, name, lambda *a, _real=real, _name=name, **k: used.append(_name) or _real(*a, **k))
    ents = cacm_entities
    model, report = apply(in_memory(ents[:490]), add=ents[490:])
    assert report["added"] == 10
    assert_same_model(model, in_memory(ents))
    gone = {ents[3].id, ents[200].id, ents[495].id}
    model, _ = apply(model, delete=sorted(gone))
    assert_same_model(model, in_memory([e for e in ents if e.id not in gone]))
    assert {"_splice_sums", "_splice_sorted_pairs"} <= set(used)
