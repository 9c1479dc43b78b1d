"""The settings of an FL-EM-GMM fit, shared by both parties and the plaintext reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from vfl.errors import VflError
from vfl.options import DistinctEach, Interval, OneOf, check_options, option

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

    SECTION: ClassVar[str] = "gmm"

    k: int = option(2, Interval(1), "mixture components")
    covariance: Covariance = option("diag", OneOf(COVARIANCES), "covariance within a party's block")
    reg_covar: float = option(1e-6, Interval(0), "added to the covariance diagonal")
    tol: float = option(1e-3, Interval(0), "stop when the lower bound changes by less")
    max_iter: int = option(100, Interval(1), "EM iterations (at most)")
    n_init: int = option(1, Interval(1), "initialisations; the best lower bound is kept")
    init: Init = option("kmeans", OneOf(INITS), "\"kmeans\": federated k-means; scikit-learn's \"random\", \"random_from_data\"")
    kmeans_max_iter: int = option(30, Interval(1), "Lloyd iterations of the \"kmeans\" initialisation")
    k_range: tuple[int, ...] = option((), DistinctEach(Interval(1)), "if set: fit each K, keep the lowest BIC")
    seed: int = option(42, help="initialisation seed ([job] seed)", config=False)

    @property
    def candidates(self) -> tuple[int, ...]:
        """The values of K to fit: `k_range` if given, else just `k`."""
        return tuple(self.k_range) if self.k_range else (self.k,)

    def validate(self) -> GmmOptions:
        """Refuse settings EM cannot run with (the table's constraints); returns self."""
        check_options(self, GmmOptionsError)
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
