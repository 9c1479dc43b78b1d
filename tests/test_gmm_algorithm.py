"""FL-EM-GMM maths without the network: the plaintext reference, blocks, M-step pieces, metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from vfl.datasets import standardize
from vfl.errors import DataError, PaillierError, TrainingError
from vfl.gmm import (
    GRID_BITS,
    DegenerateComponentError,
    GaussianBlock,
    GmmOptions,
    GmmOptionsError,
    adjusted_rand_index,
    best_permutation_accuracy,
    block_parameters,
    block_squared_distances,
    centralized_block_em,
    centralized_kmeans,
    check_block,
    check_rows_for_k,
    component_sizes,
    guest_assign_clusters,
    guest_combine_log_densities,
    guest_decrypt_masked_statistics,
    guest_encrypt_responsibilities,
    host_encrypted_statistics,
    host_mask_statistics,
    host_relative_distances,
    host_relative_log_densities,
    host_unmask_statistics,
    pack_residues,
    split_statistics,
    statistic_features,
    unpack_residues,
)
from vfl.gmm.model import PartyMixture
from vfl.gmm.reference import m_step


@pytest.fixture(scope="module")
def wine() -> np.ndarray:
    return standardize(np.asarray(load_wine().data, dtype=np.float64))


def _sklearn(X: np.ndarray, k: int, covariance: str, init: str, seed: int, n_init: int = 1,
             tol: float = 1e-3) -> GaussianMixture:
    return GaussianMixture(k, covariance_type=covariance, init_params=init, random_state=seed,
                           n_init=n_init, tol=tol).fit(X)


@pytest.mark.parametrize("init", ["random", "random_from_data"])
def test_reference_with_diag_blocks_is_sklearn_diag(breast, wine, init):
    for blocks, k in (([breast[0].X, breast[1].X], 2), ([wine[:, :6], wine[:, 6:]], 3)):
        X = np.hstack(blocks)
        fit = centralized_block_em(blocks, GmmOptions(k=k, covariance="diag", init=init, n_init=2, seed=3)).best
        gm = _sklearn(X, k, "diag", init, 3, n_init=2)
        assert fit.n_iter == gm.n_iter_ and fit.converged == gm.converged_
        assert fit.lower_bound == pytest.approx(gm.lower_bound_, abs=1e-10)
        np.testing.assert_allclose(fit.weights, gm.weights_, atol=1e-12)
        np.testing.assert_allclose(np.hstack([b.means for b in fit.blocks]), gm.means_, atol=1e-12)
        np.testing.assert_allclose(np.hstack([b.covariances for b in fit.blocks]), gm.covariances_, atol=1e-12)
        np.testing.assert_array_equal(fit.labels, gm.predict(X))
        assert fit.bic == pytest.approx(gm.bic(X), rel=1e-12)


def test_reference_with_one_full_block_is_sklearn_full(wine):
    fit = centralized_block_em([wine], GmmOptions(k=3, covariance="full", init="random", seed=0)).best
    gm = _sklearn(wine, 3, "full", "random", 0)
    assert fit.n_iter == gm.n_iter_
    np.testing.assert_allclose(fit.blocks[0].covariances, gm.covariances_, atol=1e-10)
    np.testing.assert_allclose(fit.blocks[0].means, gm.means_, atol=1e-10)
    assert fit.bic == pytest.approx(gm.bic(wine), rel=1e-12)


def test_full_blocks_have_zero_covariance_across_parties(wine):
    """Two full blocks fit differently from one full block: the cross-party covariance is zero."""
    two = centralized_block_em([wine[:, :6], wine[:, 6:]], GmmOptions(k=2, covariance="full", init="random",
                                                                     seed=0, max_iter=5)).best
    one = centralized_block_em([wine], GmmOptions(k=2, covariance="full", init="random", seed=0, max_iter=5)).best
    assert two.blocks[0].covariances.shape == (2, 6, 6) and two.blocks[1].covariances.shape == (2, 7, 7)
    assert abs(two.lower_bound - one.lower_bound) > 1e-3


def test_block_log_densities_add_up_to_the_joint_diag_density(wine):
    rng = np.random.default_rng(0)
    means, var = rng.standard_normal((3, 13)), rng.uniform(0.5, 2, (3, 13))
    joint = GaussianBlock.from_covariances("diag", means, var).log_density(wine)
    parts = [GaussianBlock.from_covariances("diag", means[:, s], var[:, s]).log_density(wine[:, s])
             for s in (slice(0, 6), slice(6, 13))]
    np.testing.assert_allclose(parts[0] + parts[1], joint, rtol=1e-12)


def test_statistics_give_scikit_learn_estimators(wine):
    rng = np.random.default_rng(1)
    resp = rng.dirichlet(np.ones(3), size=len(wine))
    nk = component_sizes(resp)
    for cov in ("diag", "full"):
        s1, s2 = split_statistics(resp.T @ statistic_features(wine, cov), 13, cov)  # type: ignore[arg-type]
        means, covs = block_parameters(nk, s1, s2, cov, 1e-6)  # type: ignore[arg-type]
        _, (block,) = m_step([wine], resp, cov, 1e-6)  # type: ignore[arg-type]  # two-pass, as sklearn
        np.testing.assert_allclose(means, block.means, atol=1e-12)
        np.testing.assert_allclose(covs, block.covariances, atol=1e-12)


def test_federated_kmeans_reference_finds_separated_blobs():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.standard_normal((20, 3)) + c for c in (0.0, 8.0, -8.0)])
    labels, its = centralized_kmeans([X[:, :1], X[:, 1:]], 3, np.random.RandomState(0), 30)
    assert adjusted_rand_index(np.repeat([0, 1, 2], 20), labels) == 1.0
    assert its < 30


def test_collapsed_component_is_refused_with_its_feature_named():
    with pytest.raises(DegenerateComponentError, match=r"component 1 .*collapsing covariance.*'x1'"):
        GaussianBlock.from_covariances("diag", np.zeros((2, 2)), np.array([[1.0, 1.0], [1.0, 0.0]]),
                                       party="host", features=["x0", "x1"])
    singular = np.array([np.eye(2), [[1.0, 1.0], [1.0, 1.0]]])
    with pytest.raises(DegenerateComponentError, match="component 1 .*not positive definite"):
        GaussianBlock.from_covariances("full", np.zeros((2, 2)), singular - 1e-12 * np.eye(2))


def test_combining_nonfinite_log_densities_is_an_error():
    with pytest.raises(Exception, match="not finite"):
        guest_combine_log_densities([np.array([[0.0, np.nan]]), np.zeros((1, 2))], np.array([0.5, 0.5]))


def _grid(values: np.ndarray) -> float:
    return float(np.ldexp(1.0, int(np.frexp(np.max(np.abs(values)))[1]) - GRID_BITS))


def test_relative_host_log_densities_give_the_same_responsibilities_and_log_likelihood(wine):
    rng = np.random.default_rng(2)
    means, var = rng.standard_normal((3, 13)), rng.uniform(0.5, 2, (3, 13))
    guest, host = (GaussianBlock.from_covariances("diag", means[:, s], var[:, s]).log_density(wine[:, s])
                   for s in (slice(0, 6), slice(6, 13)))
    weights = np.array([0.2, 0.3, 0.5])
    relative, level_total = host_relative_log_densities(host)
    shifted = guest_combine_log_densities([guest, relative], weights, level_total)
    plain = guest_combine_log_densities([guest, host], weights)
    np.testing.assert_allclose(shifted.responsibilities, plain.responsibilities, rtol=0, atol=1e-12)
    assert shifted.mean_log_likelihood == pytest.approx(plain.mean_log_likelihood, rel=1e-14)
    np.testing.assert_array_equal(shifted.labels, plain.labels)


def test_relative_host_log_densities_hide_each_rows_level():
    """Each row less its largest value, on one grid for all rows: a row's level does not change what is sent."""
    rng = np.random.default_rng(3)
    ld = -rng.uniform(1.0, 50.0, (400, 3))
    levels = rng.uniform(-900.0, 0.0, 400)  # rows far apart in level, same differences
    a, total_a = host_relative_log_densities(ld)
    b, total_b = host_relative_log_densities(ld + levels[:, None])
    exact = ld - ld.max(axis=1)[:, None]
    for sent, source in ((a, ld), (b, ld + levels[:, None])):
        grid = _grid(source)
        assert np.all(sent == np.round(sent / grid) * grid)  # multiples of one grid, no row's own spacing
        assert np.all(sent.max(axis=1) == 0.0)
        np.testing.assert_allclose(sent, exact, rtol=0, atol=grid + 1e-12)
    assert total_a == pytest.approx(ld.max(axis=1).sum(), rel=1e-14)
    assert total_b - total_a == pytest.approx(levels.sum(), rel=1e-12)


def test_relative_host_distances_keep_the_nearest_centres():
    rng = np.random.default_rng(4)
    X = np.vstack([rng.standard_normal((30, 4)) + c for c in (0.0, 5.0, -5.0)])
    centers = X[[0, 30, 60]] + 0.1
    guest, host = block_squared_distances(X[:, :2], centers[:, :2]), block_squared_distances(X[:, 2:], centers[:, 2:])
    relative = host_relative_distances(host)
    assert np.all(relative.min(axis=1) == 0.0) and np.all(relative >= 0.0)
    np.testing.assert_array_equal(guest_assign_clusters([guest, relative]), guest_assign_clusters([guest, host]))


def test_a_nonfinite_host_log_density_is_refused_before_it_is_sent():
    with pytest.raises(TrainingError, match="not finite"):
        host_relative_log_densities(np.array([[0.0, -np.inf]]))


def test_bad_input_checks_name_the_problem():
    with pytest.raises(DataError, match=r"k = 600 is larger than the 569 aligned rows"):
        check_rows_for_k(569, 600)
    X = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])
    with pytest.raises(DataError, match=r"host feature 'x0' is constant \(every row is 1\)"):
        check_block(X, ["x0", "x1"], "host")
    with pytest.raises(GmmOptionsError, match="init must be"):
        GmmOptions(init="bogus").validate()  # type: ignore[arg-type]
    with pytest.raises(GmmOptionsError, match=r"k_range must list distinct values >= 1, got \[0, 2\]"):
        GmmOptions(k_range=(0, 2)).validate()


def test_metrics_match_sklearn_and_best_permutation():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    clusters = np.array([1, 1, 0, 0, 0, 0, 2])
    assert adjusted_rand_index(y, clusters) == pytest.approx(adjusted_rand_score(y, clusters), abs=1e-15)
    acc, mapping = best_permutation_accuracy(y, clusters, 3)
    assert mapping == {0: 1, 1: 0} and acc == pytest.approx(5 / 7)  # cluster 2 matches no label


def test_model_json_round_trip_and_refusals():
    block = GaussianBlock.from_covariances("diag", np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]]))
    model = PartyMixture(["x0"], np.array([0.25, 0.75]), block)
    back = PartyMixture.from_json(model.to_json())
    np.testing.assert_array_equal(back.block.covariances, block.covariances)
    bad = model.to_json() | {"weights": [0.5, 0.6]}
    with pytest.raises(Exception, match="sum to 1"):
        PartyMixture.from_json(bad)
    with pytest.raises(Exception, match="do not match"):
        PartyMixture.from_json(model.to_json() | {"means": [[0.0, 1.0]]})


# -- the encrypted M-step, piece by piece (1024-bit keys) -------------------


def test_encrypted_statistics_equal_plaintext_ones(keys_1024):
    (gpk, gsk), _ = keys_1024
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 3))
    resp = rng.dirichlet(np.ones(3), size=40)
    F = statistic_features(X, "full")
    enc = guest_encrypt_responsibilities(gpk, resp)
    assert enc.shape == (2, 40)  # rows sum to one: the last component is derived
    enc_stats = host_encrypted_statistics(enc, F)
    masked, mask = host_mask_statistics(enc_stats)
    residues = guest_decrypt_masked_statistics(gsk, masked)
    wire = unpack_residues(pack_residues(residues, gpk), masked.shape, gpk)
    stats = host_unmask_statistics(wire, mask, enc_stats.precision, gpk, F, 3)
    np.testing.assert_allclose(stats, resp.T @ F, atol=1e-12)


def test_partial_responsibilities_send_every_component(keys_1024):
    (gpk, gsk), _ = keys_1024
    X = np.arange(12.0).reshape(6, 2)
    resp = np.zeros((6, 2))
    resp[[1, 4], [0, 1]] = 1.0  # "random_from_data": most rows belong to no component yet
    enc = guest_encrypt_responsibilities(gpk, resp)
    assert enc.shape == (2, 6)
    enc_stats = host_encrypted_statistics(enc, X)
    masked, mask = host_mask_statistics(enc_stats)
    stats = host_unmask_statistics(guest_decrypt_masked_statistics(gsk, masked), mask, enc_stats.precision,
                                   gpk, X, 2)
    np.testing.assert_allclose(stats, X[[1, 4]], atol=1e-12)


def test_masked_statistics_decrypt_to_uniform_residues(keys_1024):
    (gpk, gsk), _ = keys_1024
    X = np.ones((5, 2)) * 3.0
    enc_stats = host_encrypted_statistics(gpk.encrypt(np.full((1, 5), 0.5), precision=64), X)
    masked, _ = host_mask_statistics(enc_stats)
    assert masked.cipher.size == 1  # both statistics packed in one ciphertext
    residues = guest_decrypt_masked_statistics(gsk, masked)
    # an unmasked statistic is below 2^(64+32+4); its mask is uniform over 80 bits more than the public
    # bound 5 * 2^64 * 2^32 * 2^32 (FEATURE_BOUND^2 at 32 bits), so a masked value is below 2^180 with
    # probability ~2^-30
    assert all(int(r) > 1 << 180 for r in residues.ravel())


def test_unpack_residues_refuses_bad_bytes(keys_1024):
    (gpk, _), _ = keys_1024
    with pytest.raises(PaillierError, match="expected 2 values"):
        unpack_residues(b"\x00" * 10, (2,), gpk)
    w = (gpk.n.bit_length() + 7) // 8
    with pytest.raises(PaillierError, match="not below the key's modulus"):
        unpack_residues(b"\xff" * w, (1,), gpk)


def test_sklearn_refuses_what_we_refuse():
    """A component collapsing onto repeated rows with reg_covar=0 fails in scikit-learn too."""
    X = np.vstack([np.zeros((10, 2)), np.random.default_rng(0).standard_normal((20, 2)) + 10])
    with warnings.catch_warnings(), pytest.raises(ValueError, match="ill-defined empirical covariance"):
        warnings.simplefilter("ignore")
        GaussianMixture(2, covariance_type="diag", reg_covar=0.0, random_state=0).fit(X)


@pytest.mark.parametrize(("override", "message"), [
    ('gmm.init="bogus"', "[gmm] init must be"),
    ("gmm.k=0", "[gmm] k must be >= 1"),
    ("gmm.k_range=[2, 2]", "[gmm] k_range must list distinct values >= 1"),
    ("gmm.reg_covar=-1.0", "[gmm] reg_covar must be >= 0"),
    ("gmm.n_init=0", "[gmm] n_init must be >= 1"),
])
def test_config_refuses_bad_gmm_settings(override, message):
    from nodes.config import load_config
    from nodes.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(message)


def test_config_gmm_section_gives_the_options():
    from nodes.config import load_config
    from nodes.phases.gmm import options_from_config

    cfg = load_config(None, ["gmm.k_range=[1, 2, 3]", 'gmm.covariance="full"', "job.seed=7", "gmm.n_init=2"])
    opts = options_from_config(cfg)
    assert opts.candidates == (1, 2, 3) and opts.covariance == "full" and opts.seed == 7 and opts.n_init == 2
    assert GmmOptions.from_json(opts.to_json()) == opts
