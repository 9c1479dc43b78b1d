"""Matplotlib figures written into run directories, one module per area (Agg backend, no screen).

`later` draws a figure on one background thread, so a party's next protocol step
does not wait for matplotlib (pictures are ~1 s of CPU and nothing in the protocol
reads them); `wait` joins them (the job runner calls it before the job is marked
complete, and re-raises a plot's error). One thread: pyplot's global figure
registry is never used by two threads at once.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pending: list[Future[Any]] = []


def _draw(module: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    fn: Callable[..., Any] = getattr(importlib.import_module(f"nodes.plots.{module}"), name)
    return fn(*args, **kwargs)


def later(module: str, name: str, *args: Any, **kwargs: Any) -> None:
    """Draw `nodes.plots.<module>.<name>(*args, **kwargs)` in the background (import included)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plots")
        _pending.append(_executor.submit(_draw, module, name, args, kwargs))


def wait() -> None:
    """Block until every figure asked for is written; raises the first drawing error."""
    with _lock:
        pending = list(_pending)
        _pending.clear()
    for f in pending:
        f.result()


def save_figure(fig: Any, path: Path, dpi: float | None = 110) -> Path:
    """Lay out, write and close a figure (closing frees it: figures are drawn in a long-lived node)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
