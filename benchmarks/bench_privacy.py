"""The cost of the privacy and identity fixes, side by side with the protocol before them.

The breast LR job and the breast GMM job (`vflchain run`, 2048-bit keys, separate
processes, the embedded chain) are run at this checkout and at `BASELINE`, the last
commit before the fixes (label noise and the batch rule, public wire bounds, 80-bit
masks, shifted GMM log-densities, bound commitments, the signed handshake), alternated
so that both see the same machine load. The baseline's source is taken from git
(`git archive`) into a temporary directory and run with this venv's interpreter;
without the commit (a shallow clone) the rows say so and are skipped.

Each row gives wall time and the CPU time of all the job's processes (children's
user + system time), which is steadier than wall time on a shared machine.
"""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Bench

SECTION = "privacy cost"
REPO = Path(__file__).resolve().parents[1]
BASELINE = "cbf643c9"  # main before issue 16/17's fixes
LIMIT = 1.15  # issue 16: no more than 15% slower on the breast pipeline


def _checkout(rev: str, into: Path) -> bool:
    """Extract `rev`'s tree into `into`; False when git does not have it."""
    proc = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev],
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        return False
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(into, filter="data")
    return True


def _run(src: Path, config: str, out: Path, data: Path, state: Path) -> tuple[float, float]:
    """Wall and children's CPU seconds of one `vflchain run` of `src`'s code."""
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(src / "examples" / config),
           "--out", str(out)]
    for s in (f"guest.data={data / 'guest.csv'}", f"host.data={data / 'host.csv'}",
              "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0", f"chain.state={state}"):
        cmd += ["--set", s]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=src,
                          env={**os.environ, "PYTHONPATH": str(src)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"vflchain run {config} at {src} failed: {(proc.stdout + proc.stderr)[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run(bench: Bench) -> None:
    from nodes.cli import main as cli

    jobs = ["breast_lr.toml"] if bench.quick else ["breast_lr.toml", "breast_gmm.toml"]
    repeats = 1 if bench.quick else 2
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = tmp / "baseline"
        if not _checkout(BASELINE, base):
            bench.add(SECTION, f"baseline {BASELINE} not in this clone", None, note="skipped (shallow clone?)")
            return
        data = tmp / "breast"
        if cli(["data", "breast", "--out", str(data)]) != 0:
            raise RuntimeError("vflchain data breast failed")
        for job in jobs:
            best: dict[str, tuple[float, float]] = {}
            for i in range(repeats):
                for name, src in (("now", REPO), ("baseline", base)):
                    wall, cpu = _run(src, job, tmp / f"{name}-{job}-{i}", data, tmp / f"chain-{name}")
                    w0, c0 = best.get(name, (float("inf"), float("inf")))
                    best[name] = (min(w0, wall), min(c0, cpu))
            (w_now, c_now), (w_base, c_base) = best["now"], best["baseline"]
            verdict = "within" if w_now <= LIMIT * w_base or c_now <= LIMIT * c_base else "OVER"
            bench.add(SECTION, f"{job}: wall, now vs {BASELINE} (before the fixes)", w_now, w_base,
                      note=f"{verdict} the {LIMIT - 1:.0%} budget; best of {repeats}, alternated")
            bench.add(SECTION, f"{job}: CPU of all processes, now vs {BASELINE}", c_now, c_base,
                      note="children's user + system time")
