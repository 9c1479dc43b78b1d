"""Pools of precomputed encryption randomizers, filled in the background.

Almost all the cost of a Paillier encryption is its randomizer r^n (here the
DJN form hs^a). It does not depend on the plaintext, so a party can compute
randomizers while it waits for its peer, and an encryption then costs one
multiplication. A pool belongs to one key (and to the CRT path when this
process holds the private key); every randomizer is handed out once.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from vfl.paillier import _parallel

_BATCH = 512


class RandomnessPool:
    """Randomizers for one key, kept at `target` by a background thread when asked to."""

    def __init__(self, kernel: str, spec: tuple[Any, ...]) -> None:
        self.kernel = kernel  # "obfuscators_crt" or "obfuscators_public"
        self.spec = spec  # (p, q, window) or (n, window)
        self._values: deque[Any] = deque()
        self._lock = threading.Lock()
        self._target = 0
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._values)

    def take(self, count: int) -> list[Any]:
        """Up to `count` randomizers (fewer if the pool holds fewer), removed from the pool."""
        out: list[Any] = []
        with self._lock:
            while self._values and len(out) < count:
                out.append(self._values.popleft())
        if self._target:
            self.fill(self._target)
        return out

    def fill(self, target: int) -> None:
        """Keep at least `target` randomizers ready, computing them in the background."""
        with self._lock:
            self._target = max(self._target, target)
            if len(self._values) >= self._target or (self._thread and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="paillier-pool", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the background filling stops (tests, benchmarks)."""
        t = self._thread
        if t is not None:
            t.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                missing = self._target - len(self._values)
            if missing <= 0:
                return
            batch = min(_BATCH, missing)
            (vec,) = _parallel.run(self.kernel, [(*self.spec, batch)])
            with self._lock:
                self._values.extend(vec.values)


_pools: dict[tuple[str, tuple[Any, ...]], RandomnessPool] = {}
_pools_lock = threading.Lock()


def pool_for(kernel: str, spec: tuple[Any, ...]) -> RandomnessPool:
    with _pools_lock:
        pool = _pools.get((kernel, spec))
        if pool is None:
            pool = _pools[(kernel, spec)] = RandomnessPool(kernel, spec)
        return pool


def existing_pool(kernel: str, spec: tuple[Any, ...]) -> RandomnessPool | None:
    with _pools_lock:
        return _pools.get((kernel, spec))


def drop_pools() -> None:
    """Forget all pools (their randomizers are discarded)."""
    with _pools_lock:
        for pool in _pools.values():
            pool._target = 0
        _pools.clear()
