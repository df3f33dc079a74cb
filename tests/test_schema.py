"""The table schema: declared once, checked on load, and old models upgraded from themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import tablelm
from conftest import CACM, needs_data, read_slice
from tablelm.errors import ModelError
from tablelm.interfaces.cli import main
from tablelm.tables.schema import SCHEMA, SPECS, narrow_uint

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
            arr = np.load(cacm_dir / manifest["folder"] / meta["file"])
            assert arr.dtype == narrow_uint(arr.astype(np.uint64)).dtype, name
        elif spec.dtype != "int":
            assert meta["dtype"] == spec.dtype, name


def test_schema_entries_are_documented_and_merge_rules_stated():
    kinds = {"count", "key", "index", "derived", "entity", "blob"}
    for spec in SCHEMA:
        assert spec.kind in kinds and spec.merge and spec.doc, spec.name


def test_load_rejects_a_table_with_the_wrong_dtype(cacm_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(cacm_dir, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    path = bad / manifest["folder"] / "post_docs.npy"
    np.save(path, np.load(path).astype(np.float32))
    with pytest.raises(ModelError, match="post_docs.*dtype"):
        tablelm.load(bad)


def test_load_rejects_tables_of_inconsistent_sizes(cacm_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(cacm_dir, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    path = bad / manifest["folder"] / "post_tf.npy"
    np.save(path, np.load(path)[:-1])
    with pytest.raises(ModelError, match="post_tf.*disagrees"):
        tablelm.load(bad)


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
