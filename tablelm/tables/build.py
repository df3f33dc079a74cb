"""The counting pass: entities → backend tables, vectorized with numpy.

Python touches each token once (``re.findall`` plus one dict lookup, in
:meth:`SurfaceVocabulary.encode_segments`); everything after that is array work over one
concatenated token stream:

1. surface ids → stem ids; sentence and clause ids by cumulative sums of the
   boundary markers; stopwords removed (and so bridged).
2. n-grams level by level: the id of the n-gram starting at ``i`` is the unique
   index of ``(id of the (n-1)-gram at i) * V + word[i+n-1]``; n-grams never
   cross a clause. Multitokens of two or more words are kept when they occur at
   least ``min_multitoken_count`` times or in a knowledge-graph field.
3. postings (multitoken, entity) → term frequency per field, dictionary counts,
   field lengths.
4. pairs of non-overlapping multitoken occurrences in one sentence whose gap is
   at most ``max_dist`` words: adjacent (gap 0) and contextual (gap ≥ 1) counts,
   summed as a SciPy sparse matrix (linear-time COO → CSR → CSC, no global sort).
5. context tables: postings × entity labels (category, tags, title, related).
6. sorted n-gram table: hash of the sorted word tuple → multitoken ids.

Raw counts are the only thing stored; PMI, idf and every other weight are
derived at query time, so counts of shards can be added (or a deleted
entity's counts subtracted) later.

Multitoken ids are ordered by length, then by the words' alphabetical order;
labels and stems are sorted; so the same corpus gives identical tables.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..text.analyzer import CLAUSE, SENTENCE, Analyzer, SurfaceVocabulary
from .hashing import WIDTH, hash_rows, sort_rows
from .sorting import stable_argsort, unique_inverse

FIELDS = ("text", "title", "category", "tags", "meta")
KG_FIELDS = (1, 2, 3, 4)
CONTEXTS = ("category", "tags", "titles", "related")


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


def _csr_from_sorted_rows(rows: np.ndarray, n_rows: int) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n_rows)))).astype(np.int64)


def partners(arrays, mt: int):
    """Every pair of multitoken ``mt``: (partner ids, adjacent counts, contextual counts).

    Each unordered pair is stored once, under its smaller id (``pair_indptr``/``pair_cols``);
    the transposed index (``pair_t_indptr``/``pair_t_order``) finds the pairs where ``mt``
    is the larger id.
    """
    indptr, cols = arrays["pair_indptr"], arrays["pair_cols"]
    adj, ctx = arrays["pair_adj"], arrays["pair_ctx"]
    s, e = int(indptr[mt]), int(indptr[mt + 1])
    ts, te = int(arrays["pair_t_indptr"][mt]), int(arrays["pair_t_indptr"][mt + 1])
    idx = np.asarray(arrays["pair_t_order"][ts:te], dtype=np.int64)
    below = np.searchsorted(indptr, idx, side="right") - 1  # the row (smaller id) of each entry
    return (np.concatenate([below, np.asarray(cols[s:e], dtype=np.int64)]),
            np.concatenate([adj[idx], adj[s:e]]), np.concatenate([ctx[idx], ctx[s:e]]))


def _count_pairs(occ_start, occ_end, occ_mt, sent_stop, n_words: int, n_mt: int, max_dist: int) -> dict:
    """Pairs of non-overlapping multitoken occurrences of one sentence, gap <= ``max_dist`` words.

    Occurrences come in start order; ``occ_end`` is the word after each one and ``sent_stop``
    the word after its sentence. Returns the pair tables (see :func:`partners`). The pairs are
    a sparse count matrix: its coordinates (smaller id, larger id) go through SciPy's
    linear-time COO → CSR conversion, which sums the duplicates, and CSR → CSC gives the
    transposed index. Runs in a second thread of the build: it only reads its arguments, and
    numpy and SciPy release the GIL in their loops.
    """
    from scipy import sparse  # imported by builds only: loading and querying a model do without it

    # partners of occurrence i: occurrences i2 with occ_end[i] <= start <= occ_end[i] + max_dist,
    # within the sentence; they are the index range [lo, hi) since occurrences are in start order
    first_at = np.zeros(n_words + 1, dtype=np.int64)
    np.cumsum(np.bincount(occ_start, minlength=n_words), out=first_at[1:])
    lim = np.minimum(occ_end + max_dist + 1, sent_stop)
    lo = first_at[np.minimum(occ_end, lim)]
    n_partners = first_at[lim] - lo
    index_type = np.int32 if n_mt < 2**31 else np.int64
    mt = occ_mt.astype(index_type)
    # the largest arrays of the build, filled in place: per occurrence of a pair, its
    # coordinates and a count packed as adjacent (gap 0) + contextual (gap > 0) << 32
    total = int(n_partners.sum())
    rows, cols = np.empty(total, dtype=index_type), np.empty(total, dtype=index_type)
    counts = np.empty(total, dtype=np.int64)
    filled = 0
    for d in range(int(n_partners.max(initial=0))):
        a = np.flatnonzero(n_partners > d)  # occurrences with a (d+1)-th partner
        b = lo[a] + d
        ma, mb = mt[a], mt[b]
        k = ma != mb
        gap = occ_start[b[k]] > occ_end[a[k]]
        ma, mb = ma[k], mb[k]
        end = filled + len(ma)
        np.minimum(ma, mb, out=rows[filled:end])
        np.maximum(ma, mb, out=cols[filled:end])
        np.left_shift(gap, 32, out=counts[filled:end], dtype=np.int64)
        counts[filled:end] += ~gap
        filled = end
    m = sparse.coo_array((counts[:filled], (rows[:filled], cols[:filled])), shape=(n_mt, n_mt)).tocsr()
    del rows, cols, counts
    m.sum_duplicates()  # canonical: columns sorted within a row, one entry per pair
    # CSR → CSC of the entry numbers: the entries of each column (larger id), in row order
    t = sparse.csr_array((np.arange(m.nnz, dtype=np.int64 if m.nnz >= 2**31 else np.int32), m.indices, m.indptr),
                         shape=m.shape).tocsc()
    return {"pair_indptr": m.indptr.astype(np.int64), "pair_cols": m.indices.astype(np.int32),
            "pair_adj": (m.data & 0xFFFFFFFF).astype(np.uint32), "pair_ctx": (m.data >> 32).astype(np.uint32),
            "pair_t_indptr": t.indptr.astype(np.int64), "pair_t_order": t.data}


def meta_values(entity) -> list[str]:
    """Metadata strings indexed as the ``meta`` field: string values and lists of strings, by key order."""
    out = []
    for key in sorted(entity.metadata or {}):
        v = entity.metadata[key]
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            out.extend(v)
    return out


def label_path(parts) -> str:
    return " > ".join(" ".join(p.split()) for p in parts if p.strip())


def _labels_csr(values_per_doc: list[list[str]]):
    """Doc → label ids (CSR) over the sorted set of distinct labels."""
    labels = sorted({v for vs in values_per_doc for v in vs})
    index = {v: i for i, v in enumerate(labels)}
    lens = np.fromiter((len(vs) for vs in values_per_doc), dtype=np.int64, count=len(values_per_doc))
    ids = np.fromiter((index[v] for vs in values_per_doc for v in vs), dtype=np.int32, count=int(lens.sum()))
    return labels, np.concatenate(([0], np.cumsum(lens))), ids


def build_tables(entities, analyzer: Analyzer, params: dict, progress=None, side_work=None) -> Tables:
    """Count everything about ``entities`` (a list of TextEntity).

    Parameters
    ----------
    entities : list of TextEntity
    analyzer : Analyzer
    params : dict
        Build-stage parameters (``max_ngram``, ``max_dist``, ``min_multitoken_count``).
    progress : callable, optional
        Called as ``progress(n)`` after every ``n`` entities tokenized, and with
        ``progress(None, "stage name")`` between array stages.
    side_work : callable, optional
        Called with no argument while the pairs are counted in the second thread; the
        :class:`Tables` it returns (e.g. the caller's entity store) join the result.
    """
    from scipy import sparse

    step = progress or (lambda *a: None)
    n_docs = len(entities)
    vocab = SurfaceVocabulary(analyzer)

    # ---- 1. tokenize every field of every entity into one surface-id stream
    chunks, lengths, seg_doc, seg_field = [], [], [], []
    for start in range(0, n_docs, 1024):  # chunks bound the joined text and pace the progress bar
        texts = []
        for d in range(start, min(start + 1024, n_docs)):
            e = entities[d]
            for f, values in ((0, (e.text,)), (1, (e.title,)), (2, e.category), (3, e.tags), (4, meta_values(e))):
                for t in values:
                    if t:
                        texts.append(t)
                        seg_doc.append(d)
                        seg_field.append(f)
        sids, lens = vocab.encode_segments(texts)
        chunks.append(sids)
        lengths.append(lens)
        step(min(1024, n_docs - start))
    step(None, "counting")
    sid = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    del chunks
    doc = np.repeat(np.asarray(seg_doc, dtype=np.int32), lengths)
    fld = np.repeat(np.asarray(seg_field, dtype=np.int8), lengths)

    # stems in alphabetical order → ids; surfaces keep their first-seen ids
    n_stems = len(vocab.stems)
    order = sorted(range(n_stems), key=vocab.stems.__getitem__)
    rank = np.empty(max(n_stems, 1), dtype=np.int64)
    rank[order] = np.arange(n_stems)
    stems = [vocab.stems[i] for i in order]
    code_of_sid = np.asarray(vocab.stem_of, dtype=np.int64)
    code_of_sid = np.where(code_of_sid >= 0, rank[np.maximum(code_of_sid, 0)], code_of_sid)
    code = code_of_sid[sid]
    is_sentence = code == SENTENCE
    sentence = np.cumsum(is_sentence)
    clause = np.cumsum(is_sentence | (code == CLAUSE))
    keep = code >= 0
    w = code[keep]
    sent_k, clause_k, doc_k, fld_k = sentence[keep], clause[keep], doc[keep], fld[keep]
    sid_k = sid[keep]
    del code, sentence, clause, doc, fld, sid
    n_words = len(w)
    V = max(n_stems, 1)

    # unstemming: most frequent surface of each stem (ties: alphabetical)
    surf_count = np.bincount(sid_k, minlength=len(vocab.surfaces))
    surf_stem = code_of_sid
    real = np.array([("\x00" not in s) for s in vocab.surfaces], dtype=bool)
    surf_alpha = np.empty(len(vocab.surfaces), dtype=np.int64)
    surf_alpha[sorted(range(len(vocab.surfaces)), key=vocab.surfaces.__getitem__)] = np.arange(len(vocab.surfaces))
    cand = np.flatnonzero((surf_stem >= 0) & real & (surf_count > 0))
    o = np.lexsort((surf_alpha[cand], -surf_count[cand], surf_stem[cand]))
    cand = cand[o]
    first = np.ones(len(cand), dtype=bool)
    first[1:] = surf_stem[cand][1:] != surf_stem[cand][:-1]
    display = list(stems)
    for s_id, c in zip(surf_stem[cand][first].tolist(), cand[first].tolist()):
        display[s_id] = vocab.surfaces[c]

    # ---- 2. n-grams level by level
    min_count = int(params["min_multitoken_count"])
    kg_tok = fld_k != 0
    level_words = [np.arange(V, dtype=np.int64).reshape(-1, 1)]  # words of every distinct n-gram per level
    level_kept = [np.bincount(w, minlength=V) > 0]
    occ_level_ids = [w.astype(np.int64)]
    prev = w.astype(np.int64)
    valid_prev = np.ones(n_words, dtype=bool)
    for n in range(2, int(params["max_ngram"]) + 1):
        span = n_words - n + 1
        if span <= 0:
            break
        valid = valid_prev[:span] & (clause_k[n - 1:] == clause_k[:span])
        idx = np.flatnonzero(valid)
        key = prev[idx] * V + w[idx + n - 1]
        uniq, inv = unique_inverse(key)
        counts = np.bincount(inv, minlength=len(uniq))
        kg_counts = np.bincount(inv[kg_tok[idx]], minlength=len(uniq))
        level_kept.append((counts >= min_count) | (kg_counts > 0))
        level_words.append(np.hstack([level_words[-1][uniq // V], (uniq % V).reshape(-1, 1)]))
        cur = np.full(n_words, -1, dtype=np.int64)
        cur[idx] = inv
        occ_level_ids.append(cur)
        prev, valid_prev = cur, np.zeros(n_words, dtype=bool)
        valid_prev[idx] = True

    # global multitoken ids: by length, then words in alphabetical order
    mt_of_level, words_rows, offset = [], [], 0
    for lw, kept in zip(level_words, level_kept):
        ids = np.full(len(lw), -1, dtype=np.int64)
        k = np.flatnonzero(kept)
        ids[k] = offset + np.arange(len(k))
        offset += len(k)
        mt_of_level.append(ids)
        rows = np.full((len(k), WIDTH), -1, dtype=np.int64)
        rows[:, : lw.shape[1]] = lw[k]
        words_rows.append(rows)
    n_mt = offset
    mt_words = np.vstack(words_rows).astype(np.int32) if words_rows else np.zeros((0, WIDTH), np.int32)
    mt_len = (mt_words >= 0).sum(axis=1).astype(np.int8)

    # occurrences of kept multitokens in (start word, length) order: (mt, start, end, doc, field)
    n_len = len(mt_of_level)
    mt_at = np.full((n_words, n_len), -1, dtype=np.int64)  # multitoken of length l+1 starting at each word
    for n, (lvl_ids, mt_ids) in enumerate(zip(occ_level_ids, mt_of_level)):
        pos = np.flatnonzero(lvl_ids >= 0)
        mt_at[pos, n] = mt_ids[lvl_ids[pos]]
    del occ_level_ids
    flat = mt_at.reshape(-1)
    at = np.flatnonzero(flat >= 0)
    occ_mt = flat[at]
    occ_start, occ_end = np.divmod(at, n_len)
    occ_end += occ_start + 1
    del mt_at, flat, at
    occ_doc = doc_k[occ_start]
    occ_fld = fld_k[occ_start]
    # the word after each occurrence's sentence
    sent_first = np.flatnonzero(np.concatenate(([True], sent_k[1:] != sent_k[:-1]))) if n_words else sent_k
    sent_stop = np.append(sent_first[1:], n_words)[np.searchsorted(sent_first, occ_start, side="right") - 1]

    # ---- 4. pairs, in a second thread while the postings and context tables are counted
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tablelm-pairs")
    pairs_job = pool.submit(_count_pairs, occ_start, occ_end, occ_mt, sent_stop, n_words, n_mt,
                            int(params["max_dist"]))
    pool.shutdown(wait=False)

    # ---- 3. postings, dictionary counts, field lengths
    step(None, "postings")
    # (multitoken, entity × field) occurrence counts: a sparse matrix, summed by COO → CSR; an
    # entity's fields are neighbours in a row, so each run of one entity is one posting
    F = len(FIELDS)
    entity_field = occ_doc.astype(np.int64) * F + occ_fld
    by_field = sparse.coo_array((np.ones(len(occ_mt), dtype=np.int64), (occ_mt, entity_field)),
                                shape=(n_mt, n_docs * F)).tocsr()
    entry_row = np.repeat(np.arange(n_mt, dtype=np.int64), np.diff(by_field.indptr))
    entry_doc, entry_fld = np.divmod(by_field.indices.astype(np.int64), F)
    new_post = np.ones(len(entry_row), dtype=bool)
    new_post[1:] = (entry_doc[1:] != entry_doc[:-1]) | (entry_row[1:] != entry_row[:-1])
    post_of_entry = np.cumsum(new_post) - 1
    post_rows = entry_row[new_post]
    post_tf = np.zeros((len(post_rows), F), dtype=np.uint16)
    post_tf[post_of_entry, entry_fld] = np.minimum(by_field.data, 65535)
    mt_counts = np.bincount(entry_row * F + entry_fld, weights=by_field.data, minlength=n_mt * F)
    mt_counts = mt_counts.reshape(n_mt, F).astype(np.uint32)
    post_indptr = _csr_from_sorted_rows(post_rows, n_mt)
    post_docs = entry_doc[new_post].astype(np.int32)
    # forward index (entity → its postings), for pseudo-relevance feedback and incremental updates
    fwd_post = stable_argsort(post_docs).astype(np.int64)
    fwd_indptr = _csr_from_sorted_rows(post_docs[fwd_post], n_docs)
    fwd_mt = post_rows[fwd_post].astype(np.int32)
    doc_len = np.bincount(doc_k.astype(np.int64) * F + fld_k, minlength=n_docs * F)
    doc_len = doc_len.reshape(n_docs, F).astype(np.uint32)
    del entity_field, by_field, entry_row, entry_doc, entry_fld, new_post, post_of_entry

    # ---- 5. context tables: multitoken → label → summed term frequency
    step(None, "context tables")
    # ctx = P @ L: P (multitoken × entity) holds the term frequencies outside metadata, L
    # (entity × label) the labels of each entity
    tf_total = post_tf[:, :4].sum(axis=1, dtype=np.int64)  # metadata strings are not context
    tf_matrix = sparse.csr_array((tf_total, post_docs, post_indptr), shape=(n_mt, n_docs))
    label_lists = {
        "category": [[label_path(e.category)] if label_path(e.category) else [] for e in entities],
        "tags": [sorted({" ".join(t.split()) for t in e.tags if t.strip()}) for e in entities],
        "titles": [[" ".join(e.title.split())] if e.title.strip() else [] for e in entities],
        "related": [sorted({r.strip() for r in e.related if r.strip()}) for e in entities],
    }
    arrays, strings = {}, {}
    for name in CONTEXTS:
        labels, d_indptr, d_ids = _labels_csr(label_lists[name])
        labels_matrix = sparse.csr_array((np.ones(len(d_ids), dtype=np.int64), d_ids, d_indptr),
                                         shape=(n_docs, max(len(labels), 1)))
        ctx = tf_matrix @ labels_matrix
        ctx.sort_indices()
        arrays[f"ctx_{name}_indptr"] = ctx.indptr.astype(np.int64)
        arrays[f"ctx_{name}_labels"] = ctx.indices.astype(np.int32)
        arrays[f"ctx_{name}_counts"] = ctx.data.astype(np.uint32)
        arrays[f"doc_{name}_indptr"] = d_indptr.astype(np.int64)
        arrays[f"doc_{name}_labels"] = d_ids
        strings[f"labels_{name}"] = labels

    # ---- 6. sorted n-gram table (multitokens of two or more words)
    multi = np.flatnonzero(mt_len >= 2)
    sng_hash = hash_rows(sort_rows(mt_words[multi]))
    so = np.argsort(sng_hash, kind="stable")

    step(None, "pairs")
    extra = side_work() if side_work is not None else Tables()
    pair_tables = pairs_job.result()
    adj, ctx = pair_tables["pair_adj"], pair_tables["pair_ctx"]

    arrays.update({
        "mt_words": mt_words,
        "mt_counts": mt_counts,
        "post_indptr": post_indptr,
        "post_docs": post_docs,
        "post_tf": post_tf,
        "doc_len": doc_len,
        "fwd_indptr": fwd_indptr,
        "fwd_mt": fwd_mt,
        "fwd_post": fwd_post,
        **pair_tables,
        "sng_hash": sng_hash[so],
        "sng_mt": multi[so].astype(np.int32),
    })
    strings["stems"] = stems
    strings["display"] = display
    stats = {
        "entities": n_docs,
        "words": int(n_words),
        "stems": n_stems,
        "multitokens": int(n_mt),
        "multitokens_by_length": {str(n): int((mt_len == n).sum()) for n in range(1, 5) if (mt_len == n).any()},
        "postings": int(len(post_docs)),
        "pairs": int(len(adj)),
        "adjacent_pairs": int((adj > 0).sum()),
        "contextual_pairs": int((ctx > 0).sum()),
    }
    arrays.update(extra.arrays)
    strings.update(extra.strings)
    return Tables(arrays=arrays, strings=strings, blobs=dict(extra.blobs), stats=stats)


def entity_records(entities) -> tuple[bytes, np.ndarray]:
    """The entity store: one JSON line per entity, and byte offsets."""
    lines = [json.dumps(e.to_dict(), ensure_ascii=False, sort_keys=True).encode() + b"\n" for e in entities]
    offsets = np.concatenate(([0], np.cumsum([len(x) for x in lines]))).astype(np.int64)
    return b"".join(lines), offsets
