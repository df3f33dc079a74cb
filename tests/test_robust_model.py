"""Robustness of a model directory: concurrent writers, damaged files, unwritable folders.

Every damage is tried per table of a real model: loading (or ``tablelm verify``)
must answer with one line naming the file and saying to rebuild, never a
traceback and never a silently different answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading

import pytest

import tablelm
from tablelm.errors import ModelError
from tablelm.tables.store import MANIFEST, model_lock, verify

from conftest import cli_env, needs_data, tablelm_cmd


def _copy(model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    manifest = json.loads((d / MANIFEST).read_text())
    return d, manifest, d / manifest["folder"]


def _one_line_error(text: str, *needles: str) -> None:
    lines = [x for x in text.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in text, text
    for n in needles:
        assert n in lines[0], (n, text)


# --------------------------------------------------------------------------- manifest


@needs_data
def test_manifest_records_size_and_checksum_of_every_table(scifact_model_dir):
    manifest = json.loads((scifact_model_dir / MANIFEST).read_text())
    folder = scifact_model_dir / manifest["folder"]
    for name, meta in manifest["tables"].items():
        assert meta["bytes"] == (folder / meta["file"]).stat().st_size, name
        assert len(meta["sha256"]) == 64, name
    assert verify(scifact_model_dir) == []


@needs_data
@pytest.mark.parametrize("change, message", [
    (lambda m: [1, 2], "not a JSON object"),
    (lambda m: "model", "not a JSON object"),
    (lambda m: dict(m, format_version=str(m["format_version"])), "model format '"),
    (lambda m: dict(m, format_version=True), "model format True"),
    (lambda m: {k: v for k, v in m.items() if k != "folder"}, "'folder' is missing"),
    (lambda m: {k: v for k, v in m.items() if k != "tables"}, "'tables' is missing"),
    (lambda m: {k: v for k, v in m.items() if k != "analyzer"}, "'analyzer' is missing"),
    (lambda m: dict(m, stats=[]), "'stats' is a list"),
    (lambda m: dict(m, folder="../../etc"), "not a tables folder name"),
    (lambda m: dict(m, tables={"post_docs": {"file": "/etc/passwd"}}), "no valid 'file'"),
    (lambda m: dict(m, tables={"post_docs": 3}), "no valid 'file'"),
])
def test_a_wrong_manifest_is_one_line_saying_rebuild(scifact_model_dir, tmp_path, change, message):
    d, manifest, _ = _copy(scifact_model_dir, tmp_path)
    (d / MANIFEST).write_text(json.dumps(change(manifest)))
    with pytest.raises(ModelError, match=r"(?i)rebuild") as e:
        tablelm.load(d)
    assert message in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- damaged tables, one by one


def _tables(model_dir):
    return sorted(json.loads((model_dir / MANIFEST).read_text())["tables"])


@needs_data
def test_every_table_truncated_or_deleted_fails_on_load(scifact_model_dir, tmp_path):
    for name in _tables(scifact_model_dir):
        for damage in ("truncate", "delete", "grow"):
            d, manifest, folder = _copy(scifact_model_dir, tmp_path / f"{name}-{damage}")
            path = folder / manifest["tables"][name]["file"]
            if damage == "truncate" and path.stat().st_size == 0:
                continue
            if damage == "delete":
                path.unlink()
            elif damage == "grow":
                with open(path, "ab") as f:
                    f.write(b"\0")
            else:
                path.write_bytes(path.read_bytes()[: max(0, path.stat().st_size // 2)])
            with pytest.raises(ModelError) as e:
                tablelm.load(d)
            msg = str(e.value)
            assert path.name in msg and "rebuild" in msg and "\n" not in msg, (name, damage, msg)


@needs_data
def test_every_table_with_a_flipped_byte_is_found_by_verify(scifact_model_dir, tmp_path):
    for name in _tables(scifact_model_dir):
        d, manifest, folder = _copy(scifact_model_dir, tmp_path / name)
        path = folder / manifest["tables"][name]["file"]
        data = bytearray(path.read_bytes())
        if not data:
            continue
        data[len(data) * 2 // 3] ^= 0x5A  # same size: only the checksum can tell
        path.write_bytes(bytes(data))
        problems = verify(d)
        assert len(problems) == 1 and path.name in problems[0] and "rebuild" in problems[0], (name, problems)
        assert "\n" not in problems[0]


@needs_data
def test_verify_command(scifact_model_dir, tmp_path):
    env = cli_env(tmp_path / "cache")
    r = subprocess.run(tablelm_cmd("verify", "-m", scifact_model_dir), env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
    d, _, folder = _copy(scifact_model_dir, tmp_path)
    p = next(folder.glob("post_indptr.*"))  # .db (format 8) or .npy
    data = bytearray(p.read_bytes())
    data[-8:] = b"\xff" * 8  # row pointers out of range: queries would raise
    p.write_bytes(bytes(data))
    r = subprocess.run(tablelm_cmd("verify", "-m", d), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    _one_line_error(r.stderr, p.name, "checksum", "rebuild")
    # and a query on it is one line pointing at verify, not a traceback
    r = subprocess.run(tablelm_cmd("ask", "-m", d, "gene expression"), env=env, capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        _one_line_error(r.stderr, "tablelm verify")


# --------------------------------------------------------------------------- two writers


@needs_data
def test_a_second_writer_waits_for_the_lock_or_fails_clearly(scifact_model_dir, tmp_path):
    d, _, _ = _copy(scifact_model_dir, tmp_path)
    env = dict(cli_env(tmp_path / "cache"), TABLELM_LOCK_TIMEOUT="0.5")
    with model_lock(d):
        r = subprocess.run(tablelm_cmd("tune", "-m", d, "--reset"), env=env, capture_output=True, text=True,
                           timeout=60)
    assert r.returncode == 1
    _one_line_error(r.stderr, "being written by another tablelm build")
    # released: now it goes through
    r = subprocess.run(tablelm_cmd("tune", "-m", d, "--reset"), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@needs_data
def test_a_reader_waits_out_a_same_content_switch(scifact_model_dir, tmp_path, monkeypatch):
    """A build of the same content moves the model's folder aside and its copy into place
    (store.switch_in): between the two renames the manifest names a missing folder. A load in that
    moment looks again instead of reporting a missing file (the race test below saw it once)."""
    from tablelm.tables import store

    d, _, folder = _copy(scifact_model_dir, tmp_path)
    aside = d / ".tablelm-tmp-aside"
    folder.rename(aside)
    real_sleep = store.time.sleep
    pauses, put_back = [], [True]

    def sleep(seconds):  # the writer's second rename happens while the reader pauses
        pauses.append(seconds)
        if len(pauses) == 2 and put_back[0]:
            aside.rename(folder)
        real_sleep(seconds)

    monkeypatch.setattr(store.time, "sleep", sleep)
    model = tablelm.load(d)
    assert model.n_docs == 300 and len(pauses) == 2
    folder.rename(aside)  # a folder that stays missing is still reported, after the retries
    pauses.clear()
    put_back[0] = False
    with pytest.raises(ModelError, match="is missing"):
        tablelm.load(d)
    assert len(pauses) == store.MISSING_RETRIES


@needs_data
def test_concurrent_builds_into_one_directory_leave_a_complete_model(scifact_file, scifact_model_dir, tmp_path):
    """Two builds (different parameters) race into a directory holding a model, while a reader loads it."""
    d, _, _ = _copy(scifact_model_dir, tmp_path)
    env = cli_env(tmp_path / "cache")
    stop, errors = threading.Event(), []

    def reader():
        while not stop.is_set():
            try:
                tablelm.load(d).ask("gene expression", k=3)
            except Exception as e:  # any failure of a reader is the bug
                errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        procs = [subprocess.Popen(tablelm_cmd("build", scifact_file, "-o", d, "-p", f"max_dist={k}"), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in (2, 3)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    finally:
        stop.set()
        t.join(timeout=60)
    assert all(rc == 0 for rc, _ in results), results
    assert errors == []
    assert verify(d) == []
    m = tablelm.load(d)
    assert m.build_params["max_dist"] in (2, 3) and m.n_docs == 300
    assert sorted(p.name for p in d.iterdir()) == sorted([MANIFEST, m.manifest["folder"]])


# --------------------------------------------------------------------------- unwritable places


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
@needs_data
def test_read_only_model_folder_is_one_line(scifact_model_dir, scifact_file, tmp_path):
    d, _, _ = _copy(scifact_model_dir, tmp_path)
    before = {p.name for p in d.iterdir()}
    os.chmod(d, 0o555)
    try:
        env = cli_env(tmp_path / "cache")
        for args in (("tune", "-m", d, "--reset"), ("build", scifact_file, "-o", d)):
            r = subprocess.run(tablelm_cmd(*args), env=env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 1
            _one_line_error(r.stderr, "cannot", str(d))
        assert {p.name for p in d.iterdir()} == before
        assert tablelm.load(d).n_docs == 300
    finally:
        os.chmod(d, 0o755)


def test_os_errors_become_one_line_model_errors(tmp_path):
    """Works as root too: a model directory path below a regular file cannot be created."""
    (tmp_path / "file").write_text("x")
    built = tablelm.build([_tiny_corpus(tmp_path)])
    with pytest.raises(ModelError, match="cannot create the model directory") as e:
        built.save(tmp_path / "file" / "sub" / "m")
    assert "\n" not in str(e.value)


def _tiny_corpus(tmp_path):
    p = tmp_path / "tiny.jsonl"
    p.write_text("".join(json.dumps({"_id": str(i), "text": f"wing flow number {i} boundary layer"}) + "\n"
                         for i in range(5)))
    return p


@needs_data
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs preexec_fn (POSIX)")
def test_running_out_of_space_is_one_line_and_keeps_the_old_model(scifact_model_dir, scifact_file, tmp_path):
    """A file-size limit (ulimit -f) makes writes fail as a full disk does, also as root."""
    import resource
    import signal

    d, _, _ = _copy(scifact_model_dir, tmp_path)
    before = {p.name for p in d.iterdir()}

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    r = subprocess.run(tablelm_cmd("build", scifact_file, "-o", d, "-p", "max_dist=2"),
                       env=cli_env(tmp_path / "cache"), capture_output=True, text=True, timeout=120,
                       preexec_fn=small_files)
    assert r.returncode == 1
    _one_line_error(r.stderr.splitlines()[-1], "cannot write the model", "previous model")
    assert "Traceback" not in r.stderr
    assert {p.name for p in d.iterdir()} == before
    assert verify(d) == [] and tablelm.load(d).build_params["max_dist"] != 2


@needs_data
def test_an_unwritable_usage_folder_does_not_stop_ask(scifact_model_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    env = dict(cli_env(tmp_path / "cache"), TABLELM_RECORD_USAGE="1", TABLELM_DATA=str(tmp_path / "file" / "data"))
    r = subprocess.run(tablelm_cmd("ask", "-m", scifact_model_dir, "-p", "beta=0.5", "gene expression"), env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "usage not recorded" in r.stderr and "Traceback" not in r.stderr


@needs_data
def test_a_loaded_model_keeps_answering_after_a_rebuild_replaces_its_folder(scifact_model_dir, scifact_file,
                                                                             tmp_path):
    """What ``tablelm serve`` relies on: its memory maps keep the old tables after they are removed."""
    d, _, folder = _copy(scifact_model_dir, tmp_path)
    serving = tablelm.load(d)
    before = [c.id for c in serving.ask("gene expression in tumor cells", k=10).cards]
    tablelm.build([scifact_file], d, max_dist=2)
    assert not folder.exists()
    assert [c.id for c in serving.ask("gene expression in tumor cells", k=10).cards] == before
    assert serving.entity(before[0]).id == before[0]
