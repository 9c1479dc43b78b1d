"""The ciphertext wire format: round trips, and a clear error for every kind of bad input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from vfl.errors import WireFormatError
from vfl.paillier import EncryptedArray, encrypt_packed, generate_keypair, load_ciphertexts
from vfl.paillier.wire import element_width


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024), generate_keypair(1024)


@pytest.fixture(scope="module")
def sample(keys):
    (pk, _), _ = keys
    return pk.encrypt(np.arange(-6, 6, dtype=float).reshape(3, 4) / 3)


def test_round_trip_keeps_values_shape_and_precision(keys, sample):
    (pk, sk), _ = keys
    back = EncryptedArray.from_bytes(sample.to_bytes(), pk)
    assert back.shape == (3, 4) and back.precision == sample.precision
    assert back.cipher.tolist() == sample.cipher.tolist()
    np.testing.assert_array_equal(sk.decrypt(back), sk.decrypt(sample))


def test_bytes_per_ciphertext_is_the_width_of_n_squared(keys, sample):
    (pk, _), _ = keys
    data = sample.to_bytes()
    assert element_width(pk) == 256
    assert len(data) == 4 + 8 + 2 + 1 + 4 * 2 + 2 + 256 * sample.size


def test_empty_and_scalar_arrays_round_trip(keys):
    (pk, sk), _ = keys
    empty = pk.encrypt(np.zeros((0, 3)))
    assert EncryptedArray.from_bytes(empty.to_bytes(), pk).shape == (0, 3)
    scalar = pk.encrypt(np.float64(2.5))
    back = EncryptedArray.from_bytes(scalar.to_bytes(), pk)
    assert back.shape == () and float(sk.decrypt(back)) == 2.5


@pytest.mark.parametrize("cut", [3, 14, 17, 200, -1])
def test_truncated_data_is_rejected(keys, sample, cut):
    (pk, _), _ = keys
    data = sample.to_bytes()
    with pytest.raises(WireFormatError, match="truncated"):
        EncryptedArray.from_bytes(data[:cut], pk)


def test_trailing_bytes_are_rejected(keys, sample):
    (pk, _), _ = keys
    with pytest.raises(WireFormatError, match="3 trailing bytes"):
        EncryptedArray.from_bytes(sample.to_bytes() + b"abc", pk)


def test_foreign_key_is_rejected(keys, sample):
    _, (other, _) = keys
    with pytest.raises(WireFormatError, match="foreign key"):
        EncryptedArray.from_bytes(sample.to_bytes(), other)


def test_bad_magic_is_rejected(keys, sample):
    (pk, _), _ = keys
    with pytest.raises(WireFormatError, match="bad magic"):
        EncryptedArray.from_bytes(b"XXXX" + sample.to_bytes()[4:], pk)


def test_out_of_range_elements_are_rejected(keys, sample):
    (pk, _), _ = keys
    data = bytearray(sample.to_bytes())
    w = element_width(pk)
    head = len(data) - w * sample.size
    zero = bytes(data[:head]) + bytes(w) + bytes(data[head + w:])
    with pytest.raises(WireFormatError, match="element 0 .*not a ciphertext"):
        EncryptedArray.from_bytes(zero, pk)
    too_big = int(pk.nsquare).to_bytes(w, "big")
    data[head + 2 * w : head + 3 * w] = too_big
    with pytest.raises(WireFormatError, match="element 2 .*not a ciphertext"):
        EncryptedArray.from_bytes(bytes(data), pk)


def test_wrong_element_width_is_rejected(keys, sample):
    (pk, _), _ = keys
    data = bytearray(sample.to_bytes())
    pos = 15 + 4 * sample.ndim
    data[pos : pos + 2] = struct.pack(">H", 255)
    with pytest.raises(WireFormatError, match="element width"):
        EncryptedArray.from_bytes(bytes(data), pk)


def test_absurd_element_counts_are_rejected_before_allocating(keys):
    (pk, _), _ = keys
    head = b"VPA1" + pk.fingerprint + struct.pack(">hB", 0, 2) + struct.pack(">II", 1 << 20, 1 << 20)
    with pytest.raises(WireFormatError, match="more than allowed"):
        EncryptedArray.from_bytes(head + struct.pack(">H", element_width(pk)), pk)


def test_packed_arrays_round_trip_and_reject_tampering(keys):
    (pk, sk), (other, _) = keys
    vals = np.random.default_rng(0).random((5, 7))
    packed = encrypt_packed(pk, vals, precision=20, headroom_bits=10)
    data = packed.to_bytes()
    back = load_ciphertexts(data, pk)
    assert type(back) is type(packed) and back.shape == (5, 7)
    with pytest.raises(WireFormatError, match="packed ciphertext array where a plain one"):
        EncryptedArray.from_bytes(data, pk)
    assert (back.slot_bits, back.bound, back.precision) == (packed.slot_bits, packed.bound, 20)
    np.testing.assert_array_equal(sk.decrypt(back), sk.decrypt(packed))
    with pytest.raises(WireFormatError, match="foreign key"):
        load_ciphertexts(data, other)
    with pytest.raises(WireFormatError, match="truncated"):
        load_ciphertexts(data[:-5], pk)
    with pytest.raises(WireFormatError, match="trailing"):
        load_ciphertexts(data + b"\0", pk)
    forged = bytearray(data)
    forged[14:16] = struct.pack(">H", 2000)  # slots wider than the key
    with pytest.raises(WireFormatError, match="do not fit"):
        load_ciphertexts(bytes(forged), pk)
    forged = bytearray(data)
    forged[14:16] = struct.pack(">H", 8)  # a bound that the slots cannot hold
    with pytest.raises(WireFormatError):
        load_ciphertexts(bytes(forged), pk)
