"""FL-EM-GMM with a guest and 1..3 host blocks: each host's encrypted M-step and relative log-densities,
combined by the guest, give scikit-learn's diagonal EM on the joined columns (a fixed point of it)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.mixture import GaussianMixture

from vfl.datasets import split_columns, standardize
from vfl.gmm import (
    FEATURE_BOUND,
    GaussianBlock,
    block_parameters,
    block_squared_distances,
    centralized_kmeans,
    cluster_counts,
    component_sizes,
    guest_assign_clusters,
    guest_combine_host_log_densities,
    guest_combine_log_densities,
    guest_decrypt_masked_statistics,
    guest_encrypt_responsibilities,
    guest_random_responsibilities,
    guest_random_rows,
    host_encrypted_statistics,
    host_mask_statistics,
    host_relative_distances,
    host_relative_log_densities,
    host_unmask_statistics,
    kmeans_centers,
    one_hot,
    split_statistics,
    statistic_features,
)
from vfl.gmm.model import mixture_weights

K, SEED, TOL, REG = 3, 7, 1e-3, 1e-6


@pytest.fixture(scope="module")
def wine() -> np.ndarray:
    return standardize(np.asarray(load_wine().data, dtype=np.float64))


def _block(nk: np.ndarray, stats: np.ndarray, d: int) -> GaussianBlock:
    s1, s2 = split_statistics(stats, d, "diag")
    means, covs = block_parameters(nk, s1, s2, "diag", REG)
    return GaussianBlock.from_covariances("diag", means, covs)


def _m_step(guest_X, hosts_X, resp, keys):
    """Guest: own block in plaintext; every host: its block from its own masked encrypted statistics."""
    (gpk, gsk), _ = keys
    nk = component_sizes(resp)
    enc = guest_encrypt_responsibilities(gpk, resp)  # once; the same ciphertexts go to every host
    guest = _block(nk, resp.T @ statistic_features(guest_X, "diag"), guest_X.shape[1])
    hosts = []
    for X in hosts_X:
        F = statistic_features(X, "diag")
        enc_stats = host_encrypted_statistics(enc, F)
        masked, mask = host_mask_statistics(enc_stats)
        residues = guest_decrypt_masked_statistics(gsk, masked)  # masked: random-looking to the guest
        stats = host_unmask_statistics(residues, mask, enc_stats.precision, gpk, F, resp.shape[1])
        hosts.append(_block(nk, stats, X.shape[1]))
    return nk, guest, hosts


def _federated_em(guest_X, hosts_X, keys, max_iter=100):
    rs = np.random.RandomState(SEED)
    resp = guest_random_responsibilities(guest_X.shape[0], K, rs)
    nk, g, hs = _m_step(guest_X, hosts_X, resp, keys)
    weights = mixture_weights(nk, guest_X.shape[0], initial=True)
    lower_bound, n_iter = -np.inf, 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        messages = [host_relative_log_densities(h.log_density(X)) for h, X in zip(hs, hosts_X, strict=True)]
        e = guest_combine_host_log_densities(g.log_density(guest_X), messages, weights)
        prev, lower_bound = lower_bound, e.mean_log_likelihood
        nk, g, hs = _m_step(guest_X, hosts_X, e.responsibilities, keys)
        weights = mixture_weights(nk, guest_X.shape[0], initial=False)
        if abs(lower_bound - prev) < TOL:
            break
    return weights, g, hs, lower_bound, n_iter


@pytest.mark.parametrize("n_hosts", [1, 2, 3])
def test_diag_em_over_n_host_blocks_equals_sklearn_and_is_its_fixed_point(wine, keys_1024, n_hosts):
    guest_X = wine[:, :4]
    hosts_X = [wine[:, 4:][:, cols] for cols in split_columns(9, n_hosts)]
    weights, g, hs, lower_bound, n_iter = _federated_em(guest_X, hosts_X, keys_1024)
    means = np.hstack([g.means] + [h.means for h in hs])
    covs = np.hstack([g.covariances] + [h.covariances for h in hs])

    # scikit-learn's EM on the joined columns, from the same random initial responsibilities
    X = np.hstack([guest_X, *hosts_X])
    gm = GaussianMixture(K, covariance_type="diag", init_params="random", random_state=SEED, tol=TOL,
                         reg_covar=REG).fit(X)
    assert n_iter == gm.n_iter_
    assert lower_bound == pytest.approx(gm.lower_bound_, abs=1e-9)
    np.testing.assert_allclose(weights, gm.weights_, atol=1e-9)
    np.testing.assert_allclose(means, gm.means_, atol=1e-8)
    np.testing.assert_allclose(covs, gm.covariances_, atol=1e-8)

    # a fixed point: one more scikit-learn EM step from the federated parameters moves them by < tol
    nxt = GaussianMixture(K, covariance_type="diag", weights_init=weights, means_init=means,
                          precisions_init=1.0 / covs, max_iter=1, reg_covar=REG, tol=0.0)
    with pytest.warns(Warning):  # one iteration does not "converge" in scikit-learn's sense
        nxt.fit(X)
    np.testing.assert_allclose(nxt.means_, means, atol=5e-2)
    assert abs(nxt.lower_bound_ - lower_bound) < TOL


def _host_means_statistics(X: np.ndarray, resp: np.ndarray, keys) -> np.ndarray:
    """One host's encrypted "means" statistics gamma^T X with the guest (all K components sent)."""
    (gpk, gsk), _ = keys
    enc = guest_encrypt_responsibilities(gpk, resp)
    enc_stats = host_encrypted_statistics(enc, X, feature_bound=FEATURE_BOUND)
    masked, mask = host_mask_statistics(enc_stats)
    return host_unmask_statistics(guest_decrypt_masked_statistics(gsk, masked), mask, enc_stats.precision,
                                  gpk, X, resp.shape[1])


def test_federated_kmeans_over_three_host_blocks_equals_centralized_kmeans(wine, keys_1024):
    guest_X = wine[:, :4]
    hosts_X = [wine[:, 4:][:, cols] for cols in split_columns(9, 3)]
    rs = np.random.RandomState(SEED)
    rows = guest_random_rows(wine.shape[0], K, rs)
    resp = np.zeros((wine.shape[0], K))
    resp[rows, np.arange(K)] = 1.0
    counts = np.ones(K)
    g_c = kmeans_centers(counts, resp.T @ guest_X, None)
    h_c = [kmeans_centers(counts, _host_means_statistics(X, resp, keys_1024), None) for X in hosts_X]
    labels, previous, it = None, None, 0
    for it in range(1, 31):  # noqa: B007
        dist = [block_squared_distances(guest_X, g_c)] + [
            host_relative_distances(block_squared_distances(X, c)) for X, c in zip(hosts_X, h_c, strict=True)]
        labels = guest_assign_clusters(dist)
        if previous is not None and np.array_equal(labels, previous):
            break
        counts = cluster_counts(labels, K)
        resp = one_hot(labels, K)
        g_c = kmeans_centers(counts, resp.T @ guest_X, g_c)
        h_c = [kmeans_centers(counts, _host_means_statistics(X, resp, keys_1024), c)
               for X, c in zip(hosts_X, h_c, strict=True)]
        previous = labels
    want, want_it = centralized_kmeans([guest_X, *hosts_X], K, np.random.RandomState(SEED), 30)
    np.testing.assert_array_equal(labels, want)
    assert it == want_it


def test_one_host_combination_is_the_two_party_combination(wine):
    rng = np.random.default_rng(0)
    own, host = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    rel, level = host_relative_log_densities(host)
    w = np.array([0.2, 0.3, 0.5])
    a = guest_combine_host_log_densities(own, [(rel, level)], w)
    b = guest_combine_log_densities([own, rel], w, level)
    np.testing.assert_array_equal(a.log_resp, b.log_resp)
    assert a.mean_log_likelihood == b.mean_log_likelihood


def test_shifting_each_hosts_rows_leaves_responsibilities_and_likelihood_unchanged():
    rng = np.random.default_rng(1)
    own = rng.normal(size=(30, 2))
    hosts = [rng.normal(size=(30, 2)) for _ in range(3)]
    w = np.array([0.4, 0.6])
    plain = guest_combine_log_densities([own, *hosts], w)
    shifted = guest_combine_host_log_densities(own, [host_relative_log_densities(h) for h in hosts], w)
    np.testing.assert_allclose(shifted.log_resp, plain.log_resp, atol=1e-12)
    assert shifted.mean_log_likelihood == pytest.approx(plain.mean_log_likelihood, abs=1e-12)
