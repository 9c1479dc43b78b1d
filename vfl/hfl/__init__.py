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

from vfl.hfl.aggregate import decrypt_aggregate, encrypt_update, fedavg, sum_ciphertexts
from vfl.hfl.dp import DpAccountant, noise_scale
from vfl.hfl.local import local_update
from vfl.hfl.options import HflOptions

__all__ = ["DpAccountant", "HflOptions", "decrypt_aggregate", "encrypt_update", "fedavg", "local_update",
           "noise_scale", "sum_ciphertexts"]
