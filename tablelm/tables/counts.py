"""The count store: partial counts that merge by key, and the tables assembled from them.

A :class:`Partial` holds every raw count of a set of entities (a shard of a build, the
entities an add brings, or those a delete takes away) in its own id space: stems sorted,
multitokens ordered by length then words. Its keys do not depend on the rest of the
corpus: stems are strings, and every multitoken also carries a stable 64-bit hash of
its stem strings (:func:`tablelm.tables.hashing.chain_hash`).

:func:`merge` sums partials by those keys (a sign per partial, so that an update can
subtract what it removes) and places their entities in the new corpus order; the order
of ids is a total order on the keys themselves, so mapping a partial's ids into the
merged ids is monotonic and every sorted run stays sorted. :func:`assemble` turns the
merged counts into the stored tables (CSR indexes, contexts, transposed and forward
indexes, sorted n-grams). A one-shard build assembles its own partial; a sharded build,
an add and a delete assemble a merge: the same tables, byte for byte, as a build of the
resulting corpus in one shard.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import spill
from .hashing import WIDTH, hash_rows, sort_rows
from .schema import CONTEXTS, FIELDS
from .sorting import stable_argsort

F = len(FIELDS)
#: rows merged or assembled per range: bounds the temporaries of merge and assemble (tests make it tiny)
RANGE_ROWS = 1 << 20


@dataclass
class Tables:
    """Every table of a model: numpy arrays plus string lists.

    ``arrays`` maps a table name to an array (saved as ``NAME.npy``); ``strings``
    maps a name to a list of strings (saved one per line); ``blobs`` maps a name
    to bytes (saved as is). Loaded models hold memory-mapped arrays.
    """

    arrays: dict = field(default_factory=dict)
    strings: dict = field(default_factory=dict)
    blobs: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.arrays[name]


@dataclass
class Partial:
    """Raw counts of a set of entities, in the set's own id space (see the module notes)."""

    n_docs: int
    stems: list  # sorted strings
    stem_hash: np.ndarray  # uint64 per stem
    mt_words: np.ndarray  # (multitokens, 4) int32 stem ids, -1 padded; by length, then words
    mt_hash: np.ndarray  # uint64 per multitoken
    mt_counts: np.ndarray  # (multitokens, F) int64
    post_mt: Any  # int32 array (or RowKeys: a model's partial in an update), postings sorted by (multitoken, entity)
    post_doc: np.ndarray  # int32
    post_tf: np.ndarray  # (postings, F) uint16
    pair_a: Any  # int32 array (or RowKeys, as post_mt), pairs sorted by (a, b), a < b
    pair_b: np.ndarray
    pair_adj: np.ndarray  # uint32 counts (summed in int64 while merging)
    pair_ctx: np.ndarray
    pend_hash: np.ndarray  # uint64, sorted by (hash, entity)
    pend_doc: np.ndarray  # int32
    surfaces: list  # sorted strings
    surface_stem: np.ndarray  # int32
    surface_count: np.ndarray  # int64
    doc_len: np.ndarray  # (entities, F) int64
    labels: dict = field(default_factory=dict)  # context name -> (sorted label strings, indptr, label ids)


def csr_from_sorted_rows(rows: np.ndarray, n_rows: int) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n_rows)))).astype(np.int64)


def pending_table(hashes: list, docs: list) -> dict:
    """The pending occurrences sorted by (hash, entity): what a later add needs to promote an
    n-gram that reaches ``min_multitoken_count`` (and a delete to demote one)."""
    h = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    d = np.concatenate(docs).astype(np.int32) if docs else np.zeros(0, dtype=np.int32)
    o = np.lexsort((d, h))
    return {"pend_hash": h[o], "pend_doc": d[o]}


def display_words(stems: list, surface_stem: np.ndarray, surface_count: np.ndarray, surfaces: list) -> list:
    """Unstemming: the most frequent surface word of each stem (ties: the alphabetically first).

    ``surfaces`` is sorted, so a surface's index is its alphabetical rank; a stem that no
    real surface word produced (only KW_map expansions) shows as itself.
    """
    display = list(stems)
    if len(surfaces):
        o = np.lexsort((np.arange(len(surfaces)), -np.asarray(surface_count, dtype=np.int64), surface_stem))
        first = np.ones(len(o), dtype=bool)
        first[1:] = surface_stem[o][1:] != surface_stem[o][:-1]
        for s_id, i in zip(surface_stem[o][first].tolist(), o[first].tolist()):
            display[s_id] = surfaces[i]
    return display


def labels_csr(values_per_doc: list[list[str]]):
    """Doc → label ids (CSR) over the sorted set of distinct labels."""
    labels = sorted({v for vs in values_per_doc for v in vs})
    index = {v: i for i, v in enumerate(labels)}
    lens = np.fromiter((len(vs) for vs in values_per_doc), dtype=np.int64, count=len(values_per_doc))
    ids = np.fromiter((index[v] for vs in values_per_doc for v in vs), dtype=np.int32, count=int(lens.sum()))
    return labels, np.concatenate(([0], np.cumsum(lens))), ids


def union_sorted(lists: list) -> tuple[list, list]:
    """The sorted union of sorted lists of distinct strings, and each list's positions in it.

    An update merges a model's lists (a million stems or titles at 1M documents) with a change's
    few: then the large list is neither hashed nor sorted again; the strings it lacks are found by
    binary search and spliced in (~7 s of an add at 1M went to set unions, sorts and dicts).
    """
    lists = [x if isinstance(x, list) else list(x) for x in lists]
    big = max(range(len(lists)), key=lambda i: len(lists[i]), default=0)
    rest = sum(len(x) for x in lists) - (len(lists[big]) if lists else 0)
    if not lists or rest * 8 >= len(lists[big]):  # parts of about one size (a sharded build)
        every = sorted(set().union(*lists))
        at = {v: i for i, v in enumerate(every)}
        return every, [np.fromiter((at[v] for v in x), dtype=np.int64, count=len(x)) for x in lists]
    base = lists[big]

    def known(v):
        i = bisect_left(base, v)
        return i < len(base) and base[i] == v

    extra = sorted({v for j, x in enumerate(lists) if j != big for v in x if not known(v)})
    cut = [bisect_left(base, v) for v in extra]
    union: list = []
    prev = 0
    for v, c in zip(extra, cut):
        union += base[prev:c]
        union.append(v)
        prev = c
    union += base[prev:]
    shift = np.searchsorted(np.asarray(cut, dtype=np.int64), np.arange(len(base)), side="right")
    maps = [np.arange(len(base), dtype=np.int64) + shift if j == big else
            np.fromiter((bisect_left(union, v) for v in x), dtype=np.int64, count=len(x))
            for j, x in enumerate(lists)]
    return union, maps


class HashCollision(RuntimeError):
    """Two different multitokens with one stable hash (astronomically rare; reported, never hidden)."""


# --------------------------------------------------------------------------- merge


def _sorted_key_rows(words: np.ndarray) -> np.ndarray:
    """The order of multitoken rows by (length, words): the canonical multitoken order."""
    lens = (words >= 0).sum(axis=1)
    return np.lexsort(tuple(words[:, j] for j in range(WIDTH - 1, -1, -1)) + (lens,))


def merge(parts: list, n_docs: int, spool: Path | None = None) -> Partial:
    """Sum partials by key into one partial over the new corpus.

    Parameters
    ----------
    parts : list of (Partial, sign, doc_map)
        ``sign`` +1 adds the partial's counts, -1 subtracts them; ``doc_map`` gives the new
        position of each of its entities, -1 for entities that are not in the new corpus
        (their per-entity rows: postings, pending occurrences, lengths, labels, are left
        out; their summed counts still add or subtract).
    n_docs : int
        Entities in the new corpus; every position must come from exactly one part.
    spool : Path, optional
        A folder for the merged postings, pairs and pending occurrences: written there one
        range at a time and returned memory-mapped, so that the merge holds one range of them
        in memory (the bounded-memory build). None: in memory.
    """
    # ---- stems: the union of the strings, sorted
    union, smaps = union_sorted([p.stems for p, _, _ in parts])
    u_hash = np.zeros(len(union), dtype=np.uint64)
    for (p, _, _), sm in zip(parts, smaps):
        u_hash[sm] = p.stem_hash

    # ---- multitokens: the union of the hashes; each distinct hash must have one word tuple.
    # One part at a time: the words and counts of the distinct hashes are filled part by part
    hashes = np.concatenate([np.asarray(p.mt_hash) for p, _, _ in parts]) if parts else np.zeros(0, np.uint64)
    uniq, inv = np.unique(hashes, return_inverse=True)
    del hashes
    offsets = np.cumsum([0] + [len(p.mt_hash) for p, _, _ in parts])
    words = np.full((len(uniq), WIDTH), -1, dtype=np.int32 if len(union) < 2**31 else np.int64)
    seen = np.zeros(len(uniq), dtype=bool)
    total = np.zeros((len(uniq), F), dtype=np.int64)
    for (p, sign, _), sm, lo in zip(parts, smaps, offsets):
        at_u = inv[lo:lo + len(p.mt_hash)]
        p_words = np.asarray(p.mt_words)
        w = np.where(p_words >= 0, sm[np.maximum(p_words, 0)], -1)
        new = ~seen[at_u]
        words[at_u[new]] = w[new]
        seen[at_u] = True
        if not (words[at_u] == w).all():
            raise HashCollision("two different multitokens share one 64-bit hash (about one chance in 10^9 per "
                                "model); rebuild in one shard: tablelm build with a larger --memory")
        total[at_u] += sign * np.asarray(p.mt_counts, dtype=np.int64)  # distinct within a part (checked above)
        del at_u, p_words, w, new
        spill.release(p.mt_words, p.mt_hash, p.mt_counts)
    del seen
    if (total < 0).any():
        raise ValueError("a merge subtracted counts it never had: the model and the change disagree")
    alive_b = total.sum(axis=1) > 0
    # a letter's single-word row has no count (the letter is no term of its own, see
    # build._attached_letters): it survives while a surviving multitoken holds the letter
    single_b = words[:, 1] < 0
    zero_single = np.flatnonzero(single_b & ~alive_b)
    if len(zero_single):
        held = np.zeros(len(union), dtype=bool)
        multi = alive_b & ~single_b
        held[words[multi, 0]] = True
        held[words[multi, 1]] = True
        alive_b[zero_single[held[words[zero_single, 0]]]] = True
        del held, multi
    alive = np.flatnonzero(alive_b)
    del alive_b, single_b, zero_single
    u_words = words[alive]
    del words
    # the stems that survive: those of the single words left (every word of a surviving
    # multitoken is itself a surviving single word)
    single = u_words[:, 1] < 0
    s_keep = np.sort(u_words[single, 0])
    s_new = np.full(len(union), -1, dtype=np.int64)
    s_new[s_keep] = np.arange(len(s_keep))
    new_words = np.where(u_words >= 0, s_new[np.maximum(u_words, 0)], -1).astype(u_words.dtype)
    del u_words
    order = _sorted_key_rows(new_words)
    mt_of_uniq = np.full(len(uniq), -1, dtype=np.int64)
    mt_of_uniq[alive[order]] = np.arange(len(order))
    n_mt = len(order)
    pmaps = [mt_of_uniq[inv[lo:lo + len(p.mt_hash)]] for (p, _, _), lo in zip(parts, offsets)]
    del inv, mt_of_uniq

    # ---- postings and pending occurrences of the entities kept
    post_pieces, pend_pieces = [], []
    doc_len = np.zeros((n_docs, F), dtype=np.int64)
    placed_from = np.full(n_docs, -1, dtype=np.int64)  # the part each new entity comes from
    for (p, sign, dmap), pm in zip(parts, pmaps):
        dmap = np.asarray(dmap, dtype=np.int64)
        if sign < 0:
            if (dmap >= 0).any():
                raise ValueError("a subtracted partial cannot bring entities")
            continue
        # sorted by (multitoken, entity) within the part: both maps are monotonic
        post_pieces.append((_Rows(p.post_mt, pm, p.post_doc, p.post_tf), dmap))
        pend_pieces.append((p.pend_hash, p.pend_doc, dmap))
        placed = np.flatnonzero(dmap >= 0)
        doc_len[dmap[placed]] = p.doc_len[placed]
        if (placed_from[dmap[placed]] >= 0).any():
            raise ValueError("two merged partials bring an entity to the same position")
        placed_from[dmap[placed]] = 1
    if (placed_from < 0).any():
        raise ValueError("the merged partials leave entity positions empty")
    labels = {name: _merge_labels([(p.labels[name], d) for p, sign, d in parts if sign > 0], n_docs)
              for name in CONTEXTS}
    post_mt, post_doc, post_tf = _merge_postings(post_pieces, n_mt, n_docs, spool=spool)
    del post_pieces
    pend_hash, pend_doc = _merge_pending(pend_pieces, spool=spool)

    # ---- pairs: signed sums by (a, b); mapping keeps a < b and the order (monotonic ids)
    pieces = [(_Rows(p.pair_a, pm, p.pair_b, p.pair_adj, p.pair_ctx), sign) for (p, sign, _), pm in zip(parts, pmaps)]
    pair_a, pair_b, adj, ctx = _sum_pairs(pieces, n_mt, spool=spool)
    del pieces

    # ---- surfaces: signed sums by string
    s_union, s_maps = union_sorted([p.surfaces for p, _, _ in parts])
    s_count = np.zeros(len(s_union), dtype=np.int64)
    s_stem = np.full(len(s_union), -1, dtype=np.int64)
    for (p, sign, _), sm, idx in zip(parts, smaps, s_maps):
        np.add.at(s_count, idx, sign * p.surface_count)
        s_stem[idx] = s_new[sm[p.surface_stem]] if len(idx) else s_stem[idx]
    s_live = np.flatnonzero(s_count > 0)

    return Partial(
        n_docs=n_docs, stems=[union[i] for i in s_keep.tolist()], stem_hash=u_hash[s_keep],
        mt_words=new_words[order].astype(np.int32), mt_hash=uniq[alive[order]], mt_counts=total[alive[order]],
        post_mt=post_mt, post_doc=post_doc, post_tf=post_tf,
        pair_a=pair_a, pair_b=pair_b, pair_adj=adj, pair_ctx=ctx,
        pend_hash=pend_hash, pend_doc=pend_doc, surfaces=[s_union[i] for i in s_live.tolist()],
        surface_stem=s_stem[s_live].astype(np.int32), surface_count=s_count[s_live], doc_len=doc_len,
        labels=labels)


class RowKeys:
    """The row id of every entry of a CSR table (``np.repeat(arange(rows), diff(indptr))``), made a
    range at a time: a model's partial in an update reads its postings and pairs by row without
    a 4-byte key per entry (192 MB for the pairs at 1M)."""

    dtype = np.dtype(np.int32)
    ndim = 1

    def __init__(self, indptr: np.ndarray):
        self.indptr = np.asarray(indptr, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indptr[-1])

    @property
    def shape(self) -> tuple:
        return (len(self),)

    def searchsorted(self, rows) -> np.ndarray:  # the first entry of each row ("left")
        return self.indptr[np.asarray(rows, dtype=np.int64)]

    def __getitem__(self, key):
        lo, hi, step = key.indices(len(self))
        if step != 1:
            raise IndexError("RowKeys reads contiguous ranges")
        if hi <= lo:
            return np.zeros(0, dtype=self.dtype)
        r0 = int(np.searchsorted(self.indptr, lo, "right")) - 1
        r1 = int(np.searchsorted(self.indptr, hi, "left"))
        counts = np.diff(np.clip(self.indptr[r0:r1 + 1], lo, hi)).astype(np.int64)
        return np.repeat(np.arange(r0, r1, dtype=self.dtype), counts)


class _Rows:
    """Rows of one partial sorted by a local multitoken id (``keys``), read one range of merged
    ids at a time: ``ids`` maps local ids to merged ones (-1: gone), monotonically, so a merged
    range is one contiguous run of rows, found by binary search. The rows may be memory-mapped
    (a spilled shard): only the run being merged is read, and :meth:`release` drops its pages."""

    def __init__(self, keys: np.ndarray, ids: np.ndarray, *columns):
        self.keys, self.ids, self.columns = keys, ids, columns
        self.mono = np.maximum.accumulate(ids) if len(ids) else ids

    def per_key(self, n_keys: int) -> np.ndarray:
        # rows per local id: counted a range at a time (a search per id cost 13 s of an add at 1M)
        runs = np.zeros(len(self.ids), dtype=np.int64)
        for s in range(0, len(self.keys), 1 << 22):
            part = np.asarray(self.keys[s:s + (1 << 22)], dtype=np.int64)  # sorted: ids part[0]..part[-1]
            got = np.bincount(part - part[0])
            runs[part[0]:part[0] + len(got)] += got
        ok = self.ids >= 0
        return np.bincount(self.ids[ok], weights=runs[ok], minlength=n_keys).astype(np.int64)[:n_keys]

    def run(self, lo: int, hi: int):
        l_lo, l_hi = np.searchsorted(self.mono, [lo, hi])
        # the bounds in the keys' own dtype: an int64 bound makes numpy convert all the keys (an
        # int32 copy of the model's 48 M pairs per range: 12 s of an add at 1M)
        at = np.array([l_lo, l_hi]).astype(self.keys.dtype)
        s, e = (int(x) for x in self.keys.searchsorted(at))
        return self.ids[np.asarray(self.keys[s:e], dtype=np.int64)], [np.asarray(c[s:e]) for c in self.columns]

    def release(self) -> None:
        import mmap

        for arr in (self.keys, *self.columns):
            base = arr
            while base is not None and not isinstance(base, np.memmap):
                base = getattr(base, "base", None)
            mm = getattr(base, "_mmap", None)
            if mm is not None and hasattr(mm, "madvise"):
                mm.madvise(mmap.MADV_DONTNEED)


class _Pieces:
    """The in-memory counterpart of :class:`spill.Appender`: pieces concatenated at the end."""

    def __init__(self, dtype, tail: tuple = ()):
        self.dtype, self.tail = np.dtype(dtype), tuple(tail)
        self.pieces: list[np.ndarray] = []

    def add(self, piece: np.ndarray) -> None:
        self.pieces.append(np.asarray(piece, dtype=self.dtype))

    def finish(self) -> np.ndarray:
        if not self.pieces:
            return np.zeros((0, *self.tail), dtype=self.dtype)
        return self.pieces[0] if len(self.pieces) == 1 else np.concatenate(self.pieces)


def _sink(spool: Path | None, name: str, dtype, tail: tuple = ()):
    """Where a table is written a range at a time: a spooled file, or pieces in memory."""
    return _Pieces(dtype, tail) if spool is None else spill.Appender(Path(spool) / f"{name}.npy", dtype, tail)


def _kept(spool: Path | None, name: str, arr: np.ndarray) -> np.ndarray:
    """A finished table: written to the spool and memory-mapped back (its memory freed), or as is."""
    return arr if spool is None or arr.size == 0 else spill.save(Path(spool) / f"{name}.npy", arr)


def _chunks(pieces: list, n_keys: int, rows_per_chunk: int | None):
    """Merged-id ranges [lo, hi) of about ``rows_per_chunk`` rows each (None: :data:`RANGE_ROWS`)."""
    rows_per_chunk = rows_per_chunk or RANGE_ROWS
    per_key = np.zeros(n_keys, dtype=np.int64)
    for piece in pieces:
        per_key += piece.per_key(n_keys)
    cum = np.cumsum(per_key)
    if not len(cum) or cum[-1] == 0:
        return []
    cuts = np.searchsorted(cum, np.arange(rows_per_chunk, int(cum[-1]), rows_per_chunk), side="right")
    bounds = np.unique(np.concatenate(([0], cuts, [n_keys])))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _merge_postings(pieces: list, n_mt: int, n_docs: int, rows_per_chunk: int | None = None,
                    spool: Path | None = None):
    """k-way merge of postings, each piece sorted by (multitoken, entity), one multitoken range at a time.

    A piece is ``(_Rows(post_mt, ids, post_doc, post_tf), doc_map)``; entities mapped to -1 leave.
    """
    out_mt, out_doc = _sink(spool, "merged-post_mt", np.int32), _sink(spool, "merged-post_doc", np.int32)
    out_tf = _sink(spool, "merged-post_tf", np.uint16, (F,))
    for lo, hi in _chunks([r for r, _ in pieces], n_mt, rows_per_chunk):
        got = []
        for rows, dmap in pieces:
            mt, (doc, tf) = rows.run(lo, hi)
            doc = dmap[doc]
            keep = doc >= 0
            if (mt[keep] < 0).any():
                raise ValueError("a posting of a multitoken whose counts were subtracted away")
            got.append((mt[keep], doc[keep], tf[keep]))
        big = int(np.argmax([len(g[0]) for g in got])) if got else 0
        small = sum(len(g[0]) for g in got) - (len(got[big][0]) if got else 0)
        if got and small * 8 < len(got[big][0]):  # a model's postings and a change's: the change inserted
            b_mt, b_doc, b_tf = got.pop(big)
            if small:
                mt = np.concatenate([g[0] for g in got])
                doc = np.concatenate([g[1] for g in got])
                tf = np.concatenate([g[2] for g in got])
                o = stable_argsort((mt - lo) * max(n_docs, 1) + doc)  # keys distinct: an entity comes from one part
                at = np.searchsorted((b_mt - lo) * max(n_docs, 1) + b_doc, (mt[o] - lo) * max(n_docs, 1) + doc[o])
                b_mt, b_doc = np.insert(b_mt, at, mt[o]), np.insert(b_doc, at, doc[o])
                b_tf = np.insert(b_tf, at, tf[o], axis=0)
            out_mt.add(b_mt)
            out_doc.add(b_doc)
            out_tf.add(b_tf)
            del b_mt, b_doc, b_tf
        else:
            mt = np.concatenate([g[0] for g in got])
            doc = np.concatenate([g[1] for g in got])
            tf = np.concatenate([g[2] for g in got])
            o = stable_argsort((mt - lo) * max(n_docs, 1) + doc)
            out_mt.add(mt[o])
            out_doc.add(doc[o])
            out_tf.add(tf[o])
            del mt, doc, tf, o
        del got
        for rows, _ in pieces:
            rows.release()
    return out_mt.finish(), out_doc.finish(), out_tf.finish()


def _splice_sorted_pairs(h: np.ndarray, d: np.ndarray, hs: list, ds: list):
    """``(h, d)`` (sorted by (h, d)) with the few more pairs of ``hs``/``ds`` inserted in that order:
    what ``np.lexsort`` of all of them gives (equal pairs are equal values), by search and copy."""
    if not sum(len(x) for x in hs):
        return h, d
    s_h, s_d = np.concatenate(hs), np.concatenate(ds)
    o = np.lexsort((s_d, s_h))
    s_h, s_d = s_h[o], s_d[o]
    pos = np.searchsorted(h, s_h, "left")
    right = np.searchsorted(h, s_h, "right")
    for j in np.flatnonzero(right > pos).tolist():  # hashes both have: by entity within the run (short runs)
        pos[j] += int(np.searchsorted(d[pos[j]:right[j]], s_d[j], "left"))
    return np.insert(h, pos, s_h), np.insert(d, pos, s_d)


def _merge_pending(pieces: list, rows_per_chunk: int | None = None, spool: Path | None = None):
    """The pending occurrences of the entities kept, sorted by (hash, entity), one hash range at a time.

    A piece is ``(pend_hash, pend_doc, doc_map)``, sorted by (hash, entity) within the piece;
    entities mapped to -1 leave. Hashes are uniform over 64 bits, so equal ranges of values
    hold about equal numbers of occurrences.
    """
    total = sum(len(h) for h, _, _ in pieces)
    n_ranges = max(1, -(-total // (rows_per_chunk or RANGE_ROWS)))
    bounds = [np.uint64(r * (1 << 64) // n_ranges) for r in range(1, n_ranges)]
    out_h, out_d = _sink(spool, "merged-pend_hash", np.uint64), _sink(spool, "merged-pend_doc", np.int32)
    for r in range(n_ranges):
        hs, ds = [], []
        for h, d, dmap in pieces:
            lo = 0 if r == 0 else int(np.searchsorted(h, bounds[r - 1]))
            hi = len(h) if r == n_ranges - 1 else int(np.searchsorted(h, bounds[r]))
            doc = dmap[np.asarray(d[lo:hi])]
            k = doc >= 0
            hs.append(np.asarray(h[lo:hi])[k])
            ds.append(doc[k])
        if hs:
            big = int(np.argmax([len(x) for x in hs]))
            small = sum(len(x) for x in hs) - len(hs[big])
            if small * 8 < len(hs[big]):  # a model's occurrences and a change's: spliced, the large run not sorted
                h, d = _splice_sorted_pairs(hs.pop(big), ds.pop(big), hs, ds)
            else:
                h, d = np.concatenate(hs), np.concatenate(ds)
                o = np.lexsort((d, h))
                h, d = h[o], d[o]
            out_h.add(h)
            out_d.add(d)
        spill.release(*(a for h, d, _ in pieces for a in (h, d)))
    return out_h.finish(), out_d.finish()


def _sorted_sums(key: np.ndarray, *values: np.ndarray):
    """Distinct keys, ascending, with each value column summed over equal keys."""
    o = np.argsort(key, kind="stable")
    key = key[o]
    first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    return (key[first], *(np.add.reduceat(v[o], first) for v in values))


def _splice_sums(key: np.ndarray, adj: np.ndarray, ctx: np.ndarray, keys: list, adjs: list, ctxs: list):
    """What :func:`_sorted_sums` gives for a large run of distinct ascending keys (the model's pairs)
    and a few more (a change's): the few summed and sorted alone, then added at the keys they share
    and inserted where they are new (a search and a copy of the large run, no sort of it)."""
    s_key, s_adj, s_ctx = _sorted_sums(np.concatenate(keys), np.concatenate(adjs), np.concatenate(ctxs))
    pos = np.searchsorted(key, s_key)
    hit = pos < len(key)
    hit[hit] = key[pos[hit]] == s_key[hit]
    adj, ctx = adj.copy(), ctx.copy()
    adj[pos[hit]] += s_adj[hit]
    ctx[pos[hit]] += s_ctx[hit]
    new = ~hit
    return (np.insert(key, pos[new], s_key[new]), np.insert(adj, pos[new], s_adj[new]),
            np.insert(ctx, pos[new], s_ctx[new]))


def _sum_pairs(pieces: list, n_mt: int, rows_per_chunk: int | None = None, spool: Path | None = None):
    """Signed sums of pairs, each piece sorted by (a, b), one range of a at a time (bounded
    temporaries); pairs whose counts sum to zero leave the table.

    A piece is ``(_Rows(pair_a, ids, pair_b, adj, ctx), sign)``.
    """
    outs = [_sink(spool, f"merged-pair_{name}", dtype)
            for name, dtype in (("a", np.int32), ("b", np.int32), ("adj", np.uint32), ("ctx", np.uint32))]
    for lo, hi in _chunks([r for r, _ in pieces], n_mt, rows_per_chunk):
        keys, adjs, ctxs = [], [], []
        for rows, sign in pieces:
            a, (b, adj, ctx) = rows.run(lo, hi)
            b = rows.ids[np.asarray(b, dtype=np.int64)]
            ok = (a >= 0) & (b >= 0)
            keys.append((a[ok] - lo) * max(n_mt, 1) + b[ok])
            adjs.append(sign * adj[ok].astype(np.int64))
            ctxs.append(sign * ctx[ok].astype(np.int64))
        big = int(np.argmax([len(k) for k in keys]))
        small = sum(len(k) for k in keys) - len(keys[big])
        if small and small * 8 < len(keys[big]):  # a model and a change: the change spliced into it
            key, adj, ctx = _splice_sums(keys.pop(big), adjs.pop(big), ctxs.pop(big), keys, adjs, ctxs)
        else:
            key, adj, ctx = np.concatenate(keys), np.concatenate(adjs), np.concatenate(ctxs)
            if small:  # one piece alone is sorted and distinct already
                key, adj, ctx = _sorted_sums(key, adj, ctx)
        if (adj < 0).any() or (ctx < 0).any():
            raise ValueError("a merge subtracted pair counts it never had: the model and the change disagree")
        live = (adj > 0) | (ctx > 0)
        a, b = np.divmod(key[live], max(n_mt, 1))
        for out, col in zip(outs, (a + lo, b, adj[live], ctx[live])):
            out.add(col)
        del keys, adjs, ctxs, key, adj, ctx, a, b, live
        for rows, _ in pieces:
            rows.release()
    return tuple(out.finish() for out in outs)


def _merge_labels(parts: list, n_docs: int):
    """Entity → labels (CSR over sorted label strings) of the new corpus, from each part's own CSR."""
    names, relabels = union_sorted([lab[0] for lab, _ in parts])
    lens = np.zeros(n_docs, dtype=np.int64)
    moves = []
    for ((_, ptr, ids), dmap), relabel in zip(parts, relabels):
        dmap = np.asarray(dmap, dtype=np.int64)
        placed = np.flatnonzero(dmap >= 0)
        n = (ptr[placed + 1] - ptr[placed]).astype(np.int64)
        lens[dmap[placed]] = n
        moves.append((dmap[placed], ptr[placed].astype(np.int64), n, relabel, ids))
    indptr = np.concatenate(([0], np.cumsum(lens)))
    out = np.zeros(int(indptr[-1]), dtype=np.int64)
    for dst_doc, src_start, n, relabel, ids in moves:
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        src = np.repeat(src_start, n) + within
        out[np.repeat(indptr[dst_doc], n) + within] = relabel[np.asarray(ids, dtype=np.int64)[src]]
    used = np.unique(out)  # labels no entity carries any more (after a delete) leave the table
    return [names[i] for i in used.tolist()], indptr, np.searchsorted(used, out).astype(np.int32)


# --------------------------------------------------------------------------- assemble


def _indptr(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """:func:`csr_from_sorted_rows` a piece at a time (``rows`` may be memory-mapped)."""
    counts = np.zeros(n_rows, dtype=np.int64)
    for _, piece in spill.chunks(rows, RANGE_ROWS):
        counts += np.bincount(piece, minlength=n_rows)[:n_rows]
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def _transpose(keys: np.ndarray, indptr: np.ndarray, payload: np.ndarray | None = None):
    """The stable counting sort of ``keys`` (whose CSR row pointers are ``indptr``), a piece at a
    time: the positions in key order (``np.argsort(keys, kind="stable")``), and ``payload`` taken
    in that order. Linear time; the outputs are the only arrays of the keys' length in memory."""
    n = len(keys)
    order = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
    moved = None if payload is None else np.empty(n, dtype=payload.dtype)
    cursor = np.asarray(indptr[:-1], dtype=np.int64).copy()  # next free slot of each key
    for lo, piece in spill.chunks(keys, RANGE_ROWS):
        o = stable_argsort(piece)
        k = np.asarray(piece, dtype=np.int64)[o]
        run = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
        first = np.repeat(run, np.diff(np.append(run, len(k))))  # each entry's first of its key
        pos = cursor[k] + (np.arange(len(k)) - first)
        order[pos] = o + lo
        if moved is not None and payload is not None:
            moved[pos] = np.asarray(payload[lo:lo + len(k)])[o]
            spill.release(payload)
        cursor += np.bincount(k, minlength=len(cursor))[:len(cursor)]
        del o, k, run, first, pos
    return order, moved


def _count_positive(arr: np.ndarray) -> int:
    return sum(int(np.count_nonzero(piece)) for _, piece in spill.chunks(arr))


def _context(p: Partial, post_indptr: np.ndarray, name: str, spool: Path | None, rows_per_chunk: int | None = None):
    """The context table ``name`` (multitoken -> label -> summed term frequency outside metadata):
    ctx = P @ L, P (multitoken × entity) the term frequencies, L (entity × label) the labels,
    computed one range of multitokens (about ``rows_per_chunk`` postings) at a time."""
    from scipy import sparse

    n_docs, n_mt = p.n_docs, len(post_indptr) - 1
    labels, d_indptr, d_ids = p.labels[name]
    labels_matrix = sparse.csr_array((np.ones(len(d_ids), dtype=np.int64), d_ids, d_indptr),
                                     shape=(n_docs, max(len(labels), 1)))
    out_labels = _sink(spool, f"ctx_{name}_labels", np.int32)
    out_counts = _sink(spool, f"ctx_{name}_counts", np.int64)
    indptr = np.zeros(n_mt + 1, dtype=np.int64)
    totals = np.zeros(len(labels))  # float64 sums of integers: exact (below 2**53)
    step = rows_per_chunk or RANGE_ROWS
    cuts = np.searchsorted(post_indptr, np.arange(step, int(post_indptr[-1]), step))
    bounds = np.unique(np.concatenate(([0], cuts, [n_mt]))).tolist()
    done = 0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        s, e = int(post_indptr[lo]), int(post_indptr[hi])
        tf_total = np.asarray(p.post_tf[s:e, :4]).sum(axis=1, dtype=np.int64)  # metadata is not context
        rows = sparse.csr_array((tf_total, np.asarray(p.post_doc[s:e]), post_indptr[lo:hi + 1] - s),
                                shape=(hi - lo, n_docs))
        ctx = rows @ labels_matrix
        ctx.sort_indices()
        indptr[lo + 1:hi + 1] = done + ctx.indptr[1:]
        done += int(ctx.indptr[-1])
        out_labels.add(ctx.indices)
        out_counts.add(ctx.data)
        if len(totals):
            totals += np.bincount(ctx.indices, weights=ctx.data, minlength=len(totals))
        del tf_total, rows, ctx
        spill.release(p.post_tf, p.post_doc)
    empty = len(labels) == 0  # no index for a context the corpus leaves empty (TableSet.context)
    return {f"ctx_{name}_indptr": indptr[:1] if empty else indptr,
            f"ctx_{name}_labels": out_labels.finish(), f"ctx_{name}_counts": out_counts.finish(),
            f"ctx_{name}_totals": totals.astype(np.int64),
            f"doc_{name}_indptr": d_indptr[:1] if empty else d_indptr, f"doc_{name}_labels": d_ids}


def assemble(p: Partial, spool: Path | None = None):
    """The stored tables (see tables/schema.py) of a partial that covers a whole corpus.

    Every table is computed a range at a time; with ``spool`` (a folder), the largest ones are
    written there as they are made and returned memory-mapped (the bounded-memory build), so no
    more than one of them is in memory at once.
    """
    n_docs, n_mt = p.n_docs, len(p.mt_words)
    mt_len = (p.mt_words >= 0).sum(axis=1)
    post_indptr = _indptr(p.post_mt, n_mt)
    # forward index (entity → its postings), for pseudo-relevance feedback and the taxonomy
    fwd_indptr = _indptr(p.post_doc, n_docs)
    fwd_post, fwd_mt = _transpose(p.post_doc, fwd_indptr, payload=p.post_mt)
    arrays = {
        "mt_words": p.mt_words, "mt_counts": p.mt_counts,
        "post_indptr": post_indptr, "post_docs": p.post_doc, "post_tf": p.post_tf,
        "doc_len": p.doc_len.astype(np.uint32),
        "fwd_indptr": fwd_indptr, "fwd_mt": _kept(spool, "fwd_mt", fwd_mt.astype(np.int32, copy=False)),
        "fwd_post": _kept(spool, "fwd_post", fwd_post),
    }
    del fwd_post, fwd_mt
    # pairs: CSR by the smaller id, and the transposed index (the entries by the larger id)
    arrays["pair_indptr"] = _indptr(p.pair_a, n_mt)
    arrays["pair_cols"] = p.pair_b if p.pair_b.dtype == np.int32 else np.asarray(p.pair_b, dtype=np.int32)
    arrays["pair_adj"], arrays["pair_ctx"] = p.pair_adj, p.pair_ctx
    arrays["pair_t_indptr"] = _indptr(p.pair_b, n_mt)
    arrays["pair_t_order"] = _kept(spool, "pair_t_order", _transpose(p.pair_b, arrays["pair_t_indptr"])[0])
    arrays.update({"stem_hash": p.stem_hash, "surface_stem": p.surface_stem, "surface_count": p.surface_count,
                   "pend_hash": p.pend_hash, "pend_doc": p.pend_doc})
    strings = {"stems": p.stems, "surfaces": p.surfaces,
               "display": display_words(p.stems, p.surface_stem, p.surface_count, p.surfaces)}

    # context tables: multitoken → label → summed term frequency
    for name in CONTEXTS:
        arrays.update(_context(p, post_indptr, name, spool))
        strings[f"labels_{name}"] = p.labels[name][0]

    # sorted n-gram table (multitokens of two or more words)
    multi = np.flatnonzero(mt_len >= 2)
    sng_hash = hash_rows(sort_rows(p.mt_words[multi]))
    so = np.argsort(sng_hash, kind="stable")
    arrays["sng_hash"] = sng_hash[so]
    arrays["sng_mt"] = multi[so].astype(np.int32)

    stats = {
        "entities": n_docs,
        "words": int(p.doc_len.sum()),
        "stems": len(p.stems),
        "multitokens": int(n_mt),
        "multitokens_by_length": {str(n): int((mt_len == n).sum()) for n in range(1, 5) if (mt_len == n).any()},
        "postings": len(p.post_doc),
        "pairs": len(p.pair_adj),
        "adjacent_pairs": _count_positive(p.pair_adj),
        "contextual_pairs": _count_positive(p.pair_ctx),
    }
    return Tables(arrays=arrays, strings=strings, stats=stats)
