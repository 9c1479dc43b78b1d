"""Horizontal federated logistic regression (clients share features, hold different rows).

- `vfl.hfl.options`: the training options (`HflOptions`) and their checks.
- `vfl.hfl.dp`: Poisson sampling rate, clipping, noise calibrated to (epsilon, delta), the accountant
  (Google's dp_accounting).
- `vfl.hfl.randomness`: the DP noise and sampling stream (AES-256-CTR under a secret key; seeded only
  in the explicitly not-private reproducible simulation mode).
- `vfl.hfl.local`: one client's local training of a round (mini-batch SGD, clipping, noise, FedProx term).
- `vfl.hfl.aggregate`: sample-weighted FedAvg in plaintext and over Paillier ciphertexts.
- `vfl.hfl.simulate`: the whole federation in one process (the plaintext reference and the sweep engine).
- `vfl.hfl.shards`: non-IID row shards of a labelled table.
- `vfl.hfl.keyshare`: sealing the clients' Paillier private key to each client's X25519 key.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule: imported on first use (PEP 562), so that reading one small module (e.g. the
# options table, which the config parser needs) does not import the whole package
_EXPORTS = {
    "decrypt_aggregate": "vfl.hfl.aggregate",
    "encrypt_update": "vfl.hfl.aggregate",
    "fedavg": "vfl.hfl.aggregate",
    "sum_ciphertexts": "vfl.hfl.aggregate",
    "DpAccountant": "vfl.hfl.dp",
    "noise_scale": "vfl.hfl.dp",
    "local_update": "vfl.hfl.local",
    "HflOptions": "vfl.hfl.options",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


__all__ = ["DpAccountant", "HflOptions", "decrypt_aggregate", "encrypt_update", "fedavg", "local_update",
           "noise_scale", "sum_ciphertexts"]
