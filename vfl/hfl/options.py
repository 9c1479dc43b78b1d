"""Options of horizontal federated logistic regression (the `[hfl]` config section mirrors them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vfl.errors import VflError

MECHANISMS = ("off", "laplace", "gaussian")
ALGORITHMS = ("fedavg", "fedprox")
ADAPTIVE = ("off", "adagrad", "adam")  # each client's own step sizes (vfl.hfl.local.AdaptiveStep)
WEIGHTINGS = ("samples", "validation")  # the aggregation's weights (vfl.hfl.aggregate.aggregation_weight)


@dataclass(frozen=True)
class HflOptions:
    rounds: int = 30  # global rounds
    learning_rate: float = 0.1
    batch_size: int = 32  # 0: the client's whole training set; with DP the expected size of a Poisson sample
    local_epochs: int = 1  # passes over the local training rows per round
    aggregation: str = "fedavg"  # "fedavg" | "fedprox"
    mu: float = 0.01  # FedProx proximal strength (ignored by FedAvg)
    alpha: float = 0.0  # L2 regularization
    clip: float = 1.0  # per-example gradient norm bound (L2; L1 for Laplace); 0: no clipping (DP off only)
    dp: str = "off"  # "off" | "laplace" | "gaussian"
    epsilon: float = 1.0  # total budget per client over the whole training
    delta: float = 1e-5  # the delta at which the accountant reports epsilon (both mechanisms)
    fit_intercept: bool = True
    validation: float = 0.2  # fraction of each client's rows held out for evaluation
    adaptive: str = "off"  # "off" (plain SGD steps) | "adagrad" | "adam": per-client adaptive learning rate
    weighting: str = "samples"  # "samples": n_i | "validation": n_i x the local model's held-out accuracy

    def validate(self) -> None:
        """Raise VflError naming the first bad option."""
        if self.rounds < 1:
            raise VflError(f"[hfl] rounds must be >= 1, got {self.rounds}")
        if self.local_epochs < 1:
            raise VflError(f"[hfl] local_epochs must be >= 1, got {self.local_epochs}")
        if self.batch_size < 0:
            raise VflError(f"[hfl] batch_size must be >= 0, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise VflError(f"[hfl] learning_rate must be > 0, got {self.learning_rate}")
        if self.aggregation not in ALGORITHMS:
            raise VflError(f"[hfl] aggregation must be \"fedavg\" or \"fedprox\", got {self.aggregation!r}")
        if self.dp not in MECHANISMS:
            raise VflError(f"[hfl] dp must be \"off\", \"laplace\" or \"gaussian\", got {self.dp!r}")
        if not (self.mu >= 0 and self.alpha >= 0 and self.clip >= 0):
            raise VflError("[hfl] mu, alpha and clip must be >= 0")
        if self.dp != "off":
            if not self.clip > 0:
                raise VflError("[hfl] differential privacy needs clip > 0 (it bounds each row's influence)")
            if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
                raise VflError(f"[hfl] epsilon must be a positive number, got {self.epsilon}")
            if not 0 < self.delta < 1:
                raise VflError(f"[hfl] delta must be in (0, 1) with differential privacy, got {self.delta}")
        if not 0 <= self.validation < 1:
            raise VflError(f"[hfl] validation must be in [0, 1), got {self.validation}")
        if self.adaptive not in ADAPTIVE:
            raise VflError(f"[hfl] adaptive must be \"off\", \"adagrad\" or \"adam\", got {self.adaptive!r}")
        if self.weighting not in WEIGHTINGS:
            raise VflError(f"[hfl] weighting must be \"samples\" or \"validation\", got {self.weighting!r}")
        if self.weighting == "validation" and self.validation == 0:
            raise VflError("[hfl] weighting = \"validation\" needs held-out rows: set validation > 0")

    @property
    def noisy_passes(self) -> int:
        """How many local epochs every client trains in total: rounds x local epochs."""
        return self.rounds * self.local_epochs
