"""Training options of vertical logistic regression, shared by the federated run and the reference.

`LrOptions` is what both parties must agree on (the guest sends it at setup and
the host refuses to train under different settings).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from vfl.errors import TrainingError
from vfl.options import Interval, OneOf, check_options, option

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

    SECTION: ClassVar[str] = "lr"

    epochs: int = option(20, Interval(1), "passes over the training rows (at most)")
    batch_size: int = option(0, Interval(0), "rows per batch; 0: full batch")
    learning_rate: float = option(0.15, Interval(0, open_low=True), "step size of epoch 0")
    decay: float = option(0.0, Interval(0), "learning rate of epoch e: learning_rate / (1 + decay * e)")
    alpha: float = option(0.01, Interval(0), "regularization strength")
    penalty: Penalty = option("l2", OneOf(("l2", "l1", "none")), "\"l1\": proximal soft-thresholding step")
    tol: float = option(1e-4, Interval(0), "stop when the epoch loss changes by less")
    validation: float = option(0.2, Interval(0, 1, open_high=True), "fraction of rows the guest holds out (by ID); 0: none")
    early_stopping: int = option(0, Interval(0), "epochs without a lower validation loss; 0: off")
    seed: int = option(42, help="shuffling seed ([job] seed)", config=False)
    fit_intercept: bool = option(True, help="intercept at the guest")
    standardize: bool = option(True, help="each party standardizes its own columns (training rows' mean/std)")
    label_noise: float = option(1.0, Interval(0, finite=True),
                                "guest's noise on the host's gradient (x label sensitivity); 0: none (vfl.lr.privacy)")

    def check(self) -> LrOptions:
        """Refuse settings that cannot train (the table's constraints, then combinations); returns self."""
        check_options(self, TrainingError)
        if self.early_stopping and self.validation == 0:
            raise TrainingError("[lr] early_stopping needs a validation split (validation > 0)")
        return self

    def validate(self) -> LrOptions:
        """`check` (the name every options class has)."""
        return self.check()

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
