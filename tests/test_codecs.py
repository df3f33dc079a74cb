"""The on-disk encodings (tables/codecs.py): exact, read like arrays, and old plain models still load."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

import tablelm
from tablelm.interfaces.cli import main
from tablelm.tables import codecs as C
from tablelm.tables.store import FORMAT_VERSION, read_blob

from conftest import CACM, needs_data


@pytest.fixture(scope="module")
def cacm_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("codecs") / "m"
    tablelm.build([CACM], out)
    return out


def _check_reads(enc, plain: np.ndarray, rng) -> None:
    n = len(plain)
    assert len(enc) == n and enc.dtype == plain.dtype and enc.shape == plain.shape
    for i in {0, n - 1, n // 2, min(n - 1, C.BLOCK), min(n - 1, C.BLOCK - 1)}:
        assert enc[i] == plain[i]
    assert enc[-1] == plain[-1]
    for lo, hi in [(0, n), (1, 1), (0, 1), (C.BLOCK - 3, 3 * C.BLOCK + 5), (n // 3, n // 3 + 7), (n - 2, n + 9)]:
        np.testing.assert_array_equal(enc[lo:hi], plain[lo:hi])
    idx = rng.integers(0, n, 50)
    np.testing.assert_array_equal(enc[idx], plain[idx])
    np.testing.assert_array_equal(enc[idx[:5]], plain[idx[:5]])  # a few: the Python paths
    np.testing.assert_array_equal(enc[-idx[:3] - 1], plain[-idx[:3] - 1])
    np.testing.assert_array_equal(enc[np.zeros(0, dtype=np.int64)], plain[:0])
    np.testing.assert_array_equal(np.asarray(enc), plain)
    with pytest.raises(IndexError):
        enc[n]


def _check_row_reads(enc, plain: np.ndarray, rng) -> None:
    """A 2-D encoded table (bit-packed columns) reads by rows, and columns, as the plain array."""
    n = len(plain)
    assert len(enc) == n and enc.dtype == plain.dtype and enc.shape == plain.shape and enc.ndim == 2
    for i in {0, n - 1, n // 2, -1}:
        np.testing.assert_array_equal(enc[i], plain[i])
        np.testing.assert_array_equal(enc[i, 1], plain[i, 1])
    for lo, hi in [(0, n), (1, 1), (0, 1), (3, 3 * C.BLOCK + 5), (n // 3, n // 3 + 7), (n - 2, n + 9)]:
        np.testing.assert_array_equal(enc[lo:hi], plain[lo:hi])
        np.testing.assert_array_equal(enc[lo:hi, :4], plain[lo:hi, :4])
    idx = rng.integers(0, n, 50)
    np.testing.assert_array_equal(enc[idx], plain[idx])
    np.testing.assert_array_equal(enc[idx[:5]], plain[idx[:5]])  # the few-rows path
    np.testing.assert_array_equal(enc[-idx[:3] - 1], plain[-idx[:3] - 1])
    np.testing.assert_array_equal(enc[idx, :2].sum(axis=1), plain[idx, :2].sum(axis=1))
    np.testing.assert_array_equal(enc[idx.reshape(5, 10)], plain[idx.reshape(5, 10)])
    np.testing.assert_array_equal(enc[np.zeros(0, dtype=np.int64)], plain[:0])
    mask = rng.random(n) < 0.3
    np.testing.assert_array_equal(enc[mask], plain[mask])
    np.testing.assert_array_equal(np.asarray(enc), plain)
    np.testing.assert_array_equal(np.asarray(enc, dtype=np.float64), plain.astype(np.float64))
    with pytest.raises(IndexError):
        enc[n]


def test_bit_packed_columns_are_exact_and_cost_a_header_for_a_constant_field():
    """``bc``: each column bit-packed alone at its own width; a column of one value costs its header."""
    rng = np.random.default_rng(5)
    for n in (1, 7, C.BLOCK + 1, 5000):
        tf = np.zeros((n, 5), dtype=np.uint16)
        tf[:, 0] = rng.integers(0, 4, n)
        tf[:: max(1, n // 9), 0] = 300  # escapes
        tf[:, 1] = rng.random(n) < 0.2
        tf[:, 3] = 7  # a constant field: width 0, not zero
        tf[-1, 4] = 65535  # one large count in an otherwise empty field
        data = C.encode_bc(tf)
        _check_row_reads(C.BitColumns(data, tf.dtype, tf.shape), tf, rng)
        enc = C.BitColumns(data, tf.dtype, tf.shape)
        for idx in (rng.integers(0, n, 5), rng.integers(0, n, 50), rng.integers(0, n, (2, 3)), [0, n - 1]):
            np.testing.assert_array_equal(enc.row_sums(idx), tf[np.asarray(idx)].sum(axis=-1, dtype=np.int64))
        assert enc.row_sums(n - 1) == int(tf[-1].sum()) and enc.row_sums(-1) == int(tf[-1].sum())
    heads = len(C.encode_bc(np.zeros((0, 5), np.uint8)))
    assert len(C.encode_bc(np.zeros((100_000, 5), np.uint8))) == heads  # five empty fields: headers only
    assert len(C.encode_bc(np.ones((100_000, 2), np.uint8))) < 100
    one = C.encode_bp(np.full(1000, 9, np.uint32))
    got = C.BitPacked(one, np.uint32, 1000)
    assert got._w == 0 and got[3] == 9 and got[5:8].tolist() == [9, 9, 9] and got[np.array([0, 999])].tolist() == [9, 9]


def test_encoders_give_the_same_bytes_a_piece_at_a_time(monkeypatch, tmp_path):
    """Large tables (memory-mapped ones too) are encoded PIECE values at a time: the bytes are those
    of one piece, and the forward-index check gives the same answer."""
    rng = np.random.default_rng(3)
    n = 5 * C.BLOCK + 37
    ids = np.concatenate([np.sort(rng.integers(0, 2**31 - 1, n)), [0, 2**31 - 1, 0, 5, 5]]).astype(np.int32)
    counts = rng.integers(0, 4, n).astype(np.uint32)
    counts[::97] = 70000
    hashes = np.sort(rng.integers(0, 2**63, n, dtype=np.uint64))
    docs = rng.integers(0, 50, n).astype(np.int32)
    fwd = np.argsort(docs, kind="stable")
    bad = fwd.copy()
    bad[[10, 11]] = bad[[11, 10]]
    np.save(tmp_path / "ids.npy", ids)
    mapped = np.load(tmp_path / "ids.npy", mmap_mode="r")

    def encoded():
        return ([C.encode_dv(ids), C.encode_dv(mapped), C.encode_bp(counts), C.bitpacked_bytes(counts),
                 C.encode_dz(hashes), C.encode_dz(ids)],
                [C.forward_posts_derivable({"fwd_post": f, "post_docs": docs}) for f in (fwd, bad, fwd[:-1])])

    whole = encoded()
    assert whole[1] == [True, False, False]
    for piece in (C.BLOCK, C.BLOCK * 3):
        monkeypatch.setattr(C, "PIECE", piece)
        assert encoded() == whole


def test_delta_varints_bit_packing_and_delta_zlib_are_exact_on_edge_values():
    rng = np.random.default_rng(7)
    for n in (1, C.BLOCK - 1, C.BLOCK, C.BLOCK + 1, 1000):
        # ascending runs that restart (rows), the extremes of int32, repeats and negative steps
        a = np.concatenate([np.sort(rng.integers(0, 2**31 - 1, n)), [0, 2**31 - 1, 0, 5, 5]]).astype(np.int32)
        _check_reads(C.DeltaVarint(C.encode_dv(a), a.dtype, len(a)), a, rng)
        counts = rng.integers(0, 4, n).astype(np.uint32)
        counts[:: max(1, n // 7)] = [255, 256, 2**32 - 1, 254, 70000, 255, 1, 3][: len(counts[:: max(1, n // 7)])]
        for c in (counts, counts + 1, np.minimum(counts, 1), np.minimum(counts, 3), counts.astype(np.uint8)):
            _check_reads(C.BitPacked(C.encode_bp(c), c.dtype, len(c)), c, rng)
        hashes = np.sort(rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1))
        _check_reads(C.DeltaZlib(C.encode_dz(hashes), hashes.dtype, len(hashes)), hashes, rng)
        _check_reads(C.DeltaZlib(C.encode_dz(a), a.dtype, len(a)), a, rng)
    assert C.bitpacked_bytes(np.ones(1000, np.uint16))[1] == 0 and C.bitpacked_bytes(np.arange(1000))[1] == 8
    assert C.bitpacked_bytes(np.r_[np.zeros(1000, np.uint16), 1])[1] == 1
    u = np.array([0, 1, 127, 128, 16383, 16384, 2**63, 2**64 - 1], dtype=np.uint64)
    data, starts = C.encode_varints(u)
    assert list(np.diff(starts)) == [1, 1, 1, 2, 2, 3, 10, 10]
    np.testing.assert_array_equal(C.decode_varints(np.frombuffer(data, dtype=np.uint8)), u)


def test_zlib_blocks_read_like_the_bytes(tmp_path):
    raw = CACM.read_bytes()
    with open(tmp_path / "z", "wb") as f:
        C.write_zblocks(f, [raw[:1000], raw[1000:]])
    z = C.ZBlocks((tmp_path / "z").read_bytes())
    assert len(z) == len(raw) and bytes(z) == raw
    for lo, hi in [(0, 10), (C.ZBLOCK - 5, C.ZBLOCK + 5), (len(raw) - 3, len(raw) + 4), (7, 7), (0, len(raw))]:
        assert z[lo:hi] == raw[lo:hi]
    assert (tmp_path / "z").stat().st_size < len(raw) / 2


def _zfile(tmp_path, name, raw=None, spliced=None) -> bytes:
    with open(tmp_path / name, "wb") as f:
        spliced.write(f) if spliced is not None else C.write_zblocks(f, [raw])
    return (tmp_path / name).read_bytes()


@pytest.mark.parametrize("cut", ["append", "late", "early", "small"])
def test_a_spliced_store_is_the_file_of_its_bytes_and_copies_the_blocks_before_the_change(tmp_path, cut):
    """An add appends to the entity store, a delete cuts runs out of it: the file written from the
    old blocks is the file of the new bytes compressed whole, and the blocks before the first
    change (past the dictionary) are copied, not compressed again."""
    rng = np.random.default_rng(5)
    words = np.array([b"cell ", b"growth ", b"tumor ", b"file ", b"line\n", b"data ", b"graph "])
    raw = b"".join(rng.choice(words, 60_000 if cut != "small" else 2_000))
    old = C.ZBlocks(_zfile(tmp_path, "old", raw))
    n = len(raw)
    runs = {"append": [(0, n)], "late": [(0, 5 * C.ZBLOCK + 17), (9 * C.ZBLOCK, n - 100)],
            "early": [(10, 3000), (4000, n)], "small": [(0, 500), (900, n)]}[cut]
    tail = b"an added entity\n" * 40
    spliced = C.Spliced(old, runs, tail)
    want = b"".join(raw[a:b] for a, b in runs) + tail
    assert bytes(spliced) == want and len(spliced) == len(want)
    assert _zfile(tmp_path, "new", spliced=spliced) == _zfile(tmp_path, "whole", want)
    assert spliced.reused_blocks() == {"append": n // C.ZBLOCK, "late": 5, "early": 0, "small": 0}[cut]
    if cut == "append":  # the copied blocks are not compressed again
        calls = []
        real = C.zlib.compressobj
        C.zlib.compressobj = lambda *a, **k: calls.append(1) or real(*a, **k)
        try:
            _zfile(tmp_path, "again", spliced=spliced)
        finally:
            C.zlib.compressobj = real
        assert len(calls) == -(-(len(want) - spliced.reused_blocks() * C.ZBLOCK) // C.ZBLOCK)


@pytest.mark.parametrize("same", [0, 1000, 1024, 3000, 5000])
def test_kept_lines_copy_the_stored_blocks_they_share_and_give_the_same_bytes(same):
    old = [f'"id-{i}"' for i in range(4100)]
    blocks = C.LineBlocks(C.encode_lines(old))
    new = old[:same] + [f'"new-{i}"' for i in range(1500)]
    assert C.encode_lines(C.KeptLines(new, blocks, same)) == C.encode_lines(new)


@needs_data
def test_encoded_tables_read_as_the_arrays_they_encode(cacm_dir):
    manifest = json.loads((cacm_dir / "manifest.json").read_text())
    coded = {n for n, m in manifest["tables"].items() if m.get("codec") in (*C.ARRAY_CODECS, "fwd", "fwdm")}
    # they pay on real data
    assert {"pair_cols", "pair_t_order", "fwd_mt", "fwd_post", "pair_adj", "pend_hash", "pend_doc",
            "mt_words", "post_indptr", "pair_indptr", "entity_offsets", "pair_ctx", "ctx_titles_indptr"} <= coded
    model = tablelm.load(cacm_dir)
    rng = np.random.default_rng(3)
    for name in sorted(coded - {"fwd_post", "fwd_mt"}):
        enc = model.tables.arrays[name]
        assert isinstance(enc, C.Encoded), name
        fresh = type(enc)((cacm_dir / manifest["folder"] / manifest["tables"][name]["file"]).read_bytes(),
                          enc.dtype, enc.shape if enc.ndim == 2 else len(enc))
        (_check_row_reads if enc.ndim == 2 else _check_reads)(enc, np.asarray(fresh), rng)
    # the forward index is not stored: recomputed on first use (postings by entity, and their rows)
    for name, codec in (("fwd_post", "fwd"), ("fwd_mt", "fwdm")):
        assert manifest["tables"][name]["codec"] == codec and manifest["tables"][name]["bytes"] == 0
    t = model.tables
    whole = np.argsort(np.asarray(t.post_docs), kind="stable")
    np.testing.assert_array_equal(np.asarray(t.post_docs)[whole], np.repeat(np.arange(model.n_docs),
                                                                            np.diff(np.asarray(t.fwd_indptr))))
    rows = np.repeat(np.arange(len(t.post_indptr) - 1), np.diff(np.asarray(t.post_indptr)))
    for name, want in (("fwd_post", whole), ("fwd_mt", rows[whole])):
        _check_reads(getattr(tablelm.load(cacm_dir).tables, name), want.astype(t.arrays[name].dtype), rng)
    assert model.tables.stats  # the entity store reads back: every entity, in order
    assert [model.entity_at(i).id for i in (0, model.n_docs - 1)] == [model.ids[0], model.ids[-1]]


def _as_format_4(model_dir):
    """Rewrite a model as format 4 wrote it: every table a plain .npy, the entity store raw."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    folder = model_dir / manifest["folder"]
    model = tablelm.load(model_dir)
    for name, meta in manifest["tables"].items():
        if "codec" not in meta:
            continue
        path = folder / meta.pop("file")
        if meta["kind"] == "blob":
            data, file = read_blob(path, dict(meta, codec="zlib")), name
            (folder / file).write_bytes(data)
        elif meta["kind"] == "strings":
            file = f"{name}.txt"
            (folder / file).write_text("\n".join(model.tables.strings(name)), encoding="utf-8")
        else:
            file = f"{name}.npy"
            np.save(folder / file, np.asarray(model.tables.arrays[name]))
        path.unlink()
        del meta["codec"]
        meta["file"] = file
        meta["bytes"] = (folder / file).stat().st_size
        meta["sha256"] = hashlib.sha256((folder / file).read_bytes()).hexdigest()
    manifest["format_version"] = 4
    (model_dir / "manifest.json").write_text(json.dumps(manifest))


@needs_data
def test_a_format_4_model_loads_answers_the_same_and_upgrades(cacm_dir, tmp_path):
    new = tablelm.load(cacm_dir)
    old = tmp_path / "old"
    new.save(old)
    _as_format_4(old)
    assert not any(p.suffix in (".dv", ".bp", ".dz", ".z") for p in old.rglob("*"))
    loaded = tablelm.load(old)
    assert loaded.search("computer program", k=5) == new.search("computer program", k=5)
    assert loaded.entity_at(3).text == new.entity_at(3).text
    r = CliRunner().invoke(main, ["verify", "-m", str(old)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["upgrade", "-m", str(old)])
    assert r.exit_code == 0, r.output
    up = json.loads((old / "manifest.json").read_text())
    ref = json.loads((cacm_dir / "manifest.json").read_text())
    assert up["format_version"] == ref["format_version"] == FORMAT_VERSION
    assert {n: m["sha256"] for n, m in up["tables"].items()} == {n: m["sha256"] for n, m in ref["tables"].items()}


def test_compiled_encoders_give_the_numpy_encoders_bytes(monkeypatch):
    """The save's numba kernels (tables/_jit.py, used for large tables) write exactly the bytes of the
    numpy encoders: delta-varints, bit packing and its width choice, on edge values, a piece at a time;
    and the delta-varint decoder reads back numpy's values."""
    pytest.importorskip("numba")
    from tablelm.tables import _jit, compiled

    rng = np.random.default_rng(11)
    n = 3 * C.BLOCK + 41
    ids = np.concatenate([np.sort(rng.integers(0, 2**31 - 1, n)), [0, 2**31 - 1, 0, 5, 5, -(2**31)]])
    arrays = [ids.astype(np.int32),
              rng.integers(0, 2**32 - 1, n, dtype=np.uint64).astype(np.uint32), np.arange(n, dtype=np.int16) - 7,
              np.zeros(1, dtype=np.int32), np.array([2**31 - 1], dtype=np.int32)]
    counts = rng.integers(0, 4, n).astype(np.uint32)
    edges = [255, 256, 2**32 - 1, 254, 70000, 1, 3, 15, 16, 14, 0, 2, 255, 1, 9, 4, 300, 7, 8]
    counts[: 13 * len(edges): 13] = edges
    bp_inputs = [counts, counts + 1, np.minimum(counts, 1), np.minimum(counts, 3), np.minimum(counts, 15),
                 counts.astype(np.uint8), counts.astype(np.int64).astype(np.int32) - 3]

    def encoded():
        return ([C.encode_dv(a) for a in arrays], [C.bitpacked_bytes(c) for c in bp_inputs],
                [C.encode_bp(c) for c in bp_inputs])

    def decoded():  # every range of whole blocks and the table's end, as an update reads them
        out = []
        for a in arrays:
            t = C.DeltaVarint(C.encode_dv(a), a.dtype, len(a))
            out += [(a.dtype, t._range(lo, hi)) for lo, hi in ((0, len(a)), (C.BLOCK, len(a)), (0, 3 * C.BLOCK),
                                                                (5, len(a) - 3)) if len(a) >= hi > lo]
        return out

    monkeypatch.setattr(compiled, "_module", False)  # numpy
    plain, values = encoded(), decoded()
    monkeypatch.setattr(compiled, "_module", _jit)  # the kernels, whatever the size
    assert compiled.kernels(1) is _jit
    assert encoded() == plain
    got = decoded()
    assert len(got) == len(values) > len(arrays)
    for (dtype, g), (_, want) in zip(got, values):
        assert g.dtype == want.dtype == dtype
        np.testing.assert_array_equal(g, want)
    monkeypatch.setattr(C, "PIECE", C.BLOCK)  # a piece at a time: the block pointers and escape positions
    assert encoded() == plain


def test_the_forward_index_is_recomputed_alike_by_numpy_and_the_kernel(monkeypatch):
    """The forward index recomputed from the postings (format 7 stores neither ``fwd_post`` nor ``fwd_mt``):
    the stable order of the postings by entity and the row of each, by numpy and by the kernel, as the
    build's counting sort makes them; empty rows and entities without postings included."""
    pytest.importorskip("numba")
    from tablelm.tables import _jit, compiled

    rng = np.random.default_rng(5)
    n_mt, n_docs = 60, 40
    rows = [np.sort(rng.choice(n_docs - 3, size=int(rng.integers(0, 12)), replace=False)) for _ in range(n_mt)]
    rows[3] = rows[17] = np.zeros(0, dtype=np.int64)
    docs = np.concatenate(rows).astype(np.int32)
    post_indptr = np.concatenate(([0], np.cumsum([len(r) for r in rows])))
    fwd_indptr = np.concatenate(([0], np.cumsum(np.bincount(docs, minlength=n_docs))))
    want_post = np.argsort(docs, kind="stable")
    want_mt = np.repeat(np.arange(n_mt), np.diff(post_indptr))[want_post]
    assert (np.bincount(docs, minlength=n_docs) == 0).any()  # an entity with no posting
    for module in (False, _jit):
        monkeypatch.setattr(compiled, "_module", module)
        f_post, f_mt = C.forward_index(post_indptr, C.FixedBits(C.encode_fb(docs), docs.dtype, len(docs)),
                                       fwd_indptr)
        np.testing.assert_array_equal(f_post, want_post)
        np.testing.assert_array_equal(f_mt, want_mt)
        forward = C.Forward(post_indptr, docs, fwd_indptr, (np.int64, np.int32))
        _check_reads(C.ForwardTable(np.int32, len(docs), forward, 1), want_mt.astype(np.int32), rng)
        _check_reads(C.ForwardTable(np.int64, len(docs), forward, 0), want_post.astype(np.int64), rng)
    arrays = {"post_indptr": post_indptr, "post_docs": docs, "fwd_post": want_post, "fwd_mt": want_mt}
    assert C.forward_mt_derivable(arrays)
    bad = want_mt.copy()
    bad[7] += 1
    assert not C.forward_mt_derivable(dict(arrays, fwd_mt=bad))


def test_the_kernels_load_only_for_large_work(monkeypatch):
    """Loading numba costs more than numpy's encoding of a small table: a small save never loads it."""
    from tablelm.tables import compiled

    monkeypatch.setattr(compiled, "_module", None)
    assert compiled.kernels(compiled.JIT_MIN_VALUES - 1) is None and compiled._module is None
    monkeypatch.setenv("TABLELM_KERNEL", "numpy")
    assert compiled.kernels(compiled.JIT_MIN_VALUES) is None and compiled._module is False


@needs_data
def test_a_format_5_model_without_label_totals_loads_answers_the_same_and_upgrades(cacm_dir, tmp_path):
    """Format 5 had no ``ctx_NAME_totals`` and plain field counts: the query sums the context table
    itself (the same floats), and ``upgrade`` rewrites the model as a build of this format would."""
    new = tablelm.load(cacm_dir)
    old = tmp_path / "old5"
    new.save(old)
    manifest = json.loads((old / "manifest.json").read_text())
    folder = old / manifest["folder"]
    for name in [n for n in manifest["tables"] if n.endswith("_totals")]:
        (folder / manifest["tables"].pop(name)["file"]).unlink()
    for name in ("post_tf", "mt_counts", "doc_len"):  # format 5 stored these plain
        meta = manifest["tables"][name]
        plain = np.asarray(new.tables.arrays[name])
        (folder / meta["file"]).unlink()
        meta.pop("codec")
        meta["file"] = f"{name}.npy"
        np.save(folder / meta["file"], plain)
        meta["bytes"] = (folder / meta["file"]).stat().st_size
        meta["sha256"] = hashlib.sha256((folder / meta["file"]).read_bytes()).hexdigest()
    manifest["format_version"] = 5
    (old / "manifest.json").write_text(json.dumps(manifest))
    loaded = tablelm.load(old)
    assert "ctx_tags_totals" not in loaded.tables.arrays and isinstance(loaded.tables.post_tf, np.ndarray)
    for q in ("computer program", "parallel sorting algorithms", "operating system scheduling"):
        a, b = loaded.ask(q), new.ask(q)
        assert a.cards == b.cards and a.sections == b.sections
    r = CliRunner().invoke(main, ["upgrade", "-m", str(old)])
    assert r.exit_code == 0, r.output
    up = json.loads((old / "manifest.json").read_text())
    ref = json.loads((cacm_dir / "manifest.json").read_text())
    assert {n: m["sha256"] for n, m in up["tables"].items()} == {n: m["sha256"] for n, m in ref["tables"].items()}


@needs_data
def test_the_stored_label_totals_are_the_sums_of_the_context_tables(cacm_dir):
    from tablelm.query.sections import _label_totals

    model = tablelm.load(cacm_dir)
    for name in ("category", "tags", "titles", "related"):
        ctx = model.tables.context(name)
        want = np.bincount(np.asarray(ctx.labels, dtype=np.int64), weights=np.asarray(ctx.counts, dtype=np.float64),
                           minlength=len(ctx.names))
        stored = model.tables.arrays[f"ctx_{name}_totals"]
        np.testing.assert_array_equal(np.asarray(stored, dtype=np.float64), want)
        totals, total = _label_totals(model, name)
        np.testing.assert_array_equal(totals, want)
        assert total == float(want.sum())


def test_impacts_filled_from_bit_packed_field_counts_are_the_plain_ones():
    """The kernels' impact fill decodes the rows it fills from an encoded ``post_tf``: the same floats."""
    pytest.importorskip("numba")
    from tablelm.query import _jit
    from tablelm.query.kernel import Postings

    rng = np.random.default_rng(2)
    n_docs, n_mt = 300, 40
    lens = rng.integers(0, 60, n_mt)
    indptr = np.zeros(n_mt + 1, dtype=np.int32)
    indptr[1:] = np.cumsum(lens)
    docs = np.concatenate([np.sort(rng.choice(n_docs, k, replace=False)) for k in lens]).astype(np.int32)
    tf = np.zeros((len(docs), 5), dtype=np.uint8)
    tf[:, 0] = rng.integers(0, 5, len(docs))
    tf[:, 1] = rng.random(len(docs)) < 0.3
    tf[::17, 0] = 200

    class T:
        post_indptr, post_docs = indptr, docs

    plain, packed = T(), T()
    plain.post_tf, packed.post_tf = tf, C.BitColumns(C.encode_bc(tf), tf.dtype, tf.shape)
    norm = rng.random(n_docs) + 0.5
    fw = (1.0, 2.5, 0.0, 0.0, 0.3)
    a, b = Postings(plain, norm, fw, 1.2), Postings(packed, norm, fw, 1.2)
    assert isinstance(b.tf, C.BitColumns)
    for rows in (np.array([3, 7]), np.array([0, 1, 2, 3, 7, 39]), np.arange(n_mt)):
        np.testing.assert_array_equal(a.impacts(_jit, rows), b.impacts(_jit, rows))
    assert b.ready.all() and (b.imp[lens.sum() > 0] != 0).any()


@needs_data
def test_the_model_on_disk_is_within_five_times_the_corpus_file(cacm_dir):
    """Issue 9's size target on a real collection: CACM's model was 7.8x its corpus file in format 5
    (23.1 MB for 3.0 MB), 4.4x in format 6 (13.0 MB); the field counts and the context tables pay most."""
    manifest = json.loads((cacm_dir / "manifest.json").read_text())
    tables = manifest["tables"]
    total = sum(m["bytes"] for m in tables.values())
    assert total <= 5.0 * CACM.stat().st_size, total / CACM.stat().st_size

    def plain(name):
        m = tables[name]
        return np.dtype(m["dtype"]).itemsize * int(np.prod(m["shape"]))

    assert tables["post_tf"]["codec"] == "bc" and tables["post_tf"]["bytes"] <= 0.3 * plain("post_tf")
    assert tables["mt_counts"]["codec"] == "bc" and tables["mt_counts"]["bytes"] <= 0.3 * plain("mt_counts")
    for name in ("tags", "related", "titles"):
        assert tables[f"ctx_{name}_labels"]["bytes"] <= 0.6 * plain(f"ctx_{name}_labels"), name
        assert tables[f"ctx_{name}_counts"]["bytes"] <= 0.5 * plain(f"ctx_{name}_counts"), name
    # format 8: row pointers and offsets as their steps, pair counts in ranked bits
    for name in ("post_indptr", "pair_indptr", "entity_offsets", "fwd_indptr"):
        assert tables[name]["codec"] == "db" and tables[name]["bytes"] <= 0.5 * plain(name), name
    for name in ("pair_adj", "pair_ctx"):
        assert tables[name]["codec"] == "br" and tables[name]["bytes"] <= 0.45 * plain(name), name


@needs_data
def test_a_format_7_model_loads_answers_the_same_and_upgrades(cacm_dir, tmp_path):
    """Format 7 stored the row pointers and offsets and the entities' labels plain (or ``dv``), and the
    pair and context counts bit-packed (``bp``): such a model reads the same, and ``upgrade`` rewrites it
    as a build of this format would."""
    new = tablelm.load(cacm_dir)
    old = tmp_path / "old7"
    new.save(old)
    manifest = json.loads((old / "manifest.json").read_text())
    folder = old / manifest["folder"]
    changed = []
    for name, meta in manifest["tables"].items():
        was = meta.get("codec")
        if not (was in ("db", "br") or (name.startswith("doc_") and was == "fb")):
            continue
        plain = np.asarray(new.tables.arrays[name])
        (folder / meta["file"]).unlink()
        if was == "br":
            meta.update(codec="bp", file=f"{name}.bp")
            (folder / meta["file"]).write_bytes(C.encode_bp(plain))
        else:
            meta.pop("codec")
            meta["file"] = f"{name}.npy"
            np.save(folder / meta["file"], plain)
        meta["bytes"] = (folder / meta["file"]).stat().st_size
        meta["sha256"] = hashlib.sha256((folder / meta["file"]).read_bytes()).hexdigest()
        changed.append(name)
    assert {"post_indptr", "pair_adj", "ctx_titles_indptr", "entity_offsets"} <= set(changed)
    manifest["format_version"] = 7
    (old / "manifest.json").write_text(json.dumps(manifest))
    loaded = tablelm.load(old)
    assert isinstance(loaded.tables.post_indptr, np.ndarray) and isinstance(loaded.tables.pair_adj, C.BitPacked)
    for q in ("computer program", "parallel sorting algorithms", "operating system scheduling"):
        a, b = loaded.ask(q), new.ask(q)
        assert a.cards == b.cards and a.sections == b.sections
    assert loaded.entity_at(7).text == new.entity_at(7).text
    r = CliRunner().invoke(main, ["upgrade", "-m", str(old)])
    assert r.exit_code == 0, r.output
    up = json.loads((old / "manifest.json").read_text())
    ref = json.loads((cacm_dir / "manifest.json").read_text())
    assert up["format_version"] == FORMAT_VERSION == 8
    assert {n: m["sha256"] for n, m in up["tables"].items()} == {n: m["sha256"] for n, m in ref["tables"].items()}


def test_fixed_bits_and_multitoken_words_are_exact():
    """``fb``: ids in no order in the bits of the largest (negative, unsigned, one value, the widest);
    ``mw``: the single words' rows are not stored and read back as ``[i, -1, -1, -1]``."""
    rng = np.random.default_rng(8)
    for n in (1, 9, C.BLOCK + 3, 4000):
        for a in (rng.integers(0, 100_000, n).astype(np.int32), rng.integers(-5, 3, n).astype(np.int32),
                  np.full(n, 7, np.int32), rng.integers(0, 2**56 - 1, n, dtype=np.uint64),
                  np.r_[rng.integers(0, 2**31 - 1, n - 1), -(2**31)].astype(np.int32)):
            enc = C.FixedBits(C.encode_fb(a), a.dtype, len(a))
            _check_reads(enc, a, rng)
            assert [enc.one(i) for i in (0, n - 1)] == [int(a[0]), int(a[-1])]
    assert len(C.encode_fb(rng.integers(0, 2**17, 8000).astype(np.int32))) == 16 + 8 * (-(-8000 * 17 // 64) + 1)
    with pytest.raises(ValueError):
        C.encode_fb(np.array([0, 2**60], dtype=np.uint64))
    for n_single, n_multi in ((0, 50), (30, 0), (1000, 300), (5, 5000)):
        singles = np.full((n_single, 4), -1, dtype=np.int32)
        singles[:, 0] = np.arange(n_single)
        multi = np.full((n_multi, 4), -1, dtype=np.int32)
        multi[:, :2] = rng.integers(0, max(n_single, 1), (n_multi, 2))
        multi[n_multi // 2:, 2:] = rng.integers(0, max(n_single, 1), (n_multi - n_multi // 2, 2))
        words = np.concatenate([singles, multi])
        data = C.encode_mw(words)
        enc = C.MultitokenWords(data, words.dtype, words.shape)
        assert enc._singles == n_single
        _check_row_reads(enc, words, rng)
        for k in (1, 5, 8, 9, 40):  # the few-rows path and the vectorized one
            idx = rng.integers(0, len(words), k)
            np.testing.assert_array_equal(enc[idx], words[idx])
            np.testing.assert_array_equal(enc.lengths(idx), (words[idx] >= 0).sum(axis=1))
            assert enc.lengths(int(idx[0])) == (words[idx[0]] >= 0).sum()
    # a table whose first rows are not its single words' (it still reads back: nothing is skipped)
    odd = np.array([[3, -1, -1, -1], [0, 1, -1, -1]], dtype=np.int32)
    assert C.single_word_rows(odd) == 0
    np.testing.assert_array_equal(np.asarray(C.MultitokenWords(C.encode_mw(odd), odd.dtype, odd.shape)), odd)


def test_the_compiled_delta_varint_decoder_reads_what_numpy_reads(monkeypatch):
    """Once the query kernels are loaded, delta-varint blocks decode with numba: the same values."""
    pytest.importorskip("numba")
    import sys

    import tablelm.query._jit  # noqa: F401  (what a query process has loaded)

    rng = np.random.default_rng(4)
    n = 7 * C.BLOCK + 29
    a = np.concatenate([np.sort(rng.integers(0, 2**31 - 1, n)), [0, 2**31 - 1, 0, 5, 5]]).astype(np.int32)
    data = C.encode_dv(a)
    assert C._query_kernels() is not None
    _check_reads(C.DeltaVarint(data, a.dtype, len(a)), a, rng)
    monkeypatch.delitem(sys.modules, "tablelm.query._jit")
    assert C._query_kernels() is None
    _check_reads(C.DeltaVarint(data, a.dtype, len(a)), a, rng)


def _counts_like_pairs(rng, n: int) -> np.ndarray:
    """Counts as pair counts are: most 0, 1 or 2, a long tail (and its extremes)."""
    c = (rng.pareto(1.2, n) * 0.8).astype(np.uint32)
    c[: 11 * 9: 11] = [0, 1, 2, 3, 15, 16, 255, 70000, 2**32 - 1][: len(c[: 11 * 9: 11])]
    return c


def test_ranked_bits_are_exact_at_every_width_and_depth(monkeypatch):
    """``br``: codes of 1, 2 or 4 bits, the escapes' excess in an overflow table read at the escape's
    rank (directory + popcount), ranked again up to BR_DEPTH: every read is the plain array's, across
    directory runs (512 code bits), with no escape at all, and for a table of one value."""
    rng = np.random.default_rng(12)
    for n in (1, 5, 63, 64, 65, 511, 513, 4097, 70_001):
        for a in (_counts_like_pairs(rng, n), rng.integers(0, 3, n).astype(np.uint8),
                  rng.integers(0, 2, n).astype(np.uint16), np.full(n, 9, np.uint64),
                  (_counts_like_pairs(rng, n) + 5).astype(np.uint64)):
            for depth in range(C.BR_DEPTH + 1):
                data = C.encode_br(a, depth)
                _check_reads(C.RankedBits(data, a.dtype, len(a)), a, rng)
            codec, data = C.encode_counts(a)
            _check_reads(C.ARRAY_CODECS[codec][1](data, a.dtype, len(a)), a, rng)
    # each width is exact, not just the one chosen
    a = _counts_like_pairs(rng, 20_000)
    sizes = {}
    for w in (1, 2, 4):
        monkeypatch.setattr(C, "_BR_WIDTHS", (w,))
        data = C.encode_br(a)
        assert C.RankedBits(data, a.dtype, len(a))._w == w
        _check_reads(C.RankedBits(data, a.dtype, len(a)), a, rng)
        sizes[w] = len(data)
    monkeypatch.undo()
    assert len(C.encode_br(a)) <= min(sizes.values())  # the smallest (its overflows choose their widths too)
    assert len(C.encode_br(a)) < 0.75 * len(C.encode_bp(a))  # what it is for: ~2.5 bits a pair count, not 4
    assert C.encode_br(np.array([-1, 0, 1], dtype=np.int32)) is None  # counts only
    assert C.encode_counts(np.full(100, 7, np.uint16))[0] == "bp"  # one value: bp's header alone is smaller


def test_ranked_bits_read_alike_compiled_and_in_numpy(monkeypatch):
    """Once the query kernels are loaded, a gather of ranked bits runs compiled (``br_take``): the values
    numpy reads, and every rank (a broken directory or popcount fails here)."""
    pytest.importorskip("numba")
    import sys

    import tablelm.query._jit  # noqa: F401  (what a query process has loaded)

    rng = np.random.default_rng(13)
    pairs = _counts_like_pairs(rng, 9_000)
    # a minimum above 0, and overflows whose own minimum is (the gap above 0 and 1 and 2)
    for a in (pairs, pairs + 5, np.where(pairs >= 1, pairs + 20, 0).astype(np.uint32)):
        for w in (1, 2, 4):
            monkeypatch.setattr(C, "_BR_WIDTHS", (w,))
            enc = C.RankedBits(C.encode_br(a), a.dtype, len(a))
            assert C._query_kernels() is not None
            _check_reads(enc, a, rng)
            idx = rng.integers(0, len(a), 3000)
            np.testing.assert_array_equal(enc[idx], a[idx])
            with monkeypatch.context() as m:
                m.delitem(sys.modules, "tablelm.query._jit")
                assert C._query_kernels() is None
                np.testing.assert_array_equal(enc[idx], a[idx])
                _check_reads(enc, a, rng)


@pytest.mark.parametrize("piece", [None, 64])
def test_delta_bits_are_exact_and_decode_once(monkeypatch, piece):
    """``db``: a monotone index (row pointers, byte offsets) as its first value and its steps bit-packed,
    decoded in full on first use (a piece at a time) and then read as that array."""
    if piece:
        monkeypatch.setattr(C, "PIECE", piece)
    rng = np.random.default_rng(14)
    for n in (1, 2, 3, C.BLOCK, 5000):
        for a in (np.cumsum(rng.integers(0, 4, n)).astype(np.int32), np.arange(n, dtype=np.int32) + 7,
                  np.full(n, 3, np.int64), np.r_[0, np.cumsum(rng.pareto(1.0, n - 1) * 30)].astype(np.int64),
                  np.linspace(0, 2**31 - 1, n).astype(np.int32), np.sort(rng.integers(-2**40, 2**40, n))):
            enc = C.DeltaBits(C.encode_db(a), a.dtype, len(a))
            _check_reads(enc, a, rng)
            assert np.asarray(enc) is np.asarray(enc)  # decoded once, kept
    steps = np.array([5, 3, 9, 1], dtype=np.int32)  # not monotone: still exact (a negative step)
    _check_reads(C.DeltaBits(C.encode_db(steps), steps.dtype, 4), steps, rng)
    assert len(C.encode_db(np.arange(10**5, dtype=np.int32))) < 64  # equal steps: bp's header alone
    with pytest.raises(ValueError):
        C.DeltaBits(b"XXXX" + bytes(8), np.int32, 1)


def test_new_encoders_give_the_same_bytes_a_piece_at_a_time(monkeypatch):
    rng = np.random.default_rng(15)
    counts = _counts_like_pairs(rng, 7 * 64 * 9 + 13)
    ptr = np.cumsum(rng.integers(0, 40, 3001)).astype(np.int32)
    whole = [C.encode_br(counts), C.encode_counts(counts), C.encode_db(ptr)]
    for piece in (64 * 8, 64 * 24):
        monkeypatch.setattr(C, "PIECE", piece)
        assert [C.encode_br(counts), C.encode_counts(counts), C.encode_db(ptr)] == whole
