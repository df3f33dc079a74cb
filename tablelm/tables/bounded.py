"""Eviction for the small caches that a server's threads share (decoded blocks, weights)."""

from __future__ import annotations


def drop_oldest(cache: dict):
    """Remove the first-inserted entry of ``cache`` and return its value (None when another
    thread emptied it or took that entry first).

    ``cache.pop(next(iter(cache)))`` is not safe under ``serve``'s thread pool: two threads
    can pick the same oldest key and the second ``pop`` raises ``KeyError``, or an insert by
    another thread makes ``next`` raise ``RuntimeError``.
    """
    try:
        return cache.pop(next(iter(cache)), None)
    except (StopIteration, RuntimeError):
        return None
