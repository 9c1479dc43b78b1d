"""Label privacy of the host's gradient: the bit rule, the guest's Gaussian noise and its epsilon.

The host learns g = X_h^T d per batch (docs/protocols/lr.md, "Label privacy"). At w = 0
d = -y'/2, so g is an integer subset sum of its own 20-bit columns: a knapsack it can
solve when the batch is small. Two defences, chosen by `[lr] label_noise` (z):

- z = 0 (noise-free): `check_label_bits` refuses batches whose labels one gradient could
  carry: m < LABEL_BIT_MARGIN * k_h * (MATRIX_PRECISION_BITS + log2 m + log2 max|x|).
- z > 0: the guest adds Gaussian noise N(0, (z * Delta_t)^2) to every coordinate of the
  host's gradient sum when it decrypts it (`LabelNoise`), Delta_t being a bound on how
  much g can change when one training label flips, *including* the change that flip
  made to the guest's weights in earlier batches. Every batch is then a Gaussian
  mechanism of multiplier z; T batches compose to sqrt(T)/z-GDP (`epsilon`).
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from vfl.errors import TrainingError
from vfl.lr.options import LrOptions

LABEL_BIT_MARGIN = 2  # a noise-free gradient may carry at most half the bits of its batch's labels
GRID_BITS = 20  # fractional bits of the columns in X^T d (vfl.lr.protocol.MATRIX_PRECISION_BITS)
_ROUNDING_SLACK = 1.0 + 2.0 ** -20  # fixed-point rounding of c and X on top of the real-valued bound
NORM_STEPS = 8  # the host's norms are sent rounded up to 2^(1/8) steps
_SYSTEM = secrets.SystemRandom()  # the OS CSPRNG, as `secrets` uses it


def label_delta(n_train: int) -> float:
    """The delta at which epsilon is stated: min(1e-5, 0.1 / n_train)."""
    return min(1e-5, 0.1 / max(n_train, 1))


def gradient_label_bits(rows: int, n_train: int) -> float:
    """Bits one noise-free gradient coordinate can hold about the batch's labels.

    At w = 0 it is sum_i X_q,ij y'_i / 2 with |X_q,ij| < 2^20 * max|x|: at most
    2^20 * rows * max|x| values. Standardized columns have max|x| <= sqrt(n_train)
    (Samuelson's inequality), so log2 of the count is <= 20 + log2 rows + log2(n_train)/2.
    """
    return GRID_BITS + math.log2(max(rows, 1)) + 0.5 * math.log2(max(n_train, 1))


def check_label_bits(n_train: int, min_rows: int, host_features: int, label_noise: float) -> None:
    """Without noise, refuse batches whose labels the host's gradient could pin down (one line)."""
    if label_noise > 0 or host_features == 0:
        return
    bits = host_features * gradient_label_bits(min_rows, n_train)
    if min_rows < LABEL_BIT_MARGIN * bits:
        need = min_rows
        while need <= n_train and need < LABEL_BIT_MARGIN * host_features * gradient_label_bits(need, n_train):
            need += 1
        fix = (f"use batch_size >= {need} or set [lr] label_noise > 0" if need <= n_train else
               f"no batch size of {n_train} training rows is large enough: set [lr] label_noise > 0")
        raise TrainingError(
            f"batches of {min_rows} rows are too small for label privacy without noise: the host's "
            f"gradient over {host_features} columns can carry {bits:.0f} bits of the batch's {min_rows} "
            f"labels; {fix}")


def _round_up(x: float) -> float:
    """x rounded up to the grid 2^(j/8): what the host reveals of its norms is a 1/8-octave."""
    return 2.0 ** (math.ceil(NORM_STEPS * math.log2(x)) / NORM_STEPS) if x > 0 else 2.0 ** -GRID_BITS


def host_norm_bounds(X: np.ndarray) -> tuple[float, float]:
    """The host's sensitivity inputs from its training rows: (largest row norm, operator norm), rounded up.

    The operator norm of the training rows bounds that of every batch (a row subset), so
    the guest never needs anything per batch. Both include the 2^-21 rounding of the grid.
    """
    if not X.size:
        return _round_up(0.0), _round_up(0.0)
    slack = math.sqrt(X.shape[1]) * 2.0 ** -(GRID_BITS + 1)
    row = float(np.sqrt(np.max(np.sum(X * X, axis=1)))) * _ROUNDING_SLACK + slack
    op = math.sqrt(max(float(np.linalg.eigvalsh(X.T @ X)[-1]), 0.0)) * _ROUNDING_SLACK + slack * math.sqrt(X.shape[0])
    return _round_up(row), _round_up(op)


def gdp_epsilon(mu: float, delta: float) -> float:
    """The epsilon of a mu-GDP mechanism at `delta` (Dong, Roth & Su 2019, Corollary 2.13)."""
    if mu <= 0:
        return 0.0

    def delta_of(eps: float) -> float:
        a, b = -eps / mu + mu / 2, -eps / mu - mu / 2
        return _phi(a) - math.exp(eps + _log_phi(b))

    lo, hi = 0.0, 1.0
    while delta_of(hi) > delta:
        hi *= 2
        if hi > 1e6:
            return math.inf
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


def epsilon(label_noise: float, steps: int, delta: float) -> float:
    """Epsilon of `steps` adaptively composed Gaussian mechanisms of multiplier z: sqrt(steps)/z-GDP."""
    if label_noise <= 0:
        return math.inf
    return gdp_epsilon(math.sqrt(steps) / label_noise, delta)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _log_phi(x: float) -> float:
    if x > -30:
        return math.log(max(_phi(x), 1e-300))
    return -x * x / 2 - math.log(-x) - 0.5 * math.log(2 * math.pi)  # asymptotic tail


class LabelNoise:
    """The guest's noise on the host's gradient: calibration (per batch) and sampling.

    b_i bounds |w_g - w_g'| for the two runs whose labels differ only in training row i
    (same host messages: the host's weights are a function of the noisy gradients it
    received). A flip changes d_i by 1 and the guest's step adds lr * x_g,i / m to
    w_g - w_g'; the rest of the guest's update is the linear map I - lr (X_g^T X_g / 4m
    + alpha I) (l2; soft-thresholding is 1-Lipschitz for l1), of operator norm kappa. So
    the host's gradient changes by at most
        Delta_t = max_i ( [i in B] R_h + 1/4 |X_h,B|_op |X_g,B|_op b_i ),
    with |X_h,B|_op <= min(sqrt(m) R_h, S_h), R_h and S_h the host's bounds on its row
    norms and on the operator norm of its training rows (`host_norm_bounds`), and afterwards
    b_i <- kappa b_i + [i in B] lr |x_g,i| / m.
    """

    def __init__(self, X_g: np.ndarray, train: np.ndarray, host_row_norm: float, host_op_norm: float,
                 opts: LrOptions, regularized: np.ndarray) -> None:
        self.z = float(opts.label_noise)
        self.opts = opts
        self.R_h = float(host_row_norm)
        self.S_h = float(host_op_norm)
        self.X_g = X_g
        self.position = np.full(X_g.shape[0], -1, dtype=np.int64)  # aligned row -> index into b
        self.position[np.asarray(train, dtype=np.int64)] = np.arange(len(train))
        self.b = np.zeros(len(train))
        self.row_norms = np.sqrt(np.sum(X_g[train] * X_g[train], axis=1))
        self.penalized = regularized.astype(np.float64) if opts.penalty == "l2" else np.zeros(X_g.shape[1])

    def sensitivity(self, rows: np.ndarray) -> float:
        """Delta_t: the most the host's gradient sum over `rows` (aligned positions) moves for one label."""
        m = len(rows)
        Xb = self.X_g[rows]
        g_op = math.sqrt(max(float(np.linalg.eigvalsh(Xb.T @ Xb)[-1]), 0.0))
        h_op = min(math.sqrt(m) * self.R_h, self.S_h)
        k = self.position[np.asarray(rows, dtype=np.int64)]
        carried = 0.25 * h_op * g_op * self.b
        direct = carried[k] + self.R_h
        return float(max(direct.max(initial=0.0), carried.max(initial=0.0))) * _ROUNDING_SLACK + m * 2.0 ** -40

    def advance(self, rows: np.ndarray, lr: float) -> None:
        """After the batch: b_i <- kappa b_i + [i in B] lr |x_g,i| / m."""
        m = len(rows)
        Xb = self.X_g[rows]
        step = 0.25 * (Xb.T @ Xb) / m + self.opts.alpha * np.diag(self.penalized)
        eig = np.linalg.eigvalsh(step)
        kappa = float(np.max(np.abs(1.0 - lr * eig)))
        k = self.position[np.asarray(rows, dtype=np.int64)]
        self.b *= kappa
        self.b[k] += lr * self.row_norms[k] / m

    def sample(self, count: int, sigma: float, precision: int) -> tuple[list[int], np.ndarray]:
        """`count` draws of N(0, sigma^2) from the OS CSPRNG, on the 2^-precision grid: (integers, reals)."""
        ints = [int(round(math.ldexp(_SYSTEM.gauss(0.0, sigma), precision))) for _ in range(count)]
        return ints, np.array([math.ldexp(v, -precision) for v in ints], dtype=np.float64)


__all__ = ["LABEL_BIT_MARGIN", "LabelNoise", "check_label_bits", "epsilon", "gdp_epsilon", "gradient_label_bits",
           "host_norm_bounds", "label_delta"]
