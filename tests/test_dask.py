"""The build on Dask (tablelm/tables/distributed.py): the same model directory, byte for byte.

A real local cluster of two worker processes (``processes=True``) counts CACM; every file of
the model directory is compared with the single-process build's. The cluster tests are
``slow`` (starting the workers alone takes seconds); the checks of arguments are unit tests.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import tablelm
from tablelm.errors import CorpusError, TablelmError
from tablelm.interfaces.cli import main
from tablelm.tables import distributed as D

from conftest import CACM, DATA, ROOT, needs_data, read_slice

CRANFIELD = DATA / "cranfield" / "corpus.jsonl"


def files_of(model_dir: Path) -> dict:
    """Every file of a model directory (relative path -> bytes), the lock file aside."""
    return {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in sorted(model_dir.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def assert_same_directory(a: Path, b: Path) -> None:
    fa, fb = files_of(a), files_of(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name] == fb[name], name


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two single-threaded worker processes running this checkout; its Client."""
    pytest.importorskip("distributed")
    with D.dask_client(None, n_workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def cacm_one(tmp_path_factory):
    """CACM built in this process, in one shard."""
    if not CACM.exists():
        pytest.skip(f"test data not found at {CACM}")
    out = tmp_path_factory.mktemp("cacm-one") / "model"
    tablelm.build([CACM], out)
    return out


# --------------------------------------------------------------------------- byte identity


@pytest.mark.slow
@needs_data
def test_the_workers_run_this_checkout(cluster):
    paths = cluster.run(lambda: tablelm.__file__)
    assert len(paths) == 2
    assert all(p == tablelm.__file__ for p in paths.values()), paths
    assert set(cluster.run(D.code_fingerprint).values()) == {D.code_fingerprint()}


@pytest.mark.slow
@needs_data
def test_a_dask_build_writes_the_same_model_directory(cluster, cacm_one, tmp_path, monkeypatch):
    """Two workers, several shards (a small --memory): every file equals the one-process build's;
    and again with the partials merged on the workers (a tree)."""
    report: dict = {}
    out = tmp_path / "dask"
    model = tablelm.build([CACM], out, engine="dask", scheduler=cluster.scheduler.address, memory_mb=64,
                          report=report)
    assert report["engine"] == "dask" and report["workers"] == 2 and report["shards"] >= 3
    assert report["merge_levels"] == 0 and report["read"] == model.n_docs == 3204
    assert_same_directory(cacm_one, out)
    assert model.search("parallel computation", k=10) == tablelm.load(cacm_one).search("parallel computation", k=10)

    monkeypatch.setattr(D, "CLIENT_FAN_IN", 1)  # the client merges one partial: the workers merge the rest
    monkeypatch.setattr(D, "FAN_IN", 2)
    report = {}
    tablelm.build([CACM], tmp_path / "tree", engine="dask", scheduler=cluster, memory_mb=64, report=report)
    assert report["merge_levels"] >= 1
    assert_same_directory(cacm_one, tmp_path / "tree")


@pytest.mark.slow
@needs_data
def test_the_cli_builds_on_dask(cluster, cacm_one, tmp_path):
    out = tmp_path / "cli"
    r = CliRunner().invoke(main, ["build", str(CACM), "-o", str(out), "--engine", "dask", "--scheduler",
                                  cluster.scheduler.address, "--memory", "64", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["engine"] == "dask" and summary["workers"] == 2 and summary["entities"] == 3204
    assert_same_directory(cacm_one, out)


@pytest.mark.slow
@needs_data
def test_without_an_address_a_local_cluster_of_the_machine_builds(tmp_path):
    """No --scheduler: the build starts (and stops) a LocalCluster of one worker per core."""
    src = tmp_path / "cacm-400.jsonl"
    src.write_text("".join(json.dumps({"_id": e.id, "title": e.title, "text": e.text}) + "\n"
                           for e in read_slice(CACM, 400)), "utf-8")
    tablelm.build([src], tmp_path / "one")
    r = CliRunner().invoke(main, ["build", str(src), "-o", str(tmp_path / "dask"), "--engine", "dask"])
    assert r.exit_code == 0, r.output
    assert "Dask workers" in r.output
    assert_same_directory(tmp_path / "one", tmp_path / "dask")


# --------------------------------------------------------------------------- a Dask-built model changes


@pytest.mark.slow
@needs_data
def test_add_and_delete_work_on_a_dask_built_model(cluster, cacm_one, tmp_path):
    """The Dask-built model takes an add and a delete, and ends as the one-process model does."""
    if not CRANFIELD.exists():
        pytest.skip(f"test data not found at {CRANFIELD}")
    shutil.copytree(cacm_one, tmp_path / "local")
    tablelm.build([CACM], tmp_path / "dask", engine="dask", scheduler=cluster, memory_mb=64)
    new = tmp_path / "cran-30.jsonl"
    new.write_text("".join(json.dumps({"_id": f"cran-{e.id}", "title": e.title, "text": e.text}) + "\n"
                           for e in read_slice(CRANFIELD, 30)), "utf-8")
    gone = ["1", "2", "3204"]
    for name in ("local", "dask"):
        report: dict = {}
        model = tablelm.load(tmp_path / name).add([new], report=report)
        assert report["added"] == 30
        model = model.delete(gone, report=report)
        assert report["deleted"] == 3 and model.n_docs == 3204 + 30 - 3
    assert_same_directory(tmp_path / "local", tmp_path / "dask")
    model = tablelm.load(tmp_path / "dask")
    assert model.search("boundary layer flat plate", k=3)[0][0].startswith("cran-")
    assert model.index_of("1") is None


# --------------------------------------------------------------------------- errors


def _broken_copy(tmp_path: Path, line: int) -> Path:
    lines = CACM.read_text("utf-8").splitlines(keepends=True)[:600]
    lines[line - 1] = '{"_id": "broken", "text": "an unterminated record\n'
    path = tmp_path / "broken.jsonl"
    path.write_text("".join(lines), "utf-8")
    return path


@pytest.mark.slow
@needs_data
def test_a_bad_record_names_file_and_line_and_leaves_the_model(cluster, tmp_path):
    src = _broken_copy(tmp_path, 250)
    out = tmp_path / "model"
    tablelm.build([CACM], out, memory_mb=64)
    before = files_of(out)
    with pytest.raises(CorpusError, match=r"broken\.jsonl line 250"):
        tablelm.build([src], out, engine="dask", scheduler=cluster, memory_mb=64)
    assert files_of(out) == before
    # on_error='skip': the record is left out, as the local build leaves it out
    report: dict = {}
    tablelm.build([src], tmp_path / "skip-local", on_error="skip")
    tablelm.build([src], tmp_path / "skip-dask", on_error="skip", engine="dask", scheduler=cluster,
                  memory_mb=64, report=report)
    assert report["skipped"] == 1 and report["errors"][0][1] == 250
    assert_same_directory(tmp_path / "skip-local", tmp_path / "skip-dask")


@pytest.mark.slow
@needs_data
@pytest.mark.filterwarnings("ignore:Port .* is already in use")
def test_workers_that_die_stop_the_build_with_a_clear_error(tmp_path):
    """Workers with too little memory for a shard are killed by their nanny, again and again: the
    build stops with an error naming the shard's records, and the existing model is untouched."""
    distributed = pytest.importorskip("distributed")
    import dask

    out = tmp_path / "model"
    tablelm.build([CACM], out, memory_mb=64)
    before = files_of(out)
    died = r"shard 1 .*corpus\.jsonl:1 to corpus\.jsonl:3204\) (killed the workers|was lost).*memory"
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="160MB",
                                     dashboard_address=None, env={"PYTHONPATH": str(ROOT)}) as lc, \
            distributed.Client(lc, set_as_default=False) as client:
        with pytest.raises(TablelmError, match=died):
            tablelm.build([CACM], out, engine="dask", scheduler=client, memory_mb=2048)
    assert files_of(out) == before


@pytest.mark.slow
def test_an_unreachable_scheduler_says_how_to_start_one(tmp_path):
    pytest.importorskip("distributed")
    src = tmp_path / "c.jsonl"
    src.write_text('{"_id": "a", "text": "some text to count"}\n', "utf-8")
    with pytest.raises(TablelmError, match=r"Cannot connect to the Dask scheduler at tcp://127\.0\.0\.1:9.*dask sch"):
        tablelm.build([src], tmp_path / "m", engine="dask", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "m").exists()


def test_without_dask_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what Python does when it is not installed
    src = tmp_path / "c.jsonl"
    src.write_text('{"_id": "a", "text": "some text to count"}\n', "utf-8")
    with pytest.raises(TablelmError, match=r"pip install 'tablelm\[dask\]'"):
        tablelm.build([src], tmp_path / "m", engine="dask")
    r = CliRunner().invoke(main, ["build", str(src), "-o", str(tmp_path / "m"), "--engine", "dask"])
    assert r.exit_code == 1 and "pip install 'tablelm[dask]'" in r.output
    assert not (tmp_path / "m").exists()


def test_engine_and_scheduler_are_checked(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"_id": "a", "text": "some text to count"}\n', "utf-8")
    with pytest.raises(TablelmError, match="engine must be 'local' or 'dask'"):
        tablelm.build([src], engine="spark")
    with pytest.raises(TablelmError, match="a scheduler goes with engine='dask'"):
        tablelm.build([src], scheduler="tcp://127.0.0.1:8786")
    r = CliRunner().invoke(main, ["build", str(src), "-o", str(tmp_path / "m"), "--scheduler", "tcp://x:1"])
    assert r.exit_code == 2 and "--scheduler goes with --engine dask" in r.output
    r = CliRunner().invoke(main, ["build", str(src), "-o", str(tmp_path / "m"), "--engine", "spark"])
    assert r.exit_code == 2 and "spark" in r.output


def test_a_worker_running_other_code_is_refused():
    me = D._identity()
    D._check_worker(me)
    with pytest.raises(TablelmError, match=r"A Dask worker runs another tablelm .*Install the same tablelm"):
        D._check_worker(dict(me, code="0" * 16))
