"""FL-EM-GMM between two parties (in-memory transport, 1024-bit keys): equal to centralized EM,
private as documented in docs/protocols/gmm.md, and clear about bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.mixture import GaussianMixture

from nodes.config import JobConfig
from nodes.context import PartyContext
from nodes.phases import gmm
from nodes.session import PeerAborted
from nodes.testing import make_contexts, run_pair
from nodes.transport.base import Address, Payload
from vfl.data import PartyData
from vfl.datasets import standardize
from vfl.errors import DataError, TrainingError
from vfl.gmm import GmmOptions, centralized_block_em, statistic_features
from vfl.paillier import EncryptedArray, PackedEncryptedArray, decrypt_slots


class Recorder:
    """A party's transport that keeps every payload it receives (the test reads them)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.role, self.peer = inner.role, inner.peer
        self.received: list[tuple[Address, Payload]] = []

    def send(self, address: Address, payload: Payload) -> None:
        self.inner.send(address, payload)

    def recv(self, address: Address, timeout: float | None = None) -> Payload:
        payload = self.inner.recv(address, timeout)
        self.received.append((address, payload))
        return payload

    def close(self) -> None:
        self.inner.close()


@dataclass
class Run:
    guest: Any
    host: Any
    gctx: PartyContext
    hctx: PartyContext
    greceived: list[tuple[Address, Payload]] = field(default_factory=list)
    hreceived: list[tuple[Address, Payload]] = field(default_factory=list)


def config(seed: int = 0, **gmm_keys: Any) -> JobConfig:
    cfg = JobConfig()
    cfg.job.seed = seed
    for k, v in gmm_keys.items():
        setattr(cfg.gmm, k, v)
    return cfg


def run(tmp: Path, guest: PartyData, host: PartyData, cfg: JobConfig, host_cfg: JobConfig | None = None) -> Run:
    gctx, hctx = make_contexts(tmp, guest, host, cfg)
    if host_cfg is not None:
        hctx.config = host_cfg
    grec, hrec = Recorder(gctx.transport), Recorder(hctx.transport)
    gctx.transport, hctx.transport = grec, hrec
    g, h = run_pair(gmm.run_guest, gmm.run_host, gctx, hctx, timeout=300)
    return Run(g, h, gctx, hctx, grec.received, hrec.received)


def run_failing(tmp: Path, guest: PartyData, host: PartyData, cfg: JobConfig,
                host_cfg: JobConfig | None = None) -> tuple[BaseException, BaseException]:
    """Run both sides to their errors; returns (guest error, host error)."""
    gctx, hctx = make_contexts(tmp, guest, host, cfg)
    if host_cfg is not None:
        hctx.config = host_cfg
    errors: dict[str, BaseException] = {}

    def catch(role: str, fn: Any) -> Any:
        def wrapped(ctx: PartyContext) -> None:
            try:
                fn(ctx)
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                errors[role] = exc
                ctx.transport.close()
        return wrapped

    run_pair(catch("guest", gmm.run_guest), catch("host", gmm.run_host), gctx, hctx, timeout=120)
    assert set(errors) == {"guest", "host"}, f"both parties must stop, got errors from {sorted(errors)}"
    return errors["guest"], errors["host"]


def wine_split() -> tuple[PartyData, PartyData]:
    """scikit-learn's wine data, standardized, split by columns: guest 6 (+ class labels), host 7."""
    data = load_wine()
    X = standardize(np.asarray(data.data, dtype=np.float64))
    ids = np.array([f"w{i}" for i in range(len(X))])
    guest = PartyData("guest", ids, [f"g{i}" for i in range(6)], X[:, :6], data.target.astype(np.int8), "wine:guest")
    host = PartyData("host", ids, [f"h{i}" for i in range(7)], X[:, 6:], None, "wine:host")
    return guest, host


def joined(guest: PartyData, host: PartyData) -> np.ndarray:
    return np.hstack([guest.X, host.X])


def assert_equals_sklearn(r: Run, gm: GaussianMixture, X: np.ndarray) -> None:
    """Weights, means, variances, lower bound, iterations and labels to 1e-6."""
    g, h = r.guest, r.host
    assert g.n_iter == gm.n_iter_
    assert g.converged == gm.converged_
    assert g.lower_bound == pytest.approx(gm.lower_bound_, abs=1e-6)
    np.testing.assert_allclose(g.model.weights, gm.weights_, atol=1e-6)
    np.testing.assert_allclose(h.model.weights, gm.weights_, atol=1e-6)
    np.testing.assert_allclose(np.hstack([g.model.block.means, h.model.block.means]), gm.means_, atol=1e-6)
    np.testing.assert_allclose(np.hstack([g.model.block.covariances, h.model.block.covariances]),
                               gm.covariances_, atol=1e-6)
    np.testing.assert_array_equal(g.labels, gm.predict(X))
    np.testing.assert_allclose(g.resp, gm.predict_proba(X), atol=1e-6)
    assert g.bic == pytest.approx(gm.bic(X), abs=1e-6 * X.shape[0])


# -- equal to centralized EM ----------------------------------------------------


@pytest.fixture(scope="module")
def breast_diag(tmp_path_factory, breast) -> Run:
    """Breast split, K=2, diag, K random rows as initial components (6 EM iterations)."""
    return run(tmp_path_factory.mktemp("breast"), *breast, config(seed=10, k=2, init="random_from_data"))


def test_diag_fit_equals_sklearn_diag_on_breast(breast_diag, breast):
    X = joined(*breast)
    gm = GaussianMixture(2, covariance_type="diag", init_params="random_from_data", random_state=10,
                         tol=1e-3, reg_covar=1e-6).fit(X)
    assert gm.converged_ and gm.n_iter_ > 3
    assert_equals_sklearn(breast_diag, gm, X)


def test_diag_fit_with_two_random_inits_equals_sklearn_on_wine(tmp_path):
    guest, host = wine_split()
    r = run(tmp_path, guest, host, config(seed=4, k=2, init="random", n_init=2, tol=1e-2))
    X = joined(guest, host)
    gm = GaussianMixture(2, covariance_type="diag", init_params="random", n_init=2, random_state=4,
                         tol=1e-2).fit(X)
    assert r.guest.best_init == 1 and r.guest.all_lower_bounds[0][-1] < r.guest.lower_bound - 1  # the second initialisation wins: keeping the best matters
    assert_equals_sklearn(r, gm, X)


@pytest.fixture(scope="module")
def wine_kmeans(tmp_path_factory) -> Run:
    guest, host = wine_split()
    return run(tmp_path_factory.mktemp("wine"), guest, host, config(seed=8, k=3, init="kmeans"))


def test_federated_kmeans_init_equals_centralized_kmeans_and_em_equals_sklearn_from_it(wine_kmeans):
    guest, host = wine_split()
    X = joined(guest, host)
    ref = centralized_block_em([guest.X, host.X], GmmOptions(k=3, init="kmeans", seed=8)).best
    (w0, gb0), (_, hb0) = wine_kmeans.guest.initial[0], wine_kmeans.host.initial[0]
    rw0, (rg0, rh0) = ref.initial[0]
    np.testing.assert_allclose(w0, rw0, atol=1e-12)
    np.testing.assert_allclose(np.hstack([gb0.means, hb0.means]), np.hstack([rg0.means, rh0.means]), atol=1e-9)
    gm = GaussianMixture(3, covariance_type="diag", weights_init=w0, means_init=np.hstack([gb0.means, hb0.means]),
                         precisions_init=1.0 / np.hstack([gb0.covariances, hb0.covariances])).fit(X)
    assert_equals_sklearn(wine_kmeans, gm, X)


def test_full_within_parties_equals_block_diagonal_reference_on_wine(tmp_path):
    guest, host = wine_split()
    r = run(tmp_path, guest, host, config(seed=0, k=2, covariance="full", init="random_from_data"))
    ref = centralized_block_em([guest.X, host.X], GmmOptions(k=2, covariance="full", init="random_from_data",
                                                             seed=0)).best
    assert r.guest.n_iter == ref.n_iter and r.guest.converged == ref.converged
    assert r.guest.lower_bound == pytest.approx(ref.lower_bound, abs=1e-6)
    np.testing.assert_allclose(r.guest.model.weights, ref.weights, atol=1e-6)
    for got, want in ((r.guest.model.block, ref.blocks[0]), (r.host.model.block, ref.blocks[1])):
        assert got.covariances.shape == want.covariances.shape
        np.testing.assert_allclose(got.means, want.means, atol=1e-6)
        np.testing.assert_allclose(got.covariances, want.covariances, atol=1e-6)
    np.testing.assert_array_equal(r.guest.labels, ref.labels)
    assert r.guest.bic == pytest.approx(ref.bic, abs=1e-4)


def test_host_columns_beyond_the_public_bound_send_unpacked_statistics_and_equal_the_reference(tmp_path):
    guest, wide = wine_split()
    host = PartyData("host", wide.ids, list(wide.features), wide.X * 1e5)  # beyond FEATURE_BOUND = 2^16
    r = run(tmp_path, guest, host, config(seed=0, k=2, covariance="diag", init="random", max_iter=5))
    ref = centralized_block_em([guest.X, host.X], GmmOptions(k=2, covariance="diag", init="random", max_iter=5,
                                                             seed=0)).best
    stats = [p["statistics"] for a, p in r.greceived if a.tag == "masked_statistics"]
    assert stats and not any(isinstance(v, PackedEncryptedArray) for v in stats)  # masked mod n, no bound sent
    assert r.guest.n_iter == ref.n_iter
    np.testing.assert_allclose(r.guest.model.weights, ref.weights, atol=1e-6)
    np.testing.assert_allclose(r.host.model.block.means, ref.blocks[1].means, rtol=1e-6)
    np.testing.assert_allclose(r.host.model.block.covariances, ref.blocks[1].covariances, rtol=1e-6)
    np.testing.assert_array_equal(r.guest.labels, ref.labels)


def test_bic_over_k_range_equals_sklearn_and_picks_the_true_k(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([c + rng.standard_normal((20, 4)) for c in ([0, 0, 0, 0], [5, 5, 0, 0], [0, 5, 5, 5])])
    ids = np.array([str(i) for i in range(60)])
    guest = PartyData("guest", ids, ["a", "b"], X[:, :2], np.repeat([0, 1, 1], 20).astype(np.int8))
    host = PartyData("host", ids, ["c", "d"], X[:, 2:])
    r = run(tmp_path, guest, host, config(seed=1, k_range=[1, 2, 3, 4], init="random_from_data"))
    for k in (1, 2, 3, 4):
        gm = GaussianMixture(k, covariance_type="diag", init_params="random_from_data", random_state=1).fit(X)
        assert r.guest.bic_by_k[k] == pytest.approx(gm.bic(X), abs=1e-6)
    assert r.guest.k == r.host.k == 3
    metrics = r.gctx.rundir.read_json("metrics.json")
    assert metrics["k"] == 3 and set(metrics["bic_by_k"]) == {"1", "2", "3", "4"}
    assert r.gctx.rundir.file("plots/gmm_bic.png").stat().st_size > 1000


# -- what crosses the wire -------------------------------------------------------


def _plain_fields(received: list[tuple[Address, Payload]]) -> list[tuple[str, str, Any]]:
    return [(a.tag, name, v) for a, p in received for name, v in p.items() if not isinstance(v, EncryptedArray)]


def test_host_never_receives_responsibilities_or_assignments_in_plaintext(breast_diag, breast):
    n, k = breast[0].n_rows, 2
    guest_key = breast_diag.gctx.public_key
    enc_fields = [(a.tag, v) for a, p in breast_diag.hreceived for v in p.values() if isinstance(v, EncryptedArray)]
    assert {t for t, _ in enc_fields} == {"responsibilities"}
    assert all(v.public_key == guest_key and v.public_key != breast_diag.hctx.public_key for _, v in enc_fields)
    for tag, name, v in _plain_fields(breast_diag.hreceived):
        if isinstance(v, np.ndarray):
            assert v.size <= k, f"{tag}.{name}: a per-row array of shape {v.shape} reached the host"
        elif isinstance(v, bytes):
            assert (tag, name) == ("decrypted_masked_statistics", "residues")
        else:
            assert not (isinstance(v, list) and len(v) >= n), f"{tag}.{name}: a per-row list reached the host"
    # the final labels and responsibilities, in any encoding, are not in what the host received
    labels = breast_diag.guest.labels.astype(np.float64)
    for _, _, v in _plain_fields(breast_diag.hreceived):
        assert not (isinstance(v, np.ndarray) and v.size == n and np.array_equal(v.ravel(), labels))


def test_host_statistics_reach_it_only_masked(breast_diag, breast):
    """What the guest returns for unmasking is uniform mod n, not the host's statistics."""
    gsk, gpk = breast_diag.gctx.private_key, breast_diag.gctx.public_key
    host_F = statistic_features(breast[1].X, "diag")
    by_round: dict[int, dict[str, Any]] = {}
    for a, p in breast_diag.hreceived:
        by_round.setdefault(a.round, {}).update({f"{a.tag}.{k}": v for k, v in p.items()})
    checked = 0
    for msgs in by_round.values():
        if "responsibilities.responsibilities" not in msgs:
            continue
        enc = msgs["responsibilities.responsibilities"]
        gamma = gsk.decrypt(enc)  # the test holds the guest's key; the host does not
        true_stats = gamma @ host_F
        w = (gpk.n.bit_length() + 7) // 8
        raw = msgs["decrypted_masked_statistics.residues"]
        residues = [int.from_bytes(raw[i:i + w], "big") for i in range(0, len(raw), w)]
        assert len(residues) == true_stats.size
        # an unmasked statistic is below 2^114 (96 fractional bits); each is masked with a uniform value
        # of 40 more bits than the statistics' bound (vfl.gmm.mstep), below 2^120 with probability ~2^-27
        assert all(r > 1 << 120 for r in residues)
        plain_encoding = np.array([round(v * 2.0 ** (64 + 32)) % gpk.n for v in true_stats.ravel()], dtype=object)
        assert not any(int(a) == int(b) for a, b in zip(residues, plain_encoding, strict=True))
        checked += 1
    assert checked == breast_diag.guest.n_iter + 1  # the initial M-step and every EM iteration


def test_guest_never_receives_host_features_or_statistics(breast_diag, breast):
    host_X = breast[1].X
    n = host_X.shape[0]
    tags = {a.tag for a, _ in breast_diag.greceived}
    assert tags == {"ready", "ack", "log_density", "masked_statistics"}
    for tag, name, v in _plain_fields(breast_diag.greceived):
        if isinstance(v, np.ndarray):
            assert (tag, name) == ("log_density", "log_density") and v.shape == (n, 2)
            assert np.all(v.max(axis=1) == 0.0)  # each row less its own level (tests/attacks)
            for j in range(host_X.shape[1]):
                for col in v.T:
                    assert not np.allclose(col, host_X[:, j])
    gsk = breast_diag.gctx.private_key
    for a, p in breast_diag.greceived:
        if a.tag == "masked_statistics":
            packed = p["statistics"]
            assert packed.cipher.size < np.prod(packed.shape)  # packed: many statistics per ciphertext
            masked = decrypt_slots(gsk, packed)
            assert all(int(r) > 1 << 120 for r in masked.ravel())  # the masks hide the statistics (< 2^114)


def test_every_em_iteration_is_a_round_both_parties_commit_with_equal_digests(breast_diag):
    g_rounds = [json.loads(x) for x in breast_diag.gctx.rundir.file("rounds.jsonl").read_text().splitlines()]
    h_rounds = [json.loads(x) for x in breast_diag.hctx.rundir.file("rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in g_rounds] == [r["round"] for r in h_rounds]
    assert [r["transcript_digest"] for r in g_rounds] == [r["transcript_digest"] for r in h_rounds]
    # setup, initial M-step, one per EM iteration, final E-step, selection
    assert len(g_rounds) == 1 + 1 + breast_diag.guest.n_iter + 1 + 1
    em = [r for r in g_rounds if r["loss"] is not None]
    assert [-r["loss"] for r in em] == pytest.approx(breast_diag.guest.lower_bounds)
    cp = breast_diag.hctx.rundir.read_json(f"checkpoints/round-{em[-1]['round']:04d}.json")
    assert cp["params"]["step"] == "em" and len(cp["params"]["means"][0]) == 20  # the host's own block


def test_results_are_written_for_each_party(breast_diag, breast):
    gdir, hdir = breast_diag.gctx.rundir, breast_diag.hctx.rundir
    gmodel, hmodel = gdir.read_json("model.json"), hdir.read_json("model.json")
    assert gmodel["features"] == breast[0].features and hmodel["features"] == breast[1].features
    assert gmodel["weights"] == hmodel["weights"] and gmodel["covariance"] == "diag"
    assert np.array(hmodel["means"]).shape == (2, 20)
    metrics = gdir.read_json("metrics.json")
    assert metrics["iterations"] == breast_diag.guest.n_iter
    assert metrics["log_likelihood_per_iteration"] == breast_diag.guest.lower_bounds
    assert 0.5 < metrics["adjusted_rand_index"] <= 1 and 0.8 < metrics["best_permutation_accuracy"] <= 1
    lines = gdir.file("predictions.csv").read_text().splitlines()
    assert lines[0] == "id,label,predict_result,predict_score,predict_detail,type" and len(lines) == 570
    for name in ("gmm_log_likelihood.png", "gmm_clusters.png"):
        assert gdir.file(f"plots/{name}").stat().st_size > 1000
    assert not hdir.file("metrics.json").exists() and not hdir.file("predictions.csv").exists()


# -- inference -------------------------------------------------------------------


def test_predict_assigns_new_rows_as_the_fitted_model_does(wine_kmeans, tmp_path):
    guest, host = wine_split()
    rows = np.arange(0, 178, 3)
    new_guest, new_host = guest.take(rows), host.take(rows)
    gmodel = gmm.load_model(wine_kmeans.gctx.rundir.path)
    hmodel = gmm.load_model(wine_kmeans.hctx.rundir.path / "model.json")
    gctx, hctx = make_contexts(tmp_path, new_guest, new_host, JobConfig())
    hrec = Recorder(hctx.transport)
    hctx.transport = hrec
    (resp, labels), _ = run_pair(lambda c: gmm.run_predict_guest(c, gmodel),
                                 lambda c: gmm.run_predict_host(c, hmodel), gctx, hctx)
    np.testing.assert_array_equal(labels, wine_kmeans.guest.labels[rows])
    np.testing.assert_allclose(resp, wine_kmeans.guest.resp[rows], atol=1e-9)
    assert [a.tag for a, _ in hrec.received] == ["predict"]  # the host learns only the row count and K
    lines = gctx.rundir.file("predictions.csv").read_text().splitlines()
    assert len(lines) == len(rows) + 1 and lines[1].endswith(",predict")


def test_predict_refuses_rows_missing_a_model_column(wine_kmeans, tmp_path):
    guest, host = wine_split()
    hmodel = gmm.load_model(wine_kmeans.hctx.rundir.path)
    gmodel = gmm.load_model(wine_kmeans.gctx.rundir.path)
    short = host.select(host.features[:-1])
    gctx, hctx = make_contexts(tmp_path, guest, short, JobConfig())
    with pytest.raises((DataError, PeerAborted), match="host data has no column 'h6' that its model needs"):
        run_pair(lambda c: gmm.run_predict_guest(c, gmodel), lambda c: gmm.run_predict_host(c, hmodel), gctx, hctx)


# -- bad input -------------------------------------------------------------------


def _nothing_written(tmp: Path) -> None:
    for role in ("guest", "host"):
        for name in ("model.json", "metrics.json", "predictions.csv"):
            assert not (tmp / role / name).exists(), f"{role}/{name} written by a failed fit"


def test_k_larger_than_the_rows_stops_both_parties_with_a_clear_message(tmp_path, breast):
    gerr, herr = run_failing(tmp_path, *breast, config(k=600))
    assert isinstance(gerr, DataError)
    assert str(gerr) == "[gmm] k = 600 is larger than the 569 aligned rows; choose k <= 569"
    assert "k = 600 is larger than the 569 aligned rows" in str(herr)
    _nothing_written(tmp_path)


def test_constant_host_feature_is_refused_before_em(tmp_path, breast):
    guest, host = breast
    X = host.X.copy()
    X[:, 3] = 2.5
    bad = PartyData("host", host.ids, host.features, X)
    gerr, herr = run_failing(tmp_path, guest, bad, config())
    assert isinstance(herr, DataError) and "host feature 'x3' is constant (every row is 2.5)" in str(herr)
    assert isinstance(gerr, PeerAborted) and "host feature 'x3' is constant" in str(gerr)
    _nothing_written(tmp_path)


def test_collapsing_component_stops_the_fit_without_writing_results(tmp_path):
    """Ten rows share the host's value 0 in x0 and form their own cluster: with reg_covar = 0
    that component's host variance collapses to 0 (scikit-learn refuses this data too)."""
    rng = np.random.default_rng(0)
    n = 40
    g = rng.standard_normal((n, 2))
    g[:10] += 12.0
    h = rng.standard_normal((n, 2))
    h[:10, 0] = 0.0
    ids = np.array([str(i) for i in range(n)])
    guest = PartyData("guest", ids, ["a", "b"], g, (np.arange(n) < 10).astype(np.int8))
    host = PartyData("host", ids, ["x0", "x1"], h)
    gerr, herr = run_failing(tmp_path, guest, host, config(k=2, reg_covar=0.0, init="kmeans"))
    assert isinstance(herr, TrainingError)
    assert "component" in str(herr) and "collapsing covariance" in str(herr) and "'x0'" in str(herr)
    assert isinstance(gerr, PeerAborted) and "collapsing covariance" in str(gerr)
    _nothing_written(tmp_path)
    for cp in (tmp_path / "host" / "checkpoints").glob("*.json"):
        assert "NaN" not in cp.read_text() and "Infinity" not in cp.read_text()


def test_host_with_different_settings_refuses(tmp_path, breast):
    gerr, herr = run_failing(tmp_path, *breast, config(k=2), host_cfg=config(k=3))
    assert "settings differ" in str(herr) and "k: guest 2, host 3" in str(herr)
    assert isinstance(gerr, PeerAborted) and "settings differ" in str(gerr)


def test_a_guest_without_labels_fits_and_writes_no_label_metrics(tmp_path):
    rng = np.random.default_rng(3)
    centres = np.repeat([[0.0, 0.0, 0.0, 0.0], [4.0, 4.0, 4.0, 4.0]], 30, axis=0)
    X = centres + rng.normal(size=centres.shape)
    ids = np.array([str(i) for i in range(60)])
    g = PartyData("guest", ids, ["a", "b"], X[:, :2], None)
    h = PartyData("host", ids, ["c", "d"], X[:, 2:])
    r = run(tmp_path, g, h, config(seed=1, k=2, max_iter=5))
    metrics = r.gctx.rundir.read_json("metrics.json")
    assert "adjusted_rand_index" not in metrics and metrics["k"] == 2
    assert sorted(metrics["cluster_sizes"]) == [30, 30]
    rows = r.gctx.rundir.file("predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 60 and all(line.split(",")[1] == "" for line in rows)
