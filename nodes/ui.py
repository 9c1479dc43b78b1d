"""Terminal output: one rich console, tables and progress bars.

Status goes to stderr so that stdout stays clean for machine-readable output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(stderr=False, highlight=False, soft_wrap=True)
    return _console


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    return t


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@contextmanager
def progress(description: str, total: float | None):
    """A progress bar on stderr (silent when not a terminal, unless VFLCHAIN_PROGRESS=1)."""
    enabled = sys.stderr.isatty() or os.environ.get("VFLCHAIN_PROGRESS") == "1"
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                   disable=not enabled, transient=False)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda advance=1: bar.update(task, advance=advance)


@contextmanager
def silenced():
    """Drop what the phases print (their tables) while inside: the Python API's jobs return it instead."""
    global _console
    before = _console
    _console = Console(quiet=True)
    try:
        yield
    finally:
        _console = before
