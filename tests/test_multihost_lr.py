"""Vertical LR with a guest and 1..3 hosts: the protocol's steps with real Paillier (1024-bit keys)
give the plaintext reference's weights on the joined data, label noise replayed per host."""

from __future__ import annotations

import numpy as np
import pytest

from vfl.datasets import breast_split_hosts
from vfl.errors import PaillierError
from vfl.lr import LrOptions, fit_reference
from vfl.lr.multihost import (
    centered,
    check_gradient_share,
    draw_pair_masks,
    fit_in_process,
    guest_batch_loss,
    guest_gradient_from_shares,
    guest_gradient_share_masked,
    guest_host_gradient_residues,
    guest_host_residuals_encrypted,
    guest_loss_part_masked,
    host_add_gradient_share,
    host_cross_gradient_masked,
    host_gradient_share_masks,
    host_pair_loss_encrypted,
    host_partial_scores_masked,
    host_unmask_gradient,
    loss_part_integer,
    loss_precision,
    next_host,
)
from vfl.lr.protocol import check_packed_gradient, decrypt_masked, host_gradient_masked
from vfl.lr.reference import fit_reference_hosts
from vfl.paillier import DEFAULT_PRECISION_BITS, generate_keypair

ROWS = 120
OPTS = LrOptions(epochs=3, learning_rate=0.15, validation=0.2, label_noise=1.0, seed=7, tol=0.0)


@pytest.fixture(scope="module")
def host_keys(keys_1024):
    """Three distinct 1024-bit key pairs, one per host, none the guest's (keys_1024's first)."""
    keys = [keys_1024[1], generate_keypair(1024), generate_keypair(1024)]
    assert len({pk.n for pk, _ in keys} | {keys_1024[0][0].n}) == 4
    return keys


def _data(n_hosts: int):
    guest, hosts = breast_split_hosts(n_hosts)
    rows = np.random.default_rng(0).permutation(guest.n_rows)[:ROWS]
    return guest.X[rows], [h.X[rows] for h in hosts], guest.y[rows]


@pytest.mark.parametrize("n_hosts", [1, 2, 3])
def test_weights_equal_the_reference_on_the_joined_data(n_hosts, keys_1024, host_keys):
    X_g, X_hs, y = _data(n_hosts)
    fit = fit_in_process(X_g, X_hs, y, OPTS, keys_1024[0], host_keys[:n_hosts])
    ref = fit_reference_hosts(X_g, X_hs, y, OPTS, host_noise=fit.host_noise)
    assert fit.epochs_run == ref.epochs_run == 3
    np.testing.assert_allclose(fit.guest.weights, ref.guest.weights, atol=1e-6, rtol=0)
    assert fit.guest.intercept == pytest.approx(ref.guest.intercept, abs=1e-6)
    for got, want in zip(fit.hosts, ref.hosts, strict=True):
        np.testing.assert_allclose(got.weights, want.weights, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fit.losses, ref.losses, atol=1e-8, rtol=0)
    np.testing.assert_allclose(fit.validation_losses, ref.validation_losses, atol=1e-8, rtol=0)
    assert all(len(nz) == 3 and np.any(nz[0] != 0) for nz in fit.host_noise)  # noise on every host's gradient
    # without replaying the noise the reference would differ: the replay is what makes them equal
    plain = fit_reference_hosts(X_g, X_hs, y, OPTS)
    assert np.max(np.abs(plain.hosts[0].weights - fit.hosts[0].weights)) > 1e-4


def test_mini_batches_l1_and_early_stopping_with_two_hosts_equal_the_reference(keys_1024, host_keys):
    X_g, X_hs, y = _data(2)
    opts = LrOptions(epochs=3, batch_size=40, learning_rate=0.1, penalty="l1", alpha=0.02, validation=0.2,
                     early_stopping=1, label_noise=2.0, seed=3, tol=0.0)
    fit = fit_in_process(X_g, X_hs, y, opts, keys_1024[0], host_keys[:2])
    ref = fit_reference_hosts(X_g, X_hs, y, opts, host_noise=fit.host_noise)
    assert len(fit.host_noise[0]) == fit.epochs_run * 2  # two batches per epoch, noise on each
    assert fit.epochs_run == ref.epochs_run and fit.stop_reason == ref.stop_reason
    np.testing.assert_allclose(fit.guest.weights, ref.guest.weights, atol=1e-6, rtol=0)
    for got, want in zip(fit.hosts, ref.hosts, strict=True):
        np.testing.assert_allclose(got.weights, want.weights, atol=1e-6, rtol=0)


def test_with_one_host_the_reference_is_the_two_party_reference():
    X_g, X_hs, y = _data(1)
    noise = [np.random.default_rng(e).normal(size=20) for e in range(3)]
    a = fit_reference(X_g, X_hs[0], y, OPTS, host_noise=noise)
    b = fit_reference_hosts(X_g, X_hs, y, OPTS, host_noise=[noise])
    np.testing.assert_array_equal(a.guest.weights, b.guest.weights)
    np.testing.assert_array_equal(a.host.weights, b.hosts[0].weights)
    assert a.losses == b.losses and a.validation_losses == b.validation_losses


def test_a_cross_term_is_masked_for_the_host_that_decrypts_it_and_exact_for_its_owner(keys_1024, host_keys):
    """Host 1's gradient from its own part (guest key) and its cross term on host 2's scores (host 2's key)."""
    (gpk, gsk), _ = keys_1024
    (pk2, sk2) = host_keys[1]
    rng = np.random.default_rng(3)
    X1, u_g, u2 = rng.normal(size=(40, 4)), rng.normal(size=40), rng.normal(size=40)
    y_pm = np.where(rng.random(40) < 0.5, -1.0, 1.0)
    w1 = rng.normal(size=4)
    u1 = X1 @ w1
    from vfl.lr.protocol import guest_residual_offsets_encrypted

    own = host_gradient_masked(guest_residual_offsets_encrypted(gpk, u_g, y_pm), u1, X1, packed=True)
    cross = host_cross_gradient_masked(pk2.encrypt(u2), X1)
    check_packed_gradient(cross.enc, 4, pk2, 40, DEFAULT_PRECISION_BITS)  # host 2 checks the agreed layout first
    seen_by_host2 = decrypt_masked(sk2, cross.enc)
    with pytest.raises(PaillierError):
        decrypt_masked(gsk, cross.enc)  # under host 2's key: neither the guest nor host 1 can open it
    truth = 0.25 * X1.T @ u2
    assert all(abs(v) > 2**150 for v in centered(seen_by_host2, pk2))  # masked: far beyond the value's size
    residues = guest_host_gradient_residues(decrypt_masked(gsk, own.enc), [centered(seen_by_host2, pk2)],
                                            None, gpk)
    d = 0.25 * u_g - 0.5 * y_pm + 0.25 * u1 + 0.25 * u2
    np.testing.assert_allclose(host_unmask_gradient(residues, own, [cross]), X1.T @ d, atol=1e-4)
    assert np.max(np.abs(truth)) > 0.1


def test_loss_parts_are_each_masked_and_add_up_to_the_batch_loss(keys_1024, host_keys):
    (gpk, _), _ = keys_1024
    rng = np.random.default_rng(5)
    m = 30
    u_g, y_pm = rng.normal(size=m), np.where(rng.random(m) < 0.5, -1.0, 1.0)
    Xs = [rng.normal(size=(m, 2)) for _ in range(3)]
    ws = [rng.normal(size=2) for _ in range(3)]
    us = [X @ w for X, w in zip(Xs, ws, strict=True)]
    masks = [draw_pair_masks(k, 3, m) for k in range(3)]
    scores = [host_partial_scores_masked(host_keys[k][0], Xs[k], ws[k], 0.0, masks[k]) for k in range(3)]
    pairs = {k: [host_pair_loss_encrypted(scores[k].scores, us[j], masks[j][k]) for j in range(k)] for k in range(3)}
    parts = []
    for k in range(3):
        masked = guest_loss_part_masked(scores[k].scores, u_g, y_pm, scores[k].loss_share, pairs[k], 0.0, k == 0)
        parts.append(loss_part_integer(decrypt_masked(host_keys[k][1], masked.enc), masked))
    assert all(abs(p) > 2**120 for p in parts)  # the guest learns no host's part on its own
    u = u_g + sum(us)
    expect = float(np.sum(np.log(2) - 0.5 * y_pm * u + 0.125 * u * u))
    assert guest_batch_loss(parts, loss_precision()) == pytest.approx(expect, abs=1e-8)


def test_the_guest_learns_only_the_sum_of_its_gradient_parts(keys_1024, host_keys):
    """Each host's part of the guest's gradient carries the previous host's share mask: masked alone,
    exact in the sum."""
    (gpk, _), _ = keys_1024
    rng = np.random.default_rng(9)
    m, n_hosts = 30, 3
    X_g, u_g = rng.normal(size=(m, 3)), rng.normal(size=m)
    y_pm = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    us = [rng.normal(size=m) for _ in range(n_hosts)]
    shares = [host_gradient_share_masks(host_keys[next_host(k, n_hosts)][0], 3, m) for k in range(n_hosts)]
    parts, residues, alone = [], [], []
    for k in range(n_hosts):
        pk, sk = host_keys[k]
        enc_d = guest_host_residuals_encrypted(pk.encrypt(us[k]), u_g, y_pm, k == 0)
        part = guest_gradient_share_masked(enc_d, X_g, shares[(k - 1) % n_hosts][0])
        res = host_add_gradient_share(decrypt_masked(sk, check_gradient_share(part.enc, 3, pk, m)), shares[k][1], pk)
        alone.append(guest_gradient_from_shares([res], [part]))  # what one part alone tells the guest
        parts.append(part)
        residues.append(res)
    d = 0.25 * u_g - 0.5 * y_pm + 0.25 * sum(us)
    np.testing.assert_allclose(guest_gradient_from_shares(residues, parts), X_g.T @ d, atol=1e-4)
    assert all(np.min(np.abs(a)) > 2.0 ** 60 for a in alone)  # every part alone is masked
