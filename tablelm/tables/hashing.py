"""A deterministic 64-bit hash of word-id tuples, the same vectorized and scalar.

Multitokens are tuples of up to four stem ids. Tables keyed by a tuple (the
sorted n-gram table) store the sorted hashes and look keys up with
``np.searchsorted``, which works memory-mapped and needs no Python dict at load
time. Every lookup verifies the stored word tuple, so a collision can cost a
miss, never a wrong match.

The mixer is splitmix64 (Steele, Lea & Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
WIDTH = 4  # words per padded tuple row


def _mix(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


_POS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
                dtype=np.uint64)


def hash_rows(words: np.ndarray) -> np.ndarray:
    """Hash each row of an ``(n, 4)`` int array of word ids padded with -1.

    A position-weighted sum (one matrix product) finished by one splitmix64 round:
    cheap enough for every prompt, and collisions only cost a longer run of equal
    hashes, which lookups walk and verify.
    """
    words = np.asarray(words, dtype=np.int64).reshape(-1, WIDTH)
    with np.errstate(over="ignore"):
        return _mix((words + 1).astype(np.uint64) @ _POS)


def sort_rows(words: np.ndarray) -> np.ndarray:
    """Sort each padded row ascending, keeping the -1 padding at the end."""
    w = np.asarray(words, dtype=np.int64)
    big = np.iinfo(np.int64).max
    s = np.sort(np.where(w < 0, big, w), axis=1)
    return np.where(s == big, -1, s)


_K = np.uint64(0x100000001B3)  # the FNV-1a 64-bit prime: an odd multiplier for chaining


def chain_hash(prefix: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The hash of a word sequence from the hash of its prefix and the hash of its last word.

    Applied level by level to stable word hashes (:func:`string_hashes`), it gives n-gram keys
    that do not depend on the rest of the corpus, so counts of separate shards (or of a model
    and the entities added to it) can be matched and summed.
    """
    with np.errstate(over="ignore"):
        return _mix(np.asarray(prefix, dtype=np.uint64) * _K ^ np.asarray(last, dtype=np.uint64))


def string_hashes(strings: list) -> np.ndarray:
    """A stable 64-bit hash of each string (its UTF-8 bytes), vectorized.

    Polynomial in the bytes (base 257, mod 2^64) finished by splitmix64 with the length; the
    same string gives the same hash in every process and corpus.
    """
    if not strings:
        return np.zeros(0, dtype=np.uint64)
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    lens = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.uint64) + np.uint64(1)
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    pos = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lens)
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(max(int(lens.max()), 1), 257, dtype=np.uint64))
        terms = data * powers[pos]
        sums = np.zeros(len(strings), dtype=np.uint64)
        nz = lens > 0
        sums[nz] = np.add.reduceat(terms, starts[nz]) if len(terms) else 0
        return _mix(sums ^ (lens.astype(np.uint64) << np.uint64(56)))
