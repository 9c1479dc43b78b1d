"""`python -m benchmarks --scale`: PSI, binning and one LR epoch at 100k and 1M rows.

Only with --scale (a 1M-row run takes most of an hour on 2 cores); a plain
`make bench` skips this module. Each (step, rows) runs in a fresh process
(`python -m benchmarks.bench_scale STEP ROWS`), one after the other, so the
1M-row steps never share memory with each other; that process samples the
resident memory of itself and its worker processes every 0.2 s.

Data: `vfl.datasets.synth_split(rows, 10, 40)` (what `vflchain data synth
--rows N --guest-features 10 --host-features 40` writes), 2048-bit keys, both
parties in the measuring process (in-memory transport with the real wire format;
PSI over gRPC on loopback), so the peak memory is that of both parties together:
an upper bound for each party's. Rows: wall and CPU seconds (process + workers),
peak memory, and the growth from the smallest to the largest size against linear.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.harness import Bench, cpu_seconds

STEPS = ("psi", "binning", "lr")
GUEST_COLS, HOST_COLS, KEY_BITS = 10, 40, 2048
MEMORY_LIMIT_GB = 6.0
# LR mini-batches at scale (docs/performance.md#memory): every message and step holds one
# batch's ciphertexts, and each batch is a progress step; the same at every size.
LR_BATCH = 65_536


def _rss_bytes() -> int:
    """Resident memory of this process and all its descendants (Linux /proc)."""
    from nodes.raycluster import descendants

    total = 0
    for pid in [os.getpid(), *descendants(os.getpid())]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


class PeakMemory:
    """Samples `_rss_bytes` on a thread until stopped; `.peak` in bytes."""

    def __init__(self, every: float = 0.2) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(every)

    def __enter__(self) -> PeakMemory:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_bytes())


def _progress(t0: float, event: dict[str, Any]) -> None:
    if event.get("event") in ("phase_step", "round", "batch"):
        detail = {k: v for k, v in event.items() if k not in ("event", "role")}
        print(f"  [{time.perf_counter() - t0:7.1f} s] {event['event']} {detail}", file=sys.stderr, flush=True)


def _measure(step: str, rows: int) -> dict[str, float]:
    """Run one step on `rows` rows in this process; wall, CPU and peak memory."""
    from nodes.testing import make_contexts, party_keys, run_pair
    from vfl.datasets import synth_split
    from vfl.paillier import _parallel

    party_keys(KEY_BITS)
    _parallel.start()
    if step == "psi":
        from benchmarks.bench_runtime import psi_over_grpc

        with PeakMemory() as mem:
            wall, cpu = psi_over_grpc(rows)
        return {"wall": wall, "cpu": cpu, "peak": mem.peak}
    guest, host = synth_split(rows, GUEST_COLS, HOST_COLS, seed=3)
    from nodes.config import load_config

    if step == "binning":
        from nodes.phases import binning as phase

        cfg = load_config(None, [f"paillier.key_bits={KEY_BITS}"])
        fns = (partial(phase.run_guest, outputs=False), partial(phase.run_host, outputs=False))
    else:
        from nodes.phases import lr as phase

        cfg = load_config(None, ["lr.epochs=1", "lr.tol=0.0", f"lr.batch_size={LR_BATCH}",
                                 f"paillier.key_bits={KEY_BITS}"])
        fns = (phase.run_guest, phase.run_host)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        g, h = make_contexts(Path(tmp), guest, host, cfg, bits=KEY_BITS)
        del guest, host
        t0 = time.perf_counter()
        g.events = partial(_progress, t0)
        c0 = cpu_seconds()
        with PeakMemory() as mem:
            run_pair(fns[0], fns[1], g, h, timeout=24 * 3600)
        return {"wall": time.perf_counter() - t0, "cpu": cpu_seconds() - c0, "peak": mem.peak}


def _in_subprocess(step: str, rows: int) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_scale", step, str(rows)],
                            stdout=subprocess.PIPE, text=True)
    while True:
        try:
            out, _ = proc.communicate(timeout=60)
            break
        except subprocess.TimeoutExpired:
            print(f"  {step} {rows:,} rows: {time.perf_counter() - t0:.0f} s so far "
                  f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scale step {step} at {rows} rows failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def sizes() -> list[int]:
    raw = os.environ.get("VFLCHAIN_SCALE_ROWS", "100000,1000000")
    return [int(x) for x in raw.split(",") if x.strip()]


def run(bench: Bench) -> None:
    if not bench.scale:
        return
    rows_list = sizes()
    only = [s for s in os.environ.get("VFLCHAIN_SCALE_STEPS", ",".join(STEPS)).split(",") if s]
    for step in only:
        got: dict[int, dict[str, float]] = {}
        for rows in rows_list:
            load0 = os.getloadavg()[0]
            r = got[rows] = _in_subprocess(step, rows)
            gb = r["peak"] / 2**30
            what = {"psi": "PSI (whole phase, gRPC loopback)", "binning": "binning (WoE/IV, 10 bins)",
                    "lr": f"LR, a 1-epoch run (batches of {LR_BATCH:,}; setup, epoch, scoring)"}[step]
            bench.add("scale", f"{what}, {rows:,} rows, {GUEST_COLS}+{HOST_COLS} columns", r["wall"],
                      note=f"CPU {r['cpu']:.0f} s; peak memory, both parties together {gb:.2f} GB "
                           f"(limit per party {MEMORY_LIMIT_GB:.0f} GB); load {load0:.1f}")
        if len(rows_list) > 1:
            a, b = rows_list[0], rows_list[-1]
            for kind in ("wall", "cpu"):
                growth = got[b][kind] / got[a][kind]
                bench.add("scale", f"{step}: {kind} time growth {a:,} -> {b:,} rows", growth, b / a, unit="x",
                          ratio=(b / a) / growth,
                          note=f"{growth / (b / a):.2f}x of linear (target <= 1.2)")


def main() -> int:
    step, rows = sys.argv[1], int(sys.argv[2])
    if step not in STEPS:
        raise SystemExit(f"unknown step {step!r}; one of {', '.join(STEPS)}")
    result = _measure(step, rows)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
