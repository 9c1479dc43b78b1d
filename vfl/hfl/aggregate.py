"""Weighted FedAvg (also FedProx's aggregation): in plaintext, and over Paillier ciphertexts.

The weight a_i of client i is its training-row count n_i (`weighting = "samples"`,
the default) or n_i times its local model's smoothed held-out accuracy
(`"validation"`, `aggregation_weight`).

Encrypted: each client sends Enc(a_i * w_i) and n_i; the coordinator adds the
ciphertexts (it cannot decrypt them); the clients decrypt the sum and divide by
sum(n_i). With validation weights a_i also travels encrypted, Enc(a_i), the
coordinator adds those too, and the clients divide by the decrypted sum(a_i): the
coordinator never sees a validation score. Only sums are ever decrypted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vfl.errors import PaillierError
from vfl.paillier import EncryptedArray, PrivateKey, PublicKey


def fedavg(models: Sequence[np.ndarray], counts: Sequence[float]) -> np.ndarray:
    """sum(a_i w_i) / sum(a_i) (a_i: the row counts n_i, or the validation weights)."""
    n = np.asarray(counts, dtype=np.float64)
    return (np.vstack(models) * n[:, None]).sum(axis=0) / n.sum()


def encrypt_update(public_key: PublicKey, w: np.ndarray, n: float, precision: int) -> EncryptedArray:
    """A client's update as sent: Enc(a * w) at a fixed precision (a: n_i, or its validation weight)."""
    return public_key.encrypt(np.asarray(w, dtype=np.float64) * float(n), precision=precision)


def sum_ciphertexts(updates: Sequence[EncryptedArray]) -> EncryptedArray:
    """The coordinator's whole job: add the clients' ciphertexts (same key, shape and precision)."""
    if not updates:
        raise PaillierError("no updates to aggregate")
    first = updates[0]
    total = first
    for u in updates[1:]:
        if u.public_key != first.public_key or u.shape != first.shape or u.precision != first.precision:
            raise PaillierError("client updates differ in key, shape or precision")
        total = total + u
    return total


def decrypt_aggregate(private_key: PrivateKey, aggregate: EncryptedArray, n_total: int) -> np.ndarray:
    """The new global model from the encrypted sum."""
    return np.asarray(private_key.decrypt(aggregate), dtype=np.float64) / float(n_total)


def aggregation_weight(n: int, score: float, weighting: str) -> float:
    """a_i: the row count (`"samples"`), or the row count times the held-out score (`"validation"`)."""
    if weighting == "samples":
        return float(n)
    if weighting == "validation":
        return float(n) * float(score)
    raise PaillierError(f"unknown aggregation weighting {weighting!r}")


def encrypt_weight(public_key: PublicKey, weight: float, precision: int) -> EncryptedArray:
    """A client's validation weight as sent: Enc(a_i), one value, at the updates' precision."""
    return public_key.encrypt(np.array([float(weight)]), precision=precision)


def decrypt_weighted(private_key: PrivateKey, aggregate: EncryptedArray, weight_total: EncryptedArray) -> np.ndarray:
    """The new global model: the decrypted sum(a_i w_i) over the decrypted sum(a_i)."""
    total = float(np.asarray(private_key.decrypt(weight_total), dtype=np.float64).ravel()[0])
    if not total > 0:
        raise PaillierError(f"the aggregation weights sum to {total}, not a positive number")
    return np.asarray(private_key.decrypt(aggregate), dtype=np.float64) / total
