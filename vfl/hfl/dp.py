"""Differential privacy of a client's training rows: sampling, noise calibration and the accountant.

Neighbouring datasets differ by adding or removing one training row (the row
count n is treated as public: it is sent in the clear for weighting). Each
step of DP training:

- **Poisson sampling**: every training row is included independently with
  probability q = min(1, batch_size / n) (batch_size 0: q = 1, every row);
  an epoch is ceil(1 / q) steps. Adding a row changes only whether that row
  is in each step's sample; no other row's membership moves.
- each included row's gradient is clipped to norm `clip` (L2 for Gaussian, L1
  for Laplace noise), summed, noised with N(0, (sigma clip)^2) or
  Laplace(b = mult clip) per coordinate, and divided by the expected batch
  size q n (a public number, unlike the sampled batch's size).

The accountant is Google's `dp_accounting`: each step is a
`PoissonSampledDpEvent(q, GaussianDpEvent(sigma))` (RDP accountant) or
`PoissonSampledDpEvent(q, LaplaceDpEvent(mult))` (PLD accountant); T =
rounds x local_epochs x steps-per-epoch steps compose. The noise multiplier is
the smallest that keeps epsilon(delta) after T steps within the budget
(`dp_accounting.calibrate_dp_mechanism`), and every round reports the library's
epsilon(delta) after the steps taken so far. Everything after the noisy sums
(the FedProx term, L2, aggregation, encryption) is post-processing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vfl.hfl.options import HflOptions


def sampling(opts: HflOptions, n: int) -> tuple[float, int]:
    """(q, steps per epoch) of a client with n training rows."""
    if opts.batch_size <= 0 or opts.batch_size >= n:
        return 1.0, 1
    return opts.batch_size / n, math.ceil(n / opts.batch_size)


def _event(mechanism: str, q: float, multiplier: float, steps: int):  # -> dp_accounting.DpEvent
    from dp_accounting import dp_event

    step = dp_event.GaussianDpEvent(multiplier) if mechanism == "gaussian" else dp_event.LaplaceDpEvent(multiplier)
    if q < 1.0:
        step = dp_event.PoissonSampledDpEvent(q, step)
    return dp_event.SelfComposedDpEvent(step, steps)


def _accountant(mechanism: str):  # -> dp_accounting.PrivacyAccountant
    """RDP for the Poisson-sampled Gaussian; PLD for Laplace (the RDP accountant has no sampled Laplace)."""
    if mechanism == "gaussian":
        from dp_accounting.rdp import RdpAccountant

        return RdpAccountant()
    from dp_accounting.pld import PLDAccountant

    return PLDAccountant()


@contextlib.contextmanager
def _quiet_accountant() -> Iterator[None]:
    """Silence dp_accounting's absl warnings (orders it drops while probing small noise; the bound stays valid)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@functools.lru_cache(maxsize=4096)
def epsilon_after(mechanism: str, q: float, multiplier: float, steps: int, delta: float) -> float:
    """dp_accounting's epsilon at `delta` after `steps` steps (0 steps: 0)."""
    if steps == 0:
        return 0.0
    with _quiet_accountant():
        return float(_accountant(mechanism).compose(_event(mechanism, q, multiplier, steps)).get_epsilon(delta))


@functools.lru_cache(maxsize=1024)
def noise_multiplier(mechanism: str, q: float, steps: int, epsilon: float, delta: float) -> float:
    """The smallest noise multiplier (sigma / clip, or b / clip) with epsilon(delta) <= epsilon after `steps`."""
    import dp_accounting

    # Without subsampling's amplification, zCDP (Gaussian) or basic composition (Laplace) already fits
    # the budget: an upper end of the bracket.
    if mechanism == "gaussian":
        log_term = math.log(1.0 / delta)
        rho = (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2
        high = 1.0 / math.sqrt(2.0 * rho / steps)
    else:
        high = steps / epsilon
    low = max(high * q / 20.0, 1e-3)

    def event(m: float):  # noqa: ANN202
        return _event(mechanism, q, m, steps)

    def fresh():  # noqa: ANN202
        return _accountant(mechanism)

    with _quiet_accountant():
        try:
            bracket = dp_accounting.ExplicitBracketInterval(low, high)
            m = dp_accounting.calibrate_dp_mechanism(fresh, event, epsilon, delta, bracket, tol=1e-7 * high)
        except (ValueError, dp_accounting.mechanism_calibration.NoBracketIntervalFoundError):
            m = dp_accounting.calibrate_dp_mechanism(fresh, event, epsilon, delta,
                                                     dp_accounting.LowerEndpointAndGuess(0.0, high),
                                                     tol=1e-7 * high)
    return float(m)


@dataclass(frozen=True)
class DpPlan:
    """How one client (n training rows) trains under DP: sampling rate, steps, noise."""

    mechanism: str
    clip: float
    delta: float
    n: int
    q: float  # Poisson sampling probability per row and step
    steps_per_epoch: int
    total_steps: int
    multiplier: float  # noise std (Gaussian) or Laplace b, in units of clip

    @property
    def noise_scale(self) -> float:
        """Per-coordinate noise added to each step's gradient sum (sigma or b)."""
        return self.multiplier * self.clip

    @property
    def expected_batch(self) -> float:
        """q n: what each step's noisy sum is divided by."""
        return self.q * self.n


@functools.lru_cache(maxsize=1024)
def plan(opts: HflOptions, n: int) -> DpPlan:
    """The DP plan of a client with n training rows (DP on only)."""
    q, per_epoch = sampling(opts, n)
    total = per_epoch * opts.noisy_passes
    mult = noise_multiplier(opts.dp, q, total, opts.epsilon, opts.delta)
    return DpPlan(opts.dp, opts.clip, opts.delta, n, q, per_epoch, total, mult)


def noise_scale(opts: HflOptions, n: int) -> float:
    """Per-coordinate noise scale of one step's sum for a client with n rows: sigma or b (0 without DP)."""
    return 0.0 if opts.dp == "off" else plan(opts, n).noise_scale


def clip_rows(grads: np.ndarray, clip: float, norm: int) -> np.ndarray:
    """Scale each row (one example's gradient) down to norm <= clip (norm 1 or 2); clip 0: unchanged."""
    if clip <= 0:
        return grads
    norms = np.linalg.norm(grads, ord=norm, axis=1)
    scale = np.minimum(1.0, clip / np.maximum(norms, 1e-300))
    return grads * scale[:, None]


@dataclass
class DpAccountant:
    """Budget spent by one client (n training rows) after the steps it has taken, per dp_accounting."""

    opts: HflOptions
    n: int
    steps: int = 0

    @property
    def plan(self) -> DpPlan | None:
        return None if self.opts.dp == "off" else plan(self.opts, self.n)

    def spend(self, epochs: int = 1) -> None:
        """Count `epochs` local epochs of noisy steps."""
        p = self.plan
        self.steps += epochs * (p.steps_per_epoch if p else 1)

    def spent(self) -> tuple[float, float]:
        """(epsilon, delta) spent so far; without DP (inf, 1)."""
        p = self.plan
        if p is None:
            return math.inf, 1.0
        return epsilon_after(p.mechanism, p.q, p.multiplier, self.steps, p.delta), p.delta

    def record(self, round_no: int) -> dict[str, object]:
        """One line of privacy.jsonl."""
        eps, delta = self.spent()
        p = self.plan
        return {"round": round_no, "mechanism": self.opts.dp, "clip": self.opts.clip,
                "noise_scale": p.noise_scale if p else 0.0,
                "noise_multiplier": p.multiplier if p else None,
                "sampling_rate": p.q if p else None, "steps": self.steps,
                "accountant": ("dp_accounting " + ("RDP" if p.mechanism == "gaussian" else "PLD")) if p else None,
                "epsilon_spent": None if math.isinf(eps) else eps, "delta_spent": delta,
                "epsilon_budget": self.opts.epsilon if p else None}
