"""Whether the build uses its numba kernels (tables/_jit.py): when numba is installed and
``TABLELM_KERNEL`` is not ``numpy`` (the variable the query kernels read, tablelm/query/kernel.py).

Every kernel has a numpy implementation beside it that gives the same bytes; the kernels are
only faster (delta-varint encoding: ~10 ns a value against ~50 in numpy).
"""

from __future__ import annotations

import os
from typing import Any

_module: Any = None  # the kernels' module once loaded, False when numba is missing or disabled
#: values of work that make the first kernel call load numba: importing it and reading its cached
#: kernels costs 0.5-1 s, what numpy's encoders spend on ~10-20 M values (SciFact's largest table
#: has 5 M: its build never loads numba; a 1M-document build's pair tables have ~48 M)
JIT_MIN_VALUES = 1 << 24


def kernels(n: int | None = None):
    """The module of the build's numba kernels, or None: use the numpy implementations. ``n``: the
    values the call will process; below :data:`JIT_MIN_VALUES`, numba is used only if loaded already."""
    global _module
    if _module is None:
        if n is not None and n < JIT_MIN_VALUES:
            return None
        _module = False
        if os.environ.get("TABLELM_KERNEL", "auto").strip().lower() != "numpy":
            try:
                from . import _jit
            except ImportError:  # numba not installed
                pass
            else:
                _module = _jit
    return _module or None
