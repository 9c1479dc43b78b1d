"""Sample-weighted FedAvg (also FedProx's aggregation): in plaintext, and over Paillier ciphertexts.

Encrypted: each client sends Enc(n_i * w_i) and n_i; the coordinator adds the
ciphertexts (it cannot decrypt them); the clients decrypt the sum and divide by
sum(n_i). Only the aggregate is ever decrypted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vfl.errors import PaillierError
from vfl.paillier import EncryptedArray, PrivateKey, PublicKey


def fedavg(models: Sequence[np.ndarray], counts: Sequence[int]) -> np.ndarray:
    """sum(n_i w_i) / sum(n_i)."""
    n = np.asarray(counts, dtype=np.float64)
    return (np.vstack(models) * n[:, None]).sum(axis=0) / n.sum()


def encrypt_update(public_key: PublicKey, w: np.ndarray, n: int, precision: int) -> EncryptedArray:
    """A client's update as sent: Enc(n * w) at a fixed precision."""
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
