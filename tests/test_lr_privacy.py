"""Label privacy of the host's LR gradient (vfl.lr.privacy): the bit rule, the noise bound, epsilon."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nodes.config import load_config
from nodes.phases import lr as phase
from nodes.testing import make_contexts, run_pair
from vfl.datasets import synth_split
from vfl.errors import TrainingError
from vfl.lr import LrOptions, fit_reference
from vfl.lr.privacy import (
    LabelNoise,
    check_label_bits,
    epsilon,
    gdp_epsilon,
    host_norm_bounds,
    label_delta,
)
from vfl.lr.schedule import epoch_batches, learning_rate, update_weights, validation_rows
from vfl.lr.setup import prepare_party
from vfl.lr.taylor import signed_labels


def _gdp_delta(mu: float, eps: float) -> float:
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))  # noqa: E731
    return phi(-eps / mu + mu / 2) - math.exp(eps) * phi(-eps / mu - mu / 2)


def test_epsilon_is_the_gdp_curve_of_sqrt_batches_over_the_multiplier():
    eps = epsilon(2.0, 16, 1e-5)  # mu = sqrt(16) / 2 = 2
    assert eps == pytest.approx(gdp_epsilon(2.0, 1e-5))
    assert _gdp_delta(2.0, eps) == pytest.approx(1e-5, rel=1e-6)
    assert epsilon(1.0, 1, 1e-5) < epsilon(1.0, 20, 1e-5) < epsilon(0.5, 20, 1e-5)
    assert epsilon(0.0, 1, 1e-5) == math.inf
    assert label_delta(455) == 1e-5 and label_delta(100_000) == pytest.approx(1e-6)


def test_noise_free_batches_must_outnumber_the_bits_of_one_gradient():
    check_label_bits(80_000, 1_000, 4, 0.0)  # 1000 rows >= 2 * 4 * (20 + 10 + 8.1) bits
    check_label_bits(455, 455, 20, 1.0)  # with noise the rule does not apply
    with pytest.raises(TrainingError, match="batches of 455 rows are too small for label privacy") as err:
        check_label_bits(455, 455, 20, 0.0)
    assert "no batch size" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(TrainingError, match="use batch_size >= 291 or set"):
        check_label_bits(80_000, 64, 4, 0.0)


def _host_gradients(X_g, X_h, y_pm, train, opts, w_h_path):
    """The host's exact gradient sums X_h^T d per batch, the host's weights following `w_h_path`."""
    g_w = np.zeros(X_g.shape[1])
    reg = np.r_[np.ones(X_g.shape[1] - 1, dtype=bool), False]  # the intercept (last) is not penalized
    out = []
    t = 0
    for epoch in range(opts.epochs):
        lr = learning_rate(opts, epoch)
        for rows in epoch_batches(len(train), opts.batch_size, opts.seed, epoch):
            idx = train[rows]
            d = 0.25 * (X_g[idx] @ g_w + X_h[idx] @ w_h_path[t]) - 0.5 * y_pm[idx]
            out.append(X_h[idx].T @ d)
            g_w = update_weights(g_w, X_g[idx].T @ d / len(idx), lr, opts, reg)
            t += 1
    return out


@pytest.mark.parametrize("penalty,batch_size", [("l2", 0), ("l1", 40), ("none", 64)])
def test_one_flipped_label_moves_the_host_gradient_by_at_most_the_calibrated_sensitivity(penalty, batch_size):
    g, h = synth_split(260, 4, 5, seed=4)
    opts = LrOptions(epochs=4, batch_size=batch_size, penalty=penalty, learning_rate=0.4, validation=0.2,
                     alpha=0.02)
    n = g.n_rows
    val = validation_rows(n, opts.validation, opts.seed)
    train = np.setdiff1d(np.arange(n), val)
    G = prepare_party("guest", g.features, g.X, train, opts)
    H = prepare_party("host", h.features, h.X, train, opts)
    y_pm = signed_labels(g.y)
    noise = LabelNoise(G.X, train, *host_norm_bounds(H.X[train]), opts, G.regularized)
    bounds = []
    for epoch in range(opts.epochs):
        for rows in epoch_batches(len(train), opts.batch_size, opts.seed, epoch):
            bounds.append(noise.sensitivity(train[rows]))
            noise.advance(train[rows], learning_rate(opts, epoch))
    rng = np.random.default_rng(0)
    w_h_path = [rng.normal(scale=0.3, size=H.X.shape[1]) for _ in bounds]  # any fixed host trajectory
    base = _host_gradients(G.X, H.X, y_pm, train, opts, w_h_path)
    norms = np.linalg.norm(G.X[train], axis=1) * np.linalg.norm(H.X[train], axis=1)
    for i in train[np.argsort(norms)[-5:]]:  # the rows that move gradients most
        flipped = y_pm.copy()
        flipped[i] = -flipped[i]
        other = _host_gradients(G.X, H.X, flipped, train, opts, w_h_path)
        moved = [float(np.linalg.norm(a - b)) for a, b in zip(base, other, strict=True)]
        assert all(m <= b for m, b in zip(moved, bounds, strict=True)), (moved, bounds)
    assert bounds[0] == pytest.approx(host_norm_bounds(H.X[train])[0] * (1 + 2.0 ** -20), rel=1e-6)


def test_the_guest_adds_noise_of_the_calibrated_scale_and_the_reference_replays_it(tmp_path):
    g, h = synth_split(200, 3, 4, seed=8)
    cfg = load_config(None, ["lr.epochs=2", "lr.batch_size=50", "lr.validation=0", "lr.label_noise=2"])
    gctx, hctx = make_contexts(tmp_path, g, h, cfg)
    rg, rh = run_pair(phase.run_guest, phase.run_host, gctx, hctx)
    noise = rg["host_noise"]
    assert len(noise) == 8 and all(v.shape == (4,) for v in noise)
    assert float(np.std(np.concatenate(noise))) > 2.0  # z = 2 times a sensitivity >= the host's row norms >= 1
    ref = fit_reference(g.X, h.X, g.y, phase.options_from_config(cfg), host_noise=noise)
    np.testing.assert_allclose(rh["model"]["weights"], ref.host.weights, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rg["model"]["weights"], ref.guest.weights, rtol=0, atol=1e-6)
    clean = fit_reference(g.X, h.X, g.y, phase.options_from_config(cfg))
    assert np.max(np.abs(clean.host.weights - ref.host.weights)) > 1e-3  # the noise is really there
    privacy = rg["metrics"]["training"]["label_privacy"]
    assert privacy["batches"] == 8 and privacy["epsilon"] == pytest.approx(epsilon(2.0, 8, 1e-5))


def test_label_noise_0_runs_the_noise_free_protocol_where_the_bit_rule_holds(tmp_path):
    g, h = synth_split(240, 3, 1, seed=9)
    cfg = load_config(None, ["lr.epochs=2", "lr.batch_size=100", "lr.validation=0.1", "lr.label_noise=0"])
    gctx, hctx = make_contexts(tmp_path, g, h, cfg)
    rg, rh = run_pair(phase.run_guest, phase.run_host, gctx, hctx)
    assert rg["host_noise"] == [] and rg["metrics"]["training"]["label_privacy"]["epsilon"] is None
    ref = fit_reference(g.X, h.X, g.y, phase.options_from_config(cfg))
    np.testing.assert_allclose(rh["model"]["weights"], ref.host.weights, rtol=0, atol=1e-6)


def test_a_negative_label_noise_is_a_config_error():
    from nodes.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[lr\] label_noise must be >= 0"):
        phase.options_from_config(load_config(None, ["lr.label_noise=-1"]))
