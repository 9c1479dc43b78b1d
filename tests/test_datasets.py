"""The example datasets follow FATE's two-party breast layout and make alignment a real problem."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer

from vfl.datasets import breast_split, synth_split


def test_breast_split_is_fates_layout_standardized_with_population_std(breast):
    guest, host = breast
    raw = load_breast_cancer()
    X = (raw.data - raw.data.mean(0)) / raw.data.std(0)  # numpy std is the population std
    assert guest.features == [f"x{i}" for i in range(10)]
    assert host.features == [f"x{i}" for i in range(20)]
    np.testing.assert_allclose(guest.X, X[:, 20:30], rtol=0, atol=1e-12)
    np.testing.assert_allclose(host.X, X[:, 0:20], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(guest.y, raw.target)  # 1 = benign, the event
    assert host.y is None
    assert guest.ids.tolist() == host.ids.tolist()


def test_overlap_gives_each_party_extra_ids_and_shuffled_rows():
    guest, host = breast_split(overlap=0.9, seed=3)
    g, h = set(guest.ids.tolist()), set(host.ids.tolist())
    assert len(g & h) == round(0.9 * 569)
    assert g - h and h - g
    assert len(g | h) == 569
    assert guest.ids.tolist() != sorted(guest.ids.tolist(), key=int)


def test_overlap_split_keeps_each_row_with_its_own_values():
    guest, host = breast_split(overlap=0.8, seed=1)
    full_g, full_h = breast_split()
    gi = {k: i for i, k in enumerate(full_g.ids.tolist())}
    rows = [gi[k] for k in guest.ids.tolist()]
    np.testing.assert_array_equal(guest.X, full_g.X[rows])
    np.testing.assert_array_equal(guest.y, full_g.y[rows])
    rows = [gi[k] for k in host.ids.tolist()]
    np.testing.assert_array_equal(host.X, full_h.X[rows])


def test_synthetic_split_has_requested_shape_and_both_classes():
    guest, host = synth_split(1000, 3, 7, seed=5)
    assert guest.X.shape == (1000, 3) and host.X.shape == (1000, 7)
    assert set(np.unique(guest.y)) == {0, 1}
    np.testing.assert_allclose(host.X.std(0), 1.0, atol=1e-12)
