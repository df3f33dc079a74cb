"""The counting pass: entities → partial counts (tables/counts.py assembles the tables), vectorized.

Python touches each token once (``re.findall`` plus one dict lookup, in
:meth:`SurfaceVocabulary.encode_segments`); everything after that is array work over one
concatenated token stream:

1. surface ids → stem ids; sentence and clause ids by cumulative sums of the
   boundary markers; stopwords removed (and so bridged).
2. n-grams level by level: the id of the n-gram starting at ``i`` is the unique
   index of ``(id of the (n-1)-gram at i) * V + word[i+n-1]``; n-grams never
   cross a clause. Multitokens of two or more words are kept when they occur at
   least ``min_multitoken_count`` times or in a knowledge-graph field. A capital
   single letter right next to a content word ("vitamin A", "T cells", see
   text/analyzer.py) adds a two-word n-gram to the second level, counted and kept
   as the others are, with postings and no pairs; the letter's own single-word row
   (its stem is the capital letter) has no count and no postings.
3. postings (multitoken, entity) → term frequency per field, dictionary counts,
   field lengths.
4. pairs of non-overlapping multitoken occurrences in one sentence whose gap is
   at most ``max_dist`` words: adjacent (gap 0) and contextual (gap ≥ 1) counts,
   summed as a SciPy sparse matrix (linear-time COO → CSR, no global sort).
5. the entities' labels (category, tags, title, related) and the occurrences of the
   n-grams below the threshold (the pending table).

:func:`tables.counts.assemble` turns the partial into the stored tables (context tables,
transposed and forward indexes, sorted n-grams); :func:`build_tables` counts a corpus in one
shard or in several and merges them.

Raw counts are the only thing stored; PMI, idf and every other weight are
derived at query time, so counts of shards can be added (or a deleted
entity's counts subtracted) later.

Multitoken ids are ordered by length, then by the words' alphabetical order;
labels and stems are sorted; so the same corpus gives identical tables.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from ..text.analyzer import CLAUSE, LETTER, SENTENCE, Analyzer, SurfaceVocabulary
from .counts import Partial, Tables, assemble, labels_csr, merge, pending_table
from .hashing import WIDTH, chain_hash, string_hashes
from .schema import CONTEXTS, FIELDS  # noqa: F401  (CONTEXTS: re-exported for the tests and readers)
from .sorting import unique_inverse


def _count_pairs(occ_start, occ_end, occ_mt, sent_stop, n_words: int, n_mt: int, max_dist: int):
    """Pairs of non-overlapping multitoken occurrences of one sentence, gap <= ``max_dist`` words.

    Occurrences come in start order; ``occ_end`` is the word after each one and ``sent_stop``
    the word after its sentence. Returns the canonical pairs (a, b, adjacent, contextual), sorted
    by (a, b) with a < b. The pairs are a sparse count matrix: its coordinates (smaller id,
    larger id) go through SciPy's linear-time COO → CSR conversion, which sums the duplicates.
    Runs in a second thread of the build: it only reads its arguments, and numpy and SciPy
    release the GIL in their loops.
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
    del first_at, lim
    # the occurrences in runs of about PAIR_CHUNK pair occurrences; each run's pairs are summed
    # into a canonical sparse matrix, added to the runs' total (bounded temporaries)
    cum = np.cumsum(n_partners)
    total = int(cum[-1]) if len(cum) else 0
    cuts = np.searchsorted(cum, np.arange(PAIR_CHUNK, total, PAIR_CHUNK), side="right")
    bounds = np.unique(np.concatenate(([0], cuts, [len(n_partners)]))).tolist()
    del cum
    m = None
    for o_lo, o_hi in zip(bounds[:-1], bounds[1:]):
        part = _pair_matrix(mt, occ_start, occ_end, lo, n_partners, o_lo, o_hi, n_mt, index_type)
        m = part if m is None else m + part
        del part
    if m is None:
        m = sparse.csr_array((n_mt, n_mt), dtype=np.int64)
    m.sum_duplicates()  # canonical: columns sorted within a row, one entry per pair
    a = np.repeat(np.arange(n_mt, dtype=np.int32), np.diff(m.indptr))
    b = m.indices.astype(np.int32)
    halves = m.data.view(np.uint32).reshape(-1, 2)  # the packed count: low 32 bits adjacent, high contextual
    if sys.byteorder == "big":
        halves = halves[:, ::-1]
    adj, ctx = halves[:, 0].copy(), halves[:, 1].copy()
    return a, b, adj, ctx


#: pair occurrences counted at once by :func:`_count_pairs` (its temporaries: 28 bytes each)
PAIR_CHUNK = 1 << 21


def _pair_matrix(mt, occ_start, occ_end, lo, n_partners, o_lo: int, o_hi: int, n_mt: int, index_type):
    """The summed pair counts of occurrences [o_lo, o_hi) and their partners, as a canonical CSR
    matrix: coordinates (smaller id, larger id), a count packed as adjacent (gap 0) + contextual
    (gap > 0) << 32."""
    from scipy import sparse

    n_p = n_partners[o_lo:o_hi]
    total = int(n_p.sum())
    rows, cols = np.empty(total, dtype=index_type), np.empty(total, dtype=index_type)
    counts = np.empty(total, dtype=np.int64)
    filled = 0
    for d in range(int(n_p.max(initial=0))):
        a = np.flatnonzero(n_p > d) + o_lo  # occurrences with a (d+1)-th partner
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
    m.sum_duplicates()
    return m


def _isin_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Membership of each value in a sorted key array (one binary search each)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values


def sum_by_hash(hashes: Sequence, counts: Sequence, kg: Sequence):
    """(sorted distinct hashes, summed counts, summed knowledge-graph counts)."""
    h = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    uniq, inv = np.unique(h, return_inverse=True)
    c = np.bincount(inv, weights=np.concatenate(counts), minlength=len(uniq)).astype(np.int64) if hashes else h
    k = np.bincount(inv, weights=np.concatenate(kg), minlength=len(uniq)).astype(np.int64) if hashes else h
    return uniq, c.astype(np.int64), k.astype(np.int64)


def dictionary_from_counts(counts, min_count: int) -> np.ndarray:
    """The sorted hashes of the n-grams of two or more words that enter the dictionary."""
    hashes, n, kg = counts
    return hashes[(n >= min_count) | (kg > 0)]


def build_tables(entities, analyzer: Analyzer, params: dict, progress=None, side_work=None,
                 shard_size: int = 0) -> Tables:
    """Count every table of ``entities`` (a list of TextEntity).

    With ``shard_size`` > 0 and more entities than that, the corpus is counted in shards: a
    first pass sums the n-gram counts of every shard into the dictionary, a second counts
    each shard against it, and the partial counts are merged by key. The tables are the
    same, byte for byte, as those of one shard (see tables/counts.py).

    ``side_work`` (optional) is called with no argument once the counting is done; the
    :class:`Tables` it returns (e.g. the caller's entity store) join the result.
    """
    n = len(entities)
    if not shard_size or n <= shard_size:
        part = count_partial(entities, analyzer, params, progress=progress)
    else:
        spans = [(lo, min(lo + shard_size, n)) for lo in range(0, n, shard_size)]
        counts = [count_partial(entities[lo:hi], analyzer, params, ngrams_only=True) for lo, hi in spans]
        dictionary = dictionary_from_counts(sum_by_hash(*zip(*counts)), int(params["min_multitoken_count"]))
        parts = [(count_partial(entities[lo:hi], analyzer, params, dictionary=dictionary, progress=progress), 1,
                  np.arange(lo, hi)) for lo, hi in spans]
        part = merge(parts, n)
    tables = assemble(part)
    if side_work is not None:
        extra = side_work()
        tables.arrays.update(extra.arrays)
        tables.strings.update(extra.strings)
        tables.blobs.update(extra.blobs)
    return tables


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


def count_partial(entities, analyzer: Analyzer, params: dict, dictionary: np.ndarray | None = None,
                  progress=None, ngrams_only: bool = False):
    """Count everything about ``entities`` (a list of TextEntity) in their own id space.

    Parameters
    ----------
    entities : list of TextEntity
    analyzer : Analyzer
    params : dict
        Build-stage parameters (``max_ngram``, ``max_dist``, ``min_multitoken_count``).
    dictionary : ndarray of uint64, optional
        Sorted stable hashes of the multitokens of two or more words to count. None: the
        entities are the whole corpus, and the dictionary comes from their own counts
        (``min_multitoken_count``, knowledge-graph fields).
    progress : callable, optional
        Called as ``progress(n)`` after every ``n`` entities tokenized, and with
        ``progress(None, "stage name")`` between array stages.
    ngrams_only : bool
        Stop after counting the n-grams of two or more words: return their stable hashes,
        counts and knowledge-graph counts (the first pass of a sharded build).
    """
    from scipy import sparse

    step = progress or (lambda *a: None)
    n_docs = len(entities)
    vocab = SurfaceVocabulary(analyzer)

    # ---- 1. tokenize every field of every entity into one surface-id stream
    chunks: list[np.ndarray] = []
    seg_lens: list[np.ndarray] = []
    seg_doc: list[int] = []
    seg_field: list[int] = []
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
        seg_lens.append(lens)
        step(min(1024, n_docs - start))
    step(None, "counting")
    sid = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    lengths = np.concatenate(seg_lens) if seg_lens else np.zeros(0, dtype=np.int64)
    del chunks
    doc = np.repeat(np.asarray(seg_doc, dtype=np.int32), lengths)
    fld = np.repeat(np.asarray(seg_field, dtype=np.int8), lengths)

    letter_at, letter_stem, letter_side = _attached_letters(vocab, sid)  # "vitamin A", "T cells"
    # stems in alphabetical order → ids; surfaces keep their first-seen ids
    n_stems = len(vocab.stems)
    order = sorted(range(n_stems), key=vocab.stems.__getitem__)
    rank = np.empty(max(n_stems, 1), dtype=np.int64)
    rank[order] = np.arange(n_stems)
    stems = [vocab.stems[i] for i in order]
    code_of_sid = np.asarray(vocab.stem_of, dtype=np.int64)
    code_of_sid = np.where(code_of_sid >= 0, rank[np.maximum(code_of_sid, 0)], code_of_sid)
    code = code_of_sid[sid]
    # each attached letter's two-word n-gram (word, letter) or (letter, word), in text order
    l_word = code[letter_at + letter_side]
    l_letter = rank[letter_stem]
    l_first, l_second = np.where(letter_side < 0, l_word, l_letter), np.where(letter_side < 0, l_letter, l_word)
    l_doc, l_fld = doc[letter_at], fld[letter_at]
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

    # unstemming: the surface words with their counts (a count table: add/delete keep it exact)
    surf_count = np.bincount(sid_k, minlength=len(vocab.surfaces))
    real = np.flatnonzero((code_of_sid >= 0) & (surf_count > 0)
                          & np.fromiter(("\x00" not in s for s in vocab.surfaces), dtype=bool,
                                        count=len(vocab.surfaces)))
    alpha = sorted(real.tolist(), key=vocab.surfaces.__getitem__)
    surfaces = [vocab.surfaces[i] for i in alpha]
    surface_stem = code_of_sid[alpha].astype(np.int32)
    surface_count = surf_count[alpha]

    # ---- 2. n-grams level by level (the letters' n-grams join the second level)
    min_count = int(params["min_multitoken_count"])
    kg_tok = fld_k != 0
    level_words = [np.arange(V, dtype=np.int64).reshape(-1, 1)]  # words of every distinct n-gram per level
    level_kept = [np.bincount(w, minlength=V) > 0]
    stem_hash = string_hashes(stems)
    level_hash = stem_hash  # stable hash of every distinct n-gram of the level (from the stem strings)
    level_hashes = [stem_hash]
    counted = []  # with ngrams_only: (hashes, counts, kg counts) of each level
    pend_hash, pend_doc = [], []  # occurrences of n-grams left out of the dictionary (the count store)
    occ_level_ids = [w.astype(np.int64)]
    prev = w.astype(np.int64)
    valid_prev = np.ones(n_words, dtype=bool)
    inv_l = np.zeros(0, dtype=np.int64)
    for n in range(2, int(params["max_ngram"]) + 1):
        span = n_words - n + 1
        letters = n == 2 and len(l_first) > 0
        if span <= 0 and not letters:
            break
        valid = valid_prev[:max(span, 0)] & (clause_k[n - 1:] == clause_k[:max(span, 0)])
        idx = np.flatnonzero(valid)
        key = prev[idx] * V + w[idx + n - 1]
        kg_occ = kg_tok[idx]
        if letters:
            key = np.concatenate([key, l_first * V + l_second])
            kg_occ = np.concatenate([kg_occ, l_fld != 0])
        uniq, inv = unique_inverse(key)
        if letters:
            inv, inv_l = inv[:len(idx)], inv[len(idx):]
        counts = np.bincount(np.concatenate([inv, inv_l]) if letters else inv, minlength=len(uniq))
        kg_counts = np.bincount((np.concatenate([inv, inv_l]) if letters else inv)[kg_occ], minlength=len(uniq))
        level_hash = chain_hash(level_hash[uniq // V], stem_hash[uniq % V])
        if ngrams_only:
            counted.append((level_hash, counts, kg_counts))
            kept = np.zeros(len(uniq), dtype=bool)
        elif dictionary is None:
            kept = (counts >= min_count) | (kg_counts > 0)
        else:  # the dictionary of the whole corpus, counted before (a shard, or an add/delete)
            kept = _isin_sorted(level_hash, dictionary)
        level_kept.append(kept)
        level_hashes.append(level_hash)
        if not ngrams_only:
            out = np.flatnonzero(~kept[inv])
            pend_hash.append(level_hash[inv[out]])
            pend_doc.append(doc_k[idx[out]])
            if letters:
                out = np.flatnonzero(~kept[inv_l])
                pend_hash.append(level_hash[inv_l[out]])
                pend_doc.append(l_doc[out])
        level_words.append(np.hstack([level_words[-1][uniq // V], (uniq % V).reshape(-1, 1)]))
        cur = np.full(n_words, -1, dtype=np.int64)
        cur[idx] = inv
        occ_level_ids.append(cur)
        prev, valid_prev = cur, np.zeros(n_words, dtype=bool)
        valid_prev[idx] = True

    if ngrams_only:
        return sum_by_hash([c[0] for c in counted], [c[1] for c in counted], [c[2] for c in counted])

    # a letter's stem is kept when a kept multitoken holds it (its single-word row has no count
    # and no postings: the letter is never a term of its own); the others leave, the ids close up
    if len(inv_l):
        l_kept = np.flatnonzero(level_kept[1][inv_l])
        held = level_words[1][inv_l[l_kept]]
        level_kept[0][np.intersect1d(held, rank[letter_stem])] = True
    smap = None
    if not level_kept[0][:n_stems].all():  # the multitokens' words are renumbered below (a monotonic map)
        smap = np.cumsum(level_kept[0]) - 1
        stems = [st for st, k in zip(stems, level_kept[0].tolist()) if k]
        stem_hash = stem_hash[level_kept[0][:n_stems]]
        surface_stem = smap[surface_stem].astype(np.int32)

    # global multitoken ids: by length, then words in alphabetical order
    mt_of_level, words_rows, hash_rows_, offset = [], [], [], 0
    for lw, kept, lh in zip(level_words, level_kept, level_hashes):
        ids = np.full(len(lw), -1, dtype=np.int64)
        k = np.flatnonzero(kept)
        ids[k] = offset + np.arange(len(k))
        offset += len(k)
        mt_of_level.append(ids)
        rows = np.full((len(k), WIDTH), -1, dtype=np.int64)
        rows[:, : lw.shape[1]] = lw[k]
        words_rows.append(rows)
        hash_rows_.append(lh[k])
    n_mt = offset
    if smap is not None:
        words_rows = [np.where(r >= 0, smap[np.maximum(r, 0)], -1) for r in words_rows]
    mt_words = np.vstack(words_rows).astype(np.int32) if words_rows else np.zeros((0, WIDTH), np.int32)
    mt_hash = np.concatenate(hash_rows_) if hash_rows_ else np.zeros(0, dtype=np.uint64)

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
    if len(inv_l):  # the letters' occurrences have postings and counts, and no pairs
        l_mt = mt_of_level[1][inv_l]
        at_l = np.flatnonzero(l_mt >= 0)
        post_occ = (np.concatenate([occ_mt, l_mt[at_l]]), np.concatenate([occ_doc, l_doc[at_l]]),
                    np.concatenate([occ_fld, l_fld[at_l]]))
    else:
        post_occ = (occ_mt, occ_doc, occ_fld)
    # the word after each occurrence's sentence
    sent_first = np.flatnonzero(np.concatenate(([True], sent_k[1:] != sent_k[:-1]))) if n_words else sent_k
    sent_stop = np.append(sent_first[1:], n_words)[np.searchsorted(sent_first, occ_start, side="right") - 1]

    # ---- 4. pairs, in a second thread while the postings are counted
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tablelm-pairs")
    pairs_job = pool.submit(_count_pairs, occ_start, occ_end, occ_mt, sent_stop, n_words, n_mt,
                            int(params["max_dist"]))
    pool.shutdown(wait=False)

    # ---- 3. postings, dictionary counts, field lengths
    step(None, "postings")
    # (multitoken, entity × field) occurrence counts: a sparse matrix, summed by COO → CSR; an
    # entity's fields are neighbours in a row, so each run of one entity is one posting
    F = len(FIELDS)
    p_mt, p_doc, p_fld = post_occ
    entity_field = p_doc.astype(np.int64) * F + p_fld
    by_field = sparse.coo_array((np.ones(len(p_mt), dtype=np.int64), (p_mt, entity_field)),
                                shape=(n_mt, n_docs * F)).tocsr()
    del post_occ, p_mt, p_doc, p_fld
    entry_row = np.repeat(np.arange(n_mt, dtype=np.int64), np.diff(by_field.indptr))
    entry_doc, entry_fld = np.divmod(by_field.indices.astype(np.int64), F)
    new_post = np.ones(len(entry_row), dtype=bool)
    new_post[1:] = (entry_doc[1:] != entry_doc[:-1]) | (entry_row[1:] != entry_row[:-1])
    post_of_entry = np.cumsum(new_post) - 1
    post_mt = entry_row[new_post].astype(np.int32)
    post_tf = np.zeros((len(post_mt), F), dtype=np.uint16)
    post_tf[post_of_entry, entry_fld] = np.minimum(by_field.data, 65535)
    mt_counts = np.bincount(entry_row * F + entry_fld, weights=by_field.data, minlength=n_mt * F)
    mt_counts = mt_counts.reshape(n_mt, F).astype(np.int64)
    post_doc = entry_doc[new_post].astype(np.int32)
    doc_len = np.bincount(doc_k.astype(np.int64) * F + fld_k, minlength=n_docs * F)
    doc_len = doc_len.reshape(n_docs, F).astype(np.int64)
    del entity_field, by_field, entry_row, entry_doc, entry_fld, new_post, post_of_entry
    labels = {name: labels_csr(values) for name, values in (
        ("category", [[label_path(e.category)] if label_path(e.category) else [] for e in entities]),
        ("tags", [sorted({" ".join(t.split()) for t in e.tags if t.strip()}) for e in entities]),
        ("titles", [[" ".join(e.title.split())] if e.title.strip() else [] for e in entities]),
        ("related", [sorted({r.strip() for r in e.related if r.strip()}) for e in entities]))}
    step(None, "pairs")
    pair_a, pair_b, pair_adj, pair_ctx = pairs_job.result()
    pend = pending_table(pend_hash, pend_doc)
    return Partial(n_docs=n_docs, stems=stems, stem_hash=stem_hash, mt_words=mt_words, mt_hash=mt_hash,
                   mt_counts=mt_counts, post_mt=post_mt, post_doc=post_doc, post_tf=post_tf,
                   pair_a=pair_a, pair_b=pair_b, pair_adj=pair_adj, pair_ctx=pair_ctx,
                   pend_hash=pend["pend_hash"], pend_doc=pend["pend_doc"], surfaces=surfaces,
                   surface_stem=surface_stem, surface_count=surface_count.astype(np.int64), doc_len=doc_len,
                   labels=labels)


def _attached_letters(vocab: SurfaceVocabulary, sid: np.ndarray):
    """The capital single letters of a surface-id stream that stand right next to a content word
    (a stem of more than one character; nothing between them but what is no token: spaces, dashes,
    slashes): ``(positions, the letter's stem index in vocab.stems, side)``, one row per letter and
    side: side -1 the word before ("vitamin A", "type I"), +1 the word after ("T cells"; never
    after "A" and "I", the article and the pronoun). The letters' stems (the capital letter itself:
    stems are lowercase, so no word has it) are added to ``vocab.stems``."""
    none = np.zeros(0, dtype=np.int64)
    code = np.asarray(vocab.stem_of, dtype=np.int64)
    if not vocab.analyzer.letters or not (code == LETTER).any() or len(sid) < 2:
        return none, none, none
    surfaces = vocab.surfaces
    content = (code >= 0) & np.fromiter((len(x) > 1 for x in surfaces), dtype=bool, count=len(surfaces))
    c = content[sid]
    at = np.flatnonzero(code[sid] == LETTER)
    before = at[(at > 0)]
    before = before[c[before - 1]]
    after = at[at + 1 < len(sid)]
    after = after[c[after + 1] & ~np.isin(sid[after], [vocab.ids.get("A", -1), vocab.ids.get("I", -1)])]
    pos = np.concatenate([before, after])
    side = np.concatenate([np.full(len(before), -1, dtype=np.int64), np.ones(len(after), dtype=np.int64)])
    if not len(pos):
        return none, none, none
    letter_sids = np.unique(sid[pos])
    stem_of_letter = np.full(len(surfaces), -1, dtype=np.int64)
    for s in letter_sids.tolist():
        stem_of_letter[s] = vocab._stem_id(surfaces[s])
    return pos.astype(np.int64), stem_of_letter[sid[pos]], side


def entity_records(entities) -> tuple[bytes, np.ndarray]:
    """The entity store: one JSON line per entity, and byte offsets."""
    lines = [json.dumps(e.to_record(), ensure_ascii=False, sort_keys=True).encode() + b"\n" for e in entities]
    offsets = np.concatenate(([0], np.cumsum([len(x) for x in lines]))).astype(np.int64)
    return b"".join(lines), offsets


def content_hashes(entities) -> np.ndarray:
    """The content digest of each entity as a uint64 (0: no text), so that an add can drop the
    entities whose content the model already has, as a build drops duplicates."""
    from ..corpus import content_key

    keys = (content_key(e) for e in entities)
    return np.fromiter((int(k[:16], 16) or 1 if k else 0 for k in keys), dtype=np.uint64, count=len(entities))


@contextmanager
def gc_paused(mmap_threshold: int | None = None):
    """Pause the cyclic garbage collector (if on) for a build.

    A build allocates many containers (parsed records, entities) that live until it ends, so
    the collections they trigger scan them and find nothing to free: pausing saves about
    0.1 s of a 0.6 s CACM build. ``mmap_threshold``: glibc's, held from now on (default
    :data:`tablelm.tables.spill.MMAP_THRESHOLD`).
    """
    from .spill import MMAP_THRESHOLD, map_large_allocations

    map_large_allocations(mmap_threshold or MMAP_THRESHOLD)  # freed temporaries leave the process (spill.py)
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
