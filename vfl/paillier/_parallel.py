"""Where Paillier work runs: in the calling thread, on every local core, or on a Ray cluster.

`configure(backend=..., workers=..., address=..., pool_size=..., window=...)`
chooses (the node runtime calls it from the job's `[compute]` section; the
environment variable VFLCHAIN_WORKERS sets the default worker count):

- "local" (default): kernels that spend their time in gmpy2 list routines,
  which release the GIL (decryption, uniform randomizers, a common power),
  run on a thread pool; the others (fixed-base encryption, multi-
  exponentiation, per-bin sums, elementwise products) on a pool of worker
  processes (`python -m vfl.paillier._worker`, started on first use, one per
  worker). Arguments and results cross their pipes in the raw byte format
  of `_ipc` (big-endian integers, numpy integer arrays), never pickled.
  Each worker keeps its own per-key tables.
- "ray": the same kernels as Ray tasks on the cluster at `address` (empty:
  a local Ray instance), arguments and results again as `_ipc` bytes. Kernels that need the private key's factors
  (CRT encryption, decryption) still run locally: the factors never leave
  the party's own process tree.
- workers = 1 (any backend): everything runs in the calling thread.

Work is split into chunks of at most a few thousand elements, so that memory
stays bounded whatever the array size.
"""

from __future__ import annotations

import atexit
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vfl.errors import PaillierError
from vfl.paillier import _ipc, _kernels

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Settings:
    backend: str = "local"
    workers: int = 0  # 0: every core (or VFLCHAIN_WORKERS)
    address: str = ""  # Ray cluster address; empty: a local Ray instance
    pool_size: int = 0  # randomizers per key kept ready in the background; 0: none
    window: int = _kernels.DEFAULT_WINDOW  # fixed-base table window (bits)


_settings = Settings()
_lock = threading.RLock()
_threads: ThreadPoolExecutor | None = None
_procs: WorkerPool | None = None
_ray: Any = None  # the ray module once initialised
_ray_task: Any = None
_ray_started_here = False


def _env_workers() -> int:
    raw = os.environ.get("VFLCHAIN_WORKERS", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise PaillierError(f"VFLCHAIN_WORKERS must be an integer, got {raw!r}") from None
    if value < 0:
        raise PaillierError(f"VFLCHAIN_WORKERS must be >= 0, got {value}")
    return value


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def workers() -> int:
    """The number of parallel workers in effect (>= 1)."""
    w = _settings.workers or _env_workers()
    return max(1, w or _cores())


def settings() -> Settings:
    return _settings


def configure(backend: str | None = None, workers: int | None = None, address: str | None = None,
              pool_size: int | None = None, window: int | None = None) -> Settings:
    """Choose where Paillier work runs (see the module docstring); returns the settings in effect.

    Arguments left as None keep their current value. Changing the backend or
    the worker count shuts down the pools started so far.
    """
    global _settings
    new = _settings
    if backend is not None:
        if backend not in BACKENDS:
            raise PaillierError(f"unknown compute backend {backend!r}; use one of {', '.join(BACKENDS)}")
        new = replace(new, backend=backend)
    if workers is not None:
        if workers < 0:
            raise PaillierError(f"workers must be >= 0 (0: all cores), got {workers}")
        new = replace(new, workers=int(workers))
    if address is not None:
        new = replace(new, address=str(address))
    if pool_size is not None:
        if pool_size < 0:
            raise PaillierError(f"pool_size must be >= 0, got {pool_size}")
        new = replace(new, pool_size=int(pool_size))
    if window is not None:
        if not 2 <= window <= 16:
            raise PaillierError(f"fixed-base window must be between 2 and 16 bits, got {window}")
        new = replace(new, window=int(window))
    with _lock:
        if (new.backend, new.workers, new.address) != (_settings.backend, _settings.workers,
                                                        _settings.address):
            _shutdown_locked()
        _settings = new
    return new


def start() -> None:
    """Start the worker processes now (they otherwise start at the first parallel kernel)."""
    if workers() > 1 and _settings.backend == "local":
        _process_pool()


def shutdown() -> None:
    """Stop the thread and process pools (they restart on demand)."""
    with _lock:
        _shutdown_locked()


def _shutdown_locked() -> None:
    global _threads, _procs, _ray, _ray_task
    if _threads is not None:
        _threads.shutdown(wait=True)
        _threads = None
    if _procs is not None:
        _procs.shutdown()
        _procs = None
    if _ray is not None:
        if _ray_started_here:
            _ray.shutdown()
        _ray = _ray_task = None


def _thread_pool() -> ThreadPoolExecutor:
    global _threads
    with _lock:
        if _threads is None:
            _threads = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="paillier")
        return _threads


class WorkerPool:
    """Worker processes fed from one queue; each runs one kernel call at a time."""

    def __init__(self, size: int) -> None:
        self._tasks: queue.Queue[tuple[bytes, Future] | None] = queue.Queue()
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["VFLCHAIN_WORKERS"] = "1"  # a worker never starts workers of its own
        for i in range(size):
            proc = subprocess.Popen([sys.executable, "-m", "vfl.paillier._worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, env=env, close_fds=True)
            self._procs.append(proc)
            t = threading.Thread(target=self._serve, args=(proc,), name=f"paillier-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, proc: subprocess.Popen) -> None:
        while True:
            item = self._tasks.get()
            if item is None:
                return
            request, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                _ipc.write_frame(proc.stdin, request)
                frame = _ipc.read_frame(proc.stdout)
                if frame is None:
                    raise EOFError
                status, value = _ipc.decode(frame)
            except (OSError, EOFError, ValueError) as exc:
                fut.set_exception(PaillierError(f"a Paillier worker process died ({exc!r}); "
                                                "see its error output above"))
                return
            if status == "ok":
                fut.set_result(value)
            else:
                fut.set_exception(PaillierError(f"Paillier worker failed: {value}"))

    def submit(self, kernel: str, args: tuple[Any, ...]) -> Future:
        fut: Future = Future()
        self._tasks.put((_ipc.encode((kernel, args)), fut))
        return fut

    def shutdown(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join(timeout=5)
        for proc in self._procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def _process_pool() -> WorkerPool:
    global _procs
    with _lock:
        if _procs is None:
            _procs = WorkerPool(workers())
        return _procs


atexit.register(shutdown)


def _run_remote(payload: bytes) -> bytes:
    """A Ray task: `_ipc` bytes in, `_ipc` bytes out."""
    kernel, args = _ipc.decode(payload)
    return _ipc.encode(_kernels.run_kernel(kernel, args))


def _ray_module() -> tuple[Any, Any]:
    global _ray, _ray_task, _ray_started_here
    with _lock:
        if _ray is None:
            try:
                import ray
            except ImportError:
                raise PaillierError("compute backend 'ray' needs the ray package "
                                    "(pip install 'vflchain[ray]')") from None
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False,
                                          "log_to_driver": False}
                if _settings.address:
                    kwargs["address"] = _settings.address
                elif _settings.workers:
                    kwargs["num_cpus"] = _settings.workers
                try:
                    ray.init(**kwargs)
                    _ray_started_here = True
                except Exception as exc:  # noqa: BLE001 - ray raises many types; name the problem
                    where = _settings.address or "a local instance"
                    raise PaillierError(f"cannot start or reach the Ray cluster at {where}: {exc}") from None
            _ray = ray
            _ray_task = ray.remote(_run_remote)
        return _ray, _ray_task


def run(kernel: str, arg_list: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run `kernel` once per argument tuple, in parallel where it pays; results in order."""
    if not arg_list:
        return []
    fn = _kernels.KERNELS[kernel]
    if len(arg_list) == 1 or workers() == 1:
        return [fn(*args) for args in arg_list]
    if _settings.backend == "ray" and kernel not in _kernels.SECRET_KERNELS:
        ray, task = _ray_module()
        refs = [task.remote(_ipc.encode((kernel, args))) for args in arg_list]
        return [_ipc.decode(b) for b in ray.get(refs)]
    if kernel in _kernels.GIL_FREE_KERNELS:
        return list(_thread_pool().map(lambda a: fn(*a), arg_list))
    pool = _process_pool()
    # At most two requests per worker are encoded and in flight at once: memory stays
    # bounded by the chunk size, not by the array size.
    ahead = 2 * workers()
    futures: deque[Future] = deque()
    results: list[Any] = []
    for args in arg_list:
        if len(futures) >= ahead:
            results.append(futures.popleft().result())
        futures.append(pool.submit(kernel, args))
    results.extend(f.result() for f in futures)
    return results


def split(total: int, min_chunk: int, max_chunk: int) -> list[tuple[int, int]]:
    """[start, stop) ranges covering `total`: one range if small, else >= 2 per worker,
    each of at most `max_chunk` (bounded memory) and at least `min_chunk` (overhead)."""
    if total <= 0:
        return []
    w = workers()
    if w == 1 or total < 2 * min_chunk:
        parts = -(-total // max_chunk)
    else:
        parts = max(-(-total // max_chunk), min(2 * w, total // min_chunk))
    size = -(-total // parts)
    return [(i, min(i + size, total)) for i in range(0, total, size)]
