"""The numba kernels of the build and the save (imported only when numba is installed and enabled).

Each kernel computes exactly what its numpy implementation computes (tables/codecs.py,
tables/build.py), value for value and byte for byte: tests/test_codecs.py and
tests/test_tables.py compare the two on edge values. Compiled functions are cached on disk,
as the query kernels are (tablelm/query/_jit.py). :func:`kernels` says whether to use them.
"""

from __future__ import annotations

import numpy as np

from ..query._jit import _jit, _lower_bound


@_jit
def dv_encode(v, block):
    """Delta + zigzag LEB128 bytes of int64 values ``v`` in blocks of ``block`` values (the first
    of each block from 0), and the byte offset of each block (one more): ``codecs.encode_dv``'s
    layout. The deltas of int32 values fit in 34 bits, so the zigzag code needs no unsigned type."""
    n = len(v)
    total = 0
    for i in range(n):
        d = v[i] - v[i - 1] if i % block else v[i]
        u = (d << 1) ^ (d >> 63)
        total += 1
        while u >= 128:
            u >>= 7
            total += 1
    out = np.empty(total, dtype=np.uint8)
    ptr = np.empty((n + block - 1) // block + 1, dtype=np.int64)
    pos = 0
    for i in range(n):
        if i % block == 0:
            ptr[i // block] = pos
        d = v[i] - v[i - 1] if i % block else v[i]
        u = (d << 1) ^ (d >> 63)
        while u >= 128:
            out[pos] = np.uint8((u & 127) | 128)
            u >>= 7
            pos += 1
        out[pos] = np.uint8(u)
        pos += 1
    ptr[len(ptr) - 1] = pos
    return out, ptr


@_jit
def bp_escapes(v, base):
    """How many values of ``v - base`` reach the escape code of 1, 2, 4 and 8 bits (1, 3, 15, 255)."""
    out = np.zeros(4, dtype=np.int64)
    for i in range(len(v)):
        x = v[i] - base
        if x >= 1:
            out[0] += 1
            if x >= 3:
                out[1] += 1
                if x >= 15:
                    out[2] += 1
                    if x >= 255:
                        out[3] += 1
    return out


@_jit
def bp_pack(v, base, w, lo):
    """``codecs.encode_bp``'s piece: the packed codes of ``v - base`` in ``w`` bits (``8 // w`` codes a
    byte, the first in the low bits), and the positions (from ``lo``) and values of the escapes."""
    mask = (1 << w) - 1
    per = 8 // w
    n = len(v)
    n_esc = 0
    for i in range(n):
        if v[i] - base >= mask:
            n_esc += 1
    pos = np.empty(n_esc, dtype=np.int64)
    val = np.empty(n_esc, dtype=np.int64)
    packed = np.zeros((n + per - 1) // per, dtype=np.uint8)
    e = 0
    for i in range(n):
        x = v[i] - base
        if x >= mask:
            pos[e] = i + lo
            val[e] = x
            e += 1
            x = mask
        packed[i // per] |= np.uint8(x << ((i % per) * w))
    return packed, pos, val


@_jit
def dv_decode(data, ptr, b0, b1, stop, block):
    """The values of delta-varint blocks [b0, b1) (of the last one, the first ``stop``) as int64:
    what ``codecs.DeltaVarint._blocks`` decodes with numpy, one pass over the bytes."""
    n = (b1 - b0 - 1) * block + stop if b1 > b0 else 0
    out = np.empty(n, dtype=np.int64)
    k = 0
    for b in range(b0, b1):
        pos = ptr[b]
        acc = np.int64(0)
        for _ in range(stop if b == b1 - 1 else block):
            u = np.int64(0)
            shift = 0
            while True:
                byte = np.int64(data[pos])
                pos += 1
                u |= (byte & 127) << shift
                if byte < 128:
                    break
                shift += 7
            acc += (u >> 1) ^ -(u & 1)
            out[k] = acc
            k += 1
    return out


@_jit
def fb_take(words, w, idx):
    """The ``w``-bit codes at ``idx`` of a fixed-bits table (``codecs.FixedBits``: little-endian bits
    in 64-bit words), as uint64: what its numpy reader computes, a value at a time."""
    out = np.empty(len(idx), dtype=np.uint64)
    mask = (np.uint64(1) << np.uint64(w)) - np.uint64(1)
    for j in range(len(idx)):
        bit = idx[j] * w
        q = bit >> 6
        off = np.uint64(bit & 63)
        v = words[q] >> off
        if off:
            v |= words[q + 1] << (np.uint64(64) - off)
        out[j] = v & mask
    return out


@_jit
def forward_index(post_indptr, post_docs, fwd_indptr, f_post, f_mt):
    """``codecs.forward_index``: each posting into the next free slot of its entity, rows in order
    (so a stable counting sort by entity), and the row (multitoken) of each slot, into ``f_post``
    and ``f_mt``."""
    cursor = fwd_indptr[:-1].copy()
    for m in range(len(post_indptr) - 1):
        for p in range(post_indptr[m], post_indptr[m + 1]):
            d = post_docs[p]
            s = cursor[d]
            cursor[d] = s + 1
            f_post[s] = p
            f_mt[s] = m


@_jit(inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@_jit(inline="always")
def _escape_bits(x, w):
    if w == 1:
        return x
    y = x & (x >> np.uint64(1))
    if w == 2:
        return y & np.uint64(0x5555555555555555)
    y = y & (y >> np.uint64(2))
    return y & np.uint64(0x1111111111111111)


@_jit
def br_read(words, dirs, ws, bases, block, bp_packed, bp_w, bp_pos, bp_val, bp_base, idx, out):
    """The values at ``idx`` of a ranked-bits table and its overflow tables, all levels at once, into
    ``out`` (int64): ``words``/``dirs``/``ws``/``bases`` the levels' code words, rank directories, code
    bits and minimums (tuples, outermost first), ``bp_*`` the last overflow table (``codecs.BitPacked``;
    ``bp_w`` -1 when there is none). What ``codecs.RankedBits`` reads with numpy, a value at a time."""
    n_levels = len(ws)
    for k in range(len(idx)):
        i = idx[k]
        acc = np.int64(0)
        level = 0
        while True:
            if level == n_levels:  # the last overflow: bit-packed, escapes by binary search
                if bp_w == 0:
                    acc += bp_base
                    break
                bit = i * bp_w
                c = np.int64((bp_packed[bit >> 3] >> (bit & 7)) & ((1 << bp_w) - 1))
                if c == (1 << bp_w) - 1:
                    c = np.int64(bp_val[_lower_bound(bp_pos, 0, len(bp_pos), i)])
                acc += c + bp_base
                break
            w = ws[level]
            lw = words[level]
            bit = i * w
            q = bit >> 6
            sh = np.uint64(bit & 63)
            x = lw[q]
            esc = np.uint64((1 << w) - 1)
            c = (x >> sh) & esc
            acc += np.int64(c) + bases[level]
            if c != esc:
                break
            b = q // block
            r = np.int64(dirs[level][b])
            for j in range(b * block, q):
                r += _popcount(_escape_bits(lw[j], w))
            r += _popcount(_escape_bits(x, w) & ((np.uint64(1) << sh) - np.uint64(1)))
            i = r
            level += 1
        out[k] = acc
