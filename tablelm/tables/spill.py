"""Arrays written to disk piece by piece, and read back without keeping their pages resident.

The bounded-memory build (tables/counts.py: ``merge`` and ``assemble`` with a spool folder)
writes its largest outputs a range at a time: :class:`Appender` appends pieces to a ``.npy``
file with plain writes (the page cache holds them, not the process), and returns the finished
array memory-mapped. Pages of a memory-mapped file count in the process's resident memory once
touched; :func:`release` drops them after a pass (the file keeps them), and :func:`chunks`
walks a long array in bounded pieces, releasing as it goes.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

_HEADER = 128  # bytes of the .npy header, fixed so that the shape can be written last
CHUNK_BYTES = 1 << 26  # 64 MB pieces for passes over memory-mapped arrays
_WRITTEN: set = set()  # the files Appender wrote (spool files: astype may write beside them)


def _header(dtype: np.dtype, shape: tuple) -> bytes:
    body = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
    body = body.ljust(_HEADER - 10 - 1) + "\n"
    if len(body) != _HEADER - 10:
        raise ValueError(f"npy header too long for shape {shape}")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class Appender:
    """A ``.npy`` file written by appending rows: ``add`` pieces, then ``finish`` for the array."""

    def __init__(self, path: Path, dtype, tail: tuple = ()):
        self.path, self.dtype, self.tail, self.rows = Path(path), np.dtype(dtype), tuple(tail), 0
        self.file = open(self.path, "wb")
        self.file.write(_header(self.dtype, (0, *self.tail)))

    def add(self, piece: np.ndarray) -> None:
        piece = np.ascontiguousarray(piece, dtype=self.dtype)
        if piece.shape[1:] != self.tail:
            raise ValueError(f"appending rows of shape {piece.shape[1:]} to {self.path.name} of {self.tail}")
        self.file.write(piece.data)
        self.rows += len(piece)

    def finish(self) -> np.ndarray:
        self.file.seek(0)
        self.file.write(_header(self.dtype, (self.rows, *self.tail)))
        self.file.close()
        _WRITTEN.add(os.path.abspath(self.path))
        return load(self.path)


def load(path: Path) -> np.ndarray:
    """A spilled ``.npy`` memory-mapped (read-only), or in memory when it holds no data."""
    arr = np.load(path, mmap_mode="r")
    return np.array(arr) if arr.size == 0 else arr


def save(path: Path, arr: np.ndarray) -> np.ndarray:
    """``arr`` written to ``path`` and memory-mapped back (the in-memory copy can then go)."""
    out = Appender(path, arr.dtype, arr.shape[1:])
    out.add(arr)
    return out.finish()


def release(*arrays) -> None:
    """Drop the resident pages of memory-mapped arrays (their files keep the data)."""
    for arr in arrays:
        mm = getattr(_memmap_of(arr), "_mmap", None)
        if mm is not None and hasattr(mm, "madvise"):
            mm.madvise(mmap.MADV_DONTNEED)


def chunks(arr: np.ndarray, rows: int | None = None):
    """(start, piece) over ``arr`` in pieces of about :data:`CHUNK_BYTES`; a memory-mapped array's
    pages are released after each piece."""
    n = len(arr)
    if rows is None:
        row_bytes = max(int(arr.itemsize * np.prod(arr.shape[1:], dtype=np.int64)), 1)
        rows = max(CHUNK_BYTES // row_bytes, 1)
    for lo in range(0, n, rows):
        yield lo, np.asarray(arr[lo:lo + rows])
        release(arr)


def span(arr: np.ndarray) -> tuple[int, int]:
    """(min, max) of an integer array, (0, 0) when empty; a memory-mapped one is read in pieces."""
    if not arr.size:
        return 0, 0
    if not is_mapped(arr):
        return int(arr.min()), int(arr.max())
    got = [(int(p.min()), int(p.max())) for _, p in chunks(arr) if p.size]
    return min(g[0] for g in got), max(g[1] for g in got)


def astype(arr: np.ndarray, dtype) -> np.ndarray:
    """``arr.astype(dtype, copy=False)``; a memory-mapped array (of a file) converted in pieces,
    its pages released as it goes, into a file beside it, memory-mapped."""
    dtype = np.dtype(dtype)
    base = _memmap_of(arr)
    if arr.dtype == dtype or base is None or arr.ndim == 0:
        return arr.astype(dtype, copy=False)
    name = str(getattr(base, "filename", "") or "")
    if name not in _WRITTEN:  # another memory-mapped file (e.g. a loaded model's): into memory
        out = np.empty(arr.shape, dtype=dtype)
        for lo, piece in chunks(arr):
            out[lo:lo + len(piece)] = piece
        return out
    spooled = Appender(Path(f"{name}.{dtype.str.lstrip('<>|=')}.npy"), dtype, arr.shape[1:])
    for _, piece in chunks(arr):
        spooled.add(piece.astype(dtype))
    return spooled.finish()


def _memmap_of(arr):
    base = arr
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    return base


def _glibc():
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
            _libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        except (OSError, AttributeError):
            _libc = False
    return _libc


_libc: Any = None
_M_MMAP_THRESHOLD = -3
_M_TRIM_THRESHOLD = -1


def trim() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``): numpy's freed
    temporaries below the allocator's mmap threshold otherwise stay resident between shards."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)


#: glibc's mmap threshold during a build held in memory: blocks from 4 MB up are mapped and
#: unmapped when freed; smaller ones come from the heap and are reused. At glibc's default
#: 128 kB, SciFact's build faulted in 518k fresh pages (2 s of system time in a build and save);
#: at 4 MB, 215k for a peak 7 MB higher
MMAP_THRESHOLD = 1 << 22
#: glibc's trim threshold with it: up to 32 MB freed at the top of the heap stay for the next
#: temporaries instead of going back to the system and faulting in again (147k faults, a peak
#: 16 MB higher than at 128 kB)
TRIM_THRESHOLD = 1 << 25
#: both thresholds of the bounded-memory (sharded) build, whose peak has the least margin: glibc's
#: defaults, 128 kB, held fixed
SHARDED_MMAP_THRESHOLD = 1 << 17


def map_large_allocations(threshold: int = MMAP_THRESHOLD) -> None:
    """Hold glibc's mmap threshold at ``threshold`` bytes for the rest of the process, and its trim
    threshold at :data:`TRIM_THRESHOLD` (at ``threshold`` itself below :data:`MMAP_THRESHOLD`).

    glibc raises the threshold (up to 32 MB) each time a mapped block is freed, so that the
    build's many freed temporaries of a few MB come from the heap afterwards, where freed
    memory stays resident: on SciFact that is ~90 MB of the build's peak. A fixed threshold
    maps every block above it, and unmaps it when freed.
    """
    libc = _glibc()
    if libc:
        libc.mallopt(_M_MMAP_THRESHOLD, int(threshold))
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD if threshold >= MMAP_THRESHOLD else int(threshold))


def is_mapped(arr) -> bool:
    return _memmap_of(arr) is not None
