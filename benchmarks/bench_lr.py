"""Vertical logistic regression: seconds per epoch, federated (2048-bit Paillier) vs the plaintext reference.

Both parties run in this process over the in-memory transport (real wire format,
real ciphertexts); the reference trains the same algorithm on the joined rows.
The ratio reference/federated is the cost of privacy. Seconds per epoch are the
difference between a longer and a 1-epoch run divided by the extra epochs, so
setup, final scoring and output files are not counted (in --quick mode a single
1-epoch run is reported, and the row says so). The 100k x (10+40) case
would take about an hour per epoch with the current vector layer, so it is
measured at a smaller row count and extrapolated linearly in rows (every step's
cost is linear in rows x columns), and the row says so.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections.abc import Callable
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


def _reference_run(guest: PartyData, host: PartyData) -> Callable[[int], float]:
    def run(epochs: int) -> float:
        opts = phase.options_from_config(load_config(None, [f"lr.epochs={epochs}", "lr.tol=0.0"]))
        seconds, _ = timed(lambda: fit_reference(guest.X, host.X, guest.y, opts), repeat=3)
        return seconds
    return run


def _per_epoch(run: Callable[[int], float], extra: int) -> float:
    """Seconds per epoch: (T(1 + extra) - T(1)) / extra; T(1) itself when extra is 0."""
    one = run(1)
    return one if extra == 0 else max(run(1 + extra) - one, 1e-9) / extra


def run(bench: Bench) -> None:
    from nodes.testing import party_keys

    party_keys(KEY_BITS)  # key generation is not part of an epoch
    extra = 0 if bench.quick else 2
    how = "1-epoch run incl. setup" if bench.quick else "per extra epoch"
    g, h = breast_split()
    fed = _per_epoch(_federated_run(g, h, KEY_BITS), extra)
    ref = _per_epoch(_reference_run(g, h), 10)
    bench.add("lr", f"breast 569x(10+20) {KEY_BITS}b s/epoch", fed, ref,
              note=f"full batch, {how}; privacy costs {fed / ref:,.0f}x the plaintext time")

    rows = 500 if bench.quick else 2000
    g, h = synth_split(rows, BIG_GUEST, BIG_HOST, seed=1)
    fed_small = _per_epoch(_federated_run(g, h, KEY_BITS), 0 if bench.quick else 1)
    bench.add("lr", f"synth {rows}x({BIG_GUEST}+{BIG_HOST}) {KEY_BITS}b s/epoch", fed_small,
              _per_epoch(_reference_run(g, h), 10), note=f"measured, {how}")
    big_g, big_h = synth_split(BIG_ROWS, BIG_GUEST, BIG_HOST, seed=1)
    ref_big = _per_epoch(_reference_run(big_g, big_h), 10)
    fed_big = fed_small * BIG_ROWS / rows
    bench.add("lr", f"synth {BIG_ROWS // 1000}kx({BIG_GUEST}+{BIG_HOST}) {KEY_BITS}b s/epoch", fed_big, ref_big,
              note=f"federated EXTRAPOLATED from {rows} rows (x{BIG_ROWS // rows}), reference measured; "
                   f"privacy costs {fed_big / ref_big:,.0f}x")
