"""The Paillier vector layer: round trips, homomorphic identities, precision, overflow, interop.

1024-bit keys: none of these properties depends on the key size.
"""

from __future__ import annotations

import warnings

import gmpy2
import numpy as np
import pytest
from phe import paillier

from vfl.errors import PaillierError
from vfl.paillier import (
    DEFAULT_PRECISION_BITS,
    EncryptedArray,
    PrivateKey,
    PublicKey,
    _kernels,
    generate_keypair,
    keys,
    random_mask,
    unmask,
)


@pytest.fixture(scope="module")
def pair():
    return generate_keypair(1024)


@pytest.fixture(scope="module")
def peer_only():
    """A key pair whose private key this process does not register: the public (non-CRT) path."""
    pk, sk = paillier.generate_paillier_keypair(n_length=1024)
    return PublicKey.from_phe(pk), sk


def q(x: np.ndarray, bits: int) -> np.ndarray:
    """x on the fixed-point grid 2^-bits, as the layer encodes it."""
    return np.ldexp(np.rint(np.ldexp(np.asarray(x, dtype=np.float64), bits)), -bits)


def tricky(rng: np.random.Generator, n: int) -> np.ndarray:
    """Negatives, zeros, tiny and large magnitudes."""
    x = rng.normal(size=n) * 10.0 ** rng.integers(-6, 9, size=n)
    x[:: 7] = 0.0
    x[1] = -0.0
    x[2] = 2.0**-40
    x[3] = -(2.0**60)
    return x


def test_float_round_trip_is_exact_on_the_fixed_point_grid(pair):
    pk, sk = pair
    x = tricky(np.random.default_rng(1), 200)
    enc = pk.encrypt(x)
    assert enc.precision == DEFAULT_PRECISION_BITS
    np.testing.assert_array_equal(sk.decrypt(enc), q(x, DEFAULT_PRECISION_BITS))


def test_integer_arrays_encrypt_exactly_at_precision_zero(pair):
    pk, sk = pair
    y = np.array([[0, 1, -1], [2**40, -(2**50), 7]], dtype=np.int64)
    enc = pk.encrypt(y)
    assert enc.precision == 0 and enc.shape == (2, 3)
    np.testing.assert_array_equal(sk.decrypt(enc), y.astype(float))
    big = np.array([2**200, -(2**300)], dtype=object)
    assert [int(v) for v in sk.decrypt_raw(pk.encrypt(big))] == [2**200, pk.n - 2**300]


def test_own_key_crt_path_and_public_path_both_decrypt(pair, peer_only):
    pk, sk = pair
    assert pk.owned and not peer_only[0].owned
    x = tricky(np.random.default_rng(2), 150)
    np.testing.assert_array_equal(sk.decrypt(sk.encrypt(x)), q(x, 48))
    ppk, psk = peer_only
    enc = ppk.encrypt(x)
    got = [psk.decrypt(c) for c in enc.to_phe()]
    np.testing.assert_allclose(got, q(x, 48), rtol=1e-12, atol=1e-12)


def test_homomorphic_identities_on_random_vectors(pair):
    pk, sk = pair
    rng = np.random.default_rng(3)
    x, y = tricky(rng, 120), tricky(rng, 120)
    ex, ey = pk.encrypt(x), pk.encrypt(y)
    xq, yq = q(x, 48), q(y, 48)
    np.testing.assert_array_equal(sk.decrypt(ex + ey), xq + yq)
    np.testing.assert_array_equal(sk.decrypt(ex - ey), xq - yq)
    np.testing.assert_array_equal(sk.decrypt(-ex), -xq)
    np.testing.assert_array_equal(sk.decrypt(ex + y), xq + yq)
    np.testing.assert_array_equal(sk.decrypt(y - ex), yq - xq)
    k = rng.integers(-1000, 1000, size=120)
    k[:3] = [0, 1, -1]
    np.testing.assert_array_equal(sk.decrypt(ex * k), xq * k)
    for scalar in (0, 1, -1, 3, -7):
        np.testing.assert_array_equal(sk.decrypt(ex * scalar), xq * scalar)
    np.testing.assert_allclose(sk.decrypt(ex.sum()), xq.sum(), rtol=1e-12)


def test_float_products_track_precision(pair):
    pk, sk = pair
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=50), rng.normal(size=50)
    enc = pk.encrypt(x, precision=20)
    prod = enc.mul(w, precision=12)
    assert prod.precision == 32
    np.testing.assert_array_equal(sk.decrypt(prod), q(x, 20) * q(w, 12))
    assert (enc * w).precision == 20 + DEFAULT_PRECISION_BITS
    # adding arrays of different precision raises the lower one exactly
    s = enc + pk.encrypt(w, precision=8)
    assert s.precision == 20
    np.testing.assert_array_equal(sk.decrypt(s), q(x, 20) + q(w, 8))
    with pytest.raises(PaillierError, match="lower the precision"):
        prod.with_precision(10)


def test_matrix_times_encrypted_vector_equals_plaintext_product(pair):
    pk, sk = pair
    rng = np.random.default_rng(5)
    d = rng.normal(size=300)
    X = rng.normal(size=(300, 6)) * 3
    X[:, 0] = 0.0  # an all-zero feature
    X[::5, 1] = -X[::5, 1]
    enc = pk.encrypt(d, precision=24)
    out = enc.rmatmul(X.T, precision=16)
    assert out.shape == (6,) and out.precision == 40
    np.testing.assert_allclose(sk.decrypt(out), q(X, 16).T @ q(d, 24), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(sk.decrypt(X.T @ enc), sk.decrypt(enc.rmatmul(X.T)))
    ints = rng.integers(-(2**40), 2**40, size=(3, 300))
    exact = sk.decrypt_raw(pk.encrypt(np.arange(300)).rmatmul(ints))
    want = [int(v) % pk.n for v in ints.astype(object) @ np.arange(300).astype(object)]
    assert [int(v) for v in exact] == want


def test_few_valued_matrix_rows_take_the_per_value_path_with_identical_results(pair, monkeypatch):
    """Binned / WoE-encoded columns (few distinct values) are summed per value before
    exponentiating; the result must be the same ciphertext product as Pippenger's."""
    from vfl.paillier import array

    pk, sk = pair
    rng = np.random.default_rng(7)
    n = 400
    d = rng.normal(size=n)
    woe = rng.normal(size=10)
    X = np.stack([woe[rng.integers(0, 10, size=n)],            # 10 values: per-value path
                  rng.normal(size=n),                          # continuous: Pippenger
                  -woe[rng.integers(0, 3, size=n)],            # 3 values, negative too
                  np.zeros(n),                                 # one value, zero
                  rng.choice([-(2.0**20), 2.0**20 - 1], size=n)])  # wide values
    enc = pk.encrypt(d, precision=24)
    calls = []
    real = array.EncryptedArray._multiexp_by_value
    monkeypatch.setattr(array.EncryptedArray, "_multiexp_by_value",
                        lambda self, flat, values, codes: calls.append(len(values)) or real(self, flat, values, codes))
    fast = sk.decrypt_raw(enc.rmatmul(X, precision=16))
    assert calls == [4]  # every row but the continuous one
    monkeypatch.setattr(array, "_LOW_CARD_VALUES", 0)  # force Pippenger everywhere
    slow = sk.decrypt_raw(enc.rmatmul(X, precision=16))
    assert [int(v) for v in fast] == [int(v) for v in slow]
    np.testing.assert_allclose(sk.decrypt(enc.rmatmul(X, precision=16)), q(X, 16) @ q(d, 24), rtol=1e-12)


def test_matrix_times_encrypted_matrix_column_by_column(pair):
    pk, sk = pair
    rng = np.random.default_rng(6)
    G = rng.random((80, 3))
    X = rng.normal(size=(80, 4))
    out = pk.encrypt(G, precision=20).rmatmul(X.T, precision=20)
    assert out.shape == (4, 3)
    np.testing.assert_allclose(sk.decrypt(out), q(X, 20).T @ q(G, 20), rtol=1e-12)


def test_rmatmul_refuses_mismatched_shapes(pair):
    pk, _ = pair
    with pytest.raises(PaillierError, match="shape mismatch"):
        pk.encrypt(np.ones(4)).rmatmul(np.ones((2, 5)))


def test_group_sums_equal_per_bin_sums_whatever_the_blocking(pair):
    pk, sk = pair
    rng = np.random.default_rng(7)
    n = 400
    y = rng.integers(0, 2, size=n)
    enc = pk.encrypt(y)
    # few bins (joint cells pay off), many bins (they do not), an unused bin, one feature
    groups = np.column_stack([rng.integers(0, 3, n), rng.integers(0, 3, n), rng.integers(0, 2, n),
                              rng.integers(0, 40, n), rng.integers(0, 4, n), np.zeros(n, dtype=int)])
    got = sk.decrypt(enc.group_sum(groups, 40))
    want = np.array([[y[groups[:, j] == b].sum() for b in range(40)] for j in range(groups.shape[1])])
    np.testing.assert_array_equal(got, want)
    one = sk.decrypt(enc.group_sum(groups[:, 3], 40))
    np.testing.assert_array_equal(one, want[3])
    assert _kernels._plan_blocks(groups[:, :3].astype(np.int64), 3)[0] > 1  # the joint path ran


def test_group_sum_refuses_bad_indices(pair):
    pk, _ = pair
    enc = pk.encrypt(np.ones(5, dtype=int))
    with pytest.raises(PaillierError, match="outside"):
        enc.group_sum(np.array([0, 1, 2, 3, 4]), 4)
    with pytest.raises(PaillierError, match="do not match"):
        enc.group_sum(np.zeros(4, dtype=int), 2)


def test_sum_along_axes(pair):
    pk, sk = pair
    M = np.random.default_rng(8).normal(size=(5, 7))
    enc = pk.encrypt(M)
    Mq = q(M, 48)
    np.testing.assert_allclose(sk.decrypt(enc.sum(axis=0)), Mq.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sk.decrypt(enc.sum(axis=1)), Mq.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(sk.decrypt(enc.sum()), Mq.sum(), rtol=1e-12)


def test_rerandomize_changes_ciphertexts_not_values(pair):
    pk, sk = pair
    x = np.random.default_rng(9).normal(size=20)
    enc = pk.encrypt(x)
    for strong in (True, False):
        rr = enc.rerandomize(strong=strong)
        assert not any(a == b for a, b in zip(rr.cipher.tolist(), enc.cipher.tolist(), strict=True))
        np.testing.assert_array_equal(sk.decrypt(rr), sk.decrypt(enc))


def test_masking_hides_and_unmasking_recovers(pair):
    pk, sk = pair
    x = tricky(np.random.default_rng(10), 30)
    enc = pk.encrypt(x)
    mask = random_mask(pk, enc.shape)
    residues = sk.decrypt_raw(enc.add_residues(mask))
    assert all(0 <= int(r) < pk.n for r in residues)
    np.testing.assert_array_equal(unmask(residues, mask, enc.precision, pk), q(x, 48))


def test_small_value_decryption_falls_back_for_large_and_masked_values(pair):
    pk, sk = pair
    n = pk.n
    p_bits = min(int(sk.p), int(sk.q)).bit_length()
    limit = 1 << (p_bits - _kernels.SMALL_MARGIN_BITS)
    vals = [0, 1, n - 1, limit - 1, n - (limit - 1), limit, n - limit, n // 3, 2 * n // 3 + 1]
    vals += [int(v) for v in random_mask(pk, 20)]
    cs = pk.raw_encrypt(vals)
    assert [int(v) for v in sk.raw_decrypt(cs, small=True)] == vals
    assert [int(v) for v in sk.raw_decrypt(cs)] == vals
    # the documented exception: only someone who knows p can build a large value that the
    # p half alone mistakes for a small one; the full CRT decryption is never fooled
    crafted = int(gmpy2.mpz(min(sk.p, sk.q))) * 5 + 3
    c = pk.raw_encrypt([crafted])
    assert int(sk.raw_decrypt(c)[0]) == crafted
    assert int(sk.raw_decrypt(c, small=True)[0]) == 3


def test_overflow_is_refused_clearly(pair):
    pk, sk = pair
    with pytest.raises(PaillierError, match="too large to encode"):
        pk.encrypt(np.array([1.0, 2.0**1000]))
    with pytest.raises(PaillierError, match="NaN or infinite"):
        pk.encrypt(np.array([np.nan]))
    big = pk.encrypt(np.array([pk.max_int // 2]).astype(object), precision=0)
    with pytest.raises(PaillierError, match="overflowed"):
        sk.decrypt(big * 3)


def test_keys_shorter_than_1024_bits_are_refused():
    with pytest.raises(PaillierError, match="shorter than 1024 bits"):
        generate_keypair(512)
    with pytest.raises(PaillierError, match="shorter than 1024 bits"):
        PublicKey((1 << 511) + 1)


def test_mismatched_keys_are_refused(pair, peer_only):
    pk, sk = pair
    other = peer_only[0].encrypt(np.ones(2))
    with pytest.raises(PaillierError, match="different public key"):
        sk.decrypt(other)
    with pytest.raises(PaillierError, match="different public keys"):
        _ = pk.encrypt(np.ones(2)) + other
    with pytest.raises(PaillierError, match="does not match"):
        PrivateKey(pk, 3, 5)


def test_phe_decrypts_ours_and_we_decrypt_phe(pair):
    pk, sk = pair
    x = np.array([1.25, -3.5, 0.0, 1e6, -2.0**-20])
    phe_sk = sk.to_phe()
    ours = pk.encrypt(x)
    assert [phe_sk.decrypt(c) for c in ours.to_phe()] == pytest.approx(list(x), abs=1e-12)
    phe_pk = pk.to_phe()
    theirs = [phe_pk.encrypt(float(v), precision=2.0**-40) for v in x]
    exps = min(c.exponent for c in theirs)
    back = EncryptedArray.from_phe([c.decrease_exponent_to(exps) for c in theirs], pk)
    np.testing.assert_allclose(sk.decrypt(back), x, atol=1e-11)
    assert PrivateKey.from_phe(phe_sk).public_key == pk


def test_a_warning_is_loud_when_phe_lacks_gmpy2(monkeypatch):
    assert keys.phe_backend_problem() is None
    monkeypatch.setattr(keys.phe_util, "HAVE_GMP", False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert keys.warn_if_phe_is_slow() is False
    assert any("NOT using gmpy2" in str(w.message) and w.category is RuntimeWarning for w in seen)
