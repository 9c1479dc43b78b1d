"""Vertical logistic regression: seconds per epoch, federated (2048-bit Paillier) vs the plaintext reference.

Both parties run in this process over the in-memory transport (real wire format,
real ciphertexts); the reference trains the same algorithm on the joined rows.
The ratio reference/federated is the cost of privacy. Seconds per epoch are the
difference between a longer and a 1-epoch run divided by the extra epochs, so
setup, final scoring and output files are not counted (in --quick mode a single
1-epoch run is reported, and the row says so). The synthetic 10k and 100k x
(10+40) cases are each measured as T(2 epochs) - T(1 epoch), and a row compares
their ratio with the row ratio (linear growth), and a 1-epoch run with row packing
(vfl.lr.rowpack) switched off against the same run with it: the difference is what
row packing saves in that epoch.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.harness import Bench, timed
from nodes.config import load_config
from nodes.phases import lr as phase
from nodes.testing import make_contexts, run_pair
from vfl.data import PartyData
from vfl.datasets import breast_split, synth_split
from vfl.lr import fit_reference

KEY_BITS = 2048
BIG_ROWS, BIG_GUEST, BIG_HOST = 100_000, 10, 40


def _federated_run(guest: PartyData, host: PartyData, bits: int) -> Callable[[int], float]:
    def run(epochs: int) -> float:
        cfg = load_config(None, [f"lr.epochs={epochs}", "lr.tol=0.0", f"paillier.key_bits={bits}"])
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            g, h = make_contexts(Path(tmp), guest, host, cfg, bits=bits)
            t0 = time.perf_counter()
            run_pair(phase.run_guest, phase.run_host, g, h)
            return time.perf_counter() - t0
    return run


@contextlib.contextmanager
def _row_packing_off() -> Iterator[None]:
    """Every batch on the ordinary path (the cost model says row packing never pays)."""
    from vfl.lr import rowpack

    saved = rowpack.RESULT_COST
    rowpack.RESULT_COST = float("inf")
    try:
        yield
    finally:
        rowpack.RESULT_COST = saved


def _reference_run(guest: PartyData, host: PartyData) -> Callable[[int], float]:
    def run(epochs: int) -> float:
        opts = phase.options_from_config(load_config(None, [f"lr.epochs={epochs}", "lr.tol=0.0"]))
        seconds, _ = timed(lambda: fit_reference(guest.X, host.X, guest.y, opts), repeat=3)
        return seconds
    return run


def _per_epoch(run: Callable[[int], float], extra: int) -> float:
    """Seconds per epoch: (T(1 + extra) - min of two T(1)) / extra; T(1) itself when extra is 0."""
    one = run(1)
    if extra == 0:
        return one
    one = min(one, run(1))  # the first run also starts the worker pools: take the better of two
    return max(run(1 + extra) - one, 1e-9) / extra


def run(bench: Bench) -> None:
    from nodes.testing import party_keys

    party_keys(KEY_BITS)  # key generation is not part of an epoch
    extra = 0 if bench.quick else 5
    how = "1-epoch run incl. setup" if bench.quick else "per extra epoch"
    g, h = breast_split()
    fed = _per_epoch(_federated_run(g, h, KEY_BITS), extra)
    ref = _per_epoch(_reference_run(g, h), 10)
    bench.add("lr", f"breast 569x(10+20) {KEY_BITS}b s/epoch", fed, ref, note=f"full batch, {how}")

    # 10k and 100k rows, each measured, to show that the cost grows linearly in rows:
    # T(2 epochs) - T(1 epoch) (an epoch with its validation loss), or in --quick mode a
    # 1-epoch run (setup, one epoch, final scoring and output files)
    sizes = (1_000, 10_000) if bench.quick else (10_000, BIG_ROWS)
    measured: list[float] = []
    for rows in sizes:
        sg, sh = synth_split(rows, BIG_GUEST, BIG_HOST, seed=1)
        run_rows = _federated_run(sg, sh, KEY_BITS)
        one = run_rows(1)
        two = one if bench.quick else run_rows(2)
        fed_rows = one if bench.quick else max(two - one, 1e-9)
        measured.append(fed_rows)
        with _row_packing_off():
            off = run_rows(1)
        bench.add("lr", f"synth {rows:,}: 1-epoch run, row packing on vs off", one, off,
                  note=f"T(1 epoch) without row packing {off:.1f} s, with {one:.1f} s: the difference is "
                       "one epoch's saving (setup, scoring and outputs are the same)")
        ref_rows = _per_epoch(_reference_run(sg, sh), 10)
        bench.add("lr", f"synth {rows:,}x({BIG_GUEST}+{BIG_HOST}) {KEY_BITS}b s/epoch", fed_rows, ref_rows,
                  note=("1-epoch run incl. setup, scoring, outputs" if bench.quick
                        else f"T(2 epochs) - T(1 epoch) = {two:.1f} - {one:.1f} s (T(1) includes setup, "
                             "scoring, outputs; a load change between the runs skews the difference)")
                       + ("; target < 60 s on 2 cores" if rows == BIG_ROWS else ""))
    growth = measured[1] / measured[0]
    bench.add("lr", f"growth {sizes[0]:,} -> {sizes[1]:,} rows (x{sizes[1] // sizes[0]})", growth, sizes[1] / sizes[0],
              unit="x", ratio=(sizes[1] / sizes[0]) / growth,
              note="time ratio vs row ratio: 1.0 is linear, above 1 sublinear")
