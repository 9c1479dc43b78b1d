"""Packing many fixed-point values per plaintext: exact slotwise sums, and overflow refused."""

from __future__ import annotations

import numpy as np
import pytest

from vfl.errors import PaillierError
from vfl.paillier import (
    EncryptedArray,
    PackedEncryptedArray,
    decrypt_masked_residues,
    decrypt_slots,
    encrypt_packed,
    generate_keypair,
    pack,
    unmask_slots,
)
from vfl.paillier.packing import MASK_HEADROOM_BITS, slot_bits_for, slots_for


@pytest.fixture(scope="module")
def pair():
    return generate_keypair(1024)


def q(x, bits):
    return np.ldexp(np.rint(np.ldexp(np.asarray(x, dtype=float), bits)), -bits)


def test_layout_fills_the_plaintext_and_leaves_two_bits(pair):
    pk, _ = pair
    assert slots_for(pk, 64) == (pk.bits - 2) // 64
    assert slot_bits_for(2**24, headroom_bits=20) == 25 + 20 + 1
    with pytest.raises(PaillierError, match="does not fit"):
        slots_for(pk, 2000)


def test_packed_values_round_trip_signed(pair):
    pk, sk = pair
    rng = np.random.default_rng(0)
    vals = rng.normal(size=(7, 40)) * 100
    vals[0, :5] = [0.0, -0.0, 1e-6, -1e-6, 99.5]
    packed = encrypt_packed(pk, vals, precision=20, headroom_bits=0)
    assert isinstance(packed, PackedEncryptedArray) and packed.shape == (7, 40)
    assert packed.cipher.shape == (7, -(-40 // packed.slots))
    np.testing.assert_array_equal(sk.decrypt(packed), q(vals, 20))
    flat = encrypt_packed(pk, vals[0], precision=20)
    np.testing.assert_array_equal(sk.decrypt(flat), q(vals[0], 20))


def test_slotwise_arithmetic_matches_plaintext(pair):
    pk, sk = pair
    rng = np.random.default_rng(1)
    G = rng.random((60, 5))
    P = encrypt_packed(pk, G, precision=24, headroom_bits=60)
    Gq = q(G, 24)
    np.testing.assert_array_equal(sk.decrypt(P + P), 2 * Gq)
    np.testing.assert_array_equal(sk.decrypt(P - G), np.zeros_like(G))
    np.testing.assert_array_equal(sk.decrypt(-P), -Gq)
    k = rng.integers(-9, 10, size=60)
    np.testing.assert_array_equal(sk.decrypt(P.mul(k)), Gq * k[:, None])
    np.testing.assert_array_equal(sk.decrypt(P * 3), Gq * 3)
    np.testing.assert_allclose(sk.decrypt(P.sum()), Gq.sum(axis=0), rtol=1e-15)
    groups = rng.integers(0, 4, size=60)
    want = np.array([Gq[groups == b].sum(axis=0) for b in range(4)])
    np.testing.assert_allclose(sk.decrypt(P.group_sum(groups, 4)), want, rtol=1e-15)
    np.testing.assert_array_equal(sk.decrypt(P.rerandomize()), Gq)


def test_matrix_times_packed_rows_gives_all_statistics_at_once(pair):
    """EM: X^T Gamma with each row's K responsibilities in one ciphertext."""
    pk, sk = pair
    rng = np.random.default_rng(2)
    N, K, F = 90, 4, 6
    gamma = rng.dirichlet(np.ones(K), size=N)
    X = rng.normal(size=(N, F)) * 4
    packed = encrypt_packed(pk, gamma, precision=24, headroom_bits=24 + 3 + 7 + 2)
    stats = packed.rmatmul(X.T, precision=24)
    assert stats.shape == (F, K) and stats.cipher.size == F * -(-K // packed.slots)
    np.testing.assert_allclose(sk.decrypt(stats), q(X, 24).T @ q(gamma, 24), rtol=1e-13)
    np.testing.assert_allclose(sk.decrypt(packed.rmatmul((X**2).T, precision=8)),
                               q(X**2, 8).T @ q(gamma, 24), rtol=1e-13)


def test_packing_ciphertexts_before_decryption(pair):
    """Binning: F*B per-bin event counts compressed into a few ciphertexts."""
    pk, sk = pair
    rng = np.random.default_rng(3)
    n, F, B = 300, 8, 10
    y = rng.integers(0, 2, size=n)
    bins = rng.integers(0, B, size=(n, F))
    sums = pk.encrypt(y).group_sum(bins, B)
    packed = pack(sums.reshape(-1), bound=n)
    assert packed.cipher.size == -(-F * B // packed.slots) and packed.cipher.size < F * B / 10
    want = np.array([[y[bins[:, j] == b].sum() for b in range(B)] for j in range(F)])
    np.testing.assert_array_equal(sk.decrypt(packed).reshape(F, B), want)
    by_row = pack(sums, bound=n)
    assert by_row.shape == (F, B)
    np.testing.assert_array_equal(sk.decrypt(by_row), want)
    signed = pk.encrypt(rng.normal(size=25) * 7, precision=16)
    np.testing.assert_array_equal(sk.decrypt(pack(signed, bound=50)), sk.decrypt(signed))


def test_slot_masks_hide_values_and_unmask_exactly(pair):
    pk, sk = pair
    rng = np.random.default_rng(4)
    vals = rng.normal(size=(3, 9))
    P = encrypt_packed(pk, vals, precision=20, headroom_bits=MASK_HEADROOM_BITS)
    masked, mask = P.masked()
    seen = decrypt_slots(sk, masked)
    ints = q(vals, 20) * 2**20
    assert all(int(s) != int(v) for s, v in zip(seen.ravel(), ints.ravel(), strict=True))
    np.testing.assert_array_equal(unmask_slots(seen, mask, masked.precision), q(vals, 20))


def test_masked_residues_of_packed_and_ordinary_arrays_unmask_to_the_values(pair):
    from vfl.paillier import random_mask, unmask

    pk, sk = pair
    vals = np.random.default_rng(5).normal(size=(2, 7))
    packed, slot_mask = encrypt_packed(pk, vals, precision=20, headroom_bits=MASK_HEADROOM_BITS).masked()
    res = decrypt_masked_residues(sk, packed)
    assert res.shape == (2, 7) and all(0 <= int(r) < pk.n for r in res.ravel())
    np.testing.assert_array_equal(unmask(res, slot_mask % pk.n, 20, pk), q(vals, 20))
    enc = pk.encrypt(vals, precision=20)
    mask = random_mask(pk, enc.shape)
    res = decrypt_masked_residues(sk, enc.add_residues(mask))
    np.testing.assert_array_equal(unmask(res, mask, 20, pk), q(vals, 20))


def test_overflow_is_refused_not_wrapped(pair):
    pk, _ = pair
    P = encrypt_packed(pk, np.full((5, 3), 1000.0), precision=8, headroom_bits=2)
    assert P.slot_bits == 21  # 1000 * 2^8 < 2^18, two bits of headroom, a sign
    with pytest.raises(PaillierError, match="more than the 21-bit slots hold"):
        P.sum()  # five rows of 256000 exceed 2^20 - 1
    with pytest.raises(PaillierError, match="pack with more headroom_bits"):
        P.mul(np.array([100, 1, 1, 1, 1]))
    with pytest.raises(PaillierError, match="headroom"):
        P.masked()
    with pytest.raises(PaillierError, match="at least 80 statistical bits"):
        encrypt_packed(pk, np.ones(3), headroom_bits=MASK_HEADROOM_BITS).masked(stat_bits=40)
    roomy = encrypt_packed(pk, np.full((5, 3), 1000.0), precision=8, headroom_bits=3)
    roomy.sum()  # one more bit of headroom suffices
    with pytest.raises(PaillierError, match="packed already"):
        pack(P, bound=1)
    with pytest.raises(PaillierError, match="different layouts"):
        P + encrypt_packed(pk, np.ones((5, 3)), precision=8, headroom_bits=30)


def test_packed_arrays_refuse_unpacked_operations(pair):
    pk, _ = pair
    P = encrypt_packed(pk, np.ones((2, 3)), precision=4, headroom_bits=4)
    with pytest.raises(PaillierError, match="cannot be reshaped"):
        P.reshape(6)
    with pytest.raises(PaillierError, match="masked per slot"):
        P.add_residues(np.zeros(2))
    with pytest.raises(PaillierError, match="unpacked"):
        P + pk.encrypt(np.ones((2, 3)))
    assert isinstance(P.ciphertexts(), EncryptedArray) and P.ciphertexts().shape == (2, 1)
