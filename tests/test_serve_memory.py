"""Bounded serving memory: line-block caches, the id index, and dropping mapped table pages.

A long-running server must not end up holding every decoded id and title (the string
tables' block caches are bounded), nor a dict of every id (``IdIndex``), nor every page of
the mapped tables it ever touched (``store.release_mapped`` / ``trim_mapped``, run by the
server's ``PageTrim`` middleware). Each of these must leave every answer exactly as it was.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

import tablelm
from tablelm.interfaces.server import create_app
from tablelm.tables import store
from tablelm.tables.codecs import LineBlocks, encode_lines
from tablelm.tables.schema import IdIndex

PROMPTS = ["gene expression in tumor cells", "vitamin D deficiency", "randomized controlled trial mortality",
           "stem cell differentiation !mouse", "insulin~resistance obesity"]


def _key(model, prompt):
    d = model.ask(prompt, k=10).to_dict()
    d.pop("timings_ms")
    return d


@pytest.mark.parametrize("zipped", [False, True])
def test_line_block_cache_is_bounded_and_reads_the_same_lines(zipped, monkeypatch):
    values = [f"line {i} é" for i in range(5000)]
    if zipped:
        lines: store.Lines = store.ZLines(LineBlocks(encode_lines(values)), len(values))
    else:
        lines = store.Lines(("\n".join(values)).encode(), len(values))
    monkeypatch.setattr(lines, "CACHE", 2)
    order = list(range(0, 5000, 7)) + list(range(4999, -1, -13))
    assert [lines[i] for i in order] == [values[i] for i in order]
    assert len(lines._blocks) <= 2
    assert lines.take([4999, 0, 2500]) == [values[4999], values[0], values[2500]]
    assert list(lines) == values
    assert len(lines._blocks) <= 2


def test_zlib_lines_take_reads_single_lines_within_a_byte_budget(monkeypatch):
    """take() decodes a line alone from its block's inflated bytes (no list of the block's lines),
    keeping at most RAW_BYTES of inflated blocks; the answers are the lines, in the order asked."""
    values = [f"id-{i}" + "é" * (i % 5) for i in range(5000)] + [""]
    lines = store.ZLines(LineBlocks(encode_lines(values)), len(values))
    block_bytes = len(lines._zb.raw(0))
    monkeypatch.setattr(lines, "RAW_BYTES", 2 * block_bytes)
    order = [4999, 0, 1023, 1024, 5000, 2500, 3, 4096, 1] + list(range(4999, -1, -37))
    assert lines.take(order) == [values[i] for i in order]
    assert not lines._blocks  # nothing decoded whole
    assert 0 < len(lines._raw) <= 2 and lines._raw_bytes <= 2 * block_bytes
    assert lines._raw_bytes == sum(len(raw) for raw, _ in lines._raw.values())
    assert [lines[i] for i in (7, 4999)] == [values[7], values[4999]]  # whole blocks still serve []
    assert lines.take([7, 4999, 8]) == [values[7], values[4999], values[8]]


class _FakeTables:
    def __init__(self, ids):
        self._ids = None
        self._strings = {"ids": [f'"{x}"' for x in ids]}
        self.n_docs = len(ids)

    def id_at(self, i):
        return self._strings["ids"][i][1:-1]

    def ids_at(self, indices):
        return [self.id_at(i) for i in indices]


def test_id_index_answers_as_a_dict_of_every_id():
    ids = [f"doc{i % 700}" for i in range(1000)] + ["x", "", "doc5"]  # repeats: the last index wins
    index = IdIndex(_FakeTables(ids))
    want = {x: i for i, x in enumerate(ids)}
    for x in set(ids) | {"nope", "doc700", "X"}:
        assert index.get(x) == want.get(x), x
    assert index.get(["unhashable"]) is None
    asked = sorted(set(ids) | {"nope", "doc700", "X"}) + ["doc5", "nope"]  # at once: the same answers
    assert index.get_many(asked).tolist() == [want.get(x, -1) for x in asked]
    assert index.get_many([]).tolist() == []


def test_index_of_on_a_model_matches_its_ids(scifact_model_dir):
    model = tablelm.load(scifact_model_dir)
    ids = model.tables.ids
    want = {x: i for i, x in enumerate(ids)}
    assert all(model.tables.index_of(x) == want[x] for x in ids[::7] + ids[-3:])
    assert model.tables.index_of("no such id") is None
    assert isinstance(model.tables._id_index, IdIndex)
    asked = ids[::5] + ["no such id"] + ids[:3]
    assert model.tables.indices_of(asked).tolist() == [want.get(x, -1) for x in asked]


def test_released_pages_leave_every_answer_unchanged(scifact_model_dir):
    model = tablelm.load(scifact_model_dir)
    before = [_key(model, p) for p in PROMPTS]
    assert store.release_mapped() > 0  # the model's tables are mapped, and released
    assert [_key(model, p) for p in PROMPTS] == before
    got = store.mapped_resident_mb()
    assert got is None or got > 0
    assert store.trim_mapped(0) is False  # 0: never
    assert store.trim_mapped(1e-6) is (got is not None)  # over any budget: released (on Linux)
    assert [_key(model, p) for p in PROMPTS] == before


def test_release_drops_resident_pages_of_a_mapped_table(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(4 << 20, dtype=np.int64))  # 32 MB
    if store.mapped_resident_mb() is None:
        pytest.skip("no /proc/self/statm here")
    arr = np.load(path, mmap_mode="r")
    store._LIVE_MAPS.add(arr._mmap)
    total = int(arr.sum())  # every page resident
    high = store.mapped_resident_mb()
    store.release_mapped()
    low = store.mapped_resident_mb()
    assert high - low > 20, (high, low)
    assert int(arr.sum()) == total


def test_server_trims_mapped_pages_after_requests(scifact_model_dir, monkeypatch):
    model = tablelm.load(scifact_model_dir)
    calls = []
    monkeypatch.setattr("tablelm.interfaces.server.trim_mapped", lambda mb: calls.append(mb) or False)
    with TestClient(create_app(model, mapped_mb=123)) as client:
        assert client.get("/ask", params={"q": PROMPTS[0]}).status_code == 200
        assert client.get("/healthz").status_code == 200
    assert calls == [123.0, 123.0]
    monkeypatch.setenv("TABLELM_SERVE_MAPPED_MB", "77")
    calls.clear()
    with TestClient(create_app(model)) as client:
        client.get("/healthz")
    assert calls == [77.0]
