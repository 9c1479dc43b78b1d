"""The settings of an FL-EM-GMM fit, shared by both parties and the plaintext reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vfl.errors import VflError

Covariance = Literal["diag", "full"]
Init = Literal["kmeans", "random", "random_from_data"]
COVARIANCES: tuple[str, ...] = ("diag", "full")
INITS: tuple[str, ...] = ("kmeans", "random", "random_from_data")


class GmmOptionsError(VflError):
    """An FL-EM-GMM setting is out of range."""


@dataclass(frozen=True)
class GmmOptions:
    """What to fit: K (or a range of K chosen by BIC), covariance within a party, EM controls.

    `init`: "random" (uniform random responsibilities, scikit-learn's "random"),
    "random_from_data" (K random rows as one-hot responsibilities, scikit-learn's
    "random_from_data") or "kmeans" (federated Lloyd k-means started from K random
    rows). All draws come from `numpy.random.RandomState(seed)` at the guest, in
    scikit-learn's order, so a fit is reproducible from the seed.
    """

    k: int = 2
    covariance: Covariance = "diag"
    reg_covar: float = 1e-6
    tol: float = 1e-3
    max_iter: int = 100
    n_init: int = 1
    init: Init = "kmeans"
    kmeans_max_iter: int = 30
    k_range: tuple[int, ...] = field(default_factory=tuple)
    seed: int = 42

    @property
    def candidates(self) -> tuple[int, ...]:
        """The values of K to fit: `k_range` if given, else just `k`."""
        return tuple(self.k_range) if self.k_range else (self.k,)

    def validate(self) -> GmmOptions:
        """Refuse settings EM cannot run with; returns self."""
        for k in self.candidates:
            if not isinstance(k, int) or k < 1:
                raise GmmOptionsError(f"[gmm] k must be a positive integer, got {k!r}")
        if len(set(self.candidates)) != len(self.candidates):
            raise GmmOptionsError(f"[gmm] k_range lists a value twice: {list(self.candidates)}")
        if self.covariance not in COVARIANCES:
            raise GmmOptionsError(f"[gmm] covariance must be \"diag\" or \"full\", got {self.covariance!r}")
        if self.init not in INITS:
            raise GmmOptionsError(f"[gmm] init must be one of {', '.join(INITS)}; got {self.init!r}")
        if not self.reg_covar >= 0:
            raise GmmOptionsError(f"[gmm] reg_covar must be >= 0, got {self.reg_covar!r}")
        if not self.tol >= 0:
            raise GmmOptionsError(f"[gmm] tol must be >= 0, got {self.tol!r}")
        if self.max_iter < 1:
            raise GmmOptionsError(f"[gmm] max_iter must be >= 1, got {self.max_iter}")
        if self.n_init < 1:
            raise GmmOptionsError(f"[gmm] n_init must be >= 1, got {self.n_init}")
        if self.kmeans_max_iter < 1:
            raise GmmOptionsError(f"[gmm] kmeans_max_iter must be >= 1, got {self.kmeans_max_iter}")
        return self

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["k_range"] = list(self.k_range)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> GmmOptions:
        try:
            return cls(k=int(obj["k"]), covariance=obj["covariance"], reg_covar=float(obj["reg_covar"]),
                       tol=float(obj["tol"]), max_iter=int(obj["max_iter"]), n_init=int(obj["n_init"]),
                       init=obj["init"], kmeans_max_iter=int(obj["kmeans_max_iter"]),
                       k_range=tuple(int(k) for k in obj["k_range"]), seed=int(obj["seed"])).validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise GmmOptionsError(f"malformed GMM settings: {exc}") from None
