"""Commitments are keccak256(binding || salt || content), the binding a fixed 256-byte layout, and
canonical bytes are deterministic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from eth_abi import encode
from eth_utils import keccak

from chain.commitment import (
    TAG_METRICS,
    TAG_MODEL,
    TAG_ROUND,
    Binding,
    Opening,
    SessionBinding,
    bound_commitment,
    canonical_bytes,
    new_salt,
    open_file_commitment,
    round_commitment,
)
from chain.errors import ChainError

B = Binding(chain_id=31337, contract="0x" + "ab" * 20, session_id="0x" + "11" * 32, round=3,
            party="0x" + "cd" * 20, role="guest", phase="lr")


def test_canonical_bytes_ignore_key_order_and_numpy_types():
    a = canonical_bytes({"w": np.array([0.1, -2.0]), "b": np.float64(0.5), "k": np.int64(3)})
    b = canonical_bytes({"k": 3, "b": 0.5, "w": [0.1, -2.0]})
    assert a == b == b'{"b":0.5,"k":3,"w":[0.1,-2.0]}'


def test_binding_bytes_are_the_abi_encoding_of_the_documented_fields():
    expected = encode(["bytes32", "uint256", "address", "bytes32", "uint256", "address", "bytes32", "bytes32"],
                      [keccak(b"vflchain/round/v1"), 31337, B.contract, bytes.fromhex("11" * 32), 3, B.party,
                       keccak(b"guest"), keccak(b"lr")])
    assert B.encode(TAG_ROUND) == expected and len(expected) == 256


def test_round_commitment_is_keccak_of_binding_salt_and_canonical_bytes():
    salt = bytes(range(32))
    params = {"w": [1.5]}
    assert round_commitment(B, salt, params) == keccak(B.encode(TAG_ROUND) + salt + canonical_bytes(params))


@pytest.mark.parametrize("field, value", [
    ("chain_id", 1), ("contract", "0x" + "ac" * 20), ("session_id", "0x" + "12" * 32), ("round", 4),
    ("party", "0x" + "ce" * 20), ("role", "host"), ("phase", "binning")])
def test_each_binding_field_changes_the_commitment(field, value):
    salt, params = new_salt(), {"w": [1]}
    assert round_commitment(replace(B, **{field: value}), salt, params) != round_commitment(B, salt, params)


def test_kinds_are_separated():
    salt, data = new_salt(), b'{"w":[1]}'
    coms = {bound_commitment(tag, B, salt, data) for tag in (TAG_ROUND, TAG_MODEL, TAG_METRICS)}
    assert len(coms) == 3
    with pytest.raises(ChainError, match="unknown commitment kind"):
        B.encode(b"vflchain/other/v1")


def test_different_salts_hide_equal_parameters():
    assert round_commitment(B, new_salt(), {"w": [1]}) != round_commitment(B, new_salt(), {"w": [1]})


def test_an_opening_reopens_its_file_commitment_and_survives_json():
    data = b'{"intersection_size": 3}'
    opening = open_file_commitment(TAG_MODEL, SessionBinding(1, B.contract, B.session_id, B.party, "host")
                                   .at(9, "close"), "intersection.json", data)
    again = Opening.from_json(opening.to_json())
    assert again == opening and again.recompute(TAG_MODEL, data) == opening.commitment
    assert again.recompute(TAG_MODEL, data + b" ") != opening.commitment
    assert again.recompute(TAG_METRICS, data) != opening.commitment


def test_bad_binding_fields_are_refused_by_name():
    with pytest.raises(ChainError, match="session id must be 32 bytes"):
        replace(B, session_id="0x1234").encode(TAG_ROUND)
    with pytest.raises(ChainError, match="salt must be 32 bytes"):
        round_commitment(B, b"short", {})


def test_nan_parameters_cannot_be_committed():
    with pytest.raises(ChainError, match="NaN"):
        canonical_bytes({"w": [float("nan")]})
