"""Horizontal LR algorithm (vfl.hfl): encrypted aggregation equals plaintext FedAvg/FedProx, DP noise from a
secret stream, Poisson sampling, the accountant against dp_accounting, clipping, FedProx's pull, label-skew
shards, the sealed key share."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from vfl.errors import DataError, PaillierError, VflError
from vfl.hfl import keyshare
from vfl.hfl.dp import DpAccountant, clip_rows, noise_scale, plan
from vfl.hfl.local import local_update, with_intercept
from vfl.hfl.options import HflOptions
from vfl.hfl.randomness import secret_stream, seeded_stream
from vfl.hfl.shards import breast_horizontal, label_skew_shards
from vfl.hfl.simulate import centralized_accuracy, run_federation


@pytest.fixture(scope="module")
def shards():
    return [(s.X, s.y) for s in breast_horizontal(3, skew=0.5, seed=3)]


@pytest.mark.parametrize("aggregation", ["fedavg", "fedprox"])
def test_encrypted_aggregation_equals_plaintext_reference_with_dp_off(shards, keys_1024, aggregation) -> None:
    opts = HflOptions(rounds=3, batch_size=32, local_epochs=2, aggregation=aggregation, mu=0.5)
    plain = run_federation(shards, opts, seed=11)
    enc = run_federation(shards, opts, seed=11, keys=keys_1024[0])
    assert len(plain.models) == len(enc.models) == 4
    assert max(np.abs(a - b).max() for a, b in zip(plain.models, enc.models, strict=True)) < 1e-6
    assert np.abs(plain.models[-1]).max() > 0.1  # it trained


def test_encrypted_equals_plaintext_with_dp_noise_too(shards, keys_1024) -> None:
    # the same noise in both runs needs the (not private) reproducible simulation mode
    opts = HflOptions(rounds=2, dp="gaussian", epsilon=0.5, clip=0.5)
    a = run_federation(shards, opts, seed=2, reproducible=True).models[-1]
    b = run_federation(shards, opts, seed=2, keys=keys_1024[0], reproducible=True).models[-1]
    assert np.abs(a - b).max() < 1e-6


@pytest.mark.parametrize("dp", ["gaussian", "laplace"])
def test_two_runs_with_the_same_seed_and_data_give_different_models_when_dp_is_on(shards, dp) -> None:
    opts = HflOptions(rounds=2, batch_size=64, dp=dp, epsilon=0.5, clip=0.5)
    a, b = run_federation(shards, opts, seed=7), run_federation(shards, opts, seed=7)
    assert np.abs(a.models[-1] - b.models[-1]).max() > 1e-3
    assert not a.reproducible
    # the reproducible simulation mode replays them (and says so); without DP runs are reproducible anyway
    r1, r2 = (run_federation(shards, opts, seed=7, reproducible=True) for _ in range(2))
    assert np.array_equal(r1.models[-1], r2.models[-1]) and r1.reproducible
    off = HflOptions(rounds=2, batch_size=64)
    assert np.array_equal(run_federation(shards, off, seed=7).models[-1], run_federation(shards, off, seed=7).models[-1])


def test_dp_training_refuses_to_run_without_a_dp_random_source(shards) -> None:
    X, y = with_intercept(shards[0][0], True), shards[0][1].astype(float)
    with pytest.raises(VflError, match="DpRandom"):
        local_update(np.zeros(X.shape[1]), X, y, HflOptions(dp="gaussian", epsilon=1.0), np.random.default_rng(0))


def test_secret_streams_differ_and_seeded_streams_replay() -> None:
    assert not np.array_equal(secret_stream().uniform(8), secret_stream().uniform(8))
    assert np.array_equal(seeded_stream(3, 1).uniform(8), seeded_stream(3, 1).uniform(8))
    assert not np.array_equal(seeded_stream(3, 1).uniform(8), seeded_stream(3, 2).uniform(8))
    assert secret_stream().private and not seeded_stream(3, 1).private


def test_stream_draws_have_the_requested_distributions() -> None:
    r = seeded_stream(0, 0)
    u = r.uniform(200_000)
    assert 0.0 < u.min() and u.max() < 1.0 and u.mean() == pytest.approx(0.5, abs=0.005)
    z = r.normal(2.0, 200_001)
    assert len(z) == 200_001 and z.mean() == pytest.approx(0.0, abs=0.02) and z.std() == pytest.approx(2.0, rel=0.01)
    assert np.mean(np.abs(z) < 2.0) == pytest.approx(0.6827, abs=0.005)  # Gaussian, not just unit variance
    lap = r.laplace(1.5, 200_000)
    assert np.abs(lap).mean() == pytest.approx(1.5, rel=0.02) and np.median(lap) == pytest.approx(0.0, abs=0.02)


def test_poisson_sampling_includes_each_row_independently_at_rate_q() -> None:
    r = seeded_stream(1, 1)
    sizes = [len(r.poisson_sample(1000, 0.1)) for _ in range(400)]
    assert np.mean(sizes) == pytest.approx(100, rel=0.02) and np.std(sizes) == pytest.approx(math.sqrt(90), rel=0.15)
    # one more row changes nothing about whether the other rows are sampled (unlike positional batches)
    a, b = seeded_stream(2, 1).poisson_sample(50, 0.3), seeded_stream(2, 1).poisson_sample(51, 0.3)
    assert np.array_equal(a, b[b < 50])
    assert np.array_equal(seeded_stream(2, 1).poisson_sample(7, 1.0), np.arange(7))


def test_fedprox_pulls_the_local_model_toward_the_global_one(shards) -> None:
    X, y = with_intercept(shards[0][0], True), shards[0][1].astype(float)
    w0 = np.full(X.shape[1], 0.3)
    base = HflOptions(local_epochs=5, batch_size=0, learning_rate=0.5)
    avg = local_update(w0, X, y, base, np.random.default_rng(0))
    prox = local_update(w0, X, y, dataclasses.replace(base, aggregation="fedprox", mu=1.0), np.random.default_rng(0))
    assert np.linalg.norm(prox - w0) < 0.8 * np.linalg.norm(avg - w0)


def test_clipping_bounds_every_rows_gradient_in_the_mechanisms_norm() -> None:
    g = np.random.default_rng(0).normal(size=(50, 6)) * 10
    for norm in (1, 2):
        c = clip_rows(g, 0.7, norm)
        assert np.linalg.norm(c, ord=norm, axis=1).max() <= 0.7 + 1e-12
    small = g * 1e-3
    assert np.array_equal(clip_rows(small, 0.7, 2), small)  # rows within the bound are untouched


def _library_epsilon(mechanism: str, q: float, multiplier: float, steps: int, delta: float) -> float:
    """epsilon(delta) computed directly with dp_accounting (independently of vfl.hfl.dp)."""
    from dp_accounting import dp_event
    from dp_accounting.pld import PLDAccountant
    from dp_accounting.rdp import RdpAccountant

    inner = dp_event.GaussianDpEvent(multiplier) if mechanism == "gaussian" else dp_event.LaplaceDpEvent(multiplier)
    acc = RdpAccountant() if mechanism == "gaussian" else PLDAccountant()
    return acc.compose(dp_event.PoissonSampledDpEvent(q, inner), steps).get_epsilon(delta)


def test_gaussian_budget_is_spent_by_the_last_round_and_matches_dp_accounting() -> None:
    opts = HflOptions(rounds=6, local_epochs=2, batch_size=32, dp="gaussian", epsilon=0.5, delta=1e-5, clip=1.0)
    n = 150
    acc = DpAccountant(opts, n)
    p = plan(opts, n)
    assert p.q == pytest.approx(32 / 150) and p.steps_per_epoch == 5 and p.total_steps == 60
    assert noise_scale(opts, n) == p.multiplier * opts.clip
    spent = []
    for _ in range(opts.rounds):
        acc.spend(opts.local_epochs)
        spent.append(acc.spent()[0])
    assert acc.steps == 60 and acc.spent()[1] == 1e-5
    assert spent == sorted(spent) and 0.5 * (1 - 1e-6) <= spent[-1] <= 0.5
    # every round's epsilon is the library's own value for the same sampled Gaussian
    for k, eps in enumerate(spent, 1):
        assert eps == pytest.approx(_library_epsilon("gaussian", 32 / 150, p.multiplier, 10 * k, 1e-5), rel=1e-9)
    # the noise is the smallest that fits the budget: 1 % less noise overspends
    assert _library_epsilon("gaussian", 32 / 150, 0.99 * p.multiplier, 60, 1e-5) > 0.5
    # batch_size 0: every row in every step, one step per epoch
    full = plan(dataclasses.replace(opts, batch_size=0), n)
    assert full.q == 1.0 and full.steps_per_epoch == 1


def test_laplace_noise_is_calibrated_by_the_pld_accountant_and_drawn_at_that_scale() -> None:
    opts = HflOptions(rounds=10, dp="laplace", epsilon=2.0, clip=0.5, batch_size=50)
    p = plan(opts, 200)
    assert p.q == 0.25 and p.total_steps == 40
    acc = DpAccountant(opts, 200)
    acc.spend(10)
    assert acc.spent()[0] == pytest.approx(_library_epsilon("laplace", 0.25, p.multiplier, 40, 1e-5), rel=1e-9)
    assert 2.0 * (1 - 1e-6) <= acc.spent()[0] <= 2.0
    assert p.noise_scale < 0.5 * 10 / 2.0  # below basic composition without sampling (clip T / epsilon)
    x = seeded_stream(1, 1).laplace(p.noise_scale, 200_000)
    assert np.abs(x).mean() == pytest.approx(p.noise_scale, rel=0.02)  # E|Laplace(b)| = b


def test_privacy_records_report_the_accountant_and_the_sampling() -> None:
    opts = HflOptions(rounds=3, dp="gaussian", epsilon=1.0, batch_size=40)
    acc = DpAccountant(opts, 100)
    acc.spend(1)
    rec = acc.record(1)
    assert rec["accountant"] == "dp_accounting RDP" and rec["sampling_rate"] == 0.4 and rec["steps"] == 3
    assert rec["epsilon_spent"] == pytest.approx(_library_epsilon("gaussian", 0.4, rec["noise_multiplier"], 3, 1e-5))


def test_dp_off_spends_nothing_measurable_and_dp_on_needs_a_clip() -> None:
    assert noise_scale(HflOptions(), 100) == 0.0 and math.isinf(DpAccountant(HflOptions(), 100).spent()[0])
    with pytest.raises(VflError, match="clip"):
        HflOptions(dp="gaussian", clip=0.0).validate()
    with pytest.raises(VflError, match="delta"):
        HflOptions(dp="gaussian", delta=0.0).validate()
    with pytest.raises(VflError, match="delta"):
        HflOptions(dp="laplace", delta=1.0).validate()


def test_dp_noise_costs_accuracy_but_training_still_beats_the_prior(shards) -> None:
    off = run_federation(shards, HflOptions(rounds=10), seed=0).accuracy
    noisy = run_federation(shards, HflOptions(rounds=10, dp="gaussian", epsilon=0.05), seed=0,
                           reproducible=True).accuracy  # reproducible: a fixed noise draw, no flaky comparison
    central = centralized_accuracy(shards, HflOptions(), seed=0)
    assert off[-1] > 0.9 and central > 0.9
    assert noisy[-1] < off[-1]


def test_label_skew_moves_labels_between_shards_and_keeps_every_row_once() -> None:
    y = np.array([0] * 100 + [1] * 100)
    for skew in (0.0, 1.0):
        parts = label_skew_shards(y, 4, skew, seed=0)
        assert sorted(np.concatenate(parts).tolist()) == list(range(200))
    iid = [y[p].mean() for p in label_skew_shards(y, 4, 0.0, 0)]
    skewed = [y[p].mean() for p in label_skew_shards(y, 4, 1.0, 0)]
    assert max(iid) - min(iid) < 0.3 and skewed == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(DataError, match="skew"):
        label_skew_shards(y, 4, 1.5, 0)


def test_a_sealed_key_share_opens_only_for_its_recipient_and_context(keys_1024) -> None:
    pk, sk = keys_1024[1]
    mine, mine_pub = keyshare.new_exchange_key()
    other, _ = keyshare.new_exchange_key()
    sealed = keyshare.seal(mine_pub, keyshare.private_key_bytes(sk), b"job|client2|fp")
    assert hex(sk.p)[2:].encode() not in sealed
    back = keyshare.private_key_from_bytes(pk, keyshare.open_sealed(mine, sealed, b"job|client2|fp"))
    assert back.p * back.q == pk.n
    with pytest.raises(PaillierError):
        keyshare.open_sealed(other, sealed, b"job|client2|fp")
    with pytest.raises(PaillierError):
        keyshare.open_sealed(mine, sealed, b"job|client3|fp")
    with pytest.raises(PaillierError):
        keyshare.open_sealed(mine, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"job|client2|fp")


# -- per-client adaptive learning rate and validation-weighted aggregation ---------------------------


def _sgd_reference(w0, X, y, opts, rng, kind):
    """AdaGrad/Adam written out from their textbook formulas (DP off), the batches drawn as local.batches does."""
    w, G, m, v, t = np.array(w0, float), np.zeros(len(w0)), np.zeros(len(w0)), np.zeros(len(w0)), 0
    for _ in range(opts.local_epochs):
        perm = rng.permutation(len(y))
        for i in range(0, len(y), opts.batch_size):
            idx = perm[i:i + opts.batch_size]
            p = 1 / (1 + np.exp(-(X[idx] @ w)))
            grads = (p - y[idx])[:, None] * X[idx]
            norms = np.linalg.norm(grads, axis=1)
            grads = grads * np.minimum(1.0, opts.clip / np.maximum(norms, 1e-300))[:, None]
            g = grads.sum(axis=0) / len(idx) + opts.alpha * w
            t += 1
            if kind == "adagrad":
                G += g ** 2
                w = w - opts.learning_rate * g / (np.sqrt(G) + 1e-8)
            else:
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g ** 2
                w = w - opts.learning_rate * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return w


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_adaptive_local_steps_equal_the_textbook_formulas_and_keep_their_state_across_rounds(shards, kind) -> None:
    from vfl.hfl.local import AdaptiveStep

    X, y = with_intercept(shards[0][0], True), shards[0][1].astype(float)
    opts = HflOptions(batch_size=32, local_epochs=2, learning_rate=0.05, alpha=0.01, clip=2.0, adaptive=kind)
    step = AdaptiveStep(kind)
    w1 = local_update(np.zeros(X.shape[1]), X, y, opts, np.random.default_rng(4), adaptive=step)
    ref = _sgd_reference(np.zeros(X.shape[1]), X, y, dataclasses.replace(opts, local_epochs=2),
                         np.random.default_rng(4), kind)
    assert np.abs(w1 - ref).max() < 1e-9
    assert step.t == 2 * math.ceil(len(y) / 32)
    # the state carries over: a second round from the same start moves differently than a fresh client's would
    w2 = local_update(np.zeros(X.shape[1]), X, y, opts, np.random.default_rng(4), adaptive=step)
    assert np.abs(w2 - w1).max() > 1e-6
    plain = local_update(np.zeros(X.shape[1]), X, y, dataclasses.replace(opts, adaptive="off"), np.random.default_rng(4))
    assert np.abs(plain - w1).max() > 1e-4  # and it is not plain SGD


def test_validation_weighted_round_is_the_mean_of_local_models_weighted_by_rows_times_smoothed_accuracy(shards):
    from vfl.hfl.simulate import ClientState, initial_model

    opts = HflOptions(rounds=1, batch_size=32, weighting="validation")
    clients = [ClientState.make(X, y, opts, 9, i + 1) for i, (X, y) in enumerate(shards)]
    w0 = initial_model(shards[0][0].shape[1], opts)
    locals_, weights = [], []
    for c in clients:
        w = c.train(w0, opts)
        correct = int(((1 / (1 + np.exp(-(c.X_val @ w))) >= 0.5) == (c.y_val == 1)).sum())
        locals_.append(w)
        weights.append(c.n * (correct + 1) / (len(c.y_val) + 2))
    expected = sum(a * w for a, w in zip(weights, locals_, strict=True)) / sum(weights)
    got = run_federation(shards, opts, seed=9).models[-1]
    assert np.abs(got - expected).max() < 1e-12
    by_samples = run_federation(shards, dataclasses.replace(opts, weighting="samples"), seed=9).models[-1]
    assert np.abs(got - by_samples).max() > 1e-6  # the weights differ from the row counts


@pytest.mark.parametrize(("adaptive", "weighting"), [("adam", "validation"), ("adagrad", "samples"),
                                                     ("off", "validation")])
def test_adaptive_and_validation_weighting_over_ciphertexts_equal_the_plaintext_simulation(
        shards, keys_1024, adaptive, weighting) -> None:
    opts = HflOptions(rounds=3, batch_size=32, learning_rate=0.05, adaptive=adaptive, weighting=weighting)
    plain = run_federation(shards, opts, seed=11)
    enc = run_federation(shards, opts, seed=11, keys=keys_1024[0])
    assert max(np.abs(a - b).max() for a, b in zip(plain.models, enc.models, strict=True)) < 1e-6
    assert np.abs(plain.models[-1]).max() > 0.1


def test_defaults_keep_plain_sgd_and_sample_weights_and_bad_values_are_refused() -> None:
    opts = HflOptions()
    assert (opts.adaptive, opts.weighting) == ("off", "samples")
    with pytest.raises(VflError, match="adaptive must be"):
        HflOptions(adaptive="rmsprop").validate()
    with pytest.raises(VflError, match="weighting must be"):
        HflOptions(weighting="loss").validate()
    with pytest.raises(VflError, match="needs held-out rows"):
        HflOptions(weighting="validation", validation=0).validate()
