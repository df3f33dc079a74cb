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


@_jit(inline="always")
def _worse(sa, da, sb, db):
    """Whether (score sa, entity da) ranks below (sb, db): lower score, or equal and later entity."""
    return sa < sb or (sa == sb and da > db)


@_jit
def _sift_down(hs, hd, n, i):
    while True:
        lo = 2 * i + 1
        if lo >= n:
            return
        c = lo
        if lo + 1 < n and _worse(hs[lo + 1], hd[lo + 1], hs[lo], hd[lo]):
            c = lo + 1
        if _worse(hs[c], hd[c], hs[i], hd[i]):
            hs[i], hs[c] = hs[c], hs[i]
            hd[i], hd[c] = hd[c], hd[i]
            i = c
        else:
            return


@_jit
def _offer(hs, hd, n, k, s, d):
    """Offer (s, d) to the heap of the k best (worst at the root); returns its new size."""
    if n < k:
        i = n
        hs[i] = s
        hd[i] = d
        n += 1
        while i > 0:  # sift up
            parent = (i - 1) // 2
            if _worse(hs[i], hd[i], hs[parent], hd[parent]):
                hs[i], hs[parent] = hs[parent], hs[i]
                hd[i], hd[parent] = hd[parent], hd[i]
                i = parent
            else:
                break
    elif _worse(hs[0], hd[0], s, d):
        hs[0] = s
        hd[0] = d
        _sift_down(hs, hd, n, 0)
    return n


@_jit
def _drain(hs, hd, n, out_s, out_d, at):
    """The heap's entries into out[at:at+n], best first."""
    for r in range(n - 1, -1, -1):  # pop the worst into the last free place
        out_s[at + r] = hs[0]
        out_d[at + r] = hd[0]
        hs[0] = hs[r]
        hd[0] = hd[r]
        _sift_down(hs, hd, r, 0)


@_jit
def top_k_dense(scores, k, exclude):
    """Indices of the k best positive scores, best first (ties: lower index first)."""
    hs = np.empty(k, dtype=np.float64)
    hd = np.empty(k, dtype=np.int64)
    n = 0
    masked = len(exclude) > 0
    for d in range(len(scores)):
        s = scores[d]
        if s > 0 and not (masked and exclude[d]):
            if n < k or _worse(hs[0], hd[0], s, d):
                n = _offer(hs, hd, n, k, s, d)
    out_s = np.empty(n, dtype=np.float64)
    out_d = np.empty(n, dtype=np.int64)
    _drain(hs, hd, n, out_s, out_d, 0)
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
    hs = np.empty(k, dtype=np.float64)
    hd = np.empty(k, dtype=np.int64)
    at = 0
    for q in range(n_q):
        nt = _score_query(indptr, docs, tf, fw, kp1, norm, mts, w, grp, q_ptr[q], q_ptr[q + 1], acc, seen,
                          touched, 0, best, gseen, gtouched)
        bit = bits[q]
        n = 0
        for i in range(nt):
            d = touched[i]
            s = acc[d]
            if bit != 0:
                s = s * (boost if agents[d] & bit else 1.0)
            if s > 0 and (n < k or _worse(hs[0], hd[0], s, d)):
                n = _offer(hs, hd, n, k, s, d)
            acc[d] = 0.0
            seen[d] = False
        _drain(hs, hd, n, out_s, out_d, at)
        at += n
        out_ptr[q + 1] = at
    return out_ptr, out_d[:at], out_s[:at]
