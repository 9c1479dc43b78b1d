"""Messages cross as bytes in a documented format: arrays, ciphertexts, JSON; malformed is refused."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.transport import Address, TransportError, decode_message, encode_message
from nodes.transport.codec import keyring

ADDR = Address("job-1", "binning", 3, "enc_labels")


def test_payload_round_trips_with_arrays_ciphertexts_bytes_and_json(keys_1024):
    (gpk, gsk), (hpk, _) = keys_1024
    enc = gpk.encrypt(np.array([1, 0, 1]))
    payload = {"x": np.arange(6, dtype=np.float64).reshape(2, 3), "flags": np.array([True, False]),
               "enc": enc, "blob": b"\x00\x01", "meta": {"names": ["a", "b"], "k": 2}}
    data = encode_message(ADDR, "guest", payload)
    addr, sender, got = decode_message(data, keyring(gpk, hpk))
    assert addr == ADDR and sender == "guest"
    np.testing.assert_array_equal(got["x"], payload["x"])
    np.testing.assert_array_equal(got["flags"], payload["flags"])
    np.testing.assert_array_equal(gsk.decrypt(got["enc"]), [1, 0, 1])
    assert got["blob"] == b"\x00\x01" and got["meta"] == payload["meta"]


def test_object_arrays_cannot_be_sent():
    with pytest.raises(TypeError, match="cannot be sent"):
        encode_message(ADDR, "guest", {"x": np.array(["a"], dtype=object)})


def test_ciphertexts_under_an_untrusted_key_are_refused(keys_1024):
    (gpk, _), (hpk, _) = keys_1024
    data = encode_message(ADDR, "guest", {"enc": gpk.encrypt(np.array([1]))})
    with pytest.raises(TransportError, match="unknown key"):
        decode_message(data, keyring(hpk))


@pytest.mark.parametrize("mutate", [
    lambda b: b[:3],
    lambda b: b"XXXX" + b[4:],
    lambda b: b[:8] + b"{not json" + b[17:],
    lambda b: b[:-5],
])
def test_malformed_messages_are_refused(mutate):
    data = encode_message(ADDR, "host", {"x": np.arange(4, dtype=np.int64)})
    with pytest.raises(TransportError, match="malformed"):
        decode_message(mutate(data), {})


def test_array_whose_size_does_not_match_its_shape_is_refused():
    data = bytearray(encode_message(ADDR, "host", {"x": np.arange(4, dtype=np.int64)}))
    data = bytes(data).replace(b'"shape":[4]', b'"shape":[5]')
    with pytest.raises(TransportError, match="does not match its shape"):
        decode_message(data, {})
