"""Attack: the host reads batch 0's labels off its first LR gradient (a knapsack it can solve).

Weights start at zero, so at the first batch d = -y'/2 and the host's gradient is
X_h^T d over its own columns on the 2^-20 grid: an integer vector subset sum. With
32-row batches (34 rows here) and 4 host columns a meet-in-the-middle search (2 x 2^17 partial sums)
finds the one label vector that explains it. The attacker uses only what the host
has: its batch columns and its mask (its own state) and the residues the guest
sent back in `e0.b0.decrypted` (as received from the transport).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nodes.config import load_config
from nodes.phases import lr as phase
from nodes.testing import make_contexts, run_pair
from nodes.transport.base import Address, Payload
from vfl.datasets import synth_split
from vfl.errors import TrainingError
from vfl.lr.protocol import MATRIX_PRECISION_BITS, Masked
from vfl.paillier.encoding import scaled_integers

KNAPSACK_SETTINGS = ["lr.epochs=1", "lr.batch_size=32", "lr.validation=0", "job.seed=3"]


class HostTap:
    """The host's transport, keeping every payload the host received."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.role, self.peer = inner, inner.role, inner.peer
        self.received: dict[str, Payload] = {}

    def send(self, address: Address, payload: Payload) -> None:
        self.inner.send(address, payload)

    def recv(self, address: Address, timeout: float | None = None) -> Payload:
        payload = self.inner.recv(address, timeout)
        self.received[address.tag] = payload
        return payload

    def close(self) -> None:
        self.inner.close()


def _subset_sums(X: np.ndarray) -> np.ndarray:
    """Row b of the result: the sum of the rows of X selected by the bits of b (row 0 = bit 0)."""
    sums = np.zeros((1, X.shape[1]), dtype=np.int64)
    for row in X:
        sums = np.vstack([sums, sums + row])
    return sums


def meet_in_the_middle(Xq: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
    """Every 0/1 vector s with Xq^T s == target (Xq integer, m x k), by two half enumerations."""
    h = Xq.shape[0] // 2
    left, right = _subset_sums(Xq[:h]), _subset_sums(Xq[h:])
    index: dict[bytes, list[int]] = {}
    for i, row in enumerate(left):
        index.setdefault(row.tobytes(), []).append(i)
    found = []
    for j, row in enumerate(target[None, :] - right):
        for i in index.get(row.tobytes(), []):
            bits = [(i >> t) & 1 for t in range(h)] + [(j >> t) & 1 for t in range(Xq.shape[0] - h)]
            found.append(np.array(bits, dtype=np.int8))
    return found


def host_recovers_batch0_labels(n: int, gradient_residues: list[int], masked: Masked,
                                X_batch: np.ndarray) -> list[np.ndarray]:
    """The host's attack on batch 0: candidate label vectors (0/1) consistent with its exact gradient.

    g = X_q^T D with D_i = round(-y'_i/2 * 2^(p+2)) = -y'_i 2^(p+1), so
    S = X_q^T y' = -g / 2^(p+1), and the positive rows sum to (S + X_q^T 1) / 2.
    """
    g = [((int(r) - int(k)) % n) for r, k in zip(gradient_residues, masked.mask.tolist(), strict=True)]
    g = [v - n if v > n // 2 else v for v in g]
    shift = masked.precision - MATRIX_PRECISION_BITS - 1  # d at p + 2 bits: -y'/2 is -y' * 2^(p+1)
    Xq = np.asarray(scaled_integers(X_batch, MATRIX_PRECISION_BITS), dtype=np.int64)
    scaled = [-v for v in g]
    if any(v % (1 << shift) for v in scaled):
        return []  # not an exact label sum: the knapsack has no solution
    S = np.array([v >> shift for v in scaled], dtype=np.int64)
    twice = S + Xq.sum(axis=0)
    if np.any(twice % 2):
        return []
    return meet_in_the_middle(Xq, twice // 2)


def _attack_run(tmp: Path, *settings: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Run the LR phase in process; return the host's candidate labels for batch 0 and the true ones."""
    g, h = synth_split(200, 3, 4, seed=7)
    cfg = load_config(None, KNAPSACK_SETTINGS + list(settings))
    gctx, hctx = make_contexts(tmp, g, h, cfg)
    tap = HostTap(hctx.transport)
    hctx.transport = tap
    seen: list[tuple[Masked, np.ndarray]] = []
    original = phase.host_gradient_masked

    def host_keeps_its_mask(enc_c, u_h, X_h, precision, *args, **kw):  # the host's own mask and batch
        out = original(enc_c, u_h, X_h, precision, *args, **kw)
        seen.append((out, np.array(X_h)))
        return out

    phase.host_gradient_masked = host_keeps_its_mask
    try:
        run_pair(phase.run_guest, phase.run_host, gctx, hctx)
    finally:
        phase.host_gradient_masked = original
    masked, X_batch = seen[0]
    residues = tap.received["e0.b0.decrypted"]["gradient"]
    found = host_recovers_batch0_labels(hctx.public_key.n, residues, masked, X_batch)
    opts = phase.options_from_config(cfg)
    from vfl.lr.schedule import epoch_batches

    batch0 = epoch_batches(g.n_rows, opts.batch_size, opts.seed, 0)[0]  # no validation: train = all rows
    return found, np.asarray(g.y, dtype=np.int8)[batch0]


def test_host_cannot_solve_batch0_gradient_for_the_labels(tmp_path):
    found, truth = _attack_run(tmp_path)
    assert len(truth) >= 32
    assert not any(np.array_equal(f, truth) for f in found), "the host recovered all labels of batch 0"


def test_noise_free_batches_of_32_rows_with_4_host_columns_are_refused_at_setup(tmp_path):
    g, h = synth_split(200, 3, 4, seed=7)
    cfg = load_config(None, KNAPSACK_SETTINGS + ["lr.label_noise=0"])
    gctx, hctx = make_contexts(tmp_path, g, h, cfg)
    with pytest.raises(TrainingError, match="too small for label privacy") as err:
        run_pair(phase.run_guest, phase.run_host, gctx, hctx)
    assert "\n" not in str(err.value)
