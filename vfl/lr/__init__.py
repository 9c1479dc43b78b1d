"""Vertical logistic regression with Paillier, two parties, no arbiter (docs/protocols/lr.md).

- `vfl.lr.protocol`: the encrypted protocol steps, named by what they do.
- `vfl.lr.reference`: the same algorithm in plaintext on the joined data.
- `vfl.lr.schedule`, `vfl.lr.setup`, `vfl.lr.taylor`, `vfl.lr.options`: what both share.
- `vfl.lr.model`: one party's saved model and scoring with it.
"""

from vfl.lr.model import LrPartModel, Scaling, predict_proba, sigmoid
from vfl.lr.options import LrOptions
from vfl.lr.reference import ReferenceFit, fit_reference

__all__ = ["LrOptions", "LrPartModel", "ReferenceFit", "Scaling", "fit_reference", "predict_proba", "sigmoid"]
