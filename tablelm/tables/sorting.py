"""Sorting primitives of the counting pass, faster than numpy's argsort-based ones.

``np.unique(..., return_inverse=True)`` and ``np.argsort(kind="stable")`` sort indices,
which is about twice as slow as sorting values. When a key and a row index fit together
in 63 bits, both are done here by sorting the values ``key << bits | index``: ties keep
the index order (so the result is stable and deterministic), and the index comes back
from the low bits. Otherwise they fall back to numpy.
"""

from __future__ import annotations

import numpy as np


def _packed_sort(keys: np.ndarray):
    """(sorted keys, their original positions), or None when they do not fit in 63 bits."""
    n = len(keys)
    bits = max(int(n - 1).bit_length(), 1)
    if n == 0 or int(keys.min()) < 0 or int(keys.max()).bit_length() + bits > 63:
        return None
    packed = np.sort((keys.astype(np.int64) << bits) | np.arange(n, dtype=np.int64))
    return packed >> bits, packed & ((1 << bits) - 1)


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for non-negative integer keys."""
    got = _packed_sort(np.asarray(keys))
    return np.argsort(keys, kind="stable") if got is None else got[1]


def unique_inverse(keys: np.ndarray):
    """``np.unique(keys, return_inverse=True)`` for non-negative integer keys."""
    keys = np.asarray(keys)
    got = _packed_sort(keys)
    if got is None:
        return np.unique(keys, return_inverse=True)
    sorted_keys, order = got
    new = np.empty(len(keys), dtype=bool)
    new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return sorted_keys[new], inverse
