"""The randomness of DP training: noise and Poisson sampling from an AES-256-CTR keystream.

Why not numpy's generators: PCG64, SFC64 and Philox are statistical generators,
not cryptographic ones; whoever learns (or guesses from outputs) their state
replays every later draw, and with it the noise. Here every draw comes from the
AES-256-CTR keystream (`cryptography`, AES-NI) under a 256-bit key:

- `secret_stream()`: key from `secrets.token_bytes(32)`, never stored or sent.
  Nobody, not even a party that knows the whole job definition (seed
  included), can replay the noise or the sampling. This is what nodes use.
- `seeded_stream(seed, index)`: key = SHA-256 of the job seed and client index.
  Reproducible and therefore **not private** (anyone who knows the seed replays
  and subtracts the noise); only `vfl.hfl.simulate` with `reproducible=True`
  (`vflchain sweep --reproducible`) uses it, and labels its output so.

Draws: 64-bit words -> uniforms in the open interval (0, 1) with 53 random bits
((w >> 11) + 0.5) / 2**53; Gaussian noise by Box-Muller (both outputs used);
Laplace noise by the inverse CDF; Poisson sampling as uniform < q per row.
Floating-point noise is not hardened against attacks on the low-order bits of
doubles (Mironov 2012), like most DP-SGD implementations.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_TWO_53 = float(2 ** 53)
SEEDED_LABEL = "reproducible from the job seed: NOT private"


class DpRandom:
    """A keyed AES-256-CTR keystream turned into uniform, Gaussian, Laplace and Bernoulli draws."""

    def __init__(self, key: bytes, private: bool) -> None:
        if len(key) != 32:
            raise ValueError("DpRandom needs a 256-bit key")
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self.private = private  # False: the key is derived from public data (the job seed)

    def _words(self, count: int) -> np.ndarray:
        return np.frombuffer(self._enc.update(bytes(8 * count)), dtype="<u8")

    def uniform(self, size: int) -> np.ndarray:
        """`size` uniforms in the open interval (0, 1)."""
        return ((self._words(size) >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO_53

    def normal(self, scale: float, size: int) -> np.ndarray:
        """N(0, scale^2) per coordinate (Box-Muller)."""
        half = (size + 1) // 2
        u1, u2 = self.uniform(half), self.uniform(half)
        r = np.sqrt(-2.0 * np.log(u1))
        z = np.concatenate([r * np.cos(2.0 * np.pi * u2), r * np.sin(2.0 * np.pi * u2)])
        return scale * z[:size]

    def laplace(self, scale: float, size: int) -> np.ndarray:
        """Laplace(0, scale) per coordinate (inverse CDF)."""
        u = self.uniform(size) - 0.5
        return -scale * np.sign(u) * np.log1p(-2.0 * np.abs(u))

    def poisson_sample(self, n: int, q: float) -> np.ndarray:
        """Indices of the rows included in one step: each of range(n) independently with probability q."""
        if q >= 1.0:
            return np.arange(n)
        return np.flatnonzero(self.uniform(n) < q)


def secret_stream() -> DpRandom:
    """A fresh stream under a key from `secrets` that exists only in this process."""
    return DpRandom(secrets.token_bytes(32), private=True)


def seeded_stream(seed: int, index: int) -> DpRandom:
    """The reproducible stream of client `index` in a job with `seed`: NOT private (simulation only)."""
    key = hashlib.sha256(f"vflchain-hfl-reproducible-not-private|{seed}|{index}".encode()).digest()
    return DpRandom(key, private=False)
