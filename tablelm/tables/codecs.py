"""How tables are encoded on disk: exact, deterministic, decoded a block at a time.

The tables stay raw counts and ids (add and delete need them exact); only their storage
is compressed. Tables read a row or a value at a time decode the blocks they touch; the row
pointers, which the query path reads whole, are decoded once, on first use, and then read as
plain arrays:

``dv``
    delta + varint in blocks of :data:`BLOCK` values: each value is stored as the zigzag
    LEB128 varint of its difference from the previous value of its block (the first from 0).
    For ids sorted within rows (pair columns, forward index, label ids): a slice or a
    gather decodes the blocks it touches only. File: ``int64 block byte offsets[n_blocks+1]``
    then the bytes.
``bp``
    small counts (pair counts, label counts): ``value - min`` in 0, 1, 2, 4 or 8 bits (the width
    that makes the file smallest; 0 when every value is the minimum), the largest code marking
    an escape whose value is in a sorted side table. File: a header (escapes, width, their sizes, min), the escapes'
    positions and values, then the packed codes.
``bc``
    a 2-D table of small counts (fields of postings and multitokens): each column ``bp`` alone.
``fb``
    ids in no order (pending entities, sorted n-grams' multitokens): ``value - min`` in the bits of
    the largest.
``mw``
    ``mt_words``: the single words' rows (``[i, -1, -1, -1]``) not stored, each column of the others ``fb``.
``dz``
    a table only updates read (the pending n-gram hashes): zlib of its byte-transposed
    deltas, decoded in full on first use. (The sorted n-gram hashes, which every prompt's
    n-gram matcher reads whole, stay plain: decoding them cost the first query of a 1M
    model 0.1-0.35 s for 7 MB.)
``db``
    a monotone index (row pointers, byte offsets): the first value, then the steps ``bp`` (or
    ``fb``, whichever is smaller), decoded in full on first use (3.4 M row pointers: ~30 ms) and
    then read as the plain array: 0.2-0.35 of the int32 table at 1M documents.
``br``
    small counts (pair counts, context counts) in ranked bits: codes of 1, 2 or 4 bits whose largest
    means "this or more", the excess of those values, in order, a table of its own (``br`` again, or
    ``bp``) read at the escape's rank (a directory of counts every 512 code bits, then popcounts).
    ~2.5 bits a pair count where ``bp`` takes 4 (it pays 48 bits an escape); chosen only when smaller
    than ``bp``.
``fwd``
    the forward index's posting of each entry, not stored: recomputed from the postings
    (:class:`ForwardPosts`).
``fwdm``
    the forward index's multitoken of each entry, not stored either: the whole forward index is
    recomputed from the postings on first use (:class:`Forward`), which only pseudo-relevance
    feedback and the taxonomy read.
``zlib``
    a blob (the entity store) in zlib blocks of :data:`ZBLOCK` bytes, the first :data:`ZDICT`
    bytes being the preset dictionary of the later blocks: a slice inflates the blocks it covers.
    File: ``b"TLZD"``, ``uint32 block size``, ``int64 raw size``, ``int64 n_blocks``, ``int64
    dictionary bytes``, ``int64 blocks without dictionary``, ``int64 block offsets[n_blocks+1]``
    (into the data), then the data.

Decoded objects behave like read-only arrays for the ways tables are read (``len``,
``dtype``, ``shape``, integer and slice and index-array access, ``np.asarray``), so readers
need no change; ``np.asarray`` decodes the whole table (updates, exports), and keeps it.
"""

from __future__ import annotations

import struct
import sys
import threading
import zlib

import numpy as np

from .bounded import make_room
from .compiled import kernels
from .spill import chunks, release, span

BLOCK = 128
ZBLOCK = 1 << 13
ZDICT = 1 << 15
_ZMAGIC = b"TLZD"
_ZHEAD = "<Iqqqq"
_ZLEVEL = 6


# ---------------------------------------------------------------- varints
def _zigzag(d: np.ndarray) -> np.ndarray:
    d = d.astype(np.int64)
    return ((d << 1) ^ (d >> 63)).view(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ (-(u & np.uint64(1)).view(np.int64))


def varint_sizes(u: np.ndarray) -> np.ndarray:
    """Bytes of the LEB128 varint of each unsigned value."""
    u = np.asarray(u, dtype=np.uint64)
    top = int(u.max(initial=0))
    n = np.ones(len(u), dtype=np.int64)
    for k in range(1, max((top.bit_length() + 6) // 7, 1)):  # one comparison per byte the largest needs
        n += u >= np.uint64(1 << (7 * k))
    return n


def encode_varints(u: np.ndarray) -> tuple[bytes, np.ndarray]:
    """LEB128 bytes of unsigned values, and the byte offset of each value (one more)."""
    u = np.asarray(u, dtype=np.uint64)
    sizes = varint_sizes(u)
    starts = np.zeros(len(u) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    width = int(sizes.max(initial=0))
    if width <= 1:
        return u.astype(np.uint8).tobytes(), starts
    # byte k of the values that have one, written where it goes; most values (ids and gaps in
    # blocks) take one or two bytes, so each later position touches fewer values
    out = np.empty(int(starts[-1]), dtype=np.uint8)
    more = sizes > 1
    first = (u & np.uint64(0x7F)).astype(np.uint8)
    first |= more.view(np.uint8) << np.uint8(7)
    out[starts[:-1]] = first
    del first
    idx = np.flatnonzero(more)
    v, pos, left = u[idx] >> np.uint64(7), starts[idx] + 1, sizes[idx] - 1
    for _ in range(1, width):
        more = left > 1
        byte = (v & np.uint64(0x7F)).astype(np.uint8)
        byte |= more.view(np.uint8) << np.uint8(7)
        out[pos] = byte
        keep = np.flatnonzero(more)
        if not len(keep):
            break
        v, pos, left = v[keep] >> np.uint64(7), pos[keep] + 1, left[keep] - 1
    return out.tobytes(), starts


def decode_varints(b: np.ndarray) -> np.ndarray:
    """The unsigned values of a run of whole LEB128 varints: one pass per byte length, over the
    values that are that long (most ids and gaps take one or two bytes)."""
    if len(b) == 0:
        return np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero(b < 0x80)
    if len(ends) == len(b):  # every value in one byte
        return b.astype(np.uint64)
    starts = np.empty(len(ends), dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    v = (b[starts] & 0x7F).astype(np.uint64)
    longer = ends - starts
    idx = np.flatnonzero(longer)
    k = 1
    while idx.size:
        v[idx] |= (b[starts[idx] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        k += 1
        idx = idx[longer[idx] >= k]
    return v


def _decode_block(data: bytes, stop: int) -> list[int]:
    """The first ``stop`` values of one delta-varint block (zigzag LEB128 deltas, the first from 0),
    in Python."""
    out: list[int] = []
    acc = value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        acc += (value >> 1) ^ -(value & 1)
        out.append(acc)
        if len(out) == stop:
            break
        value = shift = 0
    return out


# ---------------------------------------------------------------- array-likes
class Encoded:
    """A read-only 1-D table decoded on access (see the module doc)."""

    ndim = 1

    def __init__(self, dtype, n: int):
        self.dtype = np.dtype(dtype)
        self.shape: tuple[int, ...] = (int(n),)
        self.size = int(n)
        self._full: np.ndarray | None = None

    def __len__(self) -> int:
        return self.size

    def _range(self, lo: int, hi: int) -> np.ndarray:  # values [lo, hi)
        raise NotImplementedError

    def _take(self, idx: np.ndarray) -> np.ndarray:  # values at idx (in range, int64)
        raise NotImplementedError

    def decoded(self) -> np.ndarray:
        if self._full is None:
            self._full = self._range(0, self.size)
            self._full.flags.writeable = False
        return self._full

    def values(self) -> np.ndarray:
        """Every value, decoded now and not kept on the table (an update reads each table once:
        the kept copies of the model's pairs and postings added ~1 GB to an add's peak at 1M)."""
        if self._full is not None or type(self)._range is Encoded._range:  # a table decoded whole only
            return self.decoded()
        return self._range(0, self.size)

    def __array__(self, dtype=None, copy=None):
        a = self.decoded()
        # no copy when the dtype asked is the table's (the n-gram matcher asks for uint64 per prompt)
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)

    def __getitem__(self, key):
        if self._full is not None:
            return self._full[key]
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.size)
            if step != 1:
                return self._range(lo, hi)[::step] if hi > lo else np.zeros(0, self.dtype)
            return self._range(lo, hi) if hi > lo else np.zeros(0, self.dtype)
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += self.size
            if not 0 <= i < self.size:
                raise IndexError(f"index {key} is out of bounds for a table of {self.size}")
            return self._range(i, i + 1)[0]
        idx = np.asarray(key)
        if idx.dtype == bool:
            return self.decoded()[idx]
        idx = idx.astype(np.int64)
        idx = np.where(idx < 0, idx + self.size, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= self.size):
            raise IndexError(f"index out of bounds for a table of {self.size}")
        return self._take(idx.ravel()).reshape(idx.shape)

    def __iter__(self):
        return iter(self.decoded())

    def astype(self, dtype, copy=True):
        return self.decoded().astype(dtype)

    def max(self, *a, **k):
        return self.decoded().max(*a, **k)

    def sum(self, *a, **k):
        return self.decoded().sum(*a, **k)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dtype}, {self.size})"


def _query_kernels():
    """The build's numba kernels (tables/_jit.py) once this process has loaded the query kernels
    (numba is imported then: a query reads with the compiled decoder, ~1 µs a block instead of
    ~40 in Python), else None (a build or a short process does not load numba for its reads)."""
    if "tablelm.query._jit" not in sys.modules:
        return None
    return kernels()


class DeltaVarint(Encoded):
    def __init__(self, buf, dtype, n: int):
        super().__init__(dtype, n)
        nb = -(-int(n) // BLOCK)
        self._ptr = np.frombuffer(buf, dtype="<i8", count=nb + 1)
        self._data = np.frombuffer(buf, dtype=np.uint8, offset=8 * (nb + 1))

    def _blocks(self, b0: int, b1: int, stop: int = BLOCK) -> np.ndarray:
        """Values of blocks [b0, b1) (of the last one, the first ``stop``)."""
        # compiled: in a process that has the query kernels (a row or two: ~1 µs instead of ~40 in
        # Python), or for a whole table (an update reads the model's pairs: ~20x numpy)
        jit = _query_kernels() if b1 - b0 <= 2 else kernels((b1 - b0) * BLOCK)
        if jit is not None:
            return jit.dv_decode(self._data, self._ptr, b0, b1, stop, BLOCK).astype(self.dtype, copy=False)
        if b1 - b0 <= 2:  # a row or two (a query's reads): a Python loop beats a dozen numpy calls
            out: list[int] = []
            ptr = self._ptr
            for b in range(b0, b1):
                out += _decode_block(self._data[int(ptr[b]):int(ptr[b + 1])].tobytes(), stop if b == b1 - 1 else BLOCK)
            return np.array(out, dtype=self.dtype)
        d = _unzigzag(decode_varints(self._data[int(self._ptr[b0]):int(self._ptr[b1])]))
        c = np.cumsum(d)
        if b1 - b0 > 1:
            base = np.zeros(b1 - b0, dtype=np.int64)
            base[1:] = c[BLOCK - 1:(b1 - b0 - 1) * BLOCK:BLOCK]
            c -= np.repeat(base, BLOCK)[: len(c)]
        return c.astype(self.dtype, copy=False)

    def _range(self, lo: int, hi: int) -> np.ndarray:
        b0, b1 = lo // BLOCK, -(-hi // BLOCK)
        return self._blocks(b0, b1, hi - (b1 - 1) * BLOCK)[lo - b0 * BLOCK: hi - b0 * BLOCK]

    def _take(self, idx: np.ndarray) -> np.ndarray:
        if idx.size == 0:
            return np.zeros(0, self.dtype)
        blocks = np.unique(idx // BLOCK)
        if len(blocks) * BLOCK * 4 > self.size:
            return self.decoded()[idx]
        runs = np.split(blocks, np.flatnonzero(np.diff(blocks) != 1) + 1)
        parts = [self._blocks(int(r[0]), int(r[-1]) + 1) for r in runs]
        pos = np.concatenate(runs)  # blocks in order of the decoded values
        where = np.zeros(int(blocks[-1]) + 1, dtype=np.int64)
        where[pos] = np.arange(len(pos)) * BLOCK
        vals = np.concatenate(parts)
        return vals[where[idx // BLOCK] + idx % BLOCK]


#: values encoded at once (a multiple of BLOCK and of 8): bounds the encoders' temporaries, so that
#: saving a large table (possibly memory-mapped: its pages are released after each piece) costs a
#: few times this many values of memory, whatever its length; the bytes are the same
PIECE = BLOCK << 13


def _pieces(a: np.ndarray):
    """(start, piece) of a 1-D table, :data:`PIECE` values at a time (memory-mapped pages released)."""
    return chunks(a, PIECE)


def _kernels_for(a: np.ndarray):
    """The build's numba kernels for the integers ``a`` (None: numpy). Values of at most 32 bits
    only: their deltas and offsets fit the kernels' int64 arithmetic."""
    return kernels(a.size) if a.dtype.kind in "iu" and a.dtype.itemsize <= 4 else None


def encode_dv(a: np.ndarray) -> bytes:
    a = np.asarray(a).reshape(-1)
    jit = _kernels_for(a)
    ptrs, datas, offset = [], [], 0
    for _, piece in _pieces(a):  # pieces start at block starts: each block's deltas are its own
        v = piece.astype(np.int64)
        if jit is not None:
            data, starts = jit.dv_encode(v, BLOCK)
            ptrs.append(starts[:-1] + offset)
            datas.append(data.tobytes())
            offset += int(starts[-1])
            continue
        d = np.diff(v, prepend=np.int64(0))
        d[::BLOCK] = v[::BLOCK]
        data, starts = encode_varints(_zigzag(d))
        ptrs.append(starts[:-1][::BLOCK] + offset)
        datas.append(data)
        offset += int(starts[-1])
        del v, d, starts
    ptr = np.concatenate(ptrs + [np.array([offset], dtype=np.int64)]) if len(a) else np.zeros(1, np.int64)
    return ptr.astype("<i8").tobytes() + b"".join(datas)


class BitPacked(Encoded):
    def __init__(self, buf, dtype, n: int):
        super().__init__(dtype, n)
        m, self._w, pos_size, val_size, self._base = struct.unpack_from(_BP_HEAD, buf, 0)
        at = struct.calcsize(_BP_HEAD)
        self._pos = np.frombuffer(buf, dtype=f"<i{pos_size}", count=m, offset=at)
        at += pos_size * m
        self._val = np.frombuffer(buf, dtype=f"<u{val_size}", count=m, offset=at)
        at += val_size * m
        self._packed = np.frombuffer(buf, dtype=np.uint8, count=-(-int(n) * self._w // 8), offset=at)
        self._pb = memoryview(buf)[at:at + len(self._packed)]
        self._mask = (1 << self._w) - 1

    def one(self, i: int) -> int:
        """Value ``i`` (in range) as a Python int, without numpy's per-call costs."""
        if not self._w:
            return self._base
        bit = i * self._w
        code = (self._pb[bit >> 3] >> (bit & 7)) & self._mask
        if code == self._mask:
            code = int(self._val[int(np.searchsorted(self._pos, i))])
        return code + self._base

    def _codes(self, idx: np.ndarray) -> np.ndarray:
        w = self._w
        if w == 0:
            return np.zeros(len(idx), dtype=np.uint8)
        if w == 8:
            return self._packed[idx]
        bit = idx * w
        return (self._packed[bit >> 3] >> (bit & 7).astype(np.uint8)) & np.uint8((1 << w) - 1)

    def _fix(self, codes: np.ndarray, where, run: bool = False) -> np.ndarray:
        vals = codes.astype(self.dtype)
        esc = np.flatnonzero(codes == (1 << self._w) - 1) if self._w else ()
        if len(esc):
            if run:  # a range: its escapes are a run of the sorted side table (one search, not one each)
                k = int(np.searchsorted(self._pos, where(esc[:1])[0]))
                vals[esc] = self._val[k:k + len(esc)].astype(self.dtype)
            else:
                vals[esc] = self._val[np.searchsorted(self._pos, where(esc))].astype(self.dtype)
        if self._base:
            vals += self.dtype.type(self._base)
        return vals

    def _range(self, lo: int, hi: int) -> np.ndarray:
        if self._w == 0:
            return self._fix(np.zeros(hi - lo, dtype=np.uint8), None)
        if self._w == 8:
            return self._fix(self._packed[lo:hi], lambda e: e + lo, True)
        per = 8 // self._w
        b0, b1 = lo // per, -(-hi // per)
        shifts = (np.arange(per, dtype=np.uint8) * self._w)
        codes = ((self._packed[b0:b1, None] >> shifts) & np.uint8((1 << self._w) - 1)).ravel()
        return self._fix(codes[lo - b0 * per: hi - b0 * per], lambda e: e + lo, True)

    def _take(self, idx: np.ndarray) -> np.ndarray:
        return self._fix(self._codes(idx), lambda e: idx[e])


_BP_HEAD = "<qBBB5xq"


def bitpacked_bytes(a: np.ndarray, base_top: tuple[int, int] | None = None) -> tuple[int, int]:
    """(bytes, width) of ``a`` bit-packed at the best width of 1, 2, 4 or 8 bits (escapes included);
    ``base_top``: its (min, max) when the caller has them."""
    a = np.asarray(a).reshape(-1)
    base, top = span(a) if base_top is None else base_top
    top -= base
    if top == 0:  # every value is the minimum (a field no entity has): width 0, the header alone
        return struct.calcsize(_BP_HEAD), 0
    val_size = 1 if top < 2**8 else 2 if top < 2**16 else 4 if top < 2**32 else 8
    pos_size = 4 if a.size < 2**31 else 8
    escapes = dict.fromkeys((1, 2, 4, 8), 0)
    jit = _kernels_for(a)
    for _, piece in _pieces(a):
        if jit is not None:
            for w, n_esc in zip(escapes, jit.bp_escapes(piece.astype(np.int64), base).tolist()):
                escapes[w] += n_esc
            continue
        v = piece.astype(np.int64) - base
        for w in escapes:
            escapes[w] += int(np.count_nonzero(v >= (1 << w) - 1))
    best = None
    for w in (1, 2, 4, 8):
        n_esc = escapes[w]
        size = struct.calcsize(_BP_HEAD) + (pos_size + val_size) * n_esc - (-a.size * w // 8)
        if best is None or size < best[0]:
            best = (size, w)
    return best  # type: ignore[return-value]


def encode_bp(a: np.ndarray, width: int | None = None, base_top: tuple[int, int] | None = None) -> bytes:
    """The bit-packed bytes of ``a``; ``width`` (the best, from :func:`bitpacked_bytes`) and ``base_top``
    (its min and max) when the caller has them, so that they are not computed again."""
    a = np.asarray(a).reshape(-1)
    base, top = span(a) if base_top is None else base_top
    top -= base
    w = bitpacked_bytes(a, (base, top + base))[1] if width is None else width
    if w == 0:
        return struct.pack(_BP_HEAD, 0, 0, 4, 1, base)
    mask = (1 << w) - 1
    val_size = 1 if top < 2**8 else 2 if top < 2**16 else 4 if top < 2**32 else 8
    pos_size = 4 if a.size < 2**31 else 8
    per = 8 // w
    jit = _kernels_for(a)
    escs, vals, packs = [], [], []
    for lo, piece in _pieces(a):  # PIECE is a multiple of 8: only the last piece is padded
        if jit is not None:
            packed, esc, val = jit.bp_pack(piece.astype(np.int64), base, w, lo)
            escs.append(esc.astype(f"<i{pos_size}").tobytes())
            vals.append(val.astype(f"<u{val_size}").tobytes())
            packs.append(packed.tobytes())
            continue
        v = piece.astype(np.int64) - base
        esc = np.flatnonzero(v >= mask)
        escs.append((esc + lo).astype(f"<i{pos_size}").tobytes())
        vals.append(v[esc].astype(f"<u{val_size}").tobytes())
        codes = np.minimum(v, mask).astype(np.uint8)
        codes = np.concatenate([codes, np.zeros(-len(codes) % per, dtype=np.uint8)]).reshape(-1, per)
        packed = np.zeros(len(codes), dtype=np.uint8)
        for j in range(per):
            packed |= codes[:, j] << np.uint8(j * w)
        packs.append(packed.tobytes())
        del v, esc, codes, packed
    n_esc = sum(len(e) for e in escs) // pos_size
    return (struct.pack(_BP_HEAD, n_esc, w, pos_size, val_size, base) + b"".join(escs) + b"".join(vals)
            + b"".join(packs))


class Encoded2D(Encoded):
    """A 2-D encoded table read by rows like the plain array: an int, a slice, an index array or a
    mask, then optionally the columns. ``_row(i)`` reads one row as Python ints, ``take_rows(flat)``
    many (int64, in range) as a (len, columns) array."""

    #: index arrays up to this size are read row by row in Python ints (a card's few rows)
    SMALL = 16

    def _row(self, i: int) -> list[int]:
        """Row ``i`` (negative from the end) as Python ints."""
        if i < 0:
            i += self.shape[0]
        if not 0 <= i < self.shape[0]:
            raise IndexError(f"index {i} is out of bounds for a table of {self.shape[0]}")
        return self._row_at(i)

    def _row_at(self, i: int) -> list[int]:  # row i, in range
        raise NotImplementedError

    def take_rows(self, flat: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key):
        if self._full is not None:
            return self._full[key]
        if type(key) is np.ndarray and key.ndim == 1 and key.size <= self.SMALL and key.dtype.kind in "iu":
            return np.array([self._row(i) for i in key.tolist()], dtype=self.dtype).reshape(len(key), self.shape[1])
        if isinstance(key, tuple):
            rows = self[key[0]]
            return rows[(slice(None),) * (rows.ndim - 1) + tuple(key[1:])]
        n = self.shape[0]
        if isinstance(key, slice):
            return self.take_rows(np.arange(*key.indices(n), dtype=np.int64))
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if int(key) < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of bounds for a table of {n}")
            return np.array(self._row(i), dtype=self.dtype)
        idx = np.asarray(key)
        if idx.dtype == bool:
            return self.decoded()[idx]
        idx = idx.astype(np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index out of bounds for a table of {n}")
        return self.take_rows(idx.ravel()).reshape(idx.shape + (self.shape[1],))


class BitColumns(Encoded2D):
    """A 2-D table of small counts (``(rows, fields)``: the postings' and the multitokens' field
    counts), each column bit-packed alone (:class:`BitPacked`): a field no entity has costs its header
    only, the text field 2 bits a posting instead of a byte. Read by rows like the plain array
    (an int, a slice or an index array, then optionally the columns)."""

    ndim = 2

    def __init__(self, buf, dtype, shape):
        n, k = (int(x) for x in shape)
        super().__init__(dtype, n)
        self.shape = (n, k)
        self.size = n * k
        off = np.frombuffer(buf, dtype="<i8", count=k + 1, offset=len(_BC_MAGIC))
        at = len(_BC_MAGIC) + 8 * (k + 1)
        view = memoryview(buf)
        self._cols = [BitPacked(view[at + int(off[j]):at + int(off[j + 1])], dtype, n) for j in range(k)]

    def __len__(self) -> int:
        return self.shape[0]

    def decoded(self) -> np.ndarray:
        if self._full is None:
            full = np.empty(self.shape, dtype=self.dtype)
            for j, c in enumerate(self._cols):
                full[:, j] = c.decoded() if c._w else c.dtype.type(c._base)
            full.flags.writeable = False
            self._full = full
        return self._full

    def take_rows(self, flat: np.ndarray) -> np.ndarray:
        """The rows ``flat`` (int64, in range: not checked), as a (len, columns) array."""
        out = np.empty((len(flat), self.shape[1]), dtype=self.dtype)
        for j, c in enumerate(self._cols):
            if not c._w:  # a field no entity has: its one value
                out[:, j] = c._base
            elif len(flat) <= 16:  # a card's few postings: Python ints beat a dozen numpy calls
                out[:, j] = [c.one(i) for i in flat.tolist()]
            else:
                out[:, j] = c._take(flat)
        return out

    def row_sums(self, key):
        """``self[key].sum(axis=-1)`` in int64, reading only the columns that are not constant (a
        multitoken's total count: the fields no entity has add their one value)."""
        const = sum(c._base for c in self._cols if not c._w)
        cols = [c for c in self._cols if c._w]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if int(key) < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"index {key} is out of bounds for a table of {self.shape[0]}")
            return np.int64(const + sum(c.one(i) for c in cols))
        idx = np.asarray(key)
        if idx.dtype == bool or self._full is not None or not isinstance(key, np.ndarray):
            return np.asarray(self[key]).sum(axis=-1, dtype=np.int64)
        idx = idx.astype(np.int64)
        idx = np.where(idx < 0, idx + self.shape[0], idx)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"index out of bounds for a table of {self.shape[0]}")
        flat = idx.ravel()
        if len(flat) <= 16:
            out = np.array([const + sum(c.one(i) for c in cols) for i in flat.tolist()], dtype=np.int64)
        else:
            out = np.full(len(flat), const, dtype=np.int64)
            for c in cols:
                out += c._take(flat)
        return out.reshape(idx.shape)

    def _row_at(self, i: int) -> list[int]:  # a card's few postings, a multitoken's counts
        return [c.one(i) for c in self._cols]

    def __repr__(self) -> str:
        return f"BitColumns({self.dtype}, {self.shape})"


_BC_MAGIC = b"TLBC"


def encode_bc(a: np.ndarray) -> bytes:
    """:class:`BitColumns`' bytes of a 2-D table: ``b"TLBC"``, ``int64 column byte offsets[k+1]``,
    then each column's :func:`encode_bp` bytes."""
    a = np.asarray(a)
    cols = []
    for j in range(a.shape[1]):
        col = np.ascontiguousarray(a[:, j])
        cols.append(encode_bp(col))
        del col
    off = np.zeros(len(cols) + 1, dtype="<i8")
    np.cumsum([len(c) for c in cols], out=off[1:])
    return _BC_MAGIC + off.tobytes() + b"".join(cols)


class FixedBits(Encoded):
    """``value - min`` in a fixed number of bits (0..56; little-endian bit order): ids in no order
    (the entity of each pending occurrence, the multitoken of each sorted n-gram) take the bits of
    the largest, not a byte or four. Any value reads with two 64-bit words."""

    def __init__(self, buf, dtype, n: int):
        super().__init__(dtype, n)
        self._w, self._base = struct.unpack_from(_FB_HEAD, buf, 0)
        at = struct.calcsize(_FB_HEAD)
        size = _fb_bytes(int(n), self._w)
        self._words = np.frombuffer(buf, dtype="<u8", count=size // 8, offset=at)
        self._bytes = memoryview(buf)[at:at + size]
        self._mask = (1 << self._w) - 1

    def _take(self, idx: np.ndarray) -> np.ndarray:
        w = self._w
        out = np.empty(len(idx), dtype=self.dtype)
        if w == 0:
            out[:] = self._base
            return out
        words, mask = self._words, np.uint64(self._mask)
        jit = _query_kernels() or kernels(len(idx))
        if jit is not None:  # compiled: once the query kernels are loaded, or for a large read
            v = jit.fb_take(words, w, idx.astype(np.int64, copy=False))
            if self.dtype.kind == "i":
                out[:] = v.view(np.int64) + np.int64(self._base)
            else:
                out[:] = v + np.uint64(self._base)
            return out
        for a in range(0, len(idx), PIECE):  # bounded temporaries (a fill reads millions of postings)
            bit = idx[a:a + PIECE].astype(np.int64) * w
            q = bit >> 6
            off = (bit & 63).astype(np.uint64)
            v = (words[q] >> off) | ((words[q + 1] << (np.uint64(63) - off)) << np.uint64(1))
            v &= mask
            if self.dtype.kind == "i":
                out[a:a + PIECE] = v.view(np.int64) + np.int64(self._base)
            else:
                out[a:a + PIECE] = v + np.uint64(self._base)
        return out

    def _range(self, lo: int, hi: int) -> np.ndarray:
        if hi - lo <= PIECE:
            return self._take(np.arange(lo, hi, dtype=np.int64))
        out = np.empty(hi - lo, dtype=self.dtype)  # a piece at a time: a whole table's temporaries were
        for a in range(lo, hi, PIECE):  # 28 bytes a value (the positions, the codes, their sum)
            out[a - lo:min(a + PIECE, hi) - lo] = self._take(np.arange(a, min(a + PIECE, hi), dtype=np.int64))
        return out

    def __getitem__(self, key):
        # an id or a few (a prompt's sorted n-grams, a card's postings): Python ints, no index checks
        if isinstance(key, (int, np.integer)) and self._full is None:
            i = int(key) + (self.size if int(key) < 0 else 0)
            if not 0 <= i < self.size:
                raise IndexError(f"index {key} is out of bounds for a table of {self.size}")
            return self.dtype.type(self.one(i))
        if type(key) is np.ndarray and key.ndim == 1 and key.size <= 16 and key.dtype.kind in "iu" \
                and self._full is None:
            got = [int(i) + (self.size if i < 0 else 0) for i in key.tolist()]
            if any(not 0 <= i < self.size for i in got):
                raise IndexError(f"index out of bounds for a table of {self.size}")
            return np.array([self.one(i) for i in got], dtype=self.dtype)
        return super().__getitem__(key)

    def one(self, i: int) -> int:
        """Value ``i`` (in range) as a Python int, without numpy's per-call costs."""
        bit = i * self._w
        at = bit >> 3
        return ((int.from_bytes(self._bytes[at:at + 8], "little") >> (bit & 7)) & self._mask) + self._base


_FB_HEAD = "<B7xq"
FB_MAX = 56


def _fb_bytes(n: int, w: int) -> int:
    """Bytes of ``n`` values of ``w`` bits in 64-bit words, plus one word (a value's second word)."""
    return 8 * (-(-n * w // 64) + 1) if w else 0


def fixed_bits_width(a: np.ndarray) -> tuple[int, int]:
    """(bits, min) of :class:`FixedBits` for ``a``: the bits of ``max - min``."""
    base, top = span(np.asarray(a).reshape(-1))
    return int(top - base).bit_length(), int(base)


def encode_fb(a: np.ndarray) -> bytes:
    a = np.asarray(a).reshape(-1)
    w, base = fixed_bits_width(a) if a.size else (0, 0)
    if w > FB_MAX:
        raise ValueError(f"{w} bits a value: more than FixedBits holds")
    out = [struct.pack(_FB_HEAD, w, base)]
    if w:
        for _, piece in _pieces(a):  # PIECE values of w bits: whole bytes, so pieces concatenate
            v = (piece.astype(np.int64) - np.int64(base)).view(np.uint64) if a.dtype.kind == "i" \
                else piece.astype(np.uint64) - np.uint64(base)
            bits = np.empty((len(v), w), dtype=np.uint8)  # bit j of each value (uint8: w bytes a value)
            for j in range(w):
                bits[:, j] = (v >> np.uint64(j)) & np.uint64(1)
            out.append(np.packbits(bits.ravel(), bitorder="little").tobytes())
            del v, bits
        out.append(bytes(_fb_bytes(len(a), w) - sum(len(x) for x in out[1:])))
    return b"".join(out)


class MultitokenWords(Encoded2D):
    """``mt_words`` without what it repeats: the single words come first, multitoken ``i`` being
    stem ``i`` (the row ``[i, -1, -1, -1]``), so they are not stored; each column of the other rows is
    :class:`FixedBits` (a stem id, or -1, in the bits of the largest stem id)."""

    ndim = 2
    SMALL = 24

    def __init__(self, buf, dtype, shape):
        n, k = (int(x) for x in shape)
        super().__init__(dtype, n)
        self.shape, self.size = (n, k), n * k
        self._singles, = struct.unpack_from("<q", buf, len(_MW_MAGIC))
        at = len(_MW_MAGIC) + 8
        off = np.frombuffer(buf, dtype="<i8", count=k + 1, offset=at)
        at += 8 * (k + 1)
        view = memoryview(buf)
        self._cols = [FixedBits(view[at + int(off[j]):at + int(off[j + 1])], dtype, n - self._singles)
                      for j in range(k)]

    def __len__(self) -> int:
        return self.shape[0]

    def lengths(self, key):
        """``(self[key] >= 0).sum(axis=-1)``: the words of each multitoken, without building its rows
        (a single word's row is 1 and not read)."""
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if int(key) < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of bounds for a table of {n}")
            return np.int64(1 if i < self._singles else sum(c.one(i - self._singles) >= 0 for c in self._cols))
        if self._full is not None or not isinstance(key, np.ndarray) or key.dtype == bool:
            return (np.asarray(self[key]) >= 0).sum(axis=-1)
        idx = key.astype(np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index out of bounds for a table of {n}")
        flat = idx.ravel()
        out = np.ones(len(flat), dtype=np.int64)
        multi = np.flatnonzero(flat >= self._singles)
        if len(multi):
            at = flat[multi] - self._singles
            got = np.zeros(len(multi), dtype=np.int64)
            for c in self._cols:  # a multi-word row: every column up to its last word holds one
                if c._base >= 0:  # the smallest of the column is a word: every row has one there
                    got += 1
                else:
                    got += c._take(at) >= 0
            out[multi] = got
        return out.reshape(idx.shape)

    def _row_at(self, i: int) -> list[int]:
        if i < self._singles:
            return [i] + [-1] * (self.shape[1] - 1)
        return [c.one(i - self._singles) for c in self._cols]

    def take_rows(self, idx: np.ndarray) -> np.ndarray:
        if len(idx) <= 24:  # a few rows (a prompt's): Python ints beat a dozen numpy calls a column
            return np.array([self._row(i) for i in idx.tolist()], dtype=self.dtype).reshape(len(idx), self.shape[1])
        out = np.full((len(idx), self.shape[1]), -1, dtype=self.dtype)
        single = idx < self._singles
        if single.all():
            out[:, 0] = idx
            return out
        out[single, 0] = idx[single]
        multi = np.flatnonzero(~single)
        at = idx[multi] - self._singles
        for j, c in enumerate(self._cols):
            out[multi, j] = c._take(at)
        return out

    def decoded(self) -> np.ndarray:
        if self._full is None:
            n, k = self.shape
            full = np.full((n, k), -1, dtype=self.dtype)
            full[:self._singles, 0] = np.arange(self._singles)
            at = np.arange(n - self._singles, dtype=np.int64)
            for j, c in enumerate(self._cols):  # whole columns: slices, not index arrays
                full[self._singles:, j] = c._take(at)
            full.flags.writeable = False
            self._full = full
        return self._full

    def __repr__(self) -> str:
        return f"MultitokenWords({self.dtype}, {self.shape}, {self._singles} single words)"


_MW_MAGIC = b"TLMW"


def single_word_rows(words: np.ndarray) -> int:
    """How many rows at the start of ``words`` are ``[i, -1, ...]`` for their index ``i``."""
    words = np.asarray(words)
    n1 = int(np.count_nonzero(words[:, 1:].max(axis=1, initial=-1) < 0)) if len(words) else 0
    head = words[:n1]
    ok = (head[:, 0] == np.arange(n1)) & (head[:, 1:] == -1).all(axis=1)
    return n1 if ok.all() else int(np.argmin(ok))


def encode_mw(a: np.ndarray) -> bytes:
    a = np.asarray(a)
    n1 = single_word_rows(a)
    cols = [encode_fb(np.ascontiguousarray(a[n1:, j])) for j in range(a.shape[1])]
    off = np.zeros(len(cols) + 1, dtype="<i8")
    np.cumsum([len(c) for c in cols], out=off[1:])
    return _MW_MAGIC + struct.pack("<q", n1) + off.tobytes() + b"".join(cols)


class DeltaZlib(Encoded):
    """Read in full on first use (tables only updates read): zlib of the byte-transposed deltas."""

    def __init__(self, buf, dtype, n: int):
        super().__init__(dtype, n)
        self._buf = buf

    def _range(self, lo: int, hi: int) -> np.ndarray:
        if self._full is None:
            raw = np.frombuffer(zlib.decompress(self._buf), dtype=np.uint8)
            d = np.ascontiguousarray(raw.reshape(8, self.size).T).view("<u8").ravel()
            full = np.cumsum(d, dtype=np.uint64)
            self._full = full.view(np.int64).astype(self.dtype) if self.dtype.kind == "i" else full.astype(self.dtype)
            self._full.flags.writeable = False
        return self._full[lo:hi]

    def _take(self, idx: np.ndarray) -> np.ndarray:
        return self.decoded()[idx]


def encode_dz(a: np.ndarray) -> bytes:
    a = np.asarray(a).reshape(-1)
    z = zlib.compressobj(_ZLEVEL)  # zlib.compress of the whole, fed a piece at a time: the same bytes
    out = []
    for k in range(8):  # byte k of every delta, then byte k + 1 ...
        prev = np.uint64(0)
        for _, piece in _pieces(a):
            u = piece.astype(np.int64).view(np.uint64) if a.dtype.kind == "i" else piece.astype(np.uint64)
            d = np.diff(u, prepend=prev)
            prev = u[-1]
            out.append(z.compress(np.ascontiguousarray(d.astype("<u8").view(np.uint8).reshape(-1, 8)[:, k]).tobytes()))
    out.append(z.flush())
    return b"".join(out)


# ---------------------------------------------------------------- monotone index tables
_DB_MAGIC = b"TLDB"
_DB_HEAD = "<qB7x"


class DeltaBits(Encoded):
    """A monotone index table (row pointers, byte offsets): its first value, then its steps (the rows'
    lengths: a few bits each) bit-packed (:class:`BitPacked`) or, when that is smaller (long records'
    byte offsets), in fixed bits (:class:`FixedBits`). Decoded in full on first use (3.4 M row pointers:
    ~30 ms) and read as the plain array from then on: the query kernels and the binary searches over
    row pointers read the whole table. File: ``b"TLDB"``, ``int64 first``, ``uint8 steps' codec`` (0: bp,
    1: fb), 7 bytes of padding, the steps."""

    def __init__(self, buf, dtype, n: int):
        super().__init__(dtype, n)
        if bytes(buf[:4]) != _DB_MAGIC:
            raise ValueError("not a tablelm delta-bits table")
        self._first, sub = struct.unpack_from(_DB_HEAD, buf, 4)
        view = memoryview(buf)[4 + struct.calcsize(_DB_HEAD):]
        self._steps: Encoded | None = None
        if self.size > 1:
            self._steps = (FixedBits if sub else BitPacked)(view, np.int64, self.size - 1)

    def decoded(self) -> np.ndarray:
        if self._full is None:
            full = np.empty(self.size, dtype=self.dtype)
            if self.size:
                full[0] = self._first
            at = self._first
            for lo in range(0, self.size - 1, PIECE):  # a piece at a time: int64 temporaries of a piece only
                sums = np.cumsum(self._steps._range(lo, min(lo + PIECE, self.size - 1)))  # type: ignore[union-attr]
                sums += at
                full[lo + 1:lo + 1 + len(sums)] = sums
                at = int(sums[-1])
            full.flags.writeable = False
            self._full = full
        return self._full

    def _range(self, lo: int, hi: int) -> np.ndarray:
        return self.decoded()[lo:hi]

    def _take(self, idx: np.ndarray) -> np.ndarray:
        return self.decoded()[idx]


def encode_db(a: np.ndarray) -> bytes:
    a = np.asarray(a).reshape(-1)
    first = int(a[0]) if a.size else 0
    if a.size <= 1:
        return _DB_MAGIC + struct.pack(_DB_HEAD, first, 0)
    steps = np.diff(a.astype(np.int64))
    sub, data = 0, encode_bp(steps)
    if fixed_bits_width(steps)[0] <= FB_MAX and _fb_bytes(len(steps), fixed_bits_width(steps)[0]) + 16 < len(data):
        sub, data = 1, encode_fb(steps)
    return _DB_MAGIC + struct.pack(_DB_HEAD, first, sub) + data


# ---------------------------------------------------------------- counts with ranked overflow
_BR_MAGIC = b"TLBR"
#: magic, code bits, the overflow's codec (0: bp, 1: br), the directory's item bytes, min, overflow values,
#: overflow bytes
_BR_HEAD = "<4sBBB1xqqq"
#: 64-bit code words per rank-directory entry: the escapes before a code are the directory's count plus
#: those of at most this many words
BR_WORDS = 8
#: how many times the overflow of an overflow is ranked again (then it is ``bp``)
BR_DEPTH = 2
_BR_WIDTHS = (1, 2, 4)
_M1, _M2, _M4 = np.uint64(0x5555555555555555), np.uint64(0x3333333333333333), np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_LOW = {1: np.uint64(0xFFFFFFFFFFFFFFFF), 2: _M1, 4: np.uint64(0x1111111111111111)}


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (SWAR: numpy before 2.0 has no bitwise_count)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return ((x * _H01) >> np.uint64(56)).astype(np.int64)


def _escape_bits(x: np.ndarray, w: int) -> np.ndarray:
    """One bit (the lowest of the code) for each code of ``w`` bits that is all ones, in uint64 words."""
    if w == 1:
        return x
    y = x & (x >> np.uint64(1))
    if w == 4:
        y = y & (y >> np.uint64(2))
    return y & _LOW[w]


class RankedBits(Encoded):
    """Small counts in ``w`` bits (1, 2 or 4): the largest code means "this or more", and the excess
    of those values, in order, is a table of its own (ranked again, or ``bp``), read at the rank of the
    escape: the escapes before each run of :data:`BR_WORDS` code words are counted in a directory, those
    after it in the run by popcount. Pair counts (most 0, 1 or 2) take ~2.5 bits instead of ``bp``'s 4
    and its 48-bit escapes (position and value)."""

    def __init__(self, buf, dtype, n: int):
        super().__init__(dtype, n)
        magic, self._w, sub, dir_size, self._base, n_over, sub_len = struct.unpack_from(_BR_HEAD, buf, 0)
        if magic != _BR_MAGIC:
            raise ValueError("not a tablelm ranked-bits table")
        self._esc = (1 << self._w) - 1
        n_words = -(-self.size * self._w // 64)
        n_dir = -(-n_words // BR_WORDS)
        at = struct.calcsize(_BR_HEAD)
        self._dir = np.frombuffer(buf, dtype=f"<u{dir_size}" if dir_size == 4 else "<i8", count=n_dir, offset=at)
        at += dir_size * n_dir
        self._words = np.frombuffer(buf, dtype="<u8", count=n_words, offset=at)
        self._bytes = np.frombuffer(buf, dtype=np.uint8, count=8 * n_words, offset=at)
        at += 8 * n_words
        view = memoryview(buf)[at:at + sub_len]
        self._chain: tuple | None = None
        self._over: Encoded | None = None
        if n_over:
            self._over = (RankedBits if sub else BitPacked)(view, dtype, n_over)

    def _codes(self, lo: int, hi: int) -> np.ndarray:
        w = self._w
        per = 8 // w
        b0, b1 = lo // per, -(-hi // per)
        shifts = np.arange(per, dtype=np.uint8) * np.uint8(w)
        codes = ((self._bytes[b0:b1, None] >> shifts) & np.uint8(self._esc)).ravel()
        return codes[lo - b0 * per: hi - b0 * per]

    def _rank(self, pos: np.ndarray) -> np.ndarray:
        """The escapes before each position (int64)."""
        w, words = self._w, self._words
        bit = pos * w
        q = bit >> 6
        first = (q // BR_WORDS) * BR_WORDS
        r = self._dir[q // BR_WORDS].astype(np.int64)
        for j in range(BR_WORDS - 1):
            before = first + j < q
            if not before.any():
                break
            r[before] += _popcount(_escape_bits(words[first[before] + j], w))
        mask = (np.uint64(1) << (bit & 63).astype(np.uint64)) - np.uint64(1)
        return r + _popcount(_escape_bits(words[q], w) & mask)

    def _fix(self, codes: np.ndarray, pos_of, run: bool) -> np.ndarray:
        vals = codes.astype(self.dtype)
        esc = np.flatnonzero(codes == self._esc)
        if len(esc) and self._over is not None:
            if run:  # consecutive escapes: consecutive overflow values
                r0 = int(self._rank(pos_of(esc[:1]))[0])
                extra = self._over._range(r0, r0 + len(esc))
            else:
                extra = self._over._take(self._rank(pos_of(esc)))
            vals[esc] += extra.astype(self.dtype, copy=False)
        if self._base:
            vals += self.dtype.type(self._base)
        return vals

    def _range(self, lo: int, hi: int) -> np.ndarray:
        jit = _query_kernels() if hi - lo <= BLOCK << 6 else None
        if jit is not None:  # a query's row (a pair row's counts): compiled, every level in one call
            return self._compiled(jit, np.arange(lo, hi, dtype=np.int64))
        if hi - lo <= PIECE:
            return self._fix(self._codes(lo, hi), lambda e: e + lo, True)
        out = np.empty(hi - lo, dtype=self.dtype)  # a piece at a time: bounded temporaries
        for a in range(lo, hi, PIECE):
            b = min(a + PIECE, hi)
            out[a - lo:b - lo] = self._fix(self._codes(a, b), lambda e, a=a: e + a, True)
        return out

    def _levels(self):
        """The compiled reader's view of this table and its overflows (:func:`tables._jit.br_read`)."""
        if self._chain is None:
            levels: list[RankedBits] = []
            t: Encoded | None = self
            while isinstance(t, RankedBits):
                levels.append(t)
                t = t._over
            bp = t if isinstance(t, BitPacked) else None
            none = np.zeros(1, dtype=np.int64)
            self._chain = (tuple(x._words for x in levels), tuple(np.array(x._dir, dtype=np.int64) for x in levels),
                           tuple(x._w for x in levels), tuple(x._base for x in levels),
                           bp._packed if bp is not None else np.zeros(1, np.uint8), bp._w if bp is not None else -1,
                           bp._pos if bp is not None else none, bp._val if bp is not None else none,
                           bp._base if bp is not None else 0)
        return self._chain

    def _compiled(self, jit, idx: np.ndarray) -> np.ndarray:
        words, dirs, ws, bases, packed, w, pos, val, base = self._levels()
        out = np.empty(len(idx), dtype=np.int64)
        jit.br_read(words, dirs, ws, bases, BR_WORDS, packed, w, pos, val, base, idx.astype(np.int64, copy=False),
                    out)
        return out.astype(self.dtype, copy=False)

    def _take(self, idx: np.ndarray) -> np.ndarray:
        jit = _query_kernels() or kernels(len(idx))
        if jit is not None:  # compiled: once the query kernels are loaded (a pair row's counts), or for a large read
            return self._compiled(jit, idx)
        bit = idx * self._w
        codes = ((self._words[bit >> 6] >> (bit & 63).astype(np.uint64)) & np.uint64(self._esc)).astype(np.uint8)
        return self._fix(codes, lambda e: idx[e], False)


def _pack_codes(codes: np.ndarray, w: int) -> bytes:
    """Codes of ``w`` bits (uint8), low bits first in each byte, padded to whole 64-bit words."""
    per = 8 // w
    codes = np.concatenate([codes, np.zeros(-len(codes) % (64 // w), dtype=np.uint8)]).reshape(-1, per)
    packed = np.zeros(len(codes), dtype=np.uint8)
    for j in range(per):
        packed |= codes[:, j] << np.uint8(j * w)
    return packed.tobytes()


def encode_counts(a: np.ndarray, depth: int = 0) -> tuple[str, bytes]:
    """The smaller of ``bp`` and ``br`` (each width) for the counts ``a``: (codec, bytes)."""
    a = np.asarray(a).reshape(-1)
    best = ("bp", encode_bp(a))
    br = encode_br(a, depth)
    if br is not None and len(br) < len(best[1]):
        best = ("br", br)
    return best


def encode_br(a: np.ndarray, depth: int = 0) -> bytes | None:
    """The smallest ``br`` bytes of the counts ``a`` (None: empty or wider than 64 bits)."""
    a = np.asarray(a).reshape(-1)
    if not a.size or a.dtype.kind not in "iu":
        return None
    base, top = span(a)
    if base < 0:  # counts: the excess of a value over the minimum must fit the dtype
        return None
    best = None
    for w in _BR_WIDTHS:
        esc = (1 << w) - 1
        packs, overs = [], []
        for _, piece in _pieces(a):  # PIECE is a multiple of 64: only the last piece is padded
            v = piece.astype(np.int64) - np.int64(base)
            packs.append(_pack_codes(np.minimum(v, esc).astype(np.uint8), w))
            overs.append((v[v >= esc] - esc).astype(a.dtype))
            del v
        codes = b"".join(packs)
        del packs
        over = np.concatenate(overs) if overs else np.zeros(0, a.dtype)
        del overs
        words = np.frombuffer(codes, dtype="<u8")
        per_word = _popcount(_escape_bits(words, w))
        n_dir = -(-len(words) // BR_WORDS)
        dirs = np.zeros(n_dir, dtype=np.int64)
        if n_dir > 1:
            sums = np.add.reduceat(per_word, np.arange(0, len(words), BR_WORDS))
            np.cumsum(sums[:-1], out=dirs[1:])
        dir_size = 4 if len(over) < 2**32 else 8
        sub, sub_bytes = 0, b""
        if len(over):
            if depth < BR_DEPTH:
                codec, sub_bytes = encode_counts(over, depth + 1)
                sub = int(codec == "br")
            else:
                sub_bytes = encode_bp(over)
        data = (struct.pack(_BR_HEAD, _BR_MAGIC, w, sub, dir_size, base, len(over), len(sub_bytes))
                + dirs.astype("<u4" if dir_size == 4 else "<i8").tobytes() + codes + sub_bytes)
        del codes, over, words
        if best is None or len(data) < len(best):
            best = data
        if top - base < esc:  # every value fits in w bits: wider codes only cost more
            break
    return best


def _encode_br_or_raise(a: np.ndarray) -> bytes:
    data = encode_br(a)
    if data is None:
        raise ValueError("ranked bits hold counts: integers from 0 up")
    return data


class ForwardPosts(Encoded):
    """``fwd_post`` recomputed from the postings instead of stored (codec ``fwd``, an empty file):
    the posting of forward entry ``j`` (entity ``d``, multitoken ``m``) is where ``d`` sits in the
    ascending entities of ``m``'s postings, a binary search; the whole table is the stable argsort
    of ``post_docs``, which is how the build makes it."""

    def __init__(self, dtype, n: int, post_indptr, post_docs, fwd_indptr, fwd_mt):
        super().__init__(dtype, n)
        self._t = (post_indptr, post_docs, fwd_indptr, fwd_mt)

    def _range(self, lo: int, hi: int) -> np.ndarray:
        if lo == 0 and hi == self.size:
            from .sorting import stable_argsort

            return stable_argsort(np.asarray(self._t[1])).astype(self.dtype)
        return self._take(np.arange(lo, hi, dtype=np.int64))

    def _take(self, idx: np.ndarray) -> np.ndarray:
        if idx.size > max(4096, self.size // 64):
            return self.decoded()[idx]
        post_indptr, post_docs, fwd_indptr, fwd_mt = self._t
        docs = np.searchsorted(fwd_indptr, idx, side="right") - 1
        mts = np.asarray(fwd_mt[idx], dtype=np.int64)
        out = np.empty(len(idx), dtype=self.dtype)
        for j, (m, d) in enumerate(zip(mts.tolist(), docs.tolist())):
            lo, hi = int(post_indptr[m]), int(post_indptr[m + 1])
            out[j] = lo + int(np.searchsorted(post_docs[lo:hi], d))
        return out


class Forward:
    """The forward index (entity -> its postings) recomputed from the postings on first use: the
    postings in entity order, stable (a counting sort into each entity's slots of ``fwd_indptr``),
    and the multitoken (row) of each. That is what the build computes, so ``fwd_post`` and
    ``fwd_mt`` are the stored tables, value for value. Only pseudo-relevance feedback and the
    taxonomy read the forward index: the first such query pays O(postings) once (at 1M documents,
    20 M postings: ~1 s and ~300 MB, of which the two tables stay, 4 bytes a posting each)."""

    def __init__(self, post_indptr, post_docs, fwd_indptr, dtypes):
        self._src = (post_indptr, post_docs, fwd_indptr)
        self._dtypes = dtypes  # of fwd_post and fwd_mt
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()  # serve's threads: computed once

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(``fwd_post``, ``fwd_mt``)."""
        with self._lock:
            if self._arrays is None:
                self._arrays = forward_index(*self._src, dtypes=self._dtypes)
            return self._arrays


def forward_index(post_indptr, post_docs, fwd_indptr, dtypes=(np.int64, np.int32)) -> tuple[np.ndarray, np.ndarray]:
    """:class:`Forward`'s arrays (read-only, of ``dtypes``): compiled when numba is there, else numpy."""
    ptr = np.asarray(post_indptr, dtype=np.int64)
    docs = post_docs.values() if isinstance(post_docs, Encoded) else np.asarray(post_docs)
    jit = kernels(len(docs)) or _query_kernels()
    if jit is not None:
        f_post, f_mt = np.empty(len(docs), dtype=dtypes[0]), np.empty(len(docs), dtype=dtypes[1])
        jit.forward_index(ptr, docs, np.asarray(fwd_indptr, dtype=np.int64), f_post, f_mt)
    else:
        from .sorting import stable_argsort

        order = stable_argsort(docs)
        f_mt = (np.searchsorted(ptr, order, side="right") - 1).astype(dtypes[1])
        f_post = order.astype(dtypes[0], copy=False)
    del docs
    f_post.flags.writeable = f_mt.flags.writeable = False
    return f_post, f_mt


class ForwardTable(Encoded):
    """``fwd_post`` (``which`` 0) or ``fwd_mt`` (1) of a :class:`Forward`, neither stored."""

    def __init__(self, dtype, n: int, forward: Forward, which: int):
        super().__init__(dtype, n)
        self._forward, self._which = forward, which

    def decoded(self) -> np.ndarray:
        if self._full is None:
            self._full = self._forward.arrays()[self._which]
        return self._full

    def _range(self, lo: int, hi: int) -> np.ndarray:
        return self.decoded()[lo:hi]

    def _take(self, idx: np.ndarray) -> np.ndarray:
        return self.decoded()[idx]


def forward_mt_derivable(arrays: dict) -> bool:
    """Whether ``fwd_mt`` (and ``fwd_post``) need not be stored: ``fwd_post`` is derivable and each
    ``fwd_mt`` is the row of the posting ``fwd_post`` gives (a posting lies in its row's range)."""
    mt, fwd, ptr = arrays.get("fwd_mt"), arrays.get("fwd_post"), arrays.get("post_indptr")
    if mt is None or fwd is None or ptr is None or len(mt) != len(fwd) or not forward_posts_derivable(arrays):
        return False
    ptr = np.asarray(ptr, dtype=np.int64)
    for lo, piece in _pieces(mt):
        m = piece.astype(np.int64)
        if len(m) and (m.min() < 0 or m.max() >= len(ptr) - 1):
            return False
        f = np.asarray(fwd[lo:lo + len(m)], dtype=np.int64)
        if ((f < ptr[m]) | (f >= ptr[m + 1])).any():
            return False
    return True


def forward_posts_derivable(arrays: dict) -> bool:
    """Whether ``fwd_post`` is the stable argsort of ``post_docs`` (then it need not be stored)."""
    from .sorting import stable_argsort

    fwd, docs = arrays.get("fwd_post"), arrays.get("post_docs")
    if fwd is None or docs is None or len(fwd) != len(docs):
        return False
    if len(fwd) <= PIECE:
        return np.array_equal(np.asarray(fwd), stable_argsort(np.asarray(docs)))
    # a piece at a time: fwd (values in range) is the stable argsort of docs iff the pairs
    # (docs[fwd[j]], fwd[j]) strictly increase: then its values are distinct, so a permutation,
    # in the argsort's order
    last_doc, last_post = -1, -1
    for _, piece in _pieces(fwd):
        f = piece.astype(np.int64)
        if f.min() < 0 or f.max() >= len(docs):
            return False
        d = np.asarray(docs[f], dtype=np.int64)
        d_prev = np.concatenate(([last_doc], d[:-1]))
        f_prev = np.concatenate(([last_post], f[:-1]))
        if ((d < d_prev) | ((d == d_prev) & (f <= f_prev))).any():
            return False
        last_doc, last_post = int(d[-1]), int(f[-1])
        release(docs)
    return True


ARRAY_CODECS = {"dv": (encode_dv, DeltaVarint), "bp": (encode_bp, BitPacked), "dz": (encode_dz, DeltaZlib),
                "bc": (encode_bc, BitColumns), "fb": (encode_fb, FixedBits), "mw": (encode_mw, MultitokenWords),
                "db": (encode_db, DeltaBits), "br": (_encode_br_or_raise, RankedBits)}


def decode_array(codec: str, buf, dtype: str, shape) -> Encoded:
    if codec == "bc":
        return BitColumns(buf, dtype, shape)
    if codec == "mw":
        return MultitokenWords(buf, dtype, shape)
    return ARRAY_CODECS[codec][1](buf, dtype, int(shape[0]))


# ---------------------------------------------------------------- compressed blob
def write_zblocks(f, chunks, reuse: tuple | None = None) -> int:
    """Write ``chunks`` (bytes-likes, concatenated) to the open file ``f`` as zlib blocks; the bytes written.

    Blocks of :data:`ZBLOCK` raw bytes; the first :data:`ZDICT` raw bytes are the preset dictionary
    of every later block (so that small blocks compress as well as large ones: a card inflates 8 KB).

    ``reuse`` is ``(old, k)``: the raw bytes start with the first ``k`` whole blocks of the store
    ``old`` (a :class:`ZBlocks` of this layout, ``k`` covering at least the dictionary), which are
    copied compressed, as they are; ``chunks`` are the raw bytes after them. Each block is
    compressed alone with the same dictionary, so the file is the same, byte for byte, as the
    whole raw bytes compressed (an add appends to the entity store: only its tail is compressed).
    """
    sizes, pieces, raw = [], [], 0
    pending = bytearray()
    zdict = b""
    raw_done = [0]
    head_bytes = bytearray()
    if reuse is not None:
        old, k = reuse
        if not old.reusable(k):
            raise ValueError("these zlib blocks cannot be reused")
        zdict = old.dictionary()
        head_bytes += zdict
        raw = raw_done[0] = k * ZBLOCK
        sizes = np.diff(old._off[:k + 1]).tolist()
        pieces.append(old._data[int(old._off[0]):int(old._off[k])])

    def flush(block) -> None:
        nonlocal zdict
        c = zlib.compressobj(_ZLEVEL, zdict=zdict) if zdict else zlib.compressobj(_ZLEVEL)
        z = c.compress(block) + c.flush()
        pieces.append(z)
        sizes.append(len(z))
        if not zdict and raw_done[0] + len(block) >= ZDICT:
            zdict = bytes(head_bytes[:ZDICT])
        raw_done[0] += len(block)

    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        raw += len(view)
        if len(head_bytes) < ZDICT:
            head_bytes += view[: ZDICT - len(head_bytes)]
        pending += view
        if len(pending) >= ZBLOCK:
            whole = len(pending) - len(pending) % ZBLOCK
            for i in range(0, whole, ZBLOCK):
                flush(bytes(pending[i:i + ZBLOCK]))
            del pending[:whole]
    if pending:
        flush(bytes(pending))
    offsets = np.zeros(len(sizes) + 1, dtype="<i8")
    np.cumsum(sizes, out=offsets[1:])
    n_plain = min(len(sizes), -(-ZDICT // ZBLOCK))  # the blocks that hold the dictionary: without one
    head = _ZMAGIC + struct.pack(_ZHEAD, ZBLOCK, raw, len(sizes), min(ZDICT, raw), n_plain) + offsets.tobytes()
    f.write(head)
    for z in pieces:
        f.write(z)
    return len(head) + int(offsets[-1])


class Spliced:
    """An entity store to be written as runs of an old zlib-block store's raw bytes plus new bytes
    (what an add or a delete keeps, then what it adds), without inflating what need not be:
    the old blocks before the first byte that changes are copied compressed
    (:func:`write_zblocks` with ``reuse``); the rest is inflated and compressed again.

    ``runs`` are ``(start, end)`` raw byte ranges of ``old``, ascending; ``tail`` the bytes after."""

    def __init__(self, old: ZBlocks, runs: list, tail: bytes):
        self.old, self.runs, self.tail = old, [(int(a), int(b)) for a, b in runs if b > a], tail

    def __len__(self) -> int:
        return sum(b - a for a, b in self.runs) + len(self.tail)

    def reused_blocks(self) -> int:
        """Whole old blocks at the start that the new bytes share (0 when they cannot be reused)."""
        same = self.runs[0][1] if self.runs and self.runs[0][0] == 0 else 0
        k = same // ZBLOCK
        return k if k and self.old.reusable(k) else 0

    def chunks(self, skip: int = 0):
        """The raw bytes from offset ``skip`` on (``skip`` inside the first run), a piece at a time."""
        step = 1 << 22
        for i, (a, b) in enumerate(self.runs):
            for lo in range(max(a, skip) if i == 0 else a, b, step):
                yield self.old[lo:min(lo + step, b)]
        if self.tail:
            yield self.tail

    def write(self, f) -> int:
        k = self.reused_blocks()
        return write_zblocks(f, self.chunks(k * ZBLOCK), reuse=(self.old, k) if k else None)

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())


class ZBlocks:
    """A zlib-block blob read like bytes: ``len``, slices (inflating the blocks they cover), ``bytes()``."""

    #: inflated blocks kept (of ZBLOCK bytes: 32 MB): cards read records
    #: all over the store, and 256 blocks (2 MB) were inflated again and again on SciFact alone
    CACHE = 4096

    def __init__(self, buf):
        magic = bytes(buf[:4])
        if magic == _ZMAGIC:
            self._block, self._raw, nb, self._dict_len, self._n_plain = struct.unpack_from(_ZHEAD, buf, 4)
            head = 4 + struct.calcsize(_ZHEAD)
        elif magic == b"TLZB":  # the first format-5 layout (no preset dictionary)
            self._block, self._raw, nb = struct.unpack_from("<Iqq", buf, 4)
            self._dict_len, self._n_plain = 0, nb
            head = 4 + struct.calcsize("<Iqq")
        else:
            raise ValueError("not a tablelm zlib-block file")
        self._off = np.frombuffer(buf, dtype="<i8", count=nb + 1, offset=head)
        self._data = memoryview(buf)[head + 8 * (nb + 1):]
        self._cache: dict[int, bytes] = {}
        self._zdict: bytes | None = None

    def _inflate(self, b: int) -> bytes:
        z = self._data[int(self._off[b]):int(self._off[b + 1])]
        if b < self._n_plain:
            return zlib.decompress(z)
        d = zlib.decompressobj(zdict=self.dictionary())
        return d.decompress(z) + d.flush()

    def __len__(self) -> int:
        return self._raw

    def reusable(self, k: int) -> bool:
        """Whether the first ``k`` blocks can start another store of this layout (whole blocks of
        :data:`ZBLOCK` bytes, with the dictionary of the first :data:`ZDICT` bytes, all in them)."""
        return (self._block == ZBLOCK and self._dict_len == ZDICT and self._n_plain == -(-ZDICT // ZBLOCK)
                and self._n_plain <= k <= self._raw // ZBLOCK)

    def dictionary(self) -> bytes:
        if self._zdict is None:
            self._zdict = b"".join(self.block(i) for i in range(self._n_plain))[: self._dict_len]
        return self._zdict

    def block(self, b: int) -> bytes:
        got = self._cache.get(b)
        if got is None:
            make_room(self._cache, self.CACHE)
            got = self._cache[b] = self._inflate(b)
        return got

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("the entity store is read by slices")
        lo, hi, step = key.indices(self._raw)
        if hi <= lo:
            return b""
        b0, b1 = lo // self._block, (hi - 1) // self._block
        if b0 == b1:
            blk = self.block(b0)
            out = blk[lo - b0 * self._block: hi - b0 * self._block]
        else:
            out = b"".join(self.block(b) for b in range(b0, b1 + 1))[lo - b0 * self._block: hi - b0 * self._block]
        return out[::step] if step != 1 else out

    def chunks(self):
        """The raw bytes, block by block (without filling the cache)."""
        for b in range(len(self._off) - 1):
            yield self._inflate(b)

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())

    def __repr__(self) -> str:
        return f"ZBlocks({self._raw} bytes)"


# ---------------------------------------------------------------- compressed string tables
_LMAGIC = b"TLZL"
LINES_PER_BLOCK = 1024


class KeptLines(list):
    """A string table whose first lines are those of a stored one (an add or a delete keeps the ids
    before the first deleted entity): ``blocks`` is the stored table, ``same`` how many lines of it
    this list starts with, so that :func:`encode_lines` copies their whole blocks compressed."""

    def __init__(self, values, blocks: LineBlocks | None, same: int):
        super().__init__(values)
        self.blocks, self.same = blocks, int(same)


def encode_lines(values) -> bytes:
    """A string table (no newlines) as zlib blocks of :data:`LINES_PER_BLOCK` lines each (the blocks
    a :class:`KeptLines` shares with its stored table are copied: each block is compressed alone,
    so the bytes are the same)."""
    kept, blocks = 0, getattr(values, "blocks", None)
    if blocks is not None and blocks.per_block == LINES_PER_BLOCK:
        kept = min(values.same, len(values), blocks.rows) // LINES_PER_BLOCK
    pieces = [blocks.compressed(b) for b in range(kept)] if blocks is not None and kept else []
    pieces += [zlib.compress("\n".join(values[i:i + LINES_PER_BLOCK]).encode("utf-8"), _ZLEVEL)
               for i in range(kept * LINES_PER_BLOCK, len(values), LINES_PER_BLOCK)]
    offsets = np.zeros(len(pieces) + 1, dtype="<i8")
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    return (_LMAGIC + struct.pack("<Iqq", LINES_PER_BLOCK, len(values), len(pieces)) + offsets.tobytes()
            + b"".join(pieces))


class LineBlocks:
    """The blocks of an encoded string table: ``block(b)`` is the list of its lines."""

    def __init__(self, buf):
        if bytes(buf[:4]) != _LMAGIC:
            raise ValueError("not a tablelm string-table file")
        self.per_block, self.rows, nb = struct.unpack_from("<Iqq", buf, 4)
        head = 4 + struct.calcsize("<Iqq")
        self._off = np.frombuffer(buf, dtype="<i8", count=nb + 1, offset=head)
        self._data = memoryview(buf)[head + 8 * (nb + 1):]

    def compressed(self, b: int):
        return self._data[int(self._off[b]):int(self._off[b + 1])]

    def raw(self, b: int) -> bytes:
        """Block ``b`` inflated: its lines joined by newlines, UTF-8."""
        return zlib.decompress(self.compressed(b))

    def block(self, b: int) -> list[str]:
        return self.raw(b).decode("utf-8").split("\n")
