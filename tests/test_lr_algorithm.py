"""vfl.lr without the network: protocol steps on real ciphertexts, the schedule, the reference, metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from vfl.errors import DataError, PaillierError, TrainingError
from vfl.lr import LrOptions, fit_reference
from vfl.lr.model import LrPartModel, Scaling, sigmoid
from vfl.lr.protocol import (
    COLUMN_BOUND,
    MATRIX_PRECISION_BITS,
    check_packed_gradient,
    decrypt_masked,
    guest_gradient_masked,
    guest_loss_masked,
    guest_residual_offsets_encrypted,
    guest_residuals_encrypted,
    host_gradient_masked,
    host_partial_scores_encrypted,
    unmask_values,
)
from vfl.lr.schedule import (
    TrainingMonitor,
    check_batch_privacy,
    epoch_batches,
    learning_rate,
    update_weights,
    validation_rows,
)
from vfl.lr.taylor import residuals, sample_losses, signed_labels
from vfl.metrics import auc, binary_metrics, ks
from vfl.paillier import PackedEncryptedArray


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(3)
    m = 40
    Xg = np.hstack([rng.normal(size=(m, 3)), np.ones((m, 1))])
    Xh = rng.normal(size=(m, 4)) * 3
    y = (rng.random(m) < 0.5).astype(np.int8)
    wg, wh = rng.normal(size=4) * 0.3, rng.normal(size=4) * 0.3
    return Xg, Xh, y, wg, wh


def test_one_encrypted_batch_gives_both_parties_their_plaintext_gradients_and_the_loss(keys_1024, batch):
    (gpk, gsk), (hpk, hsk) = keys_1024
    Xg, Xh, y, wg, wh = batch
    y_pm = signed_labels(y)
    m = len(y)
    u_g = Xg @ wg
    scores = host_partial_scores_encrypted(hpk, Xh, wh, penalty_sum=1.25)
    enc_d = guest_residuals_encrypted(scores.scores, u_g, y_pm)
    grad_g = guest_gradient_masked(enc_d, Xg)
    loss = guest_loss_masked(scores.scores, u_g, y_pm, scores.loss_share, guest_penalty_sum=0.5)
    offsets = guest_residual_offsets_encrypted(gpk, u_g, y_pm)
    grad_h = host_gradient_masked(offsets, Xh @ wh, Xh)

    d = residuals(u_g + Xh @ wh, y_pm)
    # the columns are rounded to MATRIX_PRECISION_BITS fractional bits: each entry is within
    # m * 2^-(bits + 1) * max|d| of X^T d (and exactly the product of the rounded columns)
    tol = m * 2.0 ** -(MATRIX_PRECISION_BITS + 1) * np.abs(d).max() + 1e-9
    got_g = unmask_values(decrypt_masked(hsk, grad_g.enc), grad_g)
    got_h = unmask_values(decrypt_masked(gsk, grad_h.enc), grad_h)
    np.testing.assert_allclose(got_g, Xg.T @ d, rtol=0, atol=tol)
    np.testing.assert_allclose(got_h, Xh.T @ d, rtol=0, atol=tol)
    q = 2.0 ** MATRIX_PRECISION_BITS
    np.testing.assert_allclose(got_g, (np.rint(Xg * q) / q).T @ d, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_h, (np.rint(Xh * q) / q).T @ d, rtol=0, atol=1e-9)
    expected = np.sum(sample_losses(u_g + Xh @ wh, y_pm)) + 1.25 + 0.5
    assert unmask_values(decrypt_masked(hsk, loss.enc), loss)[0] == pytest.approx(expected, abs=1e-9)
    assert offsets.shape == (m,) and grad_h.enc.public_key == gpk


def test_masked_values_decrypt_to_masked_residues_not_to_the_values(keys_1024, batch):
    (gpk, gsk), (hpk, hsk) = keys_1024
    Xg, Xh, y, wg, wh = batch
    scores = host_partial_scores_encrypted(hpk, Xh, wh)
    enc_d = guest_residuals_encrypted(scores.scores, Xg @ wg, signed_labels(y))
    offsets = guest_residual_offsets_encrypted(gpk, Xg @ wg, signed_labels(y))
    packed_g = guest_gradient_masked(enc_d, Xg, packed=True)
    assert packed_g.enc.cipher.size == 1  # 4 gradients in one ciphertext
    for residues, n, floor in ((decrypt_masked(gsk, host_gradient_masked(offsets, Xh @ wh, Xh).enc), gpk.n, 150),
                               (decrypt_masked(hsk, packed_g.enc), hpk.n, 150),
                               (decrypt_masked(hsk, guest_gradient_masked(enc_d, Xg).enc), hpk.n, hpk.n.bit_length() - 64)):
        # unmasked, X^T d at 74 fractional bits is below 2^82; packed slot masks have 80 bits more
        # than the public bound (over 2^90: below 2^150 with probability < 2^-20), unpacked ones uniform mod n
        small = [r for r in residues if min(r, n - r) < 1 << floor]
        assert not small


def test_packed_gradients_declare_the_public_layout_and_refuse_columns_beyond_the_bound(keys_1024, batch):
    (gpk, _), (hpk, _) = keys_1024
    Xg, Xh, y, wg, wh = batch
    m = len(y)
    scores = host_partial_scores_encrypted(hpk, Xh, wh)
    enc_d = guest_residuals_encrypted(scores.scores, Xg @ wg, signed_labels(y))
    grad = guest_gradient_masked(enc_d, Xg, packed=True).enc
    assert check_packed_gradient(grad, 4, hpk, m, 48) is grad
    big = guest_gradient_masked(enc_d, Xg * 1000.0, packed=True).enc  # other values, same public layout
    assert (big.slot_bits, big.bound) == (grad.slot_bits, grad.bound)
    with pytest.raises(PaillierError, match="expected"):
        check_packed_gradient(grad, 4, hpk, m, 40)  # another precision: another layout
    with pytest.raises(PaillierError, match="expected"):
        check_packed_gradient(grad, 5, hpk, m, 48)
    with pytest.raises(PaillierError, match="unpacked"):
        check_packed_gradient(guest_gradient_masked(enc_d, Xg).enc, 4, hpk, m, 48)
    with pytest.raises(PaillierError, match="cannot be packed"):
        guest_gradient_masked(enc_d, Xg * COLUMN_BOUND * 2, packed=True)
    offsets = guest_residual_offsets_encrypted(gpk, Xg @ wg, signed_labels(y))
    assert not isinstance(host_gradient_masked(offsets, Xh @ wh, Xh * COLUMN_BOUND * 2, packed=False).enc,
                          PackedEncryptedArray)


def test_the_guest_cannot_decrypt_the_host_partial_scores(keys_1024, batch):
    (_, gsk), (hpk, _) = keys_1024
    _, Xh, _, _, wh = batch
    enc = host_partial_scores_encrypted(hpk, Xh, wh).scores
    with pytest.raises(Exception, match="different public key"):
        gsk.decrypt(enc)


def test_batches_cover_every_training_row_once_and_repeat_with_the_seed():
    bs = epoch_batches(103, 20, seed=7, epoch=2)
    assert len(bs) == 5 and min(len(b) for b in bs) >= 20
    assert sorted(np.concatenate(bs).tolist()) == list(range(103))
    again = epoch_batches(103, 20, seed=7, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(bs, again, strict=True))
    assert not np.array_equal(np.concatenate(bs), np.concatenate(epoch_batches(103, 20, seed=7, epoch=3)))
    assert [len(b) for b in epoch_batches(50, 0, 1, 0)] == [50]


def test_validation_split_is_reproducible_and_disjoint():
    v = validation_rows(200, 0.25, seed=5)
    assert len(v) == 50 and np.array_equal(v, validation_rows(200, 0.25, seed=5))
    assert len(validation_rows(200, 0.0, seed=5)) == 0


def test_learning_rate_decays_per_epoch():
    o = LrOptions(learning_rate=0.2, decay=0.5)
    assert [learning_rate(o, e) for e in range(3)] == pytest.approx([0.2, 0.2 / 1.5, 0.1])


def test_l1_step_is_a_proximal_soft_threshold_that_spares_the_intercept():
    o = LrOptions(penalty="l1", alpha=1.0)
    w = update_weights(np.array([0.3, -0.05, 0.02]), np.zeros(3), 0.1, o, np.array([True, True, False]))
    np.testing.assert_allclose(w, [0.2, 0.0, 0.02])


def test_l2_step_adds_alpha_times_weights_to_the_gradient():
    o = LrOptions(penalty="l2", alpha=0.5)
    w = update_weights(np.array([1.0, 2.0]), np.array([0.1, 0.1]), 0.1, o, np.array([True, False]))
    np.testing.assert_allclose(w, [1.0 - 0.1 * (0.1 + 0.5), 2.0 - 0.01])


def test_batches_smaller_than_the_peer_column_count_are_refused():
    with pytest.raises(TrainingError, match="batch_size 8 is too small for privacy.*host has 20 columns"):
        check_batch_privacy(455, 8, 20, "host")
    check_batch_privacy(455, 21, 20, "host")


def test_monitor_reports_divergence_with_what_to_change():
    mon = TrainingMonitor(LrOptions(learning_rate=0.7), has_validation=False, n_columns=31)
    mon.check_batch(0.69, 0, 0)
    with pytest.raises(TrainingError, match="diverged at epoch 3, batch 1: .*learning_rate 0.7 is too large.*"
                                            "use learning_rate < 0.232 \\(stable for any 31 standardized columns\\)"):
        mon.check_batch(50.0, 2, 0)


def test_reference_refuses_a_learning_rate_unstable_for_one_party_columns(breast):
    g, h = breast
    with pytest.raises(TrainingError, match="learning_rate 1 is unstable for the host's columns.*use learning_rate < 0.232"):
        fit_reference(g.X, h.X, g.y, LrOptions(learning_rate=1.0))
    fit = fit_reference(g.X, h.X, g.y, LrOptions(learning_rate=0.232, epochs=30, tol=0))  # the advice works
    assert fit.losses[-1] < fit.losses[0]


def test_raw_features_get_the_advice_to_standardize(breast):
    g, h = breast
    with pytest.raises(TrainingError, match="unstable for the host's columns.*standardize the features"):
        fit_reference(g.X, h.X * 3, g.y, LrOptions(standardize=False))


def test_reference_detects_divergence_that_no_single_party_can_see():
    # Each party's column alone is stable at lr 6; together (x_h ~ x_g) lambda_max doubles.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 1))
    y = (x[:, 0] + rng.normal(size=60) > 0).astype(np.int8)
    with pytest.raises(TrainingError, match="training diverged at epoch"):
        fit_reference(x, x + 0.01 * rng.normal(size=(60, 1)), y, LrOptions(learning_rate=6.0, epochs=30, validation=0))


def test_reference_refuses_labels_of_one_class(breast):
    g, h = breast
    with pytest.raises(DataError, match="all labels are 1"):
        fit_reference(g.X, h.X, np.ones_like(g.y), LrOptions())


def test_reference_with_early_stopping_keeps_the_best_validation_epoch(breast):
    g, h = breast
    fit = fit_reference(g.X, h.X, g.y, LrOptions(epochs=40, batch_size=64, early_stopping=2, tol=0))
    assert fit.stop_reason == "early_stopping"
    assert fit.best_epoch == int(np.argmin(fit.validation_losses))
    assert fit.epochs_run == fit.best_epoch + 3


def test_model_json_round_trip_keeps_scoring():
    m = LrPartModel("guest", ["a", "b"], np.array([0.5, -1.0]), 0.25, Scaling(np.array([1.0, 2.0]), np.array([2.0, 4.0])))
    back = LrPartModel.from_json(m.to_json())
    X = np.array([[3.0, 6.0], [1.0, 2.0]])
    np.testing.assert_allclose(back.partial_scores(X), m.partial_scores(X))
    np.testing.assert_allclose(m.partial_scores(X), [0.5 - 1.0 + 0.25, 0.25])


def test_sigmoid_is_stable_for_large_scores():
    np.testing.assert_allclose(sigmoid(np.array([-800.0, 0.0, 800.0])), [0.0, 0.5, 1.0])


def test_metrics_match_scikit_learn_including_ties():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.4).astype(int)
    p = np.round(rng.random(300) * 0.5 + 0.4 * y, 2)  # many ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, p)
    assert ks(y, p) == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    m = binary_metrics(y, p)
    pred = p >= 0.5
    assert m["accuracy"] == pytest.approx(np.mean(pred == y))
    assert m["recall"] == pytest.approx(np.sum(pred & (y == 1)) / np.sum(y == 1))
    assert m["n"] == 300 and m["positives"] == int(y.sum())


def test_partial_scores_beyond_the_score_bound_are_refused(keys_1024):
    (gpk, _), (hpk, _) = keys_1024
    X = np.ones((3, 2))
    with pytest.raises(TrainingError, match="host's partial scores exceed"):
        host_partial_scores_encrypted(hpk, X, np.array([2.0**20, 1.0]))
    with pytest.raises(TrainingError, match="guest's partial scores exceed"):
        guest_residual_offsets_encrypted(gpk, np.array([0.0, -(2.0**21), 1.0]), np.ones(3))
