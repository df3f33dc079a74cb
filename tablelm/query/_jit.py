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


#: score bins of the top-k selection (see _select)
_BINS = 1024


@_jit
def _select(cs, cd, m, mx, k, hist, out_s, out_d, at):
    """The k best of the m candidates ``cs[:m]`` (positive scores, at most ``mx``) of the entities
    ``cd[:m]`` into ``out_*[at:]``, best first, ties by lower entity; returns how many (min(k, m)).

    A histogram of the scores in _BINS equal bins of [0, mx] gives the lowest bin that, with the bins
    above it, holds k candidates: only those (about k) are sorted. The bin of a score never decreases
    with it, so every candidate left out scores below every one kept: exact, and branch-free
    passes instead of a heap's unpredictable sifts (a heap of k=100 cost 20-25 µs a query)."""
    if k <= 0 or m <= 0:
        return 0
    if m > k:
        scale = _BINS / mx
        hist[:] = 0
        for i in range(m):
            hist[min(int(cs[i] * scale), _BINS - 1)] += 1
        cum = 0
        low = _BINS - 1
        while low > 0:
            cum += hist[low]
            if cum >= k:
                break
            low -= 1
        j = 0
        for i in range(m):
            keep = min(int(cs[i] * scale), _BINS - 1) >= low
            cs[j] = cs[i]
            cd[j] = cd[i]
            j += keep
        m = j
    order = np.argsort(-cs[:m])
    n = min(k, m)
    r = 0
    while r < n:  # equal scores: by entity (an insertion sort within each run of ties)
        e = r + 1
        while e < m and cs[order[e]] == cs[order[r]]:
            e += 1
        for i in range(r + 1, e):
            x = order[i]
            j = i - 1
            while j >= r and cd[order[j]] > cd[x]:
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = x
        r = e
    for i in range(n):
        out_s[at + i] = cs[order[i]]
        out_d[at + i] = cd[order[i]]
    return n


@_jit
def top_k_dense(scores, k, exclude):
    """Indices of the k best positive scores, best first (ties: lower index first)."""
    n_docs = len(scores)
    cs = np.empty(n_docs + 1, dtype=np.float64)
    cd = np.empty(n_docs + 1, dtype=np.int64)
    masked = len(exclude) > 0
    m = 0
    mx = 0.0
    for d in range(n_docs):
        s = scores[d]
        cs[m] = s
        cd[m] = d
        m += s > 0 and not (masked and exclude[d])
        mx = s if (s > mx and not (masked and exclude[d])) else mx
    out_s = np.empty(max(min(k, m), 0), dtype=np.float64)
    out_d = np.empty(max(min(k, m), 0), dtype=np.int64)
    _select(cs, cd, m, mx, k, np.zeros(_BINS, dtype=np.int64), out_s, out_d, 0)
    return out_d


@_jit
def search_batch(indptr, docs, imp, agents, q_ptr, mts, w, grp, bits, boost, k, acc, seen, touched, best, gseen,
                 gtouched):
    """Top k of each query (terms q_ptr[q]..q_ptr[q+1]); scratch arrays are zeros of n_docs on entry
    and are left so. Returns (result pointers, entities, scores)."""
    n_q = len(q_ptr) - 1
    kk = max(k, 0)
    out_ptr = np.zeros(n_q + 1, dtype=np.int64)
    out_d = np.empty(n_q * kk, dtype=np.int64)
    out_s = np.empty(n_q * kk, dtype=np.float64)
    n_docs = len(acc)
    cs = np.empty(n_docs + 1, dtype=np.float64)  # one query's candidates: positive scores, entities
    cd = np.empty(n_docs + 1, dtype=np.int64)
    hist = np.zeros(_BINS, dtype=np.int64)
    at = 0
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
        m = 0
        mx = 0.0
        for i in range(n_docs if dense else nt):
            d = i if dense else touched[i]
            s = acc[d]
            acc[d] = 0.0
            if not dense:
                seen[d] = False
            if bit != 0:
                s = s * (boost if agents[d] & bit else 1.0)
            cs[m] = s  # written always, kept when positive: no branch to mispredict
            cd[m] = d
            m += s > 0
            mx = s if s > mx else mx
        at += _select(cs, cd, m, mx, kk, hist, out_s, out_d, at)
        out_ptr[q + 1] = at
    return out_ptr, out_d[:at], out_s[:at]


# ------------------------------------------------------------------ planning (plan.py's Planner._finish)


@_jit
def finish_plans(q_ptr, mts, words, totals, s_ptr, seq, cap, contained_w, phrase_w, k3, stretch_mode,
                 o_mt, o_n, o_role, o_w, o_qtf, o_stretch):
    """Planner._finish for prompts without forced multitokens, operation for operation: query q's matched
    multitokens are ``mts[q_ptr[q]:q_ptr[q+1]]`` (ascending; ``words``: their stem ids, -1 padded;
    ``totals``: their corpus counts), its stem ids in order ``seq[s_ptr[q]:s_ptr[q+1]]``. Writes the
    terms in plan order (longest first, then by id) into the ``o_*`` arrays at the same positions:
    multitoken, words, role (0 prompt, 2 contained, 3 generic), weight, qtf, stretch (-1: none)."""
    n_q = len(q_ptr) - 1
    width = words.shape[1]
    for q in range(n_q):
        lo, hi = q_ptr[q], q_ptr[q + 1]
        n = hi - lo
        if n == 0:
            continue
        lens = np.zeros(n, dtype=np.int64)
        uniq = np.zeros(n, dtype=np.int64)  # distinct words (a frozenset's size)
        role = np.zeros(n, dtype=np.int64)
        for j in range(n):
            c = 0
            u = 0
            for a in range(width):
                x = words[lo + j, a]
                if x >= 0:
                    c += 1
                    dup = False
                    for b in range(a):
                        if words[lo + j, b] == x:
                            dup = True
                    if not dup:
                        u += 1
            lens[j] = c
            uniq[j] = u
            if cap != 0.0 and totals[lo + j] > cap:
                role[j] = 3
        # distillation: a word inside a longer matched multitoken, or a phrase whose words are a proper
        # subset of a longer one's, is contained (the longer ones: multi-word, not generic)
        for j in range(n):
            if role[j] != 0:
                continue
            for i in range(n):
                if lens[i] < 2 or role[i] == 3 or i == j:
                    continue
                if lens[j] < 2 and uniq[i] > 0:
                    hit = False
                    for b in range(width):
                        if words[lo + i, b] == mts[lo + j]:
                            hit = True
                    if hit:
                        role[j] = 2
                        break
                elif lens[j] >= 2 and uniq[i] > uniq[j]:
                    sub = True
                    for a in range(width):
                        x = words[lo + j, a]
                        if x < 0:
                            continue
                        found = False
                        for b in range(width):
                            if words[lo + i, b] == x:
                                found = True
                        if not found:
                            sub = False
                            break
                    if sub:
                        role[j] = 2
                        break
        # query term frequency: how often the prompt says each word
        s_lo, s_hi = s_ptr[q], s_ptr[q + 1]
        repeated = False
        if k3 > 0:
            for a in range(s_lo, s_hi):
                if seq[a] < 0:
                    continue
                for b in range(a + 1, s_hi):
                    if seq[b] == seq[a]:
                        repeated = True
        # stretches: phrases (multi-word, prompt or contained) sharing words, connected; id = smallest phrase id
        comp = np.full(n, -1, dtype=np.int64)
        if stretch_mode:
            for j in range(n):
                if lens[j] >= 2 and role[j] != 3:
                    comp[j] = j
            changed = True
            while changed:
                changed = False
                for j in range(n):
                    if comp[j] < 0:
                        continue
                    for i in range(j + 1, n):
                        if comp[i] < 0 or comp[i] == comp[j]:
                            continue
                        share = False
                        for a in range(width):
                            x = words[lo + j, a]
                            if x < 0:
                                continue
                            for b in range(width):
                                if words[lo + i, b] == x:
                                    share = True
                        if share:
                            m = min(comp[i], comp[j])
                            old_i, old_j = comp[i], comp[j]
                            for t in range(n):
                                if comp[t] == old_i or comp[t] == old_j:
                                    comp[t] = m
                            changed = True
        # the terms in plan order: longest first, then by multitoken id (mts ascending)
        at = lo
        for ln in range(width, 0, -1):
            for j in range(n):
                if lens[j] != ln:
                    continue
                r = role[j]
                w = 1.0 if r == 0 else (contained_w if r == 2 else 0.0)
                if ln >= 2 and r != 3:
                    w *= phrase_w
                qtf = 1
                if repeated:
                    low = -1
                    for a in range(width):
                        x = words[lo + j, a]
                        if x < 0:
                            continue
                        c = 0
                        for b in range(s_lo, s_hi):
                            if seq[b] == x:
                                c += 1
                        if c == 0:
                            c = 1
                        if low < 0 or c < low:
                            low = c
                    qtf = max(1, low)
                if qtf > 1:
                    w *= (k3 + 1.0) * qtf / (k3 + qtf)
                st = -1
                if comp[j] >= 0:
                    size = 0
                    for t in range(n):
                        if comp[t] == comp[j]:
                            size += 1
                    if size > 1:
                        st = mts[lo + comp[j]]
                o_mt[at] = mts[lo + j]
                o_n[at] = ln
                o_role[at] = r
                o_w[at] = w
                o_qtf[at] = qtf
                o_stretch[at] = st
                at += 1


# ------------------------------------------------------------------ matching (plan.py's Planner._match_pairs)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@_jit(inline="always")
def _hash_row(key, pos_w):
    """tables.hashing.hash_rows of one sorted padded row: the position-weighted sum of (word + 1), then
    one splitmix64 round, in uint64 arithmetic (wrapping, as numpy's)."""
    z = np.uint64(0)
    for c in range(key.shape[0]):
        z += np.uint64(key[c] + 1) * pos_w[c]
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@_jit(inline="always")
def _sorted_row(row, out):
    """tables.hashing.sort_rows of one row: ascending, the -1 padding at the end."""
    w = row.shape[0]
    n = 0
    for c in range(w):
        if row[c] >= 0:
            out[n] = row[c]
            n += 1
    for a in range(1, n):  # insertion sort of at most four words
        x = out[a]
        b = a - 1
        while b >= 0 and out[b] > x:
            out[b + 1] = out[b]
            b -= 1
        out[b + 1] = x
    for c in range(n, w):
        out[c] = -1


@_jit
def match_windows(seq, s_ptr, pat, sng_hash, sng_mt, mt_words, pos_w):
    """The first part of Planner._match_pairs, operation for operation: every sub-combination ``pat``
    of each prompt's stem ids ``seq[s_ptr[i]:s_ptr[i+1]]`` (all its words known), looked up by the
    hash of its sorted words in the sorted n-gram table, each candidate verified by its own sorted
    words. Returns, per verified candidate, the window, its prompt, the multitoken, and whether it
    has the prompt's word order; and per window whether any candidate of it has (windows in prompt
    and position order, candidates in table order)."""
    n = len(seq)
    n_pat, width = pat.shape
    n_tab = len(sng_hash)
    cap = 16
    c_row = np.empty(cap, dtype=np.int64)
    c_who = np.empty(cap, dtype=np.int64)
    c_mt = np.empty(cap, dtype=np.int64)
    c_exact = np.empty(cap, dtype=np.bool_)
    row_exact = np.zeros(n * n_pat, dtype=np.bool_)
    words = np.empty(width, dtype=np.int64)
    key = np.empty(width, dtype=np.int64)
    ck = np.empty(width, dtype=np.int64)
    nc = 0
    r = 0
    who = 0
    for i in range(n):
        while i >= s_ptr[who + 1]:  # the prompt of position i (a window never crosses its end)
            who += 1
        end = s_ptr[who + 1]
        for q in range(n_pat):
            ok = True
            for c in range(width):
                o = pat[q, c]
                if o < 0:
                    words[c] = -1
                    continue
                p = i + o
                if p >= end or seq[p] < 0:
                    ok = False
                    break
                words[c] = seq[p]
            if not ok:
                continue
            _sorted_row(words, key)
            h = _hash_row(key, pos_w)
            lo, hi = 0, n_tab  # searchsorted(side="left")
            while lo < hi:
                mid = (lo + hi) >> 1
                if sng_hash[mid] < h:
                    lo = mid + 1
                else:
                    hi = mid
            j = lo
            while j < n_tab and sng_hash[j] == h:
                mt = np.int64(sng_mt[j])
                _sorted_row(mt_words[mt], ck)
                same = True
                for c in range(width):
                    if ck[c] != key[c]:
                        same = False
                if same:
                    exact = True
                    for c in range(width):
                        if mt_words[mt, c] != words[c]:
                            exact = False
                    if nc == cap:
                        cap *= 2
                        c_row = np.concatenate((c_row, np.empty(cap - nc, dtype=np.int64)))
                        c_who = np.concatenate((c_who, np.empty(cap - nc, dtype=np.int64)))
                        c_mt = np.concatenate((c_mt, np.empty(cap - nc, dtype=np.int64)))
                        c_exact = np.concatenate((c_exact, np.empty(cap - nc, dtype=np.bool_)))
                    c_row[nc] = r
                    c_who[nc] = who
                    c_mt[nc] = mt
                    c_exact[nc] = exact
                    if exact:
                        row_exact[r] = True
                    nc += 1
                j += 1
            r += 1
    return c_row[:nc], c_who[:nc], c_mt[:nc], c_exact[:nc], row_exact[:r]
