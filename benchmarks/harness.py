"""The benchmark table: rows of (section, measurement, ours, reference, ratio)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nodes.raycluster import descendants


@dataclass
class Row:
    section: str
    item: str
    ours: float | None  # seconds, or a throughput when `unit` says so
    reference: float | None = None
    unit: str = "s"
    ratio: float | None = None  # reference/ours for times (speed-up), ours/reference for rates
    note: str = ""


@dataclass
class Bench:
    quick: bool = False
    scale: bool = False  # the --scale section (benchmarks/bench_scale.py)
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, item: str, ours: float | None, reference: float | None = None,
            unit: str = "s", note: str = "", ratio: float | None = None) -> Row:
        if ratio is None and ours and reference:
            ratio = (reference / ours) if unit == "s" else (ours / reference)
        row = Row(section, item, ours, reference, unit, ratio, note)
        self.rows.append(row)
        return row

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([asdict(r) for r in self.rows], indent=2) + "\n")


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of `repeat` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live and finished children
    (the Paillier/PSI worker pool, party processes), from /proc on Linux."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    tick = os.sysconf("SC_CLK_TCK")
    for pid in descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile (then counted in children_* once reaped)
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total
