"""Binning, WoE/IV and the vfl-level protocol steps (FATE 1.x conventions; no network)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vfl.binning import (
    BinIndicators,
    WoeStandardizer,
    assign_bins,
    bin_indicators,
    bin_label_counts,
    bucket_split_points,
    guest_decrypt_event_counts,
    guest_encrypt_labels,
    guest_woe_iv_from_counts,
    host_bin_features,
    host_encrypted_bin_sums,
    host_pack_bin_sums,
    interval_labels,
    packing_layout,
    plaintext_binning,
    preprocessing_from_json,
    quantile_split_points,
    split_points,
    woe_iv,
    woe_transform,
)
from vfl.errors import DataError


def test_quantile_split_point_k_is_the_ceil_k_n_over_b_th_smallest_value():
    x = np.random.default_rng(0).permutation(np.arange(1.0, 11.0))  # 1..10
    # ranks ceil(k*10/4) = 3, 5, 8, 10 -> values 3, 5, 8, 10 (no interpolation)
    assert quantile_split_points(x, 4).tolist() == [3.0, 5.0, 8.0, 10.0]
    # ranks ceil(k*10/3) = 4, 7, 10
    assert quantile_split_points(x, 3).tolist() == [4.0, 7.0, 10.0]


def test_repeated_split_points_are_merged():
    x = np.array([0.0] * 8 + [1.0, 2.0])
    assert quantile_split_points(x, 5).tolist() == [0.0, 2.0]  # ranks 2,4,6,8,10 -> 0,0,0,0,2
    assert len(np.unique(assign_bins(x, quantile_split_points(x, 5)))) == 2


def test_bins_are_right_closed_and_new_values_beyond_the_ends_fall_into_the_end_bins():
    pts = np.array([1.0, 2.0, 3.0])
    assert assign_bins(np.array([-5.0, 1.0, 1.0000001, 2.0, 2.5, 3.0, 99.0]), pts).tolist() == [0, 0, 1, 1, 2, 2, 2]


def test_bucket_split_points_have_equal_width_and_end_at_the_maximum():
    x = np.array([0.0, 1.0, 3.0, 7.0, 10.0])
    assert bucket_split_points(x, 5).tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert split_points(x, 5, "bucket").tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_interval_labels_open_the_first_and_last_bins():
    assert interval_labels(np.array([1.0, 2.5, 4.0])) == ["(-inf, 1.0]", "(1.0, 2.5]", "(2.5, +inf)"]
    assert interval_labels(np.array([7.0])) == ["(-inf, +inf)"]


def test_woe_is_ln_non_event_share_over_event_share_with_event_label_one():
    ev, ne = np.array([30, 10]), np.array([10, 30])  # bin 0 holds mostly events (label 1)
    t = woe_iv(ev, ne)
    assert t.woe[0] == pytest.approx(math.log((10 / 40) / (30 / 40)))
    assert t.woe[0] < 0 < t.woe[1]
    assert t.iv == pytest.approx(sum((n / 40 - e / 40) * math.log((n / 40) / (e / 40)) for e, n in [(30, 10), (10, 30)]))


def test_half_is_added_to_both_counts_only_in_bins_with_a_zero_count():
    ev, ne = np.array([5, 0, 3]), np.array([2, 4, 0])
    t = woe_iv(ev, ne)
    E, N = 8, 6  # totals are not adjusted
    expect = [(5 / E, 2 / N), (0.5 / E, 4.5 / N), (3.5 / E, 0.5 / N)]
    for b, (er, nr) in enumerate(expect):
        assert t.event_rate[b] == er and t.non_event_rate[b] == nr
        assert t.woe[b] == math.log(nr / er)
    assert t.event_count.tolist() == [5, 0, 3]  # counts are reported unadjusted


def test_constant_feature_is_reported_with_one_bin_and_zero_iv():
    X = np.column_stack([np.full(20, 3.5), np.arange(20.0)])
    y = np.array([0, 1] * 10)
    const, other = plaintext_binning(X, y, ["c", "x"], bins=4)
    assert const.constant and const.n_bins == 1 and const.iv == 0.0
    assert const.table.woe.tolist() == [0.0]
    assert not other.constant and other.n_bins == 4


def test_single_class_labels_are_refused_with_a_clear_message():
    X = np.arange(10.0).reshape(-1, 1)
    with pytest.raises(DataError, match="all labels are 1; need both classes"):
        plaintext_binning(X, np.ones(10, dtype=np.int8), ["x"], bins=2)
    with pytest.raises(DataError, match="all labels are 0"):
        woe_iv(np.array([0, 0]), np.array([3, 4]))


def test_more_bins_than_rows_is_refused_naming_the_setting():
    with pytest.raises(DataError, match=r"\[binning\] bins = 12 is more than the 5 rows"):
        quantile_split_points(np.arange(5.0), 12)
    with pytest.raises(DataError, match="must be >= 2"):
        quantile_split_points(np.arange(5.0), 1)
    with pytest.raises(DataError, match="method must be"):
        split_points(np.arange(5.0), 2, "kmeans")


def test_plaintext_counts_match_a_direct_count():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=200), rng.integers(0, 2, 200)
    pts = quantile_split_points(x, 7)
    idx = assign_bins(x, pts)
    ev, ne = bin_label_counts(idx, y, len(pts))
    for b in range(len(pts)):
        inside = (x <= pts[b]) & ((x > pts[b - 1]) if b else True)
        assert ev[b] == int(np.sum(y[inside] == 1)) and ne[b] == int(np.sum(y[inside] == 0))


def test_encrypted_bin_sums_decrypt_to_the_plaintext_event_counts(keys_1024):
    (gpk, gsk), _ = keys_1024
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(150, 3)), rng.integers(0, 2, 150).astype(np.int8)
    X[:, 2] = np.round(X[:, 2])  # ties: fewer bins than asked for
    host = host_bin_features(X, ["a", "b", "c"], bins=6)
    enc = guest_encrypt_labels(y, gpk)
    # partial sums over two chunks of rows add up to the full sums
    first = host_encrypted_bin_sums(enc[:90], host.index[:90], host.width, rerandomize=False)
    second = host_encrypted_bin_sums(enc[90:], host.index[90:], host.width, rerandomize=False)
    packed = host_pack_bin_sums(first + second, max_count=150)
    counts = guest_decrypt_event_counts(gsk, packed, max_count=150)
    tables = guest_woe_iv_from_counts(counts, host.bin_sizes, host.n_bins, 150)
    ref = plaintext_binning(X, y, ["a", "b", "c"], bins=6)
    for t, r in zip(tables, ref, strict=True):
        assert t.event_count.tolist() == r.table.event_count.tolist()
        assert t.non_event_count.tolist() == r.table.non_event_count.tolist()
        np.testing.assert_allclose(t.woe, r.table.woe, rtol=0, atol=1e-12)
        assert abs(t.iv - r.iv) <= 1e-12


def test_returned_bin_sums_are_rerandomized(keys_1024):
    (gpk, _), _ = keys_1024
    enc = guest_encrypt_labels(np.array([0, 1, 1, 0]), gpk)
    index = np.array([[0], [0], [1], [1]])
    raw = host_encrypted_bin_sums(enc, index, 2, rerandomize=False)
    fresh = host_encrypted_bin_sums(enc, index, 2)
    assert all(a != b for a, b in zip(raw.cipher.ravel(), fresh.cipher.ravel(), strict=True))


def test_packing_puts_many_counts_in_one_ciphertext_and_unpacks_them_exactly(keys_1024):
    (gpk, gsk), _ = keys_1024
    assert packing_layout(1024, 569) == (11, 92)  # signed slots of vfl.paillier.packing
    counts = np.random.default_rng(2).integers(0, 570, size=(20, 11))
    counts[0, :3] = [0, 569, 1]  # the extremes of a slot
    packed = host_pack_bin_sums(gpk.encrypt(counts), max_count=569)
    assert packed.cipher.shape == (3,) and (packed.slot_bits, packed.slots) == (11, 92)  # 220 counts
    assert np.array_equal(guest_decrypt_event_counts(gsk, packed, max_count=569), counts)
    with pytest.raises(DataError, match="malformed packed counts"):
        guest_decrypt_event_counts(gsk, packed, max_count=5000)  # slots too narrow for 5000 rows


def test_guest_refuses_inconsistent_host_counts():
    sizes, nb = np.array([[3, 2]]), np.array([2])
    with pytest.raises(DataError, match="inconsistent with 6 rows"):
        guest_woe_iv_from_counts(np.array([[1, 1]]), sizes, nb, 6)
    with pytest.raises(DataError, match="inconsistent"):
        guest_woe_iv_from_counts(np.array([[4, 0]]), sizes, nb, 5)  # more events than rows in a bin
    with pytest.raises(DataError, match="does not match its bin sizes"):
        guest_woe_iv_from_counts(np.array([[1, 1]]), sizes, np.array([1]), 5)


def test_woe_transform_maps_values_to_the_woe_of_their_bin():
    out = woe_transform(np.array([-1.0, 1.0, 1.5, 2.0, 9.0]), np.array([1.0, 2.0]), np.array([0.3, -0.7]))
    assert out.tolist() == [0.3, 0.3, -0.7, -0.7, -0.7]


def test_woe_standardizer_gives_zero_mean_unit_variance_and_round_trips_json():
    rng = np.random.default_rng(11)
    X, y = rng.normal(size=(300, 2)), rng.integers(0, 2, 300)
    fb = plaintext_binning(X, y, ["a", "b"], bins=5)
    st = WoeStandardizer.fit(X, ["a", "b"], [f.split_points for f in fb], [f.table.woe for f in fb])
    Z = st.transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, atol=1e-12)
    again = WoeStandardizer.from_json(st.to_json())
    assert np.array_equal(again.transform(X), Z)
    with pytest.raises(DataError, match="malformed WoE preprocessing"):
        WoeStandardizer.from_json({"kind": "woe+standardize", "features": ["a"]})


def test_bin_indicators_put_one_1_per_row_in_its_right_closed_bin():
    out = bin_indicators(np.array([-1.0, 1.0, 1.5, 2.0, 9.0]), np.array([1.0, 2.0, 3.0]))
    assert out.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]  # 9 > last split: last bin


def test_bin_indicators_name_one_column_per_bin_and_round_trip_json():
    X = np.array([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0]])
    bi = BinIndicators.fit(["a", "b"], [np.array([0.5, 2.0]), np.array([5.0, 6.0, 7.0])])
    assert bi.columns == ["a[bin0]", "a[bin1]", "b[bin0]", "b[bin1]", "b[bin2]"]
    Z = bi.transform(X)
    assert Z.shape == (3, 5) and Z.sum(axis=1).tolist() == [2, 2, 2]
    again = preprocessing_from_json(bi.to_json())
    assert isinstance(again, BinIndicators) and np.array_equal(again.transform(X), Z)
    with pytest.raises(DataError, match="malformed bin-indicator preprocessing"):
        preprocessing_from_json({"kind": "bin-indicators", "features": ["a"], "split_points": []})
    with pytest.raises(DataError, match="bin indicators of 2 features got a matrix of shape"):
        bi.transform(np.zeros((3, 1)))


def test_bin_indicator_weights_contain_the_standardized_woe_model():
    """A weight per bin can express any a * standardized WoE + c: the host's model class contains the WoE one."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(400, 3)), rng.integers(0, 2, 400)
    fb = plaintext_binning(X, y, ["a", "b", "c"], bins=6)
    pts, woe = [f.split_points for f in fb], [f.table.woe for f in fb]
    st = WoeStandardizer.fit(X, ["a", "b", "c"], pts, woe)
    ind = BinIndicators.fit(["a", "b", "c"], pts).transform(X)
    a = np.array([0.7, -1.3, 2.0])
    per_bin = np.concatenate([a[j] * (woe[j] - st.mean[j]) / st.std[j] for j in range(3)])
    np.testing.assert_allclose(ind @ per_bin, st.transform(X) @ a, rtol=0, atol=1e-12)


def test_raw_bin_indicators_have_lambda_max_at_most_the_number_of_features(breast):
    _, host = breast
    fb = plaintext_binning(host.X, breast[0].y, host.features, bins=10)
    Z = BinIndicators.fit(host.features, [f.split_points for f in fb]).transform(host.X)
    assert np.linalg.eigvalsh(Z.T @ Z / len(Z)).max() <= len(host.features) + 1e-9


def test_standardized_woe_keeps_taylor_lr_stable_where_raw_woe_diverges(breast):
    """Plain GD on the quadratic Taylor loss diverges when lr*(0.25*lambda_max(X'X/n) + alpha) >= 2."""
    guest, host = breast
    X = np.hstack([guest.X, host.X])
    names = [f"f{j}" for j in range(X.shape[1])]
    fb = plaintext_binning(X, guest.y, names, bins=10)
    pts, woe = [f.split_points for f in fb], [f.table.woe for f in fb]
    raw = np.column_stack([woe_transform(X[:, j], pts[j], woe[j]) for j in range(X.shape[1])])
    std = WoeStandardizer.fit(X, names, pts, woe).transform(X)
    lr, alpha = 0.15, 0.01

    def step_factor(A: np.ndarray) -> float:
        A1 = np.column_stack([np.ones(len(A)), A])  # the intercept is a column of ones
        return lr * (0.25 * np.linalg.eigvalsh(A1.T @ A1 / len(A1)).max() + alpha)

    assert step_factor(raw) >= 2.0
    assert step_factor(std) < 1.0
