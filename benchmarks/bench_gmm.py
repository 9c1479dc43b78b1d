"""FL-EM-GMM: seconds per EM iteration, federated (2048-bit Paillier) vs the plaintext reference.

Both parties run in this process over the in-memory transport (real wire
format, real ciphertexts). A federated iteration is one round as the guest
times it: the host's block log-densities, the guest's E-step, encryption of
K - 1 responsibility columns, the host's encrypted statistics over all rows,
masking, decryption, unmasking, both M-steps and the round commitments
(initialisation, final E-step and output files are not counted). The
reference runs the same algorithm centrally on the joined rows; its seconds
per iteration are the difference between a longer and a 1-iteration fit.

The 100k-row case is measured at 10k rows and extrapolated linearly in rows
(every encrypted step is linear in rows: 100k encryptions and 100k x 10
multi-exponentiation terms per iteration), and the row says so.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import Bench, timed
from nodes.config import load_config
from nodes.phases import gmm as phase
from nodes.testing import make_contexts, party_keys, run_pair
from vfl.data import PartyData
from vfl.datasets import breast_split, synth_split
from vfl.gmm import GmmOptions, centralized_block_em

KEY_BITS = 2048
K = 2
BIG_ROWS, BIG_GUEST, BIG_HOST = 100_000, 5, 5


def federated_seconds_per_iteration(guest: PartyData, host: PartyData, covariance: str, iterations: int) -> float:
    """Mean wall seconds of the guest's EM rounds in a fit of exactly `iterations` iterations."""
    cfg = load_config(None, [f"gmm.k={K}", f"gmm.covariance=\"{covariance}\"", "gmm.init=\"random\"",
                             f"gmm.max_iter={iterations}", "gmm.tol=0.0", f"paillier.key_bits={KEY_BITS}"])
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        g, h = make_contexts(Path(tmp), guest, host, cfg, bits=KEY_BITS)
        result, _ = run_pair(phase.run_guest, phase.run_host, g, h, timeout=24 * 3600)
    return float(np.mean(result.iteration_seconds))


def reference_seconds_per_iteration(guest: PartyData, host: PartyData, covariance: str) -> float:
    def fit(iterations: int) -> float:
        opts = GmmOptions(k=K, covariance=covariance, init="random", max_iter=iterations, tol=0.0)  # type: ignore[arg-type]
        seconds, _ = timed(lambda: centralized_block_em([guest.X, host.X], opts), repeat=3)
        return seconds
    return max(fit(6) - fit(1), 0.0) / 5


def run(bench: Bench) -> None:
    party_keys(KEY_BITS)  # key generation is not part of an iteration
    g, h = breast_split()
    for covariance in ("diag", "full"):
        its = 1 if bench.quick or covariance == "full" else 2
        fed = federated_seconds_per_iteration(g, h, covariance, its)
        ref = reference_seconds_per_iteration(g, h, covariance)
        bench.add("gmm", f"breast 569x(10+20) K={K} {covariance} {KEY_BITS}b s/iteration", fed, ref,
                  note=f"mean of {its} EM round(s); privacy costs {fed / ref:,.0f}x the plaintext time")

    rows = 1000 if bench.quick else 10_000
    sg, sh = synth_split(rows, BIG_GUEST, BIG_HOST, seed=1)
    fed_small = federated_seconds_per_iteration(sg, sh, "diag", 1 if bench.quick else 2)
    bench.add("gmm", f"synth {rows}x({BIG_GUEST}+{BIG_HOST}) K={K} diag {KEY_BITS}b s/iteration", fed_small,
              reference_seconds_per_iteration(sg, sh, "diag"), note="measured")
    bg, bh = synth_split(BIG_ROWS, BIG_GUEST, BIG_HOST, seed=1)
    ref_big = reference_seconds_per_iteration(bg, bh, "diag")
    fed_big = fed_small * BIG_ROWS / rows
    bench.add("gmm", f"synth {BIG_ROWS // 1000}kx({BIG_GUEST}+{BIG_HOST}) K={K} diag {KEY_BITS}b s/iteration",
              fed_big, ref_big, note=f"federated EXTRAPOLATED from {rows} rows (x{BIG_ROWS // rows}), "
                                     f"reference measured; privacy costs {fed_big / ref_big:,.0f}x")
