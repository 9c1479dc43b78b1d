"""Vertical logistic regression with Paillier, a guest and 1..N hosts, no arbiter (docs/protocols/lr.md).

- `vfl.lr.protocol`: the encrypted protocol steps, named by what they do.
- `vfl.lr.multihost`: the extra steps with N >= 2 hosts (cross terms, pair loss terms) and an
  in-process driver of the whole protocol (`fit_in_process`).
- `vfl.lr.reference`: the same algorithm in plaintext on the joined data (`fit_reference`,
  `fit_reference_hosts` with N host blocks).
- `vfl.lr.schedule`, `vfl.lr.setup`, `vfl.lr.taylor`, `vfl.lr.options`: what both share.
- `vfl.lr.model`: one party's saved model and scoring with it.
"""

from vfl.lr.model import LrPartModel, Scaling, predict_proba, sigmoid
from vfl.lr.options import LrOptions
from vfl.lr.reference import ReferenceFit, fit_reference

__all__ = ["LrOptions", "LrPartModel", "ReferenceFit", "Scaling", "fit_reference", "predict_proba", "sigmoid"]
