"""Attack on FL-EM-GMM's E-step messages (issue 16, leak 4): the guest reads each host row's level.

The guest receives the host's (N, K) block log-densities every E-step (and, with the
k-means initialisation, squared distances to the host's centres). Sent as they are,
each row's level log p_h(x_i | k) tells how far the row lies from every host component
(its Mahalanobis distance on the host's columns). The attacker here is the guest: it
takes the host's `log_density` / `distances` messages as decoded from the wire (the
transport's tap) and ranks the rows by their level, two ways:

- by value: the row's largest received log-density;
- by float spacing: the lowest set bit of the received values, which follows the
  binary magnitude of the numbers the host subtracted to form them.

Its score is the fraction of row pairs it orders as the host's true levels are
ordered (ties count half): 1 is full recovery, 0.5 is chance. The truth is computed by
the test from the host's final model and rows, which the attacker never holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nodes.config import JobConfig
from nodes.phases import gmm
from nodes.testing import make_contexts, run_pair
from nodes.transport.base import Address
from nodes.transport.codec import decode_message, keyring

# 569 rows: a chance ordering scores 0.5 with standard deviation about 0.014
CHANCE_MARGIN = 0.06


def pair_order_accuracy(score: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of row pairs with different truth that `score` orders the same way (ties: 1/2)."""
    ds = np.sign(score[:, None] - score[None, :])
    dt = np.sign(truth[:, None] - truth[None, :])
    pairs = np.triu(dt != 0, k=1)
    agree = np.where(ds == 0, 0.5, (ds == dt).astype(np.float64))
    return float(agree[pairs].mean())


def lowest_set_bit(values: np.ndarray) -> np.ndarray:
    """log2 of the lowest set bit of each non-zero float64 (NaN for zeros)."""
    out = np.full(values.shape, np.nan)
    mantissa, exponent = np.frexp(values)
    for idx in zip(*np.nonzero(values), strict=True):
        m = abs(int(mantissa[idx] * 2.0**53))
        out[idx] = int(exponent[idx]) - 53 + (m & -m).bit_length() - 1
    return out


def attack_by_value(log_density: np.ndarray) -> np.ndarray:
    """The attacker's level of each host row: its largest received value."""
    return log_density.max(axis=1)


def attack_by_spacing(log_density: np.ndarray) -> np.ndarray:
    """The attacker's magnitude of each host row: the mean lowest set bit of its non-zero values."""
    bits = lowest_set_bit(log_density)
    out = np.full(bits.shape[0], -np.inf)  # a row of zeros only: nothing to read
    for i, row in enumerate(bits):
        known = row[~np.isnan(row)]
        if len(known):
            out[i] = known.mean()
    return out


def tapped_fit(tmp: Path, guest: Any, host: Any, cfg: JobConfig,
               tag: str) -> tuple[list[tuple[int, dict[str, Any]]], Any, Any]:
    """Run the fit; returns the host's `tag` messages (round, payload) as the guest decodes them,
    the host's result and its context."""
    gctx, hctx = make_contexts(tmp, guest, host, cfg)
    keys = keyring(gctx.public_key, hctx.public_key)
    received: list[tuple[int, dict[str, Any]]] = []

    def tap(role: str, address: Address, data: bytes) -> None:
        if role == "host" and address.tag == tag:
            _, _, payload = decode_message(data, keys)
            received.append((address.round, payload))

    hctx.transport.tap = tap  # type: ignore[attr-defined]
    _, h = run_pair(gmm.run_guest, gmm.run_host, gctx, hctx, timeout=300)
    return sorted(received, key=lambda x: x[0]), h, hctx


def _config(init: str) -> JobConfig:
    cfg = JobConfig()
    cfg.job.seed = 10
    cfg.gmm.k, cfg.gmm.init = 2, init
    return cfg


@pytest.fixture(scope="module")
def em_messages(tmp_path_factory, breast) -> tuple[np.ndarray, np.ndarray]:
    """(the final E-step's log_density as received, the host's true level of each row under those parameters)."""
    messages, h, _ = tapped_fit(tmp_path_factory.mktemp("em"), *breast, _config("random_from_data"), "log_density")
    final = messages[-1][1]["log_density"]
    truth = h.model.block.log_density(breast[1].X).max(axis=1)  # the final step used the kept model
    return final, truth


@pytest.fixture(scope="module")
def kmeans_messages(tmp_path_factory, breast) -> tuple[np.ndarray, np.ndarray]:
    """(minus the first k-means distances as received, minus each host row's true distance to its nearest centre)."""
    messages, _, hctx = tapped_fit(tmp_path_factory.mktemp("kmeans"), *breast, _config("kmeans"), "distances")
    r, first = messages[0]
    centers = np.array(hctx.rundir.read_json(f"checkpoints/round-{r - 1:04d}.json")["params"]["centers"])
    truth = ((breast[1].X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).min(axis=1)
    return -first["distances"], -truth  # a high level: close to the host's centres


@pytest.mark.parametrize("messages", ["em_messages", "kmeans_messages"])
def test_guest_cannot_rank_host_rows_by_their_level(messages, request):
    received, truth = request.getfixturevalue(messages)
    accuracy = pair_order_accuracy(attack_by_value(received), truth)
    assert accuracy < 0.5 + CHANCE_MARGIN, f"the guest orders host rows by level with accuracy {accuracy:.3f}"


@pytest.mark.parametrize("messages", ["em_messages", "kmeans_messages"])
def test_guest_cannot_read_host_row_magnitudes_from_float_spacing(messages, request):
    received, truth = request.getfixturevalue(messages)
    accuracy = pair_order_accuracy(attack_by_spacing(received), np.abs(truth))
    assert accuracy < 0.5 + CHANCE_MARGIN, f"the float spacing orders host rows by level: accuracy {accuracy:.3f}"
