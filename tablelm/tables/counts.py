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

from dataclasses import dataclass, field

import numpy as np

from .hashing import WIDTH, hash_rows, sort_rows
from .schema import CONTEXTS, FIELDS
from .sorting import stable_argsort

F = len(FIELDS)


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
    post_mt: np.ndarray  # int32, postings sorted by (multitoken, entity)
    post_doc: np.ndarray  # int32
    post_tf: np.ndarray  # (postings, F) uint16
    pair_a: np.ndarray  # int32, pairs sorted by (a, b), a < b
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


def pair_tables(n_mt: int, a, b, adj, ctx) -> dict:
    """The stored pair tables from canonical pairs (sorted by (a, b), a < b): CSR by the smaller
    id, and the transposed index (CSR → CSC of the entry numbers, linear time)."""
    from scipy import sparse

    indptr = csr_from_sorted_rows(a, n_mt)
    nnz = len(b)
    t = sparse.csr_array((np.arange(nnz, dtype=np.int64 if nnz >= 2**31 else np.int32),
                          np.asarray(b, dtype=np.int32), indptr), shape=(n_mt, n_mt)).tocsc()
    return {"pair_indptr": indptr, "pair_cols": np.asarray(b, dtype=np.int32), "pair_adj": adj, "pair_ctx": ctx,
            "pair_t_indptr": t.indptr.astype(np.int64), "pair_t_order": t.data}


def labels_csr(values_per_doc: list[list[str]]):
    """Doc → label ids (CSR) over the sorted set of distinct labels."""
    labels = sorted({v for vs in values_per_doc for v in vs})
    index = {v: i for i, v in enumerate(labels)}
    lens = np.fromiter((len(vs) for vs in values_per_doc), dtype=np.int64, count=len(values_per_doc))
    ids = np.fromiter((index[v] for vs in values_per_doc for v in vs), dtype=np.int32, count=int(lens.sum()))
    return labels, np.concatenate(([0], np.cumsum(lens))), ids


class HashCollision(RuntimeError):
    """Two different multitokens with one stable hash (astronomically rare; reported, never hidden)."""


# --------------------------------------------------------------------------- merge


def _sorted_key_rows(words: np.ndarray) -> np.ndarray:
    """The order of multitoken rows by (length, words): the canonical multitoken order."""
    lens = (words >= 0).sum(axis=1)
    return np.lexsort(tuple(words[:, j] for j in range(WIDTH - 1, -1, -1)) + (lens,))


def merge(parts: list, n_docs: int) -> Partial:
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
    """
    # ---- stems: the union of the strings, sorted
    union = sorted(set().union(*(p.stems for p, _, _ in parts)))
    at = {s: i for i, s in enumerate(union)}
    smaps = [np.fromiter((at[s] for s in p.stems), dtype=np.int64, count=len(p.stems)) for p, _, _ in parts]
    u_hash = np.zeros(len(union), dtype=np.uint64)
    for (p, _, _), sm in zip(parts, smaps):
        u_hash[sm] = p.stem_hash

    # ---- multitokens: the union of the hashes; each distinct hash must have one word tuple
    words = np.vstack([np.where(p.mt_words >= 0, sm[np.maximum(p.mt_words, 0)], -1)
                       for (p, _, _), sm in zip(parts, smaps)]) if parts else np.zeros((0, WIDTH), np.int64)
    hashes = np.concatenate([p.mt_hash for p, _, _ in parts])
    uniq, inv = np.unique(hashes, return_inverse=True)
    first = np.full(len(uniq), -1, dtype=np.int64)
    first[inv[::-1]] = np.arange(len(inv))[::-1]
    if not (words == words[first][inv]).all():
        raise HashCollision("two different multitokens share one 64-bit hash (about one chance in 10^9 per "
                            "model); rebuild in one shard: tablelm build with a larger --memory")
    total = np.zeros((len(uniq), F), dtype=np.int64)
    offsets = np.cumsum([0] + [len(p.mt_hash) for p, _, _ in parts])
    for (p, sign, _), lo in zip(parts, offsets):
        np.add.at(total, inv[lo:lo + len(p.mt_hash)], sign * p.mt_counts)
    if (total < 0).any():
        raise ValueError("a merge subtracted counts it never had: the model and the change disagree")
    alive = np.flatnonzero(total.sum(axis=1) > 0)
    u_words = words[first[alive]]
    # the stems that survive: those of the single words left (every word of a surviving
    # multitoken is itself a surviving single word)
    single = u_words[:, 1] < 0
    s_keep = np.sort(u_words[single, 0])
    s_new = np.full(len(union), -1, dtype=np.int64)
    s_new[s_keep] = np.arange(len(s_keep))
    new_words = np.where(u_words >= 0, s_new[np.maximum(u_words, 0)], -1)
    order = _sorted_key_rows(new_words)
    mt_of_uniq = np.full(len(uniq), -1, dtype=np.int64)
    mt_of_uniq[alive[order]] = np.arange(len(order))
    n_mt = len(order)
    pmaps = [mt_of_uniq[inv[lo:lo + len(p.mt_hash)]] for (p, _, _), lo in zip(parts, offsets)]

    # ---- postings and pending occurrences of the entities kept
    post_pieces = []
    pend_h, pend_d = [], []
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
        k = dmap[p.pend_doc] >= 0
        pend_h.append(p.pend_hash[k])
        pend_d.append(dmap[p.pend_doc[k]])
        placed = np.flatnonzero(dmap >= 0)
        doc_len[dmap[placed]] = p.doc_len[placed]
        if (placed_from[dmap[placed]] >= 0).any():
            raise ValueError("two merged partials bring an entity to the same position")
        placed_from[dmap[placed]] = 1
    if (placed_from < 0).any():
        raise ValueError("the merged partials leave entity positions empty")
    labels = {name: _merge_labels([(p.labels[name], d) for p, sign, d in parts if sign > 0], n_docs)
              for name in CONTEXTS}
    post_mt, post_doc, post_tf = _merge_postings(post_pieces, n_mt, n_docs)
    del post_pieces

    # ---- pairs: signed sums by (a, b); mapping keeps a < b and the order (monotonic ids)
    pieces = [(_Rows(p.pair_a, pm, p.pair_b, p.pair_adj, p.pair_ctx), sign) for (p, sign, _), pm in zip(parts, pmaps)]
    pair_a, pair_b, adj, ctx = _sum_pairs(pieces, n_mt)
    del pieces

    # ---- surfaces: signed sums by string
    s_union = sorted(set().union(*(p.surfaces for p, _, _ in parts)))
    s_at = {s: i for i, s in enumerate(s_union)}
    s_count = np.zeros(len(s_union), dtype=np.int64)
    s_stem = np.full(len(s_union), -1, dtype=np.int64)
    for (p, sign, _), sm in zip(parts, smaps):
        idx = np.fromiter((s_at[s] for s in p.surfaces), dtype=np.int64, count=len(p.surfaces))
        np.add.at(s_count, idx, sign * p.surface_count)
        s_stem[idx] = s_new[sm[p.surface_stem]] if len(idx) else s_stem[idx]
    s_live = np.flatnonzero(s_count > 0)

    ph = np.concatenate(pend_h) if pend_h else np.zeros(0, np.uint64)
    pd = np.concatenate(pend_d) if pend_d else np.zeros(0, np.int64)
    o = np.lexsort((pd, ph))
    return Partial(
        n_docs=n_docs, stems=[union[i] for i in s_keep.tolist()], stem_hash=u_hash[s_keep],
        mt_words=new_words[order].astype(np.int32), mt_hash=uniq[alive[order]], mt_counts=total[alive[order]],
        post_mt=post_mt.astype(np.int32), post_doc=post_doc.astype(np.int32), post_tf=post_tf,
        pair_a=pair_a.astype(np.int32), pair_b=pair_b.astype(np.int32), pair_adj=adj, pair_ctx=ctx,
        pend_hash=ph[o], pend_doc=pd[o].astype(np.int32), surfaces=[s_union[i] for i in s_live.tolist()],
        surface_stem=s_stem[s_live].astype(np.int32), surface_count=s_count[s_live], doc_len=doc_len,
        labels=labels)


class _Rows:
    """Rows of one partial sorted by a local multitoken id (``keys``), read one range of merged
    ids at a time: ``ids`` maps local ids to merged ones (-1: gone), monotonically, so a merged
    range is one contiguous run of rows, found by binary search. The rows may be memory-mapped
    (a spilled shard): only the run being merged is read, and :meth:`release` drops its pages."""

    def __init__(self, keys: np.ndarray, ids: np.ndarray, *columns):
        self.keys, self.ids, self.columns = keys, ids, columns
        self.mono = np.maximum.accumulate(ids) if len(ids) else ids

    def per_key(self, n_keys: int) -> np.ndarray:
        runs = np.diff(np.searchsorted(self.keys, np.arange(len(self.ids) + 1)))
        ok = self.ids >= 0
        return np.bincount(self.ids[ok], weights=runs[ok], minlength=n_keys).astype(np.int64)[:n_keys]

    def run(self, lo: int, hi: int):
        l_lo, l_hi = np.searchsorted(self.mono, [lo, hi])
        s, e = int(np.searchsorted(self.keys, l_lo)), int(np.searchsorted(self.keys, l_hi))
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


def _chunks(pieces: list, n_keys: int, rows_per_chunk: int):
    """Merged-id ranges [lo, hi) of about ``rows_per_chunk`` rows each."""
    per_key = np.zeros(n_keys, dtype=np.int64)
    for piece in pieces:
        per_key += piece.per_key(n_keys)
    cum = np.cumsum(per_key)
    if not len(cum) or cum[-1] == 0:
        return []
    cuts = np.searchsorted(cum, np.arange(rows_per_chunk, int(cum[-1]), rows_per_chunk), side="right")
    bounds = np.unique(np.concatenate(([0], cuts, [n_keys])))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _merge_postings(pieces: list, n_mt: int, n_docs: int, rows_per_chunk: int = 1 << 22):
    """k-way merge of postings, each piece sorted by (multitoken, entity), one multitoken range at a time.

    A piece is ``(_Rows(post_mt, ids, post_doc, post_tf), doc_map)``; entities mapped to -1 leave.
    """
    out_mt, out_doc, out_tf = [], [], []
    for lo, hi in _chunks([r for r, _ in pieces], n_mt, rows_per_chunk):
        got = []
        for rows, dmap in pieces:
            mt, (doc, tf) = rows.run(lo, hi)
            doc = dmap[doc]
            keep = doc >= 0
            if (mt[keep] < 0).any():
                raise ValueError("a posting of a multitoken whose counts were subtracted away")
            got.append((mt[keep], doc[keep], tf[keep]))
        mt = np.concatenate([g[0] for g in got])
        doc = np.concatenate([g[1] for g in got])
        tf = np.concatenate([g[2] for g in got])
        o = stable_argsort((mt - lo) * max(n_docs, 1) + doc)
        out_mt.append(mt[o].astype(np.int32))
        out_doc.append(doc[o].astype(np.int32))
        out_tf.append(tf[o])
        for rows, _ in pieces:
            rows.release()
    if not out_mt:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, F), np.uint16)
    return np.concatenate(out_mt), np.concatenate(out_doc), np.concatenate(out_tf)


def _sum_pairs(pieces: list, n_mt: int, rows_per_chunk: int = 1 << 22):
    """Signed sums of pairs, each piece sorted by (a, b), one range of a at a time (bounded
    temporaries); pairs whose counts sum to zero leave the table.

    A piece is ``(_Rows(pair_a, ids, pair_b, adj, ctx), sign)``.
    """
    outs = []
    for lo, hi in _chunks([r for r, _ in pieces], n_mt, rows_per_chunk):
        keys, adjs, ctxs = [], [], []
        for rows, sign in pieces:
            a, (b, adj, ctx) = rows.run(lo, hi)
            b = rows.ids[np.asarray(b, dtype=np.int64)]
            ok = (a >= 0) & (b >= 0)
            keys.append((a[ok] - lo) * max(n_mt, 1) + b[ok])
            adjs.append(sign * adj[ok].astype(np.int64))
            ctxs.append(sign * ctx[ok].astype(np.int64))
        key, adj, ctx = np.concatenate(keys), np.concatenate(adjs), np.concatenate(ctxs)
        if sum(len(k) > 0 for k in keys) > 1:  # one piece alone is sorted and distinct already
            o = np.argsort(key, kind="stable")
            key, adj, ctx = key[o], adj[o], ctx[o]
            first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
            key, adj, ctx = key[first], np.add.reduceat(adj, first), np.add.reduceat(ctx, first)
        if (adj < 0).any() or (ctx < 0).any():
            raise ValueError("a merge subtracted pair counts it never had: the model and the change disagree")
        live = (adj > 0) | (ctx > 0)
        a, b = np.divmod(key[live], max(n_mt, 1))
        outs.append(((a + lo).astype(np.int32), b.astype(np.int32), adj[live].astype(np.uint32),
                     ctx[live].astype(np.uint32)))
        for rows, _ in pieces:
            rows.release()
    if not outs:
        return (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.uint32), np.zeros(0, np.uint32))
    return tuple(np.concatenate(col) for col in zip(*outs))


def _merge_labels(parts: list, n_docs: int):
    """Entity → labels (CSR over sorted label strings) of the new corpus, from each part's own CSR."""
    names = sorted(set().union(*(lab[0] for lab, _ in parts)))
    at = {s: i for i, s in enumerate(names)}
    lens = np.zeros(n_docs, dtype=np.int64)
    moves = []
    for (p_names, ptr, ids), dmap in parts:
        dmap = np.asarray(dmap, dtype=np.int64)
        placed = np.flatnonzero(dmap >= 0)
        n = (ptr[placed + 1] - ptr[placed]).astype(np.int64)
        lens[dmap[placed]] = n
        relabel = np.fromiter((at[s] for s in p_names), dtype=np.int64, count=len(p_names))
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


def assemble(p: Partial):
    """The stored tables (see tables/schema.py) of a partial that covers a whole corpus."""
    from scipy import sparse

    n_docs, n_mt = p.n_docs, len(p.mt_words)
    mt_len = (p.mt_words >= 0).sum(axis=1)
    post_indptr = csr_from_sorted_rows(p.post_mt, n_mt)
    # forward index (entity → its postings), for pseudo-relevance feedback and the taxonomy
    fwd_post = stable_argsort(p.post_doc).astype(np.int64)
    arrays = {
        "mt_words": p.mt_words, "mt_counts": p.mt_counts,
        "post_indptr": post_indptr, "post_docs": p.post_doc, "post_tf": p.post_tf,
        "doc_len": p.doc_len.astype(np.uint32),
        "fwd_indptr": csr_from_sorted_rows(p.post_doc[fwd_post], n_docs),
        "fwd_mt": p.post_mt[fwd_post].astype(np.int32), "fwd_post": fwd_post,
        **pair_tables(n_mt, p.pair_a, p.pair_b, p.pair_adj, p.pair_ctx),
        "stem_hash": p.stem_hash, "surface_stem": p.surface_stem, "surface_count": p.surface_count,
        "pend_hash": p.pend_hash, "pend_doc": p.pend_doc,
    }
    strings = {"stems": p.stems, "surfaces": p.surfaces,
               "display": display_words(p.stems, p.surface_stem, p.surface_count, p.surfaces)}

    # context tables: multitoken → label → summed term frequency. ctx = P @ L: P (multitoken ×
    # entity) holds the term frequencies outside metadata, L (entity × label) the labels
    tf_total = p.post_tf[:, :4].sum(axis=1, dtype=np.int64)  # metadata strings are not context
    tf_matrix = sparse.csr_array((tf_total, p.post_doc, post_indptr), shape=(n_mt, n_docs))
    for name in CONTEXTS:
        labels, d_indptr, d_ids = p.labels[name]
        labels_matrix = sparse.csr_array((np.ones(len(d_ids), dtype=np.int64), d_ids, d_indptr),
                                         shape=(n_docs, max(len(labels), 1)))
        ctx = tf_matrix @ labels_matrix
        ctx.sort_indices()
        empty = len(labels) == 0  # no index for a context the corpus leaves empty (TableSet.context)
        arrays[f"ctx_{name}_indptr"] = ctx.indptr[:1] if empty else ctx.indptr
        arrays[f"ctx_{name}_labels"] = ctx.indices.astype(np.int32)
        arrays[f"ctx_{name}_counts"] = ctx.data
        arrays[f"doc_{name}_indptr"] = d_indptr[:1] if empty else d_indptr
        arrays[f"doc_{name}_labels"] = d_ids
        strings[f"labels_{name}"] = labels

    # sorted n-gram table (multitokens of two or more words)
    multi = np.flatnonzero(mt_len >= 2)
    sng_hash = hash_rows(sort_rows(p.mt_words[multi]))
    so = np.argsort(sng_hash, kind="stable")
    arrays["sng_hash"] = sng_hash[so]
    arrays["sng_mt"] = multi[so].astype(np.int32)

    adj, ctx = p.pair_adj, p.pair_ctx
    stats = {
        "entities": n_docs,
        "words": int(p.doc_len.sum()),
        "stems": len(p.stems),
        "multitokens": int(n_mt),
        "multitokens_by_length": {str(n): int((mt_len == n).sum()) for n in range(1, 5) if (mt_len == n).any()},
        "postings": len(p.post_doc),
        "pairs": len(adj),
        "adjacent_pairs": int((adj > 0).sum()),
        "contextual_pairs": int((ctx > 0).sum()),
    }
    return Tables(arrays=arrays, strings=strings, stats=stats)
