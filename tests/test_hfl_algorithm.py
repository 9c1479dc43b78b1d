"""Horizontal LR algorithm (vfl.hfl): encrypted aggregation equals plaintext FedAvg/FedProx, DP noise and
accounting, clipping, FedProx's pull, label-skew shards, the sealed key share."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from vfl.errors import DataError, PaillierError, VflError
from vfl.hfl import keyshare
from vfl.hfl.dp import DpAccountant, clip_rows, noise_scale, total_rho
from vfl.hfl.local import local_update, with_intercept
from vfl.hfl.options import HflOptions
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
    opts = HflOptions(rounds=2, dp="gaussian", epsilon=0.5, clip=0.5)
    a = run_federation(shards, opts, seed=2).models[-1]
    b = run_federation(shards, opts, seed=2, keys=keys_1024[0]).models[-1]
    assert np.abs(a - b).max() < 1e-6


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


def test_gaussian_budget_is_spent_exactly_by_the_last_round() -> None:
    opts = HflOptions(rounds=30, local_epochs=2, dp="gaussian", epsilon=0.5, delta=1e-5, clip=1.0)
    acc = DpAccountant(opts)
    spent = []
    for _ in range(opts.rounds):
        acc.spend(opts.local_epochs)
        spent.append(acc.spent()[0])
    assert spent == sorted(spent) and spent[-1] == pytest.approx(0.5, rel=1e-12)
    assert acc.spent()[1] == 1e-5
    rho = total_rho(0.5, 1e-5)
    assert rho + 2 * math.sqrt(rho * math.log(1e5)) == pytest.approx(0.5)
    # sigma per noisy sum: sensitivity clip, each of the 60 passes gets rho/60 = clip^2 / (2 sigma^2)
    assert noise_scale(opts) == pytest.approx(1.0 / math.sqrt(2 * rho / 60))


def test_laplace_noise_is_calibrated_by_basic_composition_and_drawn_at_that_scale() -> None:
    from vfl.hfl.dp import draw_noise

    opts = HflOptions(rounds=10, dp="laplace", epsilon=2.0, clip=0.5)
    assert noise_scale(opts) == pytest.approx(0.5 * 10 / 2.0)
    acc = DpAccountant(opts)
    acc.spend(4)
    assert acc.spent() == (pytest.approx(0.8), 0.0)
    x = draw_noise(opts, 200_000, np.random.default_rng(1))
    assert np.abs(x).mean() == pytest.approx(2.5, rel=0.02)  # E|Laplace(b)| = b


def test_dp_off_spends_nothing_measurable_and_dp_on_needs_a_clip() -> None:
    assert noise_scale(HflOptions()) == 0.0 and math.isinf(DpAccountant(HflOptions()).spent()[0])
    with pytest.raises(VflError, match="clip"):
        HflOptions(dp="gaussian", clip=0.0).validate()
    with pytest.raises(VflError, match="delta"):
        HflOptions(dp="gaussian", delta=0.0).validate()


def test_dp_noise_costs_accuracy_but_training_still_beats_the_prior(shards) -> None:
    off = run_federation(shards, HflOptions(rounds=10), seed=0).accuracy
    noisy = run_federation(shards, HflOptions(rounds=10, dp="gaussian", epsilon=0.05), seed=0).accuracy
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
