"""Chunked execution of GIL-releasing gmpy2 list routines on a thread pool."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_MIN_CHUNK = 64
_pool: ThreadPoolExecutor | None = None


def workers() -> int:
    return max(1, int(os.environ.get("VFLCHAIN_WORKERS", 0)) or os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="paillier")
    return _pool


def map_chunks(fn: Callable[[list[T]], list[R]], items: Sequence[T]) -> list[R]:
    """Apply a list->list function to chunks of `items` in parallel; concatenate results."""
    items = list(items)
    k = workers()
    if k == 1 or len(items) < 2 * _MIN_CHUNK:
        return list(fn(items)) if items else []
    size = max(_MIN_CHUNK, -(-len(items) // (4 * k)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    out: list[R] = []
    for part in _executor().map(fn, chunks):
        out.extend(part)
    return out
