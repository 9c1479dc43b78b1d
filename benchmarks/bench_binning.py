"""Federated binning (the binning phase, both parties, in-memory transport with the real wire
format, 2048-bit keys) against plaintext binning of the same joined data.

The ratio is the cost of privacy: nearly all of it is encrypting the label column (one
ciphertext per row) and summing those ciphertexts per bin of every host feature. Key
generation and per-key precomputation happen once per job and are not timed.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.harness import Bench, timed
from nodes.config import JobConfig
from nodes.phases import binning as phase
from nodes.testing import make_contexts, party_keys, run_pair
from vfl.binning import plaintext_binning
from vfl.data import PartyData
from vfl.datasets import breast_split, synth_split

KEY_BITS = 2048


def _federated(guest: PartyData, host: PartyData) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        g, h = make_contexts(Path(tmp), guest, host, JobConfig(), bits=KEY_BITS)
        seconds, _ = timed(lambda: run_pair(partial(phase.run_guest, outputs=False),
                                            partial(phase.run_host, outputs=False), g, h, timeout=3600))
    return seconds


def _plaintext(guest: PartyData, host: PartyData) -> float:
    X = np.hstack([guest.X, host.X])
    names = guest.features + [f"host.{c}" for c in host.features]
    seconds, _ = timed(lambda: plaintext_binning(X, guest.y, names, 10), repeat=3)
    return seconds


def _prepare_keys() -> None:
    """Generate both parties' keys and let the Paillier layer build its per-key tables, untimed."""
    for pk, _ in party_keys(KEY_BITS):
        pk.encrypt(np.zeros(4, dtype=np.int64))


def run(bench: Bench) -> None:
    _prepare_keys()
    rows = 10_000 if bench.quick else 100_000
    cases = [("breast 569x(10+20)", breast_split()),
             (f"synth {rows:,}x(10+20)", synth_split(rows, 10, 20, seed=7))]
    for label, (guest, host) in cases:
        fed = _federated(guest, host)
        plain = _plaintext(guest, host)
        bench.add("binning", f"WoE/IV {label}, {KEY_BITS}-bit", fed, plain,
                  note=f"federated {fed / plain:,.0f}x slower; {guest.n_rows / fed:,.0f} rows/s")
