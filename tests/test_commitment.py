"""Commitments are keccak256(salt || canonical bytes) and canonical bytes are deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils import keccak

from chain.commitment import canonical_bytes, commitment, new_salt
from chain.errors import ChainError


def test_canonical_bytes_ignore_key_order_and_numpy_types():
    a = canonical_bytes({"w": np.array([0.1, -2.0]), "b": np.float64(0.5), "k": np.int64(3)})
    b = canonical_bytes({"k": 3, "b": 0.5, "w": [0.1, -2.0]})
    assert a == b == b'{"b":0.5,"k":3,"w":[0.1,-2.0]}'


def test_commitment_is_keccak_of_salt_and_canonical_bytes():
    salt = bytes(range(32))
    params = {"w": [1.5]}
    assert commitment(salt, params) == keccak(salt + canonical_bytes(params))


def test_different_salts_hide_equal_parameters():
    assert commitment(new_salt(), {"w": [1]}) != commitment(new_salt(), {"w": [1]})


def test_nan_parameters_cannot_be_committed():
    with pytest.raises(ChainError, match="NaN"):
        canonical_bytes({"w": [float("nan")]})
