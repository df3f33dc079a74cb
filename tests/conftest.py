"""Shared fixtures: real data slices, models built once per session, the built-in model.

Models are built into session temporary folders and shared (session scope), so the
whole suite builds each of them once. ``TABLELM_CACHE`` points at a session folder
for every test (and every ``tablelm`` subprocess the tests start), so the suite
never reads nor writes the user's real cache.
"""

from __future__ import annotations

import os
import sys
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
    """The built-in model (Python's documentation), built once into the session cache (~5 s)."""
    from tablelm.builtin import builtin_dir, builtin_model as load_builtin

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


@pytest.fixture(scope="session")
def scifact_file(tmp_path_factory):
    """The first 300 SciFact records as a JSONL file."""
    return _head_file(tmp_path_factory, SCIFACT, 300, "scifact")


@pytest.fixture(scope="session")
def scifact_queries_file(tmp_path_factory):
    """Eight SciFact queries (BEIR queries.jsonl form)."""
    return _head_file(tmp_path_factory, SCIFACT_QUERIES, 8, "queries")


def _saved_model(tmp_path_factory, source, name: str):
    """Build ``source`` into a fresh session folder; return the model directory."""
    out = tmp_path_factory.mktemp(name) / "model"
    tablelm.build([source], out)
    return out


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
