"""Shared fixtures: real data slices, models built once per session, the built-in model; test tiers.

Models are built into session temporary folders and shared (session scope), so the
whole suite builds each of them once. ``TABLELM_CACHE`` points at a session folder
for every test (and every ``tablelm`` subprocess the tests start), so the suite
never reads nor writes the user's real cache.

Built models are also kept between runs in a persistent test cache (``TABLELM_TEST_CACHE``,
default ``.pytest_cache/tablelm-models``), keyed by everything that goes into them: the
source files' bytes, the build options, the Python version and the code of tablelm that
builds (every file of the package but ``interfaces/``). A session copies a cached model into
its own folder (tests may change a model), so a re-run does not rebuild the built-in model.

Tiers (markers, see pyproject.toml): every test gets exactly one. ``ui`` and ``slow`` are
marked by hand or listed in :data:`HEAVY`; a test that uses the shared data or the built-in
model (the fixtures in :data:`DATA_FIXTURES`, a test or fixture naming one of
:data:`DATA_NAMES`, or a "test data not found" skip) is ``data``; every other test is ``unit``.
``python -m pytest -m unit`` is the quick tier; no option runs everything.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import shutil
import sys
import uuid
from itertools import islice
from pathlib import Path

import pytest

import tablelm
from tablelm.corpus import read_corpus

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCIFACT = DATA / "scifact" / "corpus.jsonl"
SCIFACT_QUERIES = DATA / "scifact" / "queries.jsonl"
CACM = DATA / "cacm" / "corpus.jsonl"
XLLM = DATA / "xllm-enterprise" / "repository3.txt"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"test data not found at {DATA}")

# --------------------------------------------------------------------------- tiers
TIERS = ("unit", "data", "slow", "ui")
#: fixtures that need ../shared/data or build the built-in model: their users are the data tier
DATA_FIXTURES = {"builtin_model", "scifact_file", "scifact_queries_file", "scifact_model_dir", "scifact_model",
                 "xllm_model_dir", "xllm_model"}
#: goldens are exact for one Python version; outside it they skip, unless this flag (set by CI) asks
STRICT_GOLDEN = os.environ.get("TABLELM_STRICT_GOLDEN", "") not in ("", "0")


#: tests of other tiers than their fixtures say, because they cost seconds: (file::name pattern, tier, why)
HEAVY = [
    ("test_corpus.py::test_builtin_corpus_*", "data", "reads the whole built-in corpus (the installed Python's docs)"),
    ("test_evaluation.py::test_metrics_match_trec_eval_on_random_runs", "slow", "hypothesis against trec_eval"),
    ("test_cli.py::test_errors_in_a_subprocess", "slow", "a dozen tablelm subprocesses"),
    ("test_tables.py::test_property_*", "slow", "hypothesis: many small builds"),
    ("test_readers_html_pdf.py::test_every_reader_reads_or_raises_corpus_error", "slow", "fuzzes every reader"),
    ("test_corpus.py::test_any_bytes_read_or_raise_corpus_error", "slow", "fuzzes the readers"),
    ("test_integrations.py::test_llamaindex_*", "slow", "importing llama-index-core takes seconds"),
    ("test_robust_corpus.py::test_readers_are_linear*", "slow", "times each reader at two sizes, best of three"),
    ("test_corpus.py::test_markdown_reading_is_linear*", "slow", "times the Markdown reader at two sizes"),
    ("test_robust_corpus.py::test_a_huge_record_is_cut_and_reported", "slow", "builds a record at the size limit"),
    ("test_robust_server.py::test_any_*_gets_an_answer_or_the_envelope", "slow", "hypothesis against the HTTP app"),
    ("test_update.py::test_property_*", "slow", "hypothesis: many small builds and changes"),
]


#: module-level names whose use (in a test or one of its fixtures) means the shared data is read
DATA_NAMES = {"DATA", "SCIFACT", "SCIFACT_QUERIES", "CACM", "XLLM", "CRAN", "WOLFRAM", "needs_data"}


def _uses_data(item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    if DATA_FIXTURES & names:
        return True
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for name in names if info is not None else ():
        funcs += [fd.func for fd in info.name2fixturedefs.get(name, ())]
    return any(DATA_NAMES & set(f.__code__.co_names) for f in funcs if hasattr(f, "__code__"))


def _tier(item) -> str:
    marked = [m.name for m in item.iter_markers() if m.name in TIERS]
    for tier in ("ui", "slow", "data", "unit"):  # the most expensive mark wins
        if tier in marked:
            return tier
    name = f"{Path(str(item.fspath)).name}::{getattr(item, 'originalname', item.name)}"
    for pattern, tier, _why in HEAVY:
        if fnmatch.fnmatchcase(name, pattern):
            return tier
    if _uses_data(item):
        return "data"
    if any("test data" in str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif")):
        return "data"
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = _tier(item)
        item.add_marker(getattr(pytest.mark, tier))
        item.user_properties.append(("tier", tier))


# --------------------------------------------------------------------------- persistent model cache
@functools.lru_cache(maxsize=1)
def _package_fingerprint() -> str:
    """A hash of the code that builds models: every file of tablelm/ but interfaces/."""
    pkg = ROOT / "tablelm"
    h = hashlib.sha256()
    for path in sorted(pkg.rglob("*")):
        rel = path.relative_to(pkg).as_posix()
        if path.is_file() and "__pycache__" not in rel and not rel.startswith("interfaces/"):
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def test_cache_root() -> Path:
    return Path(os.environ.get("TABLELM_TEST_CACHE") or ROOT / ".pytest_cache" / "tablelm-models")


test_cache_root.__test__ = False  # a helper, not a test


def cached_model(dest: Path, key_parts: list, build, keep: int = 8) -> Path:
    """Put a model built by ``build(out_dir)`` at ``dest``, from the persistent cache when it holds one.

    ``key_parts`` (JSON-able, or bytes) name every input of the build besides the code and the
    Python version, which are always part of the key. A miss builds into a private folder and
    renames it into place (two runs at once never see half a model); the ``keep`` most recently
    used entries are kept.
    """
    import json

    h = hashlib.sha256(_package_fingerprint().encode() + sys.version.encode())
    for part in key_parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    root = test_cache_root()
    entry = root / h.hexdigest()[:24]
    if not (entry / "manifest.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f"tmp-{uuid.uuid4().hex}"
        try:
            build(tmp)
            try:
                tmp.rename(entry)
            except OSError:  # another run finished the same entry first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    os.utime(entry)
    entries = sorted((e for e in root.iterdir() if e.is_dir() and not e.name.startswith("tmp-")),
                     key=lambda e: e.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(entry, dest)
    return dest


def head_lines(path: Path, n: int, start: int = 0) -> list[str]:
    """Lines ``start .. start+n`` of a text file, without their newlines."""
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in islice(fh, start, start + n)]


def read_slice(path: Path, n: int, start: int = 0) -> list:
    """Entities ``start .. start+n`` of a corpus file, through the normal readers."""
    return list(islice(read_corpus([path]), start, start + n))


def cli_env(cache: Path) -> dict:
    """Environment for a ``tablelm`` subprocess: this checkout first on the path, our cache."""
    env = dict(os.environ)
    env["TABLELM_CACHE"] = str(cache)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NO_COLOR", None)
    return env


def assert_same_tables(a, b) -> None:
    """Two models have the same tables (dtype, shape, values), string tables and entity store."""
    import numpy as np

    ta, tb = a.tables, b.tables
    assert sorted(ta.arrays) == sorted(tb.arrays)
    for name in ta.arrays:
        x, y = np.asarray(ta.arrays[name]), np.asarray(tb.arrays[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert ta.string_tables == tb.string_tables
    assert bytes(a._store) == bytes(b._store)


def tablelm_cmd(*args) -> list[str]:
    """The ``tablelm`` console command, run by this interpreter (works without an install)."""
    return [sys.executable, "-m", "tablelm.interfaces.cli", *map(str, args)]


def write(path: Path, content) -> Path:
    """Write text (UTF-8) or bytes to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def reads_or_raises_corpus_error(source, **options) -> None:
    """Fuzz check: ``source`` reads into valid, uniquely identified, JSON-ready entities, or
    (only with ``on_error="fail"``) raises CorpusError; never any other exception."""
    import json

    from tablelm.corpus.entity import TextEntity
    from tablelm.errors import CorpusError

    for on_error in ("fail", "skip"):
        try:
            entities = list(read_corpus([source], on_error=on_error, **options))
        except CorpusError:
            assert on_error == "fail"
            continue
        assert all(isinstance(e, TextEntity) and e.id for e in entities)
        assert len({e.id for e in entities}) == len(entities)
        for e in entities:
            json.dumps(e.to_dict())


# --------------------------------------------------------------------------- session-wide


@pytest.fixture(scope="session", autouse=True)
def tablelm_cache(tmp_path_factory):
    """Point the built-in model cache at a session folder for every test."""
    cache = tmp_path_factory.mktemp("tablelm-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("TABLELM_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="session")
def builtin_model(tablelm_cache):
    """The built-in model (Python's documentation), from the persistent test cache (built once, ~5 s)."""
    from tablelm.builtin import builtin_dir
    from tablelm.builtin import builtin_model as load_builtin
    from tablelm.corpus.pydocs import python_docs_fingerprint

    cached_model(builtin_dir(), ["builtin", python_docs_fingerprint()], lambda out: tablelm.build(None, out))
    model = load_builtin()
    assert Path(model.path) == builtin_dir()
    assert str(builtin_dir()).startswith(str(tablelm_cache))
    return model


def _head_file(tmp_path_factory, source: Path, n: int, folder: str) -> Path:
    """The first ``n`` lines of a data file, copied to a session folder (skip if the data is absent)."""
    if not source.exists():
        pytest.skip(f"test data not found at {source}")
    path = tmp_path_factory.mktemp(folder) / source.name
    path.write_text("\n".join(head_lines(source, n)) + "\n", encoding="utf-8")
    return path


#: A corpus small enough to build in well under a second, for the interface tests that need
#: any model at all (no shared data): id -> (title, text, tags).
TINY_DOCS = {
    "files/read": ("Reading files", "Open a file and read it line by line with a for loop.", ["io", "files"]),
    "files/write": ("Writing files", "Open a file for writing and write text lines to it.", ["io", "files"]),
    "json/parse": ("Parsing JSON", "Parse JSON text into Python objects with json.loads.", ["json"]),
    "dates/now": ("Current date", "The current date and time from datetime.now.", ["dates"]),
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A model of :data:`TINY_DOCS` (JSONL, tags as a list field), saved to a session folder."""
    import json

    from tablelm.corpus import FieldMap

    src = tmp_path_factory.mktemp("tiny") / "corpus.jsonl"
    src.write_text("".join(json.dumps({"_id": i, "title": t, "text": x, "tags": tags,
                                       "category": ["Python", i.split("/")[0]]}) + "\n"
                           for i, (t, x, tags) in TINY_DOCS.items()), "utf-8")
    return tablelm.build([src], tmp_path_factory.mktemp("tiny-model") / "model",
                         field_map=FieldMap(tags_field="tags", category_field="category"))


@pytest.fixture(scope="session")
def scifact_file(tmp_path_factory):
    """The first 300 SciFact records as a JSONL file."""
    return _head_file(tmp_path_factory, SCIFACT, 300, "scifact")


@pytest.fixture(scope="session")
def scifact_queries_file(tmp_path_factory):
    """Eight SciFact queries (BEIR queries.jsonl form)."""
    return _head_file(tmp_path_factory, SCIFACT_QUERIES, 8, "queries")


def _saved_model(tmp_path_factory, source, name: str):
    """``source`` built into a fresh session folder (from the persistent test cache); the model directory."""
    out = tmp_path_factory.mktemp(name) / "model"
    return cached_model(out, ["source", Path(source).name, Path(source).read_bytes()],
                        lambda path: tablelm.build([source], path))


@pytest.fixture(scope="session")
def scifact_model_dir(scifact_file, tmp_path_factory):
    """A model of the SciFact slice, saved to a session folder."""
    return _saved_model(tmp_path_factory, scifact_file, "scifact-model")


@pytest.fixture(scope="session")
def scifact_model(scifact_model_dir):
    return tablelm.load(scifact_model_dir)


@pytest.fixture(scope="session")
def xllm_model_dir(tmp_path_factory):
    """A model of the whole xLLM enterprise repository (1,800 records with tags and categories)."""
    if not XLLM.exists():
        pytest.skip(f"test data not found at {XLLM}")
    return _saved_model(tmp_path_factory, XLLM, "xllm-model")


@pytest.fixture(scope="session")
def xllm_model(xllm_model_dir):
    return tablelm.load(xllm_model_dir)
