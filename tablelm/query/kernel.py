"""The scoring hot path: BM25F term sums and top-k, compiled with numba when it is installed.

Two implementations of the same arithmetic:

numba (``_jit.py``)
    loops over the postings of a prompt's terms, computing each posting's BM25F impact
    as it goes, summing into a score per entity, and selecting the ``k`` best of the touched
    entities only (a histogram of their scores finds the ~k in the top bins, only those are
    sorted: no argpartition over every entity, no heap), so
    a batch query costs O(its postings), not O(entities). Compiled once and cached on
    disk (numba's ``cache=True``: next to the module, or under the user's cache directory
    when the installed package is read-only); used once a process has done enough
    queries to pay for loading it (see ``_ENV``).
numpy (this module)
    the same operations as array expressions (gather, bincount, partition): the first
    queries of every process, and all of them when numba is missing or
    ``TABLELM_KERNEL=numpy``.

Neither precomputes anything per posting at load: impacts are computed for the postings a
query touches only, from the term frequencies and a per-entity length norm (one
O(entities) pass per parameter set, kept by the model), so loading a model and
changing k1, b or a field weight cost no pass over the postings. The numba path keeps
each row's impacts once computed (``Postings.impacts``: a float32 per posting of the rows
queried so far, per parameter set), so a row queried again costs a load per posting
instead of a field-weighted sum and a division.

Both give the same floats: each posting's impact is
``float32(tfw·(k1+1) / (tfw + norm[d]))`` with ``tfw`` the field-weighted term frequency
summed field by field in order, and an entity's score adds its terms' contributions in
the same order (the free terms in plan order, then each stretch's best phrase, stretches
by id). tests/test_kernel.py checks that rankings and scores are identical.

A *query* here is three aligned arrays from :func:`prepare`: multitoken ids, weights
(plan weight · idf) and stretch groups (-1: a free term). Terms of one stretch count once
per entity: the best of them (``phrase_mode="stretch"``, see rank.py).
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import numpy as np

from ..tables.codecs import Encoded

#: ``TABLELM_KERNEL``: ``numpy`` never compiles, ``numba`` compiles on the first query, ``auto``
#: (the default) compiles once this process has spent ``TABLELM_JIT_AFTER`` seconds (1.0) scoring
#: with numpy: loading numba and its cached kernels costs about a second (several the first time
#: on a machine, when they compile), far more than one query, so a one-shot ``tablelm ask`` never
#: pays it and a server or a benchmark pays it once, after at most as long again of numpy work.
_ENV = "TABLELM_KERNEL"
_jit_module: Any = None  # the compiled module once loaded, False when numba is missing or disabled
_numpy_seconds = 0.0  # scoring time spent in the numpy implementation by this process


def _mode() -> str:
    mode = os.environ.get(_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "numba", "numpy"):
        from ..errors import TablelmError

        raise TablelmError(f"{_ENV} must be auto, numba or numpy. Got {mode!r}; unset it for auto.")
    return mode


def _jit_after() -> float:
    try:
        return float(os.environ.get("TABLELM_JIT_AFTER", "1.0"))
    except ValueError:
        return 1.0


def warm() -> bool:
    """Load the numba kernels now (import numba, compile or read the on-disk cache) unless
    ``TABLELM_KERNEL=numpy``; returns whether they are available. For long-running processes
    (a server, a benchmark) that know many queries will follow."""
    global _jit_module
    if _jit_module is None:
        _jit_module = False
        if _mode() != "numpy":
            try:
                from . import _jit
            except ImportError:  # numba not installed: the numpy path
                pass
            else:
                _jit_module = _jit
    return bool(_jit_module)


def compiled():
    """The numba kernels (module ``_jit``) if queries use them now, else None (see ``_ENV``)."""
    if _jit_module is None:
        mode = _mode()
        if mode == "numba" or (mode == "auto" and _numpy_seconds >= _jit_after()):
            warm()
    return _jit_module or None


def _spent(t0: float) -> None:
    global _numpy_seconds
    _numpy_seconds += time.perf_counter() - t0


def backend() -> str:
    """``"numba"`` or ``"numpy"``: which implementation the next query uses in this process."""
    return "numba" if compiled() is not None else "numpy"


def prepare(terms, idf_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(multitokens, weights, groups) of ``terms`` in scoring order: the free terms in plan
    order, then the stretches by id (stable within one). ``idf_of(mts)`` gives the idfs."""
    mts = np.fromiter((t.mt for t in terms), dtype=np.int64, count=len(terms))
    w = np.fromiter((t.weight for t in terms), dtype=np.float64, count=len(terms))
    grp = np.fromiter((-1 if t.stretch is None else t.stretch for t in terms), dtype=np.int64, count=len(terms))
    if len(mts):
        w = w * idf_of(mts)
        if (grp >= 0).any():
            order = np.lexsort((np.arange(len(grp)), grp))  # -1 first: the free terms, in plan order
            mts, w, grp = mts[order], w[order], grp[order]
    return mts, w, grp


class Postings:
    """The arrays a query reads, in the types the kernels are compiled for (read-only views), and
    the compiled kernels' impact cache of this parameter set: the float32 impact of each posting
    of the rows queried so far (``imp``, filled row by row; ``ready`` marks the rows filled), and
    the largest impact of each row filled (``rmax``: the bound of the kernels' pruning; NaN for a
    row that cannot be pruned: a NaN impact, or entities not ascending)."""

    #: None: the kernels score every posting (a Postings made field by field, tablelm/submodels.py)
    rmax: np.ndarray | None = None

    def __init__(self, tables, norm: np.ndarray, fw, k1: float):
        self.indptr = _ro(tables.post_indptr)
        # encoded tables (tables/codecs.py) stay encoded: a fill decodes its rows. The entities of the
        # postings are then a cache like ``imp`` (the kernels read it for the rows filled only),
        # ``docs_table`` the stored table that the numpy path reads
        self.docs_table = tables.post_docs
        if isinstance(self.docs_table, Encoded):
            self.docs = np.zeros(len(self.docs_table), dtype=self.docs_table.dtype)
        else:
            self.docs = self.docs_table = _ro(tables.post_docs)
        self.tf = tables.post_tf if isinstance(tables.post_tf, Encoded) else _ro(tables.post_tf)
        self.norm = _ro(np.asarray(norm, dtype=np.float64))
        self.fw = np.ascontiguousarray(fw, dtype=np.float64)
        self.kp1 = float(k1) + 1.0
        self.n_docs = len(self.norm)
        # zeroed on allocation: the pages of rows never queried cost no memory
        self.imp = np.zeros(len(self.docs), dtype=np.float32)
        self.ready = np.zeros(max(len(self.indptr) - 1, 0), dtype=np.bool_)
        self.rmax = np.zeros(len(self.ready), dtype=np.float32)
        #: the rows whose entities the cache holds (``ready`` ones too, when the table is encoded)
        self.docs_ready = self.ready.copy()

    def impacts(self, jit, mts: np.ndarray) -> np.ndarray:
        """``imp`` with the rows ``mts`` filled (those not yet: by the compiled ``fill_impacts``).
        Two threads may fill one row at once: they write the same floats, and a row is marked
        ready only after its fill returned."""
        if len(mts):
            todo = mts[~self.ready[mts]]
            if len(todo):
                todo = np.unique(todo)
                self._fill(jit, self.indptr, todo, todo)
        return self.imp

    def _fill(self, jit, indptr, at: np.ndarray, rows: np.ndarray) -> None:
        """Impacts of the rows ``at`` of ``indptr`` (this table's rows ``rows``), then marked ready."""
        if isinstance(self.tf, Encoded) or self.docs is not self.docs_table:
            # the rows' postings decoded (their entities into the cache), their impacts computed alike
            _, idx = gather(indptr, at)
            sub = np.zeros(len(at) + 1, dtype=np.int64)
            np.cumsum(np.asarray(indptr[np.asarray(at) + 1], dtype=np.int64)
                      - np.asarray(indptr[at], dtype=np.int64), out=sub[1:])
            idx = idx.astype(np.int64, copy=False)  # positions of whole rows: in range, decoded unchecked
            if self.docs is not self.docs_table:
                docs = self.docs_table._take(idx)
                self.docs[idx] = docs
                self.docs_ready[rows] = True
            else:
                docs = self.docs[idx]
            tf = self.tf.take_rows(idx) if hasattr(self.tf, "take_rows") else self.tf[idx]
            imp = np.zeros(len(idx), dtype=np.float32)
            top = np.zeros(len(at), dtype=np.float32)
            jit.fill_impacts(sub, docs, tf, self.fw, self.kp1, self.norm, np.arange(len(at), dtype=np.int64), imp,
                             top)
            self.imp[idx] = imp
            if self.rmax is not None:
                self.rmax[rows] = top
        elif indptr is self.indptr and self.rmax is not None:  # the rows' bounds written in place
            jit.fill_impacts(indptr, self.docs, self.tf, self.fw, self.kp1, self.norm, at, self.imp, self.rmax)
        else:
            top = np.zeros(max(len(indptr) - 1, 0), dtype=np.float32)
            jit.fill_impacts(indptr, self.docs, self.tf, self.fw, self.kp1, self.norm, at, self.imp, top)
            if self.rmax is not None:
                self.rmax[rows] = top[at]
        self.ready[rows] = True

    def row_docs(self, mt: int, s: int, e: int) -> np.ndarray:
        """The entities of row ``mt`` (postings ``s:e``), ascending: of an encoded table decoded once
        into the cache (a card's every term reads its row, some of 10^5 postings at 1M)."""
        if self.docs is self.docs_table:
            return self.docs[s:e]
        if not self.docs_ready[mt]:
            self.docs[s:e] = self.docs_table[s:e]
            self.docs_ready[mt] = True
        return self.docs[s:e]

    def docs_at(self, idx: np.ndarray) -> np.ndarray:
        """The entities of the postings ``idx``, from the stored table (any row, filled or not)."""
        return np.asarray(self.docs_table[idx])

    def with_bounds(self, bounds: np.ndarray, rows: np.ndarray) -> Postings:
        """A copy that reads row pointers ``bounds`` instead, whose row ``2j`` (postings
        ``bounds[2j]:bounds[2j+1]``) is this table's row ``rows[j]`` (see SplitModel._direct); its
        rows are filled in this one's impact cache first, so the two share it."""
        jit = compiled()
        if jit is not None and len(rows):
            todo = ~self.ready[rows]
            if todo.any():
                self._fill(jit, bounds, 2 * np.flatnonzero(todo), rows[todo])
        out = copy.copy(self)
        out.indptr = bounds
        out.ready = np.ones(max(len(bounds) - 1, 0), dtype=np.bool_)
        if self.rmax is not None:  # row 2j's bound: its row's (the whole row, filled above)
            out.rmax = np.zeros(len(out.ready), dtype=np.float32)
            out.rmax[2 * np.arange(len(rows))] = self.rmax[rows]
        out.docs_ready = np.zeros(len(out.ready), dtype=np.bool_)  # row_docs of its rows: decoded again
        return out


def _ro(a) -> np.ndarray:
    v = np.asarray(a).view()
    v.flags.writeable = False
    return v


# ------------------------------------------------------------------ numpy implementation


def gather(indptr, mts):
    """Positions of the rows ``mts`` of a CSR table, concatenated: (term index, entry index)."""
    mts = np.asarray(mts, dtype=np.int64)
    starts = np.asarray(indptr[mts], dtype=np.int64)
    lens = np.asarray(indptr[mts + 1], dtype=np.int64) - starts
    idx = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    return np.repeat(np.arange(len(mts)), lens), idx


def impacts_at(post: Postings, idx: np.ndarray) -> np.ndarray:
    """BM25F saturation tf·(k1+1)/(tf + k1·(1−b+b·len/avglen)) of the postings ``idx`` (float32)."""
    tf = post.tf[idx]
    tfw = tf[:, 0] * post.fw[0]
    for f in range(1, tf.shape[1]):
        tfw = tfw + tf[:, f] * post.fw[f]
    return (tfw * post.kp1 / (tfw + post.norm[post.docs_at(idx)])).astype(np.float32)


def _accumulate_numpy(post: Postings, mts, w, grp) -> np.ndarray:
    scores = np.zeros(post.n_docs)
    if not len(mts):
        return scores
    term, idx = gather(post.indptr, mts)
    docs = np.asarray(post.docs_at(idx), dtype=np.int64)
    contrib = w[term] * impacts_at(post, idx)
    group = grp[term]
    if (group >= 0).any():
        docs, contrib = _best_of_stretch(docs, contrib, group)
    return np.bincount(docs, weights=contrib, minlength=post.n_docs)


def _best_of_stretch(docs: np.ndarray, contrib: np.ndarray, group: np.ndarray):
    """Postings with the phrases of each stretch reduced to their best one per entity.

    Returns (docs, contributions): the ungrouped postings unchanged, then one
    (entity, max contribution) per (stretch, entity), by stretch then entity.
    """
    free = group < 0
    g = np.flatnonzero(~free)
    key = group[g] * (int(docs.max()) + 1) + docs[g]
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    best = np.maximum.reduceat(contrib[g][order], starts)
    return np.concatenate([docs[free], docs[g][order][starts]]), np.concatenate([contrib[free], best])


def _top_k_numpy(scores: np.ndarray, k: int, exclude=None) -> np.ndarray:
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = 0.0
    cand = np.flatnonzero(scores > 0)
    if k < len(cand):  # partition the positive scores only: usually far fewer than the entities
        kth = -np.partition(-scores[cand], k - 1)[k - 1]
        cand = cand[scores[cand] >= kth]
    order = np.lexsort((cand, -scores[cand]))
    return cand[order][:k]


# ------------------------------------------------------------------ the calls


def accumulate(post: Postings, mts, w, grp) -> np.ndarray:
    """The score of every entity (zero where no term matches), a float64 array."""
    jit = compiled()
    if jit is None:
        t0 = time.perf_counter()
        scores = _accumulate_numpy(post, mts, w, grp)
        _spent(t0)
        return scores
    scores = np.zeros(post.n_docs)
    if len(mts):
        jit.accumulate(post.indptr, post.docs, post.impacts(jit, mts), mts, w, grp, scores, *_scratch(post.n_docs))
    return scores


def _scratch(n: int, touched: bool = False) -> tuple:
    """Zeroed per-entity work arrays of the kernels: np.zeros maps zero pages, so only the pages
    a query touches cost anything. (acc, seen, touched,) best, gseen, gtouched."""
    group = (np.zeros(n), np.zeros(n, dtype=np.bool_), np.empty(n, dtype=np.int32))
    if not touched:
        return group
    return (np.zeros(n), np.zeros(n, dtype=np.bool_), np.empty(n, dtype=np.int32), *group)


def _prune() -> bool:
    """Whether the compiled batch prunes (``TABLELM_PRUNE=0``: every posting scored, for comparisons)."""
    return os.environ.get("TABLELM_PRUNE", "1").strip() != "0"


def _prune_per_k(jit) -> int:
    """Postings per result from which a query is pruned (``_jit.PRUNE_PER_K``; ``TABLELM_PRUNE_PER_K=0``:
    every query, as the tests do on small collections)."""
    try:
        return max(int(os.environ.get("TABLELM_PRUNE_PER_K", jit.PRUNE_PER_K)), 0)
    except ValueError:
        return int(jit.PRUNE_PER_K)


def top_k(scores: np.ndarray, k: int, exclude=None) -> np.ndarray:
    """Indices of the ``k`` best positive scores, best first; ties broken by entity order."""
    jit = compiled()
    if jit is None:
        t0 = time.perf_counter()
        idx = _top_k_numpy(scores, k, exclude)
        _spent(t0)
        return idx
    mask = np.zeros(0, dtype=np.bool_)
    if exclude is not None and len(exclude):
        mask = np.zeros(len(scores), dtype=np.bool_)
        mask[exclude] = True
    return jit.top_k_dense(np.ascontiguousarray(scores, dtype=np.float64), int(k), mask)


def prepare_many(term_lists: list, idf_of) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`prepare` of several queries at once, concatenated: (query pointers, multitokens,
    weights, groups), query ``i``'s terms at ``ptr[i]:ptr[i+1]``, each in :func:`prepare`'s order.
    One idf lookup and one sort for the whole batch instead of a few numpy calls per query."""
    n = len(term_lists)
    ptr = np.zeros(n + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(ts) for ts in term_lists])
    flat = [t for ts in term_lists for t in ts]
    mts = np.fromiter((t.mt for t in flat), dtype=np.int64, count=len(flat))
    w = np.fromiter((t.weight for t in flat), dtype=np.float64, count=len(flat))
    grp = np.fromiter((-1 if t.stretch is None else t.stretch for t in flat), dtype=np.int64, count=len(flat))
    return prepare_arrays(ptr, mts, w, grp, idf_of)


def prepare_arrays(ptr: np.ndarray, mts: np.ndarray, w: np.ndarray, grp: np.ndarray, idf_of):
    """:func:`prepare_many` of terms given as arrays in plan order (query ``i``'s at ``ptr[i]:ptr[i+1]``;
    ``w``: the plan weights, ``grp``: stretch ids, -1 for none)."""
    n = len(ptr) - 1
    if len(mts):
        w = w * idf_of(mts)
        if (grp >= 0).any():  # per query: the free terms in plan order, then the stretches by id
            owner = np.repeat(np.arange(n), np.diff(ptr))
            order = np.lexsort((np.arange(len(grp)), grp, owner))
            mts, w, grp = mts[order], w[order], grp[order]
    return ptr, mts, w, grp


def search_batch(post: Postings, queries, k: int, agents: np.ndarray, boost: float, bits=None) -> list:
    """Top ``k`` of each query. ``queries``: :func:`prepare_many`'s (pointers, multitokens, weights,
    groups), or a list of (mts, weights, groups, agent bit) tuples of :func:`prepare`; ``bits``: the
    agent bit of each query (0: no agent factor; with the tuples, their fourth item). An entity whose
    agent bits include the query's has its score multiplied by ``boost``. Returns one (entity
    indices, scores) per query."""
    r_ptr, r_docs, r_scores = search_batch_flat(post, queries, k, agents, boost, bits)
    bounds = r_ptr.tolist()
    return [(r_docs[lo:hi], r_scores[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def search_batch_flat(post: Postings, queries, k: int, agents: np.ndarray, boost: float, bits=None):
    """:func:`search_batch`'s results concatenated: (pointers, entities, scores), query ``i``'s at
    ``ptr[i]:ptr[i+1]`` (a batch's answer made from them needs no array per query)."""
    if isinstance(queries, list):
        bits = [q[3] for q in queries]
        ptr = np.zeros(len(queries) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(q[0]) for q in queries])
        cat = lambda i, dt: np.concatenate([q[i] for q in queries]).astype(dt, copy=False) if queries \
            else np.zeros(0, dt)
        queries = (ptr, cat(0, np.int64), cat(1, np.float64), cat(2, np.int64))
    ptr, mts, w, grp = queries
    n = len(ptr) - 1
    bits = np.zeros(n, dtype=np.int64) if bits is None else np.asarray(bits, dtype=np.int64)
    jit = compiled()
    if jit is None:
        t0 = time.perf_counter()
        out = []
        for i in range(n):
            lo, hi = ptr[i], ptr[i + 1]
            scores = _accumulate_numpy(post, mts[lo:hi], w[lo:hi], grp[lo:hi])
            if bits[i]:
                scores = scores * np.where(agents & bits[i], boost, 1.0)
            idx = _top_k_numpy(scores, k)
            out.append((idx, scores[idx]))
        _spent(t0)
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(idx) for idx, _ in out], out=ptr[1:])
        if not out:
            return ptr, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return ptr, np.concatenate([idx for idx, _ in out]), np.concatenate([sc for _, sc in out])
    imp = post.impacts(jit, mts)
    rmax = post.rmax if post.rmax is not None and _prune() else np.zeros(0, dtype=np.float32)
    return jit.search_batch(
        post.indptr, post.docs, imp, rmax, _ro(agents), ptr, mts, w, grp, bits, float(boost), int(k),
        _prune_per_k(jit), *_scratch(post.n_docs, touched=True))
