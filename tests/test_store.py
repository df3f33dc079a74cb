"""The model directory: save→load identity, byte-identical builds, errors, atomic replacement.

The atomicity tests start ``tablelm build`` on all of SciFact over an existing model,
kill it with SIGKILL midway, and check that the old model still loads and answers
exactly as before.
"""

from __future__ import annotations

import gc
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import tablelm
from tablelm.errors import ModelError
from tablelm.tables.store import FORMAT_VERSION, MANIFEST

from conftest import SCIFACT, assert_same_tables, cli_env, needs_data, tablelm_cmd

PROMPTS = ["gene expression in tumor cells", "vitamin D deficiency", "randomized controlled trial mortality",
           "stem cell differentiation !mouse", "insulin~resistance obesity"]


def files_of(model_dir: Path) -> dict[str, bytes]:
    """Every file under a model directory, by relative path, with its bytes."""
    model_dir = Path(model_dir)
    return {str(p.relative_to(model_dir)): p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}


def answer_key(model, prompt, k=10):
    """An answer without what legitimately differs between two copies (timings, path)."""
    d = model.ask(prompt, k=k).to_dict()
    d.pop("timings_ms")
    d["model"].pop("path")
    return d


def answers(model):
    return [answer_key(model, p) for p in PROMPTS]


def assert_same_model(a, b):
    assert_same_tables(a, b)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("folder", "tables")}
    assert strip(a.manifest) == strip(b.manifest)
    assert a.ids == b.ids
    assert [a.entity_at(i) for i in range(0, a.n_docs, 37)] == [b.entity_at(i) for i in range(0, b.n_docs, 37)]


# --------------------------------------------------------------------------- identity and determinism


@needs_data
def test_save_then_load_is_identity(scifact_file, tmp_path):
    built = tablelm.build([scifact_file])  # in memory, never saved
    assert built.path is None
    out = built.save(tmp_path / "m")
    loaded = tablelm.load(out)
    assert_same_model(built, loaded)
    assert answers(built) == answers(loaded)
    # arrays are memory-mapped on load, the encoded ones read from a map of their file
    assert isinstance(loaded.tables.arrays["entity_content"].base, np.memmap)
    import mmap

    assert isinstance(loaded.tables.arrays["post_docs"]._bytes.obj, mmap.mmap)


@needs_data
def test_save_of_a_loaded_model_gives_the_same_files(scifact_model, scifact_model_dir, tmp_path):
    out = scifact_model.save(tmp_path / "copy")
    assert files_of(out) == files_of(scifact_model_dir)
    assert answers(tablelm.load(out)) == answers(scifact_model)


@needs_data
def test_two_builds_give_byte_identical_files(scifact_file, tmp_path):
    """Same corpus + parameters → identical files, also from another process with another hash seed.

    Both builds are made here: the session's cached model may come from an earlier session, whose
    manifest names that session's (other) temporary source path."""
    tablelm.build([scifact_file], tmp_path / "again")
    reference = files_of(tmp_path / "again")
    env = dict(cli_env(tmp_path / "cache"), PYTHONHASHSEED="12345")
    r = subprocess.run(tablelm_cmd("build", scifact_file, "-o", tmp_path / "proc"), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = files_of(tmp_path / "proc")
    assert got.keys() == reference.keys()
    assert [k for k in reference if got[k] != reference[k]] == []


@needs_data
def test_other_parameters_give_another_model(scifact_file, scifact_model, tmp_path):
    m = tablelm.build([scifact_file], tmp_path / "m", max_ngram=2, max_dist=1)
    assert m.manifest["fingerprint"] != scifact_model.manifest["fingerprint"]
    assert m.build_params["max_ngram"] == 2 and m.build_params["max_dist"] == 1
    assert int((np.asarray(m.tables.mt_words) >= 0).sum(axis=1).max()) == 2


@needs_data
def test_manifest_lists_every_table(scifact_model_dir):
    manifest = json.loads((scifact_model_dir / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    folder = scifact_model_dir / manifest["folder"]
    listed = {meta["file"] for meta in manifest["tables"].values()}
    assert listed == {p.name for p in folder.iterdir()}
    for name, meta in manifest["tables"].items():
        if meta.get("kind") is None:
            arr = np.load(folder / meta["file"], mmap_mode="r")
            assert [str(arr.dtype), list(arr.shape)] == [meta["dtype"], meta["shape"]], name
    for key in ("tablelm_version", "fingerprint", "build_params", "corpus", "stats", "analyzer"):
        assert key in manifest
    # nothing else next to the manifest and the one tables folder
    assert sorted(p.name for p in scifact_model_dir.iterdir()) == sorted([MANIFEST, manifest["folder"]])


# --------------------------------------------------------------------------- errors


def test_load_of_a_non_model_dir_says_how_to_build(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match=r"not a tablelm model.*tablelm build"):
        tablelm.load(tmp_path)
    with pytest.raises(ModelError, match="tablelm build"):
        tablelm.load(tmp_path / "missing")


@needs_data
def test_load_of_another_format_version_says_rebuild(scifact_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(scifact_model_dir, d)
    manifest = json.loads((d / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (d / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=rf"format {FORMAT_VERSION + 1}.*newer tablelm.*tablelm build"):
        tablelm.load(d)


@needs_data
def test_load_of_a_damaged_model_says_rebuild(scifact_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(scifact_model_dir, d)
    manifest = json.loads((d / MANIFEST).read_text())
    (d / manifest["folder"] / manifest["tables"]["post_indptr"]["file"]).unlink()
    with pytest.raises(ModelError, match="rebuild"):
        tablelm.load(d)
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="rebuild"):
        tablelm.load(d)


@needs_data
def test_refuses_to_write_into_a_non_model_directory(scifact_model, tmp_path):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "thesis.tex").write_text("do not delete")
    with pytest.raises(ModelError, match="refusing to write"):
        scifact_model.save(d)
    assert sorted(p.name for p in d.iterdir()) == ["thesis.tex"]
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ModelError, match="is a file"):
        scifact_model.save(f)
    # an empty directory is fine
    (tmp_path / "empty").mkdir()
    tablelm.load(scifact_model.save(tmp_path / "empty"))


@needs_data
def test_failed_build_leaves_the_old_model_untouched(scifact_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(scifact_model_dir, d)
    before = files_of(d)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "fine"}\n{"_id": "2", "text": \n')
    with pytest.raises(tablelm.CorpusError):
        tablelm.build([bad], d)
    assert files_of(d) == before
    assert gc.isenabled(), "a failed build must turn the garbage collector back on"


def test_build_restores_the_garbage_collector_state(tmp_path):
    (tmp_path / "a.txt").write_text("Garbage collection pauses while tables are counted.")
    tablelm.build([tmp_path])
    assert gc.isenabled()
    gc.disable()
    try:
        tablelm.build([tmp_path])
        assert not gc.isenabled(), "a build must not turn on a collector its caller turned off"
    finally:
        gc.enable()


# --------------------------------------------------------------------------- atomicity under SIGKILL


def _kill_build_midway(model_dir: Path, env: dict, when: str, timeout: float = 60.0) -> str:
    """Start ``tablelm build SciFact -o model_dir`` and SIGKILL it; return what it was doing."""
    proc = subprocess.Popen(tablelm_cmd("build", SCIFACT, "-o", model_dir), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            if when == "early" and time.monotonic() - t0 >= 1.0:
                break
            if when == "writing" and any(p.name.startswith(".tablelm-tmp-") for p in model_dir.iterdir()):
                time.sleep(0.05)  # a few files into the new tables folder
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the build finished before it could be killed"
        writing = any(p.name.startswith(".tablelm-tmp-") for p in model_dir.iterdir())
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return "writing" if writing else "before writing"


def _check_old_model_survives(model_dir, before_files, before_answers):
    manifest_bytes = (model_dir / MANIFEST).read_bytes()
    assert manifest_bytes == before_files[MANIFEST], "the manifest changed"
    json.loads(manifest_bytes)  # complete, not partial
    # only leftovers of the killed build (hidden temporary names) were added; nothing was changed
    now = files_of(model_dir)
    added = [k for k in now if k not in before_files]
    assert all(Path(k).parts[0].startswith(".tablelm-tmp-") for k in added), added
    assert not [k for k in before_files if now.get(k) != before_files[k]]
    assert not [k for k in added if k.endswith(".json") and Path(k).parent == Path(".")], "partial manifest left"
    assert answers(tablelm.load(model_dir)) == before_answers


@needs_data
@pytest.mark.parametrize("when", ["early", pytest.param("writing", marks=pytest.mark.slow)])
def test_killed_build_leaves_the_old_model_loadable(scifact_model_dir, tmp_path, when):
    d = tmp_path / "m"
    shutil.copytree(scifact_model_dir, d)
    before_files = files_of(d)
    before_answers = answers(tablelm.load(d))
    doing = _kill_build_midway(d, cli_env(tmp_path / "cache"), when)
    if when == "writing":
        assert doing == "writing", "the kill did not land while the new tables were written"
    _check_old_model_survives(d, before_files, before_answers)


@needs_data
def test_next_build_removes_leftovers_of_a_killed_one(scifact_model_dir, scifact_file, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(scifact_model_dir, d)
    # what a build killed while writing leaves: a hidden temporary folder and manifest
    (d / ".tablelm-tmp-0123").mkdir()
    (d / ".tablelm-tmp-0123" / "post_docs.npy").write_bytes(b"partial")
    (d / ".tablelm-tmp-4567.json").write_text('{"format_ver')
    assert tablelm.load(d).n_docs == 300
    tablelm.build([scifact_file], d, max_ngram=3)
    names = sorted(p.name for p in d.iterdir())
    assert len(names) == 2 and MANIFEST in names and not any(n.startswith(".tablelm-tmp-") for n in names)
    assert tablelm.load(d).build_params["max_ngram"] == 3



def test_caches_shared_by_server_threads_evict_without_errors(builtin_model):
    """``serve`` answers from a thread pool, so the decoded-block caches of one loaded model
    are read and evicted by several threads at once. With caches of two blocks and a thread
    switch asked for every microsecond, eight threads reading records and ids all over the
    model get what one thread gets, and never a KeyError or RuntimeError from two threads
    evicting the same oldest block (the plain ``pop(next(iter(cache)))`` gave both within
    a few thousand reads)."""
    import sys
    import threading

    model = tablelm.load(builtin_model.path)  # caches of its own; ~13k ids: several blocks
    ids, store = model.tables.string_tables["ids"], model._store
    ids.CACHE, ids.RAW_BYTES, store.CACHE = 2, 1, 2
    n_ids, n_bytes = len(ids), len(store)
    errors: list[BaseException] = []
    seen: dict[int, tuple] = {}

    def read(seed):
        try:
            for a in np.random.default_rng(seed).integers(0, n_bytes - 64, size=6_000).tolist():
                got = (bytes(store[a:a + 64]), ids[a % n_ids], ids.take([a % n_ids])[0])
                assert seen.setdefault(a, got) == got
        except BaseException as e:  # any exception of a thread fails the test
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=read, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:3]
    one = tablelm.load(builtin_model.path)  # what one thread reads
    for a, got in list(seen.items())[:500]:
        assert got == (bytes(one._store[a:a + 64]), one.tables.string_tables["ids"][a % n_ids],
                       one.tables.string_tables["ids"][a % n_ids])
    assert len(ids._raw) <= 2 + 8 and len(store._cache) <= 2 + 8  # a bound overshot by the threads at most
