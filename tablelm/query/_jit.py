"""The numba kernels of kernel.py (imported only when numba is installed and enabled).

Same arithmetic as kernel.py's numpy implementation, operation for operation, so the
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
    return np.float64(np.float32(tfw * kp1 / (tfw + nrm)))


@_jit
def _score_query(indptr, docs, tf, fw, kp1, norm, mts, w, grp, lo, hi, acc, seen, touched, n_touched,
                 best, gseen, gtouched):
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
                c = wj * _impact(tf, fw, kp1, norm[d], p)
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
                c = wj * _impact(tf, fw, kp1, norm[d], p)
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
def accumulate(indptr, docs, tf, fw, kp1, norm, mts, w, grp, scores, best, gseen, gtouched):
    """Dense scores of one query into ``scores`` (zeros on entry)."""
    none = np.zeros(0, dtype=np.bool_)
    _score_query(indptr, docs, tf, fw, kp1, norm, mts, w, grp, 0, len(mts), scores, none,
                 np.zeros(0, dtype=np.int32), 0, best, gseen, gtouched)


@_jit
def _select(cs, cd, n, k, out_s, out_d, at):
    """The k best of the n candidates (cs[i], cd[i]) into out[at:], best first (ties: lower entity
    first); returns how many. A partition finds the k-th score (O(n)), then only those sort."""
    if n > k:
        thr = -np.partition(-cs[:n], k - 1)[k - 1]
        m = 0
        t = 0
        ties = np.empty(n, dtype=np.int64)
        for i in range(n):  # strictly above the k-th score: all in; equal to it: the lowest entities
            s = cs[i]
            if s > thr:  # (compacted in place: position i is written only from step i on)
                cs[m] = s
                cd[m] = cd[i]
                m += 1
            elif s == thr:
                ties[t] = cd[i]
                t += 1
        ties = np.sort(ties[:t])
        for i in range(min(k - m, t)):
            cs[m] = thr
            cd[m] = ties[i]
            m += 1
        n = m
    order = np.argsort(cd[:n], kind="mergesort")
    order = order[np.argsort(-cs[:n][order], kind="mergesort")]
    for r in range(n):
        out_s[at + r] = cs[order[r]]
        out_d[at + r] = cd[order[r]]
    return n


@_jit
def top_k_dense(scores, k, exclude):
    """Indices of the k best positive scores, best first (ties: lower index first)."""
    cs = np.empty(len(scores), dtype=np.float64)
    cd = np.empty(len(scores), dtype=np.int64)
    n = 0
    masked = len(exclude) > 0
    for d in range(len(scores)):
        s = scores[d]
        if s > 0 and not (masked and exclude[d]):
            cs[n] = s
            cd[n] = d
            n += 1
    out_s = np.empty(min(n, k), dtype=np.float64)
    out_d = np.empty(min(n, k), dtype=np.int64)
    _select(cs, cd, n, k, out_s, out_d, 0)
    return out_d


@_jit
def search_batch(indptr, docs, tf, fw, kp1, norm, agents, q_ptr, mts, w, grp, bits, boost, k, acc, seen, touched,
                 best, gseen, gtouched):
    """Top k of each query (terms q_ptr[q]..q_ptr[q+1]); scratch arrays are zeros of n_docs on entry
    and are left so. Returns (result pointers, entities, scores)."""
    n_q = len(q_ptr) - 1
    out_ptr = np.zeros(n_q + 1, dtype=np.int64)
    out_d = np.empty(n_q * k, dtype=np.int64)
    out_s = np.empty(n_q * k, dtype=np.float64)
    cs = np.empty(len(acc), dtype=np.float64)  # one query's candidates
    cd = np.empty(len(acc), dtype=np.int64)
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
        nt = _score_query(indptr, docs, tf, fw, kp1, norm, mts, w, grp, lo, hi, acc, none if dense else seen,
                          touched, 0, best, gseen, gtouched)
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
            if s > 0:
                cs[n] = s
                cd[n] = d
                n += 1
        at += _select(cs, cd, n, k, out_s, out_d, at)
        out_ptr[q + 1] = at
    return out_ptr, out_d[:at], out_s[:at]
