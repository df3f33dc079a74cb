"""The table schema: declared once, checked on load, and old models upgraded from themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import tablelm
from tablelm.errors import ModelError
from tablelm.interfaces.cli import main
from tablelm.tables.schema import SCHEMA, SPECS, TableSet, narrow_uint

from conftest import CACM, needs_data, read_slice

pytestmark = needs_data


@pytest.fixture(scope="module")
def cacm_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "m"
    tablelm.build([CACM], out)
    return out


def test_every_saved_table_is_declared_and_every_declared_table_saved(cacm_dir):
    manifest = json.loads((cacm_dir / "manifest.json").read_text())
    assert set(manifest["tables"]) == set(SPECS)
    for name, meta in manifest["tables"].items():
        spec = SPECS[name]
        if spec.dtype is None:
            assert meta["kind"] in ("strings", "blob"), name
            continue
        assert meta["kind"] == spec.kind, name
        if spec.dtype == "uint":  # the narrowest width that holds the counts
            arr = np.asarray(tablelm.load(cacm_dir).tables.arrays[name])
            assert arr.dtype == narrow_uint(arr.astype(np.uint64)).dtype, name
        elif spec.dtype != "int":
            assert meta["dtype"] == spec.dtype, name


def test_schema_entries_are_documented_and_merge_rules_stated():
    kinds = {"count", "key", "index", "derived", "entity", "blob"}
    for spec in SCHEMA:
        assert spec.kind in kinds and spec.merge and spec.doc, spec.name


def _tableset_with(model, name, arr):
    arrays = dict(model.tables.arrays, **{name: arr})
    return TableSet(arrays, model.tables.string_tables, model.manifest["stats"], where="m")


def test_tables_of_the_wrong_dtype_or_rank_are_refused(cacm_dir):
    model = tablelm.load(cacm_dir)
    with pytest.raises(ModelError, match=r"post_docs.*float32.*schema says int32"):
        _tableset_with(model, "post_docs", np.asarray(model.tables.post_docs, dtype=np.float32))
    with pytest.raises(ModelError, match=r"mt_words.*2 axes"):
        _tableset_with(model, "mt_words", np.asarray(model.tables.mt_words).ravel())
    with pytest.raises(ModelError, match=r"no 'pend_hash' table.*tablelm upgrade"):
        TableSet({k: v for k, v in model.tables.arrays.items() if k != "pend_hash"}, model.tables.string_tables,
                 model.manifest["stats"])


def test_tables_of_inconsistent_sizes_are_refused(cacm_dir):
    model = tablelm.load(cacm_dir)
    with pytest.raises(ModelError, match=r"post_tf.*disagrees"):
        _tableset_with(model, "post_tf", np.asarray(model.tables.post_tf)[:-1])
    with pytest.raises(ModelError, match="disagrees"):
        _tableset_with(model, "doc_len", np.asarray(model.tables.doc_len)[:-1])


def test_an_old_format_model_says_how_to_upgrade_and_upgrade_rebuilds_it_from_itself(tmp_path):
    entities = read_slice(CACM, 300)
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"_id": e.id, "title": e.title, "text": e.text}) + "\n" for e in entities))
    fresh = tablelm.build([src], tmp_path / "fresh", max_dist=2)
    old = tmp_path / "old"
    tablelm.build([src], old, max_dist=2)
    # make it look like a format-3 model: no count-store tables, format 3, sources gone
    manifest = json.loads((old / "manifest.json").read_text())
    for name in ("pend_hash", "pend_doc", "stem_hash", "surface_stem", "surface_count", "surfaces",
                 "entity_content"):
        (old / manifest["folder"] / manifest["tables"].pop(name)["file"]).unlink()
    manifest["format_version"] = 3
    (old / "manifest.json").write_text(json.dumps(manifest))
    src.unlink()
    with pytest.raises(ModelError, match="tablelm upgrade -m"):
        tablelm.load(old)
    r = CliRunner().invoke(main, ["upgrade", "-m", str(old)])
    assert r.exit_code == 0, r.output
    up = tablelm.load(old)
    assert up.manifest["build_params"]["max_dist"] == 2
    assert set(up.tables.arrays) == set(fresh.tables.arrays)
    for name, arr in fresh.tables.arrays.items():
        np.testing.assert_array_equal(up.tables.arrays[name], arr, err_msg=name)
    assert up.search("computer program", k=5) == fresh.search("computer program", k=5)


def test_an_empty_stopword_list_means_no_stopwords(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"_id": "a", "text": "the cat and the hat"}\n{"_id": "b", "text": "a dog"}\n')
    plain = tablelm.build([src])
    none = tablelm.build([src], stopwords=[])
    assert "the" not in plain.tables.stem_ids and "the" in none.tables.stem_ids
    assert none.search("the", k=1)[0][0] == "a"
