"""The numba kernels of kernel.py (imported only when numba is installed and enabled).

Same arithmetic as kernel.py's numpy implementation (each posting's impact computed once per
parameter set, kept in ``Postings.imp``), operation for operation, so the
two give identical floats: no fastmath (no reassociation, no fused multiply-add), and
numpy's error model (0/0 is NaN, not an exception). Compiled functions are cached on
disk: numba writes them next to this file, or under the user's cache directory
(``~/.cache/numba``) when the package folder is read-only.
"""

from __future__ import annotations

import numba
import numpy as np


def _jit(fn=None, **options):
    """``numba.njit`` with the on-disk cache (when some folder is writable) and numpy's error model."""
    if fn is None:
        return lambda f: _jit(f, **options)
    options.update(nogil=True, error_model="numpy")
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache location at all: compile in every process
        return numba.njit(**options)(fn)


@_jit(inline="always")
def _impact(tf, fw, kp1, nrm, p):
    tfw = 0.0
    for f in range(tf.shape[1]):
        tfw += tf[p, f] * fw[f]
    return np.float32(tfw * kp1 / (tfw + nrm))


@_jit
def fill_impacts(indptr, docs, tf, fw, kp1, norm, mts, imp):
    """The float32 BM25F impact of every posting of the rows ``mts`` into ``imp``."""
    for mt in mts:
        for p in range(indptr[mt], indptr[mt + 1]):
            imp[p] = _impact(tf, fw, kp1, norm[docs[p]], p)


@_jit
def _score_query(indptr, docs, imp, mts, w, grp, lo, hi, acc, seen, touched, n_touched, best, gseen, gtouched):
    """Add the terms lo..hi of one query into ``acc``; entities first touched are appended to
    ``touched`` (when ``seen`` is given, i.e. non-empty). Returns the new number touched."""
    track = len(seen) > 0
    j = lo
    while j < hi:
        g = grp[j]
        if g < 0:
            wj = w[j]
            mt = mts[j]
            for p in range(indptr[mt], indptr[mt + 1]):
                d = docs[p]
                c = wj * np.float64(imp[p])
                if track and not seen[d]:
                    seen[d] = True
                    touched[n_touched] = d
                    n_touched += 1
                acc[d] += c
            j += 1
            continue
        # one stretch: the best of its phrases per entity
        ng = 0
        while j < hi and grp[j] == g:
            wj = w[j]
            mt = mts[j]
            for p in range(indptr[mt], indptr[mt + 1]):
                d = docs[p]
                c = wj * np.float64(imp[p])
                if not gseen[d]:
                    gseen[d] = True
                    gtouched[ng] = d
                    ng += 1
                    best[d] = c
                elif c > best[d] or c != c:  # np.maximum: NaN wins
                    best[d] = c
            j += 1
        for i in range(ng):
            d = gtouched[i]
            if track and not seen[d]:
                seen[d] = True
                touched[n_touched] = d
                n_touched += 1
            acc[d] += best[d]
            gseen[d] = False
            best[d] = 0.0
    return n_touched


@_jit
def accumulate(indptr, docs, imp, mts, w, grp, scores, best, gseen, gtouched):
    """Dense scores of one query into ``scores`` (zeros on entry)."""
    none = np.zeros(0, dtype=np.bool_)
    _score_query(indptr, docs, imp, mts, w, grp, 0, len(mts), scores, none,
                 np.zeros(0, dtype=np.int32), 0, best, gseen, gtouched)


@_jit(inline="always")
def _below(s1, d1, s2, d2):
    """Whether (score s1, entity d1) ranks below (s2, d2): lower score, or the same and a higher entity."""
    return s1 < s2 or (s1 == s2 and d1 > d2)


@_jit
def _sift_down(hs, hd, i, n):
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and _below(hs[c + 1], hd[c + 1], hs[c], hd[c]):
            c += 1
        if not _below(hs[c], hd[c], hs[i], hd[i]):
            return
        hs[i], hs[c] = hs[c], hs[i]
        hd[i], hd[c] = hd[c], hd[i]
        i = c


@_jit
def _push(hs, hd, n, k, s, d):
    """Put the candidate (s, d) in the heap of the k best so far (its root: the worst of them),
    which holds n; returns the new n. Callers call it only when n < k or (s, d) ranks above the
    root (``hs[0]``, ``hd[0]``): most candidates are turned away by that comparison alone."""
    if n < k:
        i = n
        hs[i] = s
        hd[i] = d
        while i > 0:  # sift up
            up = (i - 1) // 2
            if not _below(hs[i], hd[i], hs[up], hd[up]):
                break
            hs[i], hs[up] = hs[up], hs[i]
            hd[i], hd[up] = hd[up], hd[i]
            i = up
        return n + 1
    hs[0] = s
    hd[0] = d
    _sift_down(hs, hd, 0, n)
    return n


@_jit
def _emit(hs, hd, n, out_s, out_d, at):
    """The n heap entries into out[at:], best first (ties: lower entity first); returns n."""
    order = np.argsort(hd[:n], kind="mergesort")
    order = order[np.argsort(-hs[:n][order], kind="mergesort")]
    for r in range(n):
        out_s[at + r] = hs[order[r]]
        out_d[at + r] = hd[order[r]]
    return n


@_jit
def top_k_dense(scores, k, exclude):
    """Indices of the k best positive scores, best first (ties: lower index first)."""
    hs = np.empty(max(k, 1), dtype=np.float64)
    hd = np.empty(max(k, 1), dtype=np.int64)
    n = 0
    masked = len(exclude) > 0
    for d in range(len(scores)):
        s = scores[d]
        if s > 0 and not (masked and exclude[d]) and k > 0 and (n < k or s > hs[0] or (s == hs[0] and d < hd[0])):
            n = _push(hs, hd, n, k, s, d)
    out_s = np.empty(n, dtype=np.float64)
    out_d = np.empty(n, dtype=np.int64)
    _emit(hs, hd, n, out_s, out_d, 0)
    return out_d


@_jit
def search_batch(indptr, docs, imp, agents, q_ptr, mts, w, grp, bits, boost, k, acc, seen, touched, best, gseen,
                 gtouched):
    """Top k of each query (terms q_ptr[q]..q_ptr[q+1]); scratch arrays are zeros of n_docs on entry
    and are left so. Returns (result pointers, entities, scores)."""
    n_q = len(q_ptr) - 1
    out_ptr = np.zeros(n_q + 1, dtype=np.int64)
    out_d = np.empty(n_q * k, dtype=np.int64)
    out_s = np.empty(n_q * k, dtype=np.float64)
    hs = np.empty(max(k, 1), dtype=np.float64)  # one query's k best so far (a heap)
    hd = np.empty(max(k, 1), dtype=np.int64)
    at = 0
    n_docs = len(acc)
    none = np.zeros(0, dtype=np.bool_)
    for q in range(n_q):
        lo, hi = q_ptr[q], q_ptr[q + 1]
        n_post = 0
        for j in range(lo, hi):
            n_post += indptr[mts[j] + 1] - indptr[mts[j]]
        # many postings for the entities: scan them all afterwards rather than track the touched
        # ones (a random read and an unpredictable branch per posting)
        dense = n_post * 4 >= n_docs
        nt = _score_query(indptr, docs, imp, mts, w, grp, lo, hi, acc, none if dense else seen, touched, 0, best,
                          gseen, gtouched)
        bit = bits[q]
        n = 0
        for i in range(n_docs if dense else nt):
            d = i if dense else touched[i]
            s = acc[d]
            if dense:
                if s == 0.0:
                    continue
            else:
                seen[d] = False
            acc[d] = 0.0
            if bit != 0:
                s = s * (boost if agents[d] & bit else 1.0)
            if s > 0 and k > 0 and (n < k or s > hs[0] or (s == hs[0] and d < hd[0])):
                n = _push(hs, hd, n, k, s, d)
        at += _emit(hs, hd, n, out_s, out_d, at)
        out_ptr[q + 1] = at
    return out_ptr, out_d[:at], out_s[:at]
