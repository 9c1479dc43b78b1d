"""Training options of vertical logistic regression, shared by the federated run and the reference.

`LrOptions` is what both parties must agree on (the guest sends it at setup and
the host refuses to train under different settings).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from vfl.errors import TrainingError

Penalty = Literal["l2", "l1", "none"]


@dataclass(frozen=True)
class LrOptions:
    """Hyperparameters and schedule of one training run.

    - `batch_size` 0 means full batch; otherwise each epoch's training rows are
      shuffled with `seed` and cut into `n // batch_size` batches of at least
      `batch_size` rows (the remainder is spread over them, never a tiny batch).
    - the learning rate of epoch e (0-based) is `learning_rate / (1 + decay * e)`.
    - `alpha` is the L2 strength (gradient step) or the L1 strength (proximal
      soft-thresholding step); the intercept is never regularized.
    - `tol`: stop when the epoch's training loss changed by less than this.
    - `label_noise`: the guest's Gaussian noise on the host's gradient, as a multiple of
      its label sensitivity (vfl.lr.privacy); 0: none, then batches must be large
      enough that one gradient cannot carry their labels.
    - `validation`: fraction of rows the guest holds out (by ID) for early
      stopping and validation metrics; `early_stopping` epochs without a lower
      validation loss stop training, and the best epoch's weights are kept.
    """

    epochs: int = 20
    batch_size: int = 0
    learning_rate: float = 0.15
    decay: float = 0.0
    alpha: float = 0.01
    penalty: Penalty = "l2"
    tol: float = 1e-4
    validation: float = 0.2
    early_stopping: int = 0
    seed: int = 42
    fit_intercept: bool = True
    standardize: bool = True
    label_noise: float = 1.0

    def check(self) -> LrOptions:
        """Refuse settings that cannot train; returns self."""
        if self.epochs < 1:
            raise TrainingError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 0:
            raise TrainingError(f"batch_size must be >= 0 (0: full batch), got {self.batch_size}")
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.decay < 0:
            raise TrainingError(f"decay must be >= 0, got {self.decay}")
        if self.alpha < 0:
            raise TrainingError(f"alpha must be >= 0, got {self.alpha}")
        if self.penalty not in ("l2", "l1", "none"):
            raise TrainingError(f"penalty must be \"l2\", \"l1\" or \"none\", got {self.penalty!r}")
        if self.tol < 0:
            raise TrainingError(f"tol must be >= 0, got {self.tol}")
        if not 0.0 <= self.validation < 1.0:
            raise TrainingError(f"validation must be a fraction in [0, 1), got {self.validation}")
        if self.early_stopping < 0:
            raise TrainingError(f"early_stopping must be >= 0, got {self.early_stopping}")
        if not (self.label_noise >= 0 and math.isfinite(self.label_noise)):
            raise TrainingError(f"label_noise must be >= 0 (0: no noise), got {self.label_noise}")
        if self.early_stopping and self.validation == 0:
            raise TrainingError("early_stopping needs a validation split (validation > 0)")
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LrOptions:
        try:
            return cls(**obj).check()
        except TypeError as exc:
            raise TrainingError(f"malformed training options: {exc}") from None

    def differences(self, other: LrOptions) -> list[str]:
        """Names and values of the options that differ, e.g. ["learning_rate: 0.1 vs 0.15"]."""
        a, b = self.to_json(), other.to_json()
        return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k]]
