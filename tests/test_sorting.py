"""The packed-value sorting primitives equal numpy's argsort-based ones."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tablelm.tables.sorting import stable_argsort, unique_inverse

small = arrays(np.int64, st.integers(0, 300), elements=st.integers(0, 50))
huge = arrays(np.int64, st.integers(1, 50), elements=st.integers(0, 2**62))  # too wide: numpy fallback


@given(st.one_of(small, huge))
def test_unique_inverse_equals_numpy(keys):
    if len(keys) == 0:
        return
    u, inv = unique_inverse(keys)
    nu, ninv = np.unique(keys, return_inverse=True)
    np.testing.assert_array_equal(u, nu)
    np.testing.assert_array_equal(inv, ninv.reshape(-1))


@given(st.one_of(small, huge))
def test_stable_argsort_equals_numpy(keys):
    np.testing.assert_array_equal(stable_argsort(keys), np.argsort(keys, kind="stable"))

