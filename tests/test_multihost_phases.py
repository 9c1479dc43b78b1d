"""Phases with a guest and 1..3 hosts over `nodes.testing.make_sessions` (in-memory links, real Paillier)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from nodes.config import load_config
from nodes.session import Session
from nodes.testing import make_sessions, run_parties
from vfl.datasets import breast_split_hosts

CFG = ["paillier.key_bits=1024", "paillier.insecure_test_keys=true"]


def _sessions(tmp_path, hosts: int, extra: tuple[str, ...] = ()) -> dict[str, Session]:
    guest, host_data = breast_split_hosts(hosts)
    return make_sessions(tmp_path, guest, list(host_data), load_config(None, [*CFG, *extra]))


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_make_sessions_connects_the_guest_to_every_host_by_role_name(tmp_path, hosts: int) -> None:
    sessions = _sessions(tmp_path, hosts)
    names = ["host"] if hosts == 1 else [f"host{i}" for i in range(1, hosts + 1)]
    assert list(sessions) == ["guest", *names]
    assert sessions["guest"].peers == tuple(names)
    for name in names:
        assert sessions[name].peers == ("guest",)
        assert sessions[name].peer_key("guest") == sessions["guest"].public_key
        assert sessions["guest"].peer_key(name) == sessions[name].public_key
    for s in sessions.values():
        assert s.ctx.host_keys == {n: sessions[n].public_key for n in names}
        assert s.ctx.host_columns == {n: sessions[n].ctx.data.X.shape[1] for n in names}

    def guest(s: Session) -> list[Any]:
        with s.round("echo") as r:
            for n in s.peers:  # relay a ciphertext under the first host's key to every host
                r.send(n, "ping", {"c": s.ctx.host_keys[names[0]].encrypt(np.array([7]))})
            got = [r.recv(n, "pong")["v"] for n in s.peers]
            r.commit({"got": got})
        return [r.number, got]

    def host(s: Session) -> list[Any]:
        with s.round("echo") as r:
            c = r.recv("guest", "ping")["c"]
            r.send("guest", "pong", {"v": s.role})
            r.commit({"sent": s.role})
        return [r.number, c.public_key == s.ctx.host_keys[names[0]]]

    out = run_parties({"guest": guest, **{n: host for n in names}}, sessions, timeout=60)
    assert out["guest"] == [1, names]
    for n in names:
        assert out[n] == [1, True]
        cp = json.loads((tmp_path / n / "checkpoints" / "round-0001.json").read_text())
        assert cp["params"] == {"sent": n}


def test_run_parties_reraises_the_error_that_happened_first(tmp_path) -> None:
    sessions = _sessions(tmp_path, 2)

    def guest(s: Session) -> None:
        with s.round("echo") as r:
            r.peer_waits("host1", "ping")
            r.peer_waits("host2", "ping")
            raise ValueError("guest gave up")

    def host(s: Session) -> None:
        with s.round("echo") as r:
            r.recv("guest", "ping")

    with pytest.raises(ValueError, match="guest gave up"):
        run_parties({"guest": guest, "host1": host, "host2": host}, sessions, timeout=60)


def _names(hosts: int) -> list[str]:
    return ["host"] if hosts == 1 else [f"host{i}" for i in range(1, hosts + 1)]


def _same_for_all(sessions: dict[str, Session], fn: Any) -> dict[str, Any]:
    return {role: fn for role in sessions}


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_intersection_is_the_plain_intersection_over_every_party_aligned_alike(tmp_path, hosts: int) -> None:
    from nodes.phases import intersection

    guest, host_data = breast_split_hosts(hosts, overlap=0.8, shuffle=True, seed=3)
    sessions = make_sessions(tmp_path, guest, list(host_data), load_config(None, CFG))
    expected = set(guest.ids.tolist())
    for h in host_data:
        expected &= set(h.ids.tolist())
    out = run_parties({"guest": intersection.run_guest, **{n: intersection.run_host for n in _names(hosts)}},
                      sessions, timeout=120)
    assert all(o["intersection_size"] == len(expected) for o in out.values())
    ids = [s.ctx.data.ids.tolist() for s in sessions.values()]
    assert set(ids[0]) == expected and all(i == ids[0] for i in ids)
    g = sessions["guest"].ctx.data
    for n in _names(hosts):  # the rows stay rows: the guest's labels still match each host's features
        assert sessions[n].ctx.data.X.shape[0] == g.X.shape[0]
    if hosts > 1:
        assert set(out["guest"]["other_sizes"]) == set(_names(hosts))
        assert all(set(out[n]) == {"intersection_size", "own_size", "other_size"} for n in _names(hosts))


def _run_through(tmp_path, hosts: int, phases: list[str], extra: tuple[str, ...] = (),
                 overlap: float = 1.0) -> tuple[dict[str, Session], dict[str, Any], Any, list[Any]]:
    """Run `phases` in order for a guest and `hosts` hosts; the last phase's results by role."""
    import importlib

    guest, host_data = breast_split_hosts(hosts, overlap=overlap, shuffle=overlap < 1.0, seed=5)
    sessions = make_sessions(tmp_path, guest, list(host_data), load_config(None, [*CFG, *extra]))
    out: dict[str, Any] = {}
    for name in phases:
        module = importlib.import_module(f"nodes.phases.{name}")
        out = run_parties({"guest": module.run_guest, **{n: module.run_host for n in _names(hosts)}},
                          sessions, timeout=300)
    return sessions, out, guest, list(host_data)


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_binning_woe_and_iv_of_every_hosts_features_equal_the_joined_reference_exactly(tmp_path, hosts: int) -> None:
    from vfl.binning import plaintext_binning
    from vfl.selection import public_names

    sessions, out, _, _ = _run_through(tmp_path, hosts, ["intersection", "binning"], ("binning.bins=6",
                                                                                       "selection.top_k=20"))
    names = _names(hosts)
    guest_out = out["guest"]
    # the reference: plaintext binning on the joined rows, the hosts' columns under their public names
    guest, host_data = breast_split_hosts(hosts, overlap=1.0, shuffle=False, seed=5)
    X = np.hstack([guest.X] + [h.X for h in host_data])
    public = list(guest.features) + [p for n, h in zip(names, host_data, strict=True)
                                     for p in public_names(n, h.features, False).values()]
    reference = {f.name: f.table for f in plaintext_binning(X, guest.y, public, 6)}
    got = {f.name: f.table for f in guest_out.features}
    assert list(got) == public
    for name, ref in reference.items():
        np.testing.assert_array_equal(got[name].event_count, ref.event_count)
        np.testing.assert_array_equal(got[name].woe, ref.woe)
        assert got[name].iv == ref.iv
    kept = set(guest_out.selection.kept)
    for n, h in zip(names, host_data, strict=True):
        own = public_names(n, h.features, False)
        assert out[n].kept == [c for c in h.features if own[c] in kept]  # told exactly its own columns
        assert out[n].kept and sessions[n].ctx.data.features == out[n].kept
        sel = json.loads((tmp_path / n / "selection.json").read_text())
        assert all(d["public_name"].startswith(f"{n}.") for d in sel["kept"] + sel["dropped"])


LR_CFG = ("lr.epochs=3", "lr.learning_rate=0.15", "lr.validation=0.2", "lr.label_noise=1.0", "job.seed=7",
          "lr.tol=0.0")
LR_ROWS = 120


def _lr_sessions(tmp_path, hosts: int, extra: tuple[str, ...] = ()) -> tuple[dict[str, Session], Any, list[Any]]:
    guest, host_data = breast_split_hosts(hosts)
    rows = np.random.default_rng(0).permutation(guest.n_rows)[:LR_ROWS]
    guest, host_data = guest.take(rows), [h.take(rows) for h in host_data]
    sessions = make_sessions(tmp_path, guest, host_data, load_config(None, [*CFG, *LR_CFG, *extra]))
    return sessions, guest, host_data


def _rounds(tmp_path, role: str) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (tmp_path / role / "checkpoints").glob("round-*.json"))


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_lr_weights_equal_the_plaintext_reference_on_the_joined_data(tmp_path, hosts: int) -> None:
    from nodes.phases import lr
    from vfl.lr.reference import fit_reference_hosts

    sessions, guest, host_data = _lr_sessions(tmp_path, hosts, ("lr.round_every=2",))
    names = _names(hosts)
    out = run_parties({"guest": lr.run_guest, **{n: lr.run_host for n in names}}, sessions, timeout=300)
    opts = lr.options_from_config(sessions["guest"].ctx.config)
    noise = [out["guest"]["host_noise"]] if hosts == 1 else [out["guest"]["hosts_noise"][n] for n in names]
    ref = fit_reference_hosts(guest.X, [h.X for h in host_data], guest.y, opts, host_noise=noise)
    gm = out["guest"]["model"]
    np.testing.assert_allclose(gm["weights"], ref.guest.weights, atol=1e-6, rtol=0)
    assert gm["intercept"] == pytest.approx(ref.guest.intercept, abs=1e-6)
    for n, want in zip(names, ref.hosts, strict=True):
        np.testing.assert_allclose(out[n]["model"]["weights"], want.weights, atol=1e-6, rtol=0)
        saved = json.loads((tmp_path / n / "model.json").read_text())
        assert saved["weights"] == out[n]["model"]["weights"]
    metrics = json.loads((tmp_path / "guest" / "metrics.json").read_text())
    np.testing.assert_allclose(metrics["training"]["loss"], ref.losses, atol=1e-8, rtol=0)
    assert all(len(nz) == 3 and np.any(nz[0] != 0) for nz in noise)  # one noise per host and batch
    # every party committed every round, with the same round numbers
    assert all(_rounds(tmp_path, r) == _rounds(tmp_path, "guest") for r in names)
    assert out["guest"]["rounds"] == out[names[-1]]["rounds"] == [1, 2]


def test_a_host_that_fails_mid_training_stops_every_other_party_naming_it(tmp_path, monkeypatch) -> None:
    from nodes.phases import lr
    from nodes.session import PeerAborted

    sessions, _, _ = _lr_sessions(tmp_path, 3)
    real = lr._host_of_many_batch

    def batch(star, ctx, *args, **kwargs):
        if ctx.role == "host2" and args[-3] == 1:  # epoch 2
            raise lr.TrainingError("host2's disk is full")
        return real(star, ctx, *args, **kwargs)

    monkeypatch.setattr(lr, "_host_of_many_batch", batch)
    errors: dict[str, BaseException] = {}

    def catching(fn):
        def run(s: Session) -> None:
            try:
                fn(s)
            except Exception as exc:  # noqa: BLE001 - every party's error is checked below
                errors[s.role] = exc
        return run

    run_parties({"guest": catching(lr.run_guest), **{n: catching(lr.run_host) for n in _names(3)}},
                sessions, timeout=120)
    assert str(errors["host2"]) == "host2's disk is full"
    for role in ("guest", "host1", "host3"):
        exc = errors[role]
        assert isinstance(exc, PeerAborted) and "host2" in str(exc) and "disk is full" in str(exc)
        assert "\n" not in str(exc)


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_diagonal_gmm_is_a_fixed_point_of_scikit_learns_em_on_the_joined_columns(tmp_path, hosts: int) -> None:
    from sklearn.mixture import GaussianMixture

    from nodes.phases import gmm

    guest, host_data = breast_split_hosts(hosts)
    rows = np.random.default_rng(1).permutation(guest.n_rows)[:90]
    guest, host_data = guest.take(rows), [h.take(rows) for h in host_data]
    cfg = load_config(None, [*CFG, "gmm.k=2", "gmm.covariance=\"diag\"", "gmm.init=\"random\"", "gmm.tol=1e-3",
                             "gmm.max_iter=200", "job.seed=3"])
    sessions = make_sessions(tmp_path, guest, host_data, cfg)
    names = _names(hosts)
    out = run_parties({"guest": gmm.run_guest, **{n: gmm.run_host for n in names}}, sessions, timeout=300)
    res = out["guest"]
    assert res.converged
    parts = [res.model, *(out[n].model for n in names)]
    for p in parts[1:]:
        np.testing.assert_array_equal(p.weights, res.model.weights)
    X = np.hstack([guest.X] + [h.X for h in host_data])
    means = np.hstack([p.block.means for p in parts])
    covs = np.hstack([p.block.covariances for p in parts])
    nxt = GaussianMixture(2, covariance_type="diag", weights_init=res.model.weights, means_init=means,
                          precisions_init=1.0 / covs, max_iter=1, reg_covar=1e-6, tol=0.0)
    with pytest.warns(Warning):  # one iteration does not "converge" in scikit-learn's sense
        nxt.fit(X)
    assert abs(nxt.lower_bound_ - res.lower_bound) < 1e-3
    np.testing.assert_allclose(nxt.means_, means, atol=5e-2)
    assert all(_rounds(tmp_path, n) == _rounds(tmp_path, "guest") for n in names)
    for n in names:
        assert json.loads((tmp_path / n / "model.json").read_text())["role"] == n


def test_a_two_host_lr_job_writes_each_partys_outputs_under_its_role_name(tmp_path) -> None:
    from nodes.communication import write_communication
    from nodes.phases import binning, intersection, lr

    guest, host_data = breast_split_hosts(2)
    rows = np.random.default_rng(2).permutation(guest.n_rows)[:100]
    sessions = make_sessions(tmp_path, guest.take(rows), [h.take(rows) for h in host_data],
                             load_config(None, [*CFG, "lr.epochs=2", "selection.top_k=20"]))
    for module in (intersection, binning, lr):
        run_parties({"guest": module.run_guest, "host1": module.run_host, "host2": module.run_host}, sessions,
                    timeout=300)
    metrics = json.loads((tmp_path / "guest" / "metrics.json").read_text())
    assert metrics["training"]["hosts"] == ["host1", "host2"] and metrics["communication"] == "communication.json"
    assert (tmp_path / "guest" / "plots" / "lr_loss.png").is_file()
    for n in ("host1", "host2"):
        model = json.loads((tmp_path / n / "model.json").read_text())
        assert model["features"] == sessions[n].ctx.data.features  # its own kept columns only
        assert not (tmp_path / n / "metrics.json").exists()
    summary = {role: write_communication(sessions[role].ctx.rundir, role) for role in sessions}
    assert set(summary["guest"]["peers"]) == {"host1", "host2"}
    assert set(summary["host1"]["peers"]) == {"guest"}  # a host hears only from the guest
    assert summary["host1"]["totals"]["sent_bytes"] == summary["guest"]["peers"]["host1"]["received_bytes"]


def test_an_intersection_with_no_common_id_stops_every_party_with_one_line(tmp_path) -> None:
    from nodes.phases import intersection
    from nodes.session import PeerAborted
    from vfl.errors import PsiError

    guest, host_data = breast_split_hosts(2)
    half = guest.n_rows // 2
    hosts = [host_data[0].take(np.arange(half)), host_data[1].take(np.arange(half, guest.n_rows))]
    sessions = make_sessions(tmp_path, guest, hosts, load_config(None, CFG))
    errors: dict[str, BaseException] = {}

    def catching(fn):
        def run(s: Session) -> None:
            try:
                fn(s)
            except Exception as exc:  # noqa: BLE001 - every party's error is checked below
                errors[s.role] = exc
        return run

    run_parties({"guest": catching(intersection.run_guest), "host1": catching(intersection.run_host),
                 "host2": catching(intersection.run_host)}, sessions, timeout=60)
    assert isinstance(errors["guest"], PsiError) and "share no ID" in str(errors["guest"])
    for n in ("host1", "host2"):
        assert isinstance(errors[n], PeerAborted) and "empty intersection" in str(errors[n])


@pytest.mark.parametrize("algorithm", ["lr", "gmm"])
def test_two_hosts_saved_models_score_the_training_rows_as_the_training_job_did(tmp_path, algorithm: str) -> None:
    import csv
    import importlib

    from nodes.phases import intersection, predict

    fit = importlib.import_module(f"nodes.phases.{algorithm}")
    guest, host_data = breast_split_hosts(2)
    rows = np.random.default_rng(4).permutation(guest.n_rows)[:90]
    guest, host_data = guest.take(rows), [h.take(rows) for h in host_data]
    extra = ["lr.epochs=2"] if algorithm == "lr" else ["gmm.k=2", "gmm.init=\"random\"", "gmm.max_iter=5"]
    cfg = load_config(None, [*CFG, *extra])
    names = ["host1", "host2"]
    trained = make_sessions(tmp_path / "train", guest, host_data, cfg)
    run_parties({"guest": fit.run_guest, **{n: fit.run_host for n in names}}, trained, timeout=300)
    sessions = make_sessions(tmp_path / "predict", guest, host_data, cfg)
    for role, s in sessions.items():
        s.ctx.state["predict_model"] = predict.load_party_model(tmp_path / "train" / role, role)
    for module in (intersection, predict):
        run_parties({"guest": module.run_guest, **{n: module.run_host for n in names}}, sessions, timeout=300)

    def scores(path):
        with path.open() as fh:
            return {r["id"]: (r["predict_result"], float(r["predict_score"])) for r in csv.DictReader(fh)}

    before, after = scores(tmp_path / "train" / "guest" / "predictions.csv"), \
        scores(tmp_path / "predict" / "guest" / "predictions.csv")
    assert set(before) == set(after)
    for i, (label, p) in after.items():
        assert label == before[i][0] and p == pytest.approx(before[i][1], abs=1e-9)
