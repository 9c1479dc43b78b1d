"""Run every benchmark module and print one table (see benchmarks/__init__.py)."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

import benchmarks
from benchmarks.harness import Bench
from nodes.ui import console, table


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    if unit == "s":
        return f"{v:.4g} s"
    return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.4g} {unit}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--scale", action="store_true",
                    help="only the scale section: PSI, binning and an LR epoch at 100k and 1M rows "
                         "(VFLCHAIN_SCALE_ROWS, VFLCHAIN_SCALE_STEPS choose); most of an hour")
    ap.add_argument("--only", action="append", default=[], help="run only these modules (e.g. paillier)")
    ap.add_argument("--json", default="bench-results/bench.json", help="where to save the rows")
    args = ap.parse_args(argv)
    bench = Bench(quick=args.quick, scale=args.scale)
    if args.scale:
        args.only = ["scale"]
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    con = console()
    load0 = os.getloadavg()[0]
    t_all = time.perf_counter()
    for name in names:
        short = name.removeprefix("bench_")
        if args.only and short not in args.only:
            continue
        con.print(f"[dim]measuring {short} ...[/]")
        t0 = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").run(bench)
        con.print(f"[dim]  {short} took {time.perf_counter() - t0:.1f} s[/]")
    bench.add("machine", f"load average at start / end ({os.cpu_count()} cores)", load0, os.getloadavg()[0],
              unit="", ratio=0.0, note="above the core count: other programs shared the machine; "
                                       "compare ratios, and the CPU-time rates of the paillier rows")
    bench.add("machine", "whole benchmark run", time.perf_counter() - t_all)
    rows = [[r.section, r.item, _fmt(r.ours, r.unit), _fmt(r.reference, r.unit),
             f"{r.ratio:.3g}x" if r.ratio else "", r.note] for r in bench.rows]
    from rich.console import Console

    wide = Console(highlight=False, width=max(con.width, 200))  # one row per measurement, even in a log
    wide.print(table("vflchain benchmarks (one run; ratio = ours vs reference, >1 is better)",
                    ["section", "measurement", "ours", "reference", "ratio", "note"], rows))
    bench.save(Path(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
