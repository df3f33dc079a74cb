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
def fill_impacts(indptr, docs, tf, fw, kp1, norm, mts, imp, rmax):
    """The float32 BM25F impact of every posting of the rows ``mts`` into ``imp``, and each row's
    largest into ``rmax[mt]`` (NaN when one is NaN; 0 for an empty row): the pruning's bound."""
    for mt in mts:
        top = np.float32(0.0)
        nan = False
        for p in range(indptr[mt], indptr[mt + 1]):
            v = _impact(tf, fw, kp1, norm[docs[p]], p)
            imp[p] = v
            if v != v or (p > indptr[mt] and docs[p] <= docs[p - 1]):  # the pruning probes rows by bisection
                nan = True
            elif v > top:
                top = v
        rmax[mt] = np.float32(np.nan) if nan else top


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


@_jit(inline="always")
def _kth_bin(vals, n, k, scale, hist):
    """The lowest of _BINS bins of width 1/``scale`` that, with the bins above it, holds ``k`` of
    ``vals[:n]`` (0 when they all fit): the histogram of _select and of the pruning's threshold."""
    hist[:] = 0
    for i in range(n):
        hist[min(int(vals[i] * scale), _BINS - 1)] += 1
    cum = 0
    low = _BINS - 1
    while low > 0:
        cum += hist[low]
        if cum >= k:
            break
        low -= 1
    return low


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
        low = _kth_bin(cs, m, k, scale, hist)
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


#: the pruning's allowance for rounding: a bound adds the terms' bounds in another order than a score
#: adds its terms (the two differ by less than n·2^-53 relative, n terms), so bounds are raised and
#: thresholds lowered by this relative margin, far above any rounding, far below any score gap that matters
_SLACK = 1e-9


@_jit(inline="always")
def _factor(agents, d, bit, boost):
    return (boost if agents[d] & bit else 1.0) if bit != 0 else 1.0


@_jit
def _kth_lower(vals, n, k, hist):
    """A lower bound of the k-th largest of ``vals[:n]`` (non-negative): the lower edge of the
    histogram bin that holds it, lowered by _SLACK; 0 when fewer than k are positive."""
    if n < k or k <= 0:
        return 0.0
    mx = 0.0
    for i in range(n):
        mx = vals[i] if vals[i] > mx else mx
    if not mx > 0.0:
        return 0.0
    scale = _BINS / mx
    return (_kth_bin(vals, n, k, scale, hist) / scale) * (1.0 - _SLACK)


@_jit(inline="always")
def _may_reach(src, n, out, acc, seen, rest, theta, agents, bit, boost):
    """The entities of ``src[:n]`` whose score so far plus the bounds ``rest`` left may still reach
    ``theta``, into ``out`` in order (``out`` may be ``src``: written no faster than read); the others
    are dropped from ``acc`` and ``seen``. Returns how many are kept."""
    c = 0
    for x in range(n):
        d = src[x]
        if theta <= 0.0 or (acc[d] + rest) * _factor(agents, d, bit, boost) * (1.0 + _SLACK) >= theta:
            out[c] = d
            c += 1
        else:
            acc[d] = 0.0
            seen[d] = False
    return c


@_jit(inline="always")
def _lower_bound(a, lo, hi, x):
    """The first position of ``a[lo:hi]`` (ascending) whose value is not below ``x`` (``hi`` if none):
    ``lo + np.searchsorted(a[lo:hi], x, side="left")``, without the slice."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit(inline="always")
def _advance(docs, pos, end, d):
    """The first position of ``docs[pos:end]`` (ascending) whose entity is not below ``d``
    (galloping from ``pos``: candidates come in entity order, so each probe starts where the last ended)."""
    if pos >= end or docs[pos] >= d:
        return pos
    lo = pos
    step = 1
    hi = pos + 1
    while hi < end and docs[hi] < d:
        lo = hi
        step *= 2
        hi = lo + step
    if hi > end:
        hi = end
    return _lower_bound(docs, lo + 1, hi, d)


@_jit
def _pruned_query(indptr, docs, imp, rmax, agents, mts, w, grp, lo, hi, bit, boost, k, check_min, acc, seen, touched,
                  best, gseen, gtouched, hist, cd, cb, cs_out, cd_out):
    """One query's candidates with exact scores, pruned as MaxScore does (Turtle & Flood, "Query
    evaluation: strategies and optimizations", IP&M 1995), or -1 when its bounds are unknown.

    The query's *units* (a free term, or a stretch: the best of its phrases) have a bound each, the
    largest weight·impact of their rows. Units are added term at a time into ``acc`` from the largest
    bound down (the rare terms first); before each, once k entities score, ``theta`` = a lower bound of
    the k-th best score (the k-th best so far of the first entities met; it only rises). From then on an
    entity not met yet joins only if the unit's contribution plus the bounds of the units after it reach
    ``theta``. When the bounds of the units left add up to less than ``theta``, no new entity can reach
    the top k: the units left are only looked up for the entities met (by galloping in their rows, or
    one read of the rows when most of their entities are met), and entities whose score so far plus the
    bounds left is below ``theta`` are dropped as they go. The survivors' scores are then computed again
    term by term in plan order, the floats of the exhaustive loop; every entity left out scores strictly
    below k others (the tests are strict and allow for rounding): the same top k, ties included.

    ``check_min``: postings left from which theta is checked (the tests check always, with 0).
    Writes the survivors' positive scores and entities into ``cs_out``/``cd_out`` (entity order);
    returns (how many, their largest score)."""
    n_t = hi - lo
    u_lo = np.empty(n_t, dtype=np.int64)
    u_hi = np.empty(n_t, dtype=np.int64)
    ub = np.empty(n_t, dtype=np.float64)
    npost = np.empty(n_t, dtype=np.int64)
    nu = 0
    for j in range(lo, hi):
        if j == lo or grp[j] < 0 or grp[j] != grp[j - 1]:
            u_lo[nu] = j
            ub[nu] = 0.0
            npost[nu] = 0
            nu += 1
        u_hi[nu - 1] = j + 1
        mt = mts[j]
        n = indptr[mt + 1] - indptr[mt]
        if n == 0:
            continue
        wj = w[j]
        top = np.float64(rmax[mt])
        if not (wj >= 0.0 and wj < 1e300) or top != top:  # negative, NaN or infinite; a row without bound
            return -1, 0.0
        b = wj * top
        ub[nu - 1] = b if b > ub[nu - 1] else ub[nu - 1]
        npost[nu - 1] += n
    fmax = 1.0
    if bit != 0:
        if not boost >= 0.0:
            return -1, 0.0
        fmax = boost if boost > 1.0 else 1.0
    order = np.argsort(-ub[:nu], kind="mergesort")
    suf = np.zeros(nu + 1, dtype=np.float64)  # the bounds of the units from the i-th on (in that order)
    rpost = np.zeros(nu + 1, dtype=np.int64)
    for i in range(nu - 1, -1, -1):
        suf[i] = suf[i + 1] + ub[order[i]]
        rpost[i] = rpost[i + 1] + npost[order[i]]
    nt = 0
    i = 0
    theta = 0.0
    # theta from the first entities met only (those of the largest bounds, the likeliest to lead): a lower
    # bound of the k-th best all the same, and a check then costs a pass over a few thousand, not all met
    sample = max(32 * k, 1024)
    while i < nu:
        if i > 0 and nt >= k and rpost[i] >= check_min:
            ns = min(nt, sample)
            for t in range(ns):
                d = touched[t]
                cb[t] = acc[d] * _factor(agents, d, bit, boost)
            t2 = _kth_lower(cb, ns, k, hist)
            theta = t2 if t2 > theta else theta
            if theta > 0.0 and suf[i] * fmax * (1.0 + _SLACK) < theta:
                break
        u = order[i]
        if theta > 0.0 and u_hi[u] - u_lo[u] == 1:
            # one term, a threshold known: an entity not met yet joins only if this term's contribution and
            # the bounds after it can reach theta (its score cannot be more: it had no earlier contribution,
            # or it was left out as hopeless then). The others are added to as always.
            j = u_lo[u]
            mt = mts[j]
            wj = w[j]
            after = suf[i + 1]
            for p in range(indptr[mt], indptr[mt + 1]):
                d = docs[p]
                c = wj * np.float64(imp[p])
                if seen[d]:
                    acc[d] += c
                elif (c + after) * fmax * (1.0 + _SLACK) >= theta:
                    seen[d] = True
                    touched[nt] = d
                    nt += 1
                    acc[d] += c
        else:
            nt = _score_query(indptr, docs, imp, mts, w, grp, u_lo[u], u_hi[u], acc, seen, touched, nt, best, gseen,
                              gtouched)
        i += 1
    if i == nu:  # all added: the threshold of the final scores
        for t in range(nt):
            d = touched[t]
            cb[t] = acc[d] * _factor(agents, d, bit, boost)
        t2 = _kth_lower(cb, nt, k, hist)
        theta = t2 if t2 > theta else theta
    rest = suf[i]
    # the entities met that may still reach the top k (``seen``, their score so far in ``acc``)
    c = _may_reach(touched, nt, cd, acc, seen, rest, theta, agents, bit, boost)
    ordered = False
    while i < nu and c > 0:
        u = order[i]
        if c * 8 < npost[u]:  # few entities left: each looked up in the unit's rows, in entity order
            if not ordered:
                cd[:c].sort()
                ordered = True
            for x in range(c):
                cb[x] = -1.0
            for j in range(u_lo[u], u_hi[u]):
                mt = mts[j]
                pos = indptr[mt]
                end = indptr[mt + 1]
                wj = w[j]
                for x in range(c):
                    pos = _advance(docs, pos, end, cd[x])
                    if pos >= end:
                        break
                    if docs[pos] == cd[x]:
                        v = wj * np.float64(imp[pos])
                        cb[x] = v if v > cb[x] else cb[x]
            for x in range(c):
                if cb[x] > 0.0:
                    acc[cd[x]] += cb[x]
        else:  # many: the unit's postings read through, those of the entities left added
            g = u_hi[u] - u_lo[u] > 1
            for j in range(u_lo[u], u_hi[u]):
                mt = mts[j]
                wj = w[j]
                for p in range(indptr[mt], indptr[mt + 1]):
                    d = docs[p]
                    if seen[d]:
                        v = wj * np.float64(imp[p])
                        if not g:
                            acc[d] += v
                        elif not gseen[d]:
                            gseen[d] = True
                            best[d] = v
                        elif v > best[d]:
                            best[d] = v
            if g:
                for x in range(c):
                    d = cd[x]
                    if gseen[d]:
                        acc[d] += best[d]
                        gseen[d] = False
                        best[d] = 0.0
        i += 1
        rest = suf[i]
        c = _may_reach(cd, c, cd, acc, seen, rest, theta, agents, bit, boost)  # in place: the order is kept
        if c > k:  # a higher threshold from the survivors' scores so far
            for x in range(c):
                cb[x] = acc[cd[x]] * _factor(agents, cd[x], bit, boost)
            t2 = _kth_lower(cb, c, k, hist)
            theta = t2 if t2 > theta else theta
    if not ordered:
        cd[:c].sort()
    for x in range(c):
        acc[cd[x]] = 0.0
        seen[cd[x]] = False
    # the survivors' exact scores: term by term in plan order, as _score_query adds them
    pos_t = np.empty(n_t, dtype=np.int64)
    for j in range(lo, hi):
        pos_t[j - lo] = indptr[mts[j]]
    m = 0
    mx = 0.0
    for x in range(c):
        d = cd[x]
        s = 0.0
        j = lo
        while j < hi:
            g = grp[j]
            if g < 0:
                mt = mts[j]
                p = _advance(docs, pos_t[j - lo], indptr[mt + 1], d)
                pos_t[j - lo] = p
                if p < indptr[mt + 1] and docs[p] == d:
                    s += w[j] * np.float64(imp[p])
                j += 1
                continue
            found = False
            bst = 0.0
            while j < hi and grp[j] == g:
                mt = mts[j]
                p = _advance(docs, pos_t[j - lo], indptr[mt + 1], d)
                pos_t[j - lo] = p
                if p < indptr[mt + 1] and docs[p] == d:
                    v = w[j] * np.float64(imp[p])
                    if not found:
                        bst = v
                        found = True
                    elif v > bst:
                        bst = v
                j += 1
            if found:
                s += bst
        if bit != 0:
            s = s * (boost if agents[d] & bit else 1.0)
        cs_out[m] = s
        cd_out[m] = d
        m += s > 0
        mx = s if s > mx else mx
    return m, mx


#: search_batch prunes a query (_pruned_query) of at least this many postings per result asked (k, at
#: least 8): below, the passes that pruning adds cost more than the postings it skips. At 1M entities
#: (benchmarks/bench_scale.py's queries, ~90k postings each) pruning cut the batch's kernel time by
#: ~1.3x at k=10 and lost ~1.2x at k=100 for every query above 16k postings; 2048·k prunes those of k=10,
#: and of k=100 the few where it broke even; no query of SciFact, Cranfield or CACM is pruned.
PRUNE_PER_K = 2048


@_jit
def search_batch(indptr, docs, imp, rmax, agents, q_ptr, mts, w, grp, bits, boost, k, per_k, acc, seen, touched,
                 best, gseen, gtouched):
    """Top k of each query (terms q_ptr[q]..q_ptr[q+1]); scratch arrays are zeros of n_docs on entry
    and are left so. ``rmax``: each row's largest impact, or empty: no pruning; a query of
    ``per_k``·max(k, 8) postings or more is pruned (_pruned_query). Returns (result pointers, entities, scores)."""
    n_q = len(q_ptr) - 1
    kk = max(k, 0)
    out_ptr = np.zeros(n_q + 1, dtype=np.int64)
    out_d = np.empty(n_q * kk, dtype=np.int64)
    out_s = np.empty(n_q * kk, dtype=np.float64)
    n_docs = len(acc)
    cs = np.empty(n_docs + 1, dtype=np.float64)  # one query's candidates: positive scores, entities
    cd = np.empty(n_docs + 1, dtype=np.int64)
    hist = np.zeros(_BINS, dtype=np.int64)
    prune = len(rmax) > 0 and 0 < kk < n_docs
    prune_min = per_k * max(kk, 8)
    if prune:  # the pruning's candidates: entities, a unit's best or scores
        pd = np.empty(n_docs + 1, dtype=np.int64)
        pb = np.empty(n_docs + 1, dtype=np.float64)
    else:
        pd = np.empty(0, dtype=np.int64)
        pb = np.empty(0, dtype=np.float64)
    at = 0
    none = np.zeros(0, dtype=np.bool_)
    for q in range(n_q):
        lo, hi = q_ptr[q], q_ptr[q + 1]
        n_post = 0
        for j in range(lo, hi):
            n_post += indptr[mts[j] + 1] - indptr[mts[j]]
        if prune and n_post >= prune_min:
            m, mx = _pruned_query(indptr, docs, imp, rmax, agents, mts, w, grp, lo, hi, bits[q], boost, kk,
                                  min(prune_min, max(32 * kk, 1024)), acc, seen, touched, best, gseen, gtouched, hist,
                                  pd, pb, cs, cd)
            if m >= 0:
                at += _select(cs, cd, m, mx, kk, hist, out_s, out_d, at)
                out_ptr[q + 1] = at
                continue
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
            j = _lower_bound(sng_hash, 0, n_tab, h)
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
