"""Options of horizontal federated logistic regression (the `[hfl]` config section mirrors them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from vfl.errors import VflError
from vfl.options import Interval, OneOf, check_options, option

MECHANISMS = ("off", "laplace", "gaussian")
ALGORITHMS = ("fedavg", "fedprox")
ADAPTIVE = ("off", "adagrad", "adam")  # each client's own step sizes (vfl.hfl.local.AdaptiveStep)
WEIGHTINGS = ("samples", "validation")  # the aggregation's weights (vfl.hfl.aggregate.aggregation_weight)


@dataclass(frozen=True)
class HflOptions:
    SECTION: ClassVar[str] = "hfl"

    rounds: int = option(30, Interval(1), "global rounds")
    learning_rate: float = option(0.1, Interval(0, open_low=True), "local SGD step size")
    batch_size: int = option(32, Interval(0), "0: the client's whole training set; with DP the expected size of a Poisson sample")
    local_epochs: int = option(1, Interval(1), "passes over the local training rows per round")
    aggregation: str = option("fedavg", OneOf(ALGORITHMS), "\"fedprox\" adds a proximal term of strength mu")
    mu: float = option(0.01, Interval(0), "FedProx proximal strength (ignored by FedAvg)")
    alpha: float = option(0.0, Interval(0), "L2 regularization")
    clip: float = option(1.0, Interval(0), "per-example gradient norm bound (L2; L1 for Laplace); 0: no clipping (DP off only)")
    dp: str = option("off", OneOf(MECHANISMS), "differential privacy mechanism")
    epsilon: float = option(1.0, help="total budget per client over the whole training (with DP: > 0, finite)")
    delta: float = option(1e-5, help="the delta at which the accountant reports epsilon (with DP: in (0, 1))")
    fit_intercept: bool = option(True, help="an intercept column")
    validation: float = option(0.2, Interval(0, 1, open_high=True), "fraction of each client's rows held out for evaluation")
    adaptive: str = option("off", OneOf(ADAPTIVE), "each client's adaptive learning rate (docs/horizontal.md)")
    weighting: str = option("samples", OneOf(WEIGHTINGS), "aggregation weights: n_i, or n_i x the local model's held-out accuracy")

    def validate(self) -> None:
        """Raise VflError naming the first bad option (the table's constraints, then those of DP)."""
        check_options(self, VflError)
        if self.dp != "off":
            if not self.clip > 0:
                raise VflError("[hfl] differential privacy needs clip > 0 (it bounds each row's influence)")
            if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
                raise VflError(f"[hfl] epsilon must be a positive number, got {self.epsilon}")
            if not 0 < self.delta < 1:
                raise VflError(f"[hfl] delta must be in (0, 1) with differential privacy, got {self.delta}")
        if self.weighting == "validation" and self.validation == 0:
            raise VflError("[hfl] weighting = \"validation\" needs held-out rows: set validation > 0")

    @property
    def noisy_passes(self) -> int:
        """How many local epochs every client trains in total: rounds x local epochs."""
        return self.rounds * self.local_epochs
