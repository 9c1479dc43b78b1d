"""Vertical logistic regression with Paillier, a guest and 1..N hosts, no arbiter (docs/protocols/lr.md).

- `vfl.lr.protocol`: the encrypted protocol steps, named by what they do.
- `vfl.lr.multihost`: the extra steps with N >= 2 hosts (cross terms, pair loss terms) and an
  in-process driver of the whole protocol (`fit_in_process`).
- `vfl.lr.reference`: the same algorithm in plaintext on the joined data (`fit_reference`,
  `fit_reference_hosts` with N host blocks).
- `vfl.lr.schedule`, `vfl.lr.setup`, `vfl.lr.taylor`, `vfl.lr.options`: what both share.
- `vfl.lr.model`: one party's saved model and scoring with it.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule: imported on first use (PEP 562), so that reading one small module (e.g. the
# options table, which the config parser needs) does not import the whole package
_EXPORTS = {
    "LrPartModel": "vfl.lr.model",
    "Scaling": "vfl.lr.model",
    "predict_proba": "vfl.lr.model",
    "sigmoid": "vfl.lr.model",
    "LrOptions": "vfl.lr.options",
    "ReferenceFit": "vfl.lr.reference",
    "fit_reference": "vfl.lr.reference",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


__all__ = ["LrOptions", "LrPartModel", "ReferenceFit", "Scaling", "fit_reference", "predict_proba", "sigmoid"]
