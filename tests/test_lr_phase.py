"""The lr phase: guest and host against each other over the in-memory transport (1024-bit keys).

One breast-cancer run (module fixture) is checked for equality with the
plaintext reference, accuracy against scikit-learn, its output files and what
each party received; smaller synthetic runs cover options and failures.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from nodes.config import JobConfig, load_config
from nodes.context import PartyContext
from nodes.phases import binning as binning_phase
from nodes.phases import lr as phase
from nodes.session import PeerAborted
from nodes.testing import make_contexts, run_pair
from nodes.transport.base import Address, Payload, TransportError
from vfl.binning import BinIndicators, WoeStandardizer, plaintext_binning
from vfl.data import PartyData
from vfl.datasets import synth_split
from vfl.errors import DataError, TrainingError
from vfl.lr import LrOptions, fit_reference, predict_proba
from vfl.lr.protocol import decrypt_masked
from vfl.metrics import auc
from vfl.paillier import EncryptedArray, PackedEncryptedArray
from vfl.selection import SelectionRule, select_by_iv

# The breast run checks the algorithm's accuracy against scikit-learn, so its label noise on the host's
# gradient is small (0.05 x sensitivity); tests/test_lr_privacy.py and tests/attacks/ check the noise itself.
BREAST_SETTINGS = ["lr.epochs=10", "lr.batch_size=128", "lr.early_stopping=3", "lr.round_every=2",
                   "lr.label_noise=0.05"]


class Recorder:
    """A transport that keeps every payload its party received (what that party gets to see)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.role, self.peer = inner, inner.role, inner.peer
        self.received: list[tuple[Address, Payload]] = []

    def send(self, address: Address, payload: Payload) -> None:
        self.inner.send(address, payload)

    def recv(self, address: Address, timeout: float | None = None) -> Payload:
        payload = self.inner.recv(address, timeout)
        self.received.append((address, payload))
        return payload

    def close(self) -> None:
        self.inner.close()


def _config(*settings: str) -> JobConfig:
    return load_config(None, list(settings))


def _run(tmp: Path, guest: PartyData, host: PartyData, config: JobConfig, record: bool = False):
    g, h = make_contexts(tmp, guest, host, config)
    if record:
        g.transport, h.transport = Recorder(g.transport), Recorder(h.transport)
    rg, rh = run_pair(phase.run_guest, phase.run_host, g, h)
    return g, h, rg, rh


def _run_both(guest_fn: Callable[[PartyContext], Any], host_fn: Callable[[PartyContext], Any],
              g: PartyContext, h: PartyContext) -> tuple[BaseException | None, BaseException | None]:
    """Run both sides and return each side's exception (None if it finished)."""
    errors: dict[str, BaseException | None] = {"guest": None, "host": None}

    def target(name: str, fn: Callable[[PartyContext], Any], ctx: PartyContext) -> None:
        try:
            fn(ctx)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            errors[name] = exc
            ctx.transport.close()

    th = threading.Thread(target=target, args=("host", host_fn, h), daemon=True)
    th.start()
    target("guest", guest_fn, g)
    th.join(60)
    assert not th.is_alive(), "host did not stop"
    return errors["guest"], errors["host"]


def _looks_masked(residues: list[int], n: int) -> bool:
    """True when no residue is a small fixed-point number (what an unmasked value would be).

    Unmasked gradients and losses here stay below 2^90 (74 fractional bits); a uniform mask
    mod n or a packed slot mask of 40 bits more than the values' bound (vfl.lr.protocol)
    is below 2^110 with probability < 2^-29.
    """
    return all(min(int(r) % n, n - int(r) % n) > 1 << 110 for r in residues)


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory, breast):
    g, h = breast
    tmp = tmp_path_factory.mktemp("lr-breast")
    cfg = _config(*BREAST_SETTINGS)
    gctx, hctx, rg, rh = _run(tmp, g, h, cfg, record=True)
    ref = fit_reference(g.X, h.X, g.y, phase.options_from_config(cfg), g.features, h.features,
                        host_noise=rg["host_noise"])
    return {"tmp": tmp, "guest": gctx, "host": hctx, "rg": rg, "rh": rh, "ref": ref, "cfg": cfg}


# -- equal to centralized -------------------------------------------------------------


def test_federated_weights_equal_the_plaintext_reference_on_breast(breast_run):
    rg, rh, ref = breast_run["rg"], breast_run["rh"], breast_run["ref"]
    np.testing.assert_allclose(rg["model"]["weights"], ref.guest.weights, rtol=0, atol=1e-6)
    assert rg["model"]["intercept"] == pytest.approx(ref.guest.intercept, abs=1e-6)
    np.testing.assert_allclose(rh["model"]["weights"], ref.host.weights, rtol=0, atol=1e-6)
    assert rg["epochs"] == ref.epochs_run and rg["stop_reason"] == ref.stop_reason
    np.testing.assert_allclose(rg["metrics"]["training"]["loss"], ref.losses, atol=1e-9)
    np.testing.assert_allclose(rg["metrics"]["training"]["validation_loss"], ref.validation_losses, atol=1e-9)


def test_federated_auc_equals_the_reference_auc(breast_run, breast):
    g, h = breast
    ref = breast_run["ref"]
    p = predict_proba(ref.guest.partial_scores(g.X), ref.host.partial_scores(h.X))
    m = breast_run["rg"]["metrics"]
    assert m["train"]["auc"] == pytest.approx(auc(g.y[ref.train_rows], p[ref.train_rows]), abs=1e-9)
    assert m["validate"]["auc"] == pytest.approx(auc(g.y[ref.validation_rows], p[ref.validation_rows]), abs=1e-9)


def test_validation_auc_is_within_0_005_of_scikit_learn_on_the_same_split(breast_run, breast):
    g, h = breast
    ref = breast_run["ref"]
    X = np.hstack([g.X, h.X])
    sk = LogisticRegression(max_iter=5000).fit(X[ref.train_rows], g.y[ref.train_rows])
    sk_auc = auc(g.y[ref.validation_rows], sk.predict_proba(X[ref.validation_rows])[:, 1])
    assert abs(breast_run["rg"]["metrics"]["validate"]["auc"] - sk_auc) < 0.005


def test_federated_weights_equal_the_reference_on_a_synthetic_split_with_l1_decay_and_minibatches(tmp_path):
    g, h = synth_split(300, 4, 6, seed=11)
    cfg = _config("lr.epochs=4", "lr.batch_size=70", "lr.penalty=\"l1\"", "lr.alpha=0.02", "lr.decay=0.3",
                  "lr.learning_rate=0.3", "lr.validation=0.25", "lr.tol=0.0", "job.seed=5",
                  "lr.label_noise=0.05")  # small label noise: L1 must still be seen zeroing weights
    _, _, rg, rh = _run(tmp_path, g, h, cfg)
    ref = fit_reference(g.X, h.X, g.y, phase.options_from_config(cfg), host_noise=rg["host_noise"])
    np.testing.assert_allclose(rg["model"]["weights"], ref.guest.weights, atol=1e-6)
    assert rg["model"]["intercept"] == pytest.approx(ref.guest.intercept, abs=1e-6)
    np.testing.assert_allclose(rh["model"]["weights"], ref.host.weights, atol=1e-6)
    assert np.any(ref.host.weights == 0.0) or np.any(ref.guest.weights == 0.0)  # L1 zeroed something
    p = predict_proba(ref.guest.partial_scores(g.X), ref.host.partial_scores(h.X))
    v = ref.validation_rows
    assert rg["metrics"]["validate"]["auc"] == pytest.approx(auc(g.y[v], p[v]), abs=1e-9)


def test_warm_start_continues_from_the_saved_models_like_the_reference(tmp_path):
    g, h = synth_split(200, 3, 4, seed=2)
    first = _config("lr.epochs=2", "lr.validation=0")
    _, _, rg1, _ = _run(tmp_path / "first", g, h, first)
    second = _config("lr.epochs=2", "lr.validation=0", f"lr.warm_start=\"{tmp_path / 'first'}\"")
    _, _, rg2, rh2 = _run(tmp_path / "second", g, h, second)
    warm_g = phase.load_model(tmp_path / "first", "guest")
    warm_h = phase.load_model(tmp_path / "first", "host")
    ref = fit_reference(g.X, h.X, g.y, phase.options_from_config(second), warm_guest=warm_g, warm_host=warm_h,
                        host_noise=rg2["host_noise"])
    np.testing.assert_allclose(rg2["model"]["weights"], ref.guest.weights, atol=1e-6)
    np.testing.assert_allclose(rh2["model"]["weights"], ref.host.weights, atol=1e-6)
    assert rg2["metrics"]["training"]["loss"][0] < rg1["metrics"]["training"]["loss"][0]


def test_woe_transform_binning_then_lr_equals_the_reference_on_the_same_design(tmp_path, breast):
    """[selection] woe_transform: the guest's standardized WoE columns and the host's bin indicators
    (one weight per bin of its own split points), built centrally, give the federated weights."""
    g, h = breast
    cfg = _config("selection.woe_transform=true", "selection.top_k=12", "lr.epochs=3", "lr.tol=0.0")
    gctx, hctx = make_contexts(tmp_path, g, h, cfg)
    run_pair(binning_phase.run_guest, binning_phase.run_host, gctx, hctx)
    rg, rh = run_pair(phase.run_guest, phase.run_host, gctx, hctx)

    host_names = [f"host.{c}" for c in h.features]
    fb = {f.name: f for f in plaintext_binning(np.hstack([g.X, h.X]), g.y, g.features + host_names, 10)}
    kept = set(select_by_iv({n: f.iv for n, f in fb.items()}, SelectionRule(0.02, 12)).kept)
    gcols = [c for c in g.features if c in kept]
    hcols = [c for c in h.features if f"host.{c}" in kept]
    Xg = WoeStandardizer.fit(g.select(gcols).X, gcols, [fb[c].split_points for c in gcols],
                             [fb[c].table.woe for c in gcols]).transform(g.select(gcols).X)
    ind = BinIndicators.fit(hcols, [fb[f"host.{c}"].split_points for c in hcols])
    ref = fit_reference(Xg, ind.transform(h.select(hcols).X), g.y, phase.options_from_config(cfg),
                        gcols, ind.columns, host_noise=rg["host_noise"])
    assert rh["model"]["features"] == ind.columns and len(ind.columns) > 2 * len(hcols)
    np.testing.assert_allclose(rg["model"]["weights"], ref.guest.weights, rtol=0, atol=1e-6)
    assert rg["model"]["intercept"] == pytest.approx(ref.guest.intercept, abs=1e-6)
    np.testing.assert_allclose(rh["model"]["weights"], ref.host.weights, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rg["metrics"]["training"]["loss"], ref.losses, atol=1e-9)
    hm = json.loads((tmp_path / "host" / "model.json").read_text())
    assert hm["preprocess"] == ind.to_json()  # what scoring new raw rows needs, the host's only


# -- outputs --------------------------------------------------------------------------


def test_each_party_model_json_holds_only_its_own_weights(breast_run, breast):
    g, h = breast
    gm = json.loads((breast_run["tmp"] / "guest" / "model.json").read_text())
    hm = json.loads((breast_run["tmp"] / "host" / "model.json").read_text())
    assert gm["algorithm"] == hm["algorithm"] == "lr"
    assert gm["features"] == g.features and len(gm["weights"]) == len(g.features) and "intercept" in gm
    assert hm["features"] == h.features and len(hm["weights"]) == len(h.features) and "intercept" not in hm
    assert len(gm["scaling"]["mean"]) == len(g.features)


def test_predictions_csv_has_the_seed_paper_table_2_layout(breast_run, breast):
    g, _ = breast
    with (breast_run["tmp"] / "guest" / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "label", "predict_result", "predict_score", "predict_detail", "type"]
    assert len(rows) == g.n_rows
    assert {r["type"] for r in rows} == {"train", "validate"}
    assert sum(r["type"] == "validate" for r in rows) == len(breast_run["ref"].validation_rows)
    for r in rows[:20]:
        detail = json.loads(r["predict_detail"])
        p1 = float(r["predict_score"])
        assert set(detail) == {"0", "1"} and detail["1"] == pytest.approx(p1)
        assert detail["0"] == pytest.approx(1 - p1)
        assert int(r["predict_result"]) == int(p1 >= 0.5) and r["label"] in ("0", "1")


def test_metrics_json_plots_and_rounds_are_written(breast_run):
    gdir, hdir = breast_run["tmp"] / "guest", breast_run["tmp"] / "host"
    m = json.loads((gdir / "metrics.json").read_text())
    for split in ("train", "validate"):
        assert set(m[split]) >= {"auc", "ks", "accuracy", "precision", "recall", "f1"}
    for name in ("lr_loss.png", "lr_roc.png", "lr_ks.png", "lr_pr.png", "lr_lift_gain.png", "lr_confusion.png"):
        assert (gdir / "plots" / name).stat().st_size > 1000
    for f in ("predictions.csv", "metrics.json"):
        assert not (hdir / f).exists()
    assert m["communication"] == "communication.json"


def test_metrics_json_adds_the_confusion_matrix_pr_curve_and_lift_gain_of_scikit_learn(breast_run):
    from sklearn.metrics import average_precision_score, confusion_matrix

    m = json.loads((breast_run["tmp"] / "guest" / "metrics.json").read_text())
    rows = list(csv.DictReader((breast_run["tmp"] / "guest" / "predictions.csv").open()))
    for split in ("train", "validate"):
        y = np.array([int(r["label"]) for r in rows if r["type"] == split])
        p = np.array([float(r["predict_score"]) for r in rows if r["type"] == split])
        cm = m[split]["confusion_matrix"]
        assert cm["threshold"] == 0.5 and cm["matrix"] == confusion_matrix(y, p >= 0.5).tolist()
        assert cm["tp"] + cm["fn"] == m[split]["positives"]
        assert m[split]["average_precision"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        assert [r["decile"] for r in m[split]["lift_gain"]] == list(range(1, 11))
        assert m[split]["lift_gain"][-1]["gain"] == pytest.approx(1.0)
        assert m[split]["pr_curve"]["recall"][-1] == 1.0


def test_communication_per_phase_and_round_adds_up_the_transcript_and_both_sides_agree(breast_run):
    from nodes.communication import summarize
    from nodes.transcript import Transcript

    entries = {side: Transcript.load(breast_run["tmp"] / side / "transcript.jsonl") for side in ("guest", "host")}
    comm = {side: summarize(e) for side, e in entries.items()}
    for side, doc in comm.items():
        for way in ("sent", "received"):
            assert sum(ph[f"{way}_bytes"] for ph in doc["phases"].values()) == doc["totals"][f"{way}_bytes"] == \
                sum(e["size"] for e in entries[side] if e["direction"] == way)
            assert sum(r[f"{way}_bytes"] for r in doc["rounds"]) == doc["totals"][f"{way}_bytes"]
        assert doc["totals"]["seconds"] is not None and doc["totals"]["seconds"] >= 0
        assert sum(ph["seconds"] for ph in doc["phases"].values()) == pytest.approx(doc["totals"]["seconds"], abs=0.01)
    g, h = comm["guest"], comm["host"]
    assert g["totals"]["sent_bytes"] > 10_000 and h["totals"]["sent_bytes"] > 10_000
    for phase_name in g["phases"]:
        for a, b in ((g, h), (h, g)):
            assert a["phases"][phase_name]["sent_bytes"] == b["phases"][phase_name]["received_bytes"]
            assert a["phases"][phase_name]["sent_messages"] == b["phases"][phase_name]["received_messages"]
    for gr, hr in zip(g["rounds"], h["rounds"], strict=True):
        assert gr["round"] == hr["round"] and gr["sent_bytes"] == hr["received_bytes"]
        assert gr["received_bytes"] == hr["sent_bytes"]
    assert g["peers"] == {"host": {"received_bytes": g["totals"]["received_bytes"],
                                   "received_messages": g["totals"]["received_messages"]}}


def test_every_round_is_committed_by_both_parties_with_the_same_transcript_digest(breast_run):
    lines = {side: [json.loads(x) for x in (breast_run["tmp"] / side / "rounds.jsonl").read_text().splitlines()]
             for side in ("guest", "host")}
    epochs = breast_run["rg"]["epochs"]
    assert len(lines["guest"]) == len(lines["host"]) == -(-epochs // 2)  # round_every = 2
    for gl, hl in zip(lines["guest"], lines["host"], strict=True):
        assert gl["round"] == hl["round"] and gl["transcript_digest"] == hl["transcript_digest"]
        assert gl["loss"] is not None and hl["loss"] is None
    last = json.loads((breast_run["tmp"] / "host" / "checkpoints" /
                       f"round-{lines['host'][-1]['round']:04d}.json").read_text())
    assert last["params"]["weights"] == breast_run["rh"]["model"]["weights"]


# -- privacy: what each side received ---------------------------------------------------


def test_host_never_receives_labels_residuals_or_guest_weights(breast_run, keys_1024):
    (gpk, _), (hpk, hsk) = keys_1024
    received = breast_run["host"].transport.received
    decrypted = 0
    for address, payload in received:
        for name, value in payload.items():
            if isinstance(value, EncryptedArray):
                if value.public_key == gpk:
                    continue  # the host cannot decrypt these
                assert value.public_key == hpk
                assert _looks_masked(decrypt_masked(hsk, value), hpk.n), (address, name)
                decrypted += value.size
            elif isinstance(value, np.ndarray):
                pytest.fail(f"host received a plaintext array {address}/{name}")
            elif isinstance(value, list) and value and isinstance(value[0], int):
                assert _looks_masked(value, gpk.n), (address, name)
            elif isinstance(value, list):
                assert address.tag == "setup" and name == "validation_ids"
            else:
                assert isinstance(value, str | bool | int | dict), (address, name)
    assert decrypted > 0  # the masked residuals, gradients and losses were there and were noise


def test_guest_never_receives_host_features_weights_or_partial_scores_during_training(breast_run, keys_1024):
    (gpk, gsk), (hpk, _) = keys_1024
    received = breast_run["guest"].transport.received
    *training, (final_address, final) = received
    assert final_address.tag == "final_scores"  # evaluation, after the last epoch: documented disclosure
    for address, payload in training:
        for name, value in payload.items():
            if isinstance(value, EncryptedArray):
                if value.public_key == hpk:
                    with pytest.raises(Exception, match="different public key"):
                        gsk.decrypt_raw(value[:1])
                    continue
                assert value.public_key == gpk
                assert isinstance(value, PackedEncryptedArray)  # the host's gradient, packed and masked
                assert _looks_masked(decrypt_masked(gsk, value), gpk.n), (address, name)
            elif isinstance(value, np.ndarray):
                pytest.fail(f"guest received a plaintext array {address}/{name} during training")
            elif isinstance(value, list):
                assert _looks_masked(value, hpk.n), (address, name)
            elif address.tag == "ready" and name in ("row_norm", "op_norm"):  # documented: to 1/8 octave
                assert isinstance(value, float) and (8 * np.log2(value)) == pytest.approx(round(8 * np.log2(value)))
            else:
                assert isinstance(value, str | bool | int), (address, name)
    tags = [a.tag for a, _ in training]
    assert any(t.endswith(".scores") for t in tags) and any(t.endswith(".gradients") for t in tags)


def test_transcript_files_hold_hashes_and_sizes_not_content(breast_run):
    for side in ("guest", "host"):
        entries = [json.loads(x) for x in (breast_run["tmp"] / side / "transcript.jsonl").read_text().splitlines()]
        assert entries and all(set(e) == {"round", "phase", "tag", "direction", "sender", "size", "sha256", "time"}
                               for e in entries)


# -- inference ------------------------------------------------------------------------


def test_predict_scores_aligned_rows_with_both_saved_models(breast_run, breast, tmp_path):
    g, h = breast
    gm = phase.load_model(breast_run["tmp"], "guest")
    hm = phase.load_model(breast_run["tmp"], "host")
    gctx, hctx = make_contexts(tmp_path, g, h, breast_run["cfg"])
    proba, _ = run_pair(lambda c: phase.predict_guest(c, gm), lambda c: phase.predict_host(c, hm), gctx, hctx)
    with (breast_run["tmp"] / "guest" / "predictions.csv").open(newline="") as fh:
        trained = np.array([float(r["predict_score"]) for r in csv.DictReader(fh)])
    np.testing.assert_allclose(proba, trained, rtol=0, atol=1e-12)
    with (tmp_path / "guest" / "predictions.csv").open(newline="") as fh:
        assert {r["type"] for r in csv.DictReader(fh)} == {"predict"}


def test_loading_the_other_party_model_is_refused(breast_run):
    with pytest.raises(DataError, match="a guest model, but this party is the host"):
        phase.load_model(breast_run["tmp"] / "guest" / "model.json", "host")


# -- bad input ------------------------------------------------------------------------------


def _small(rows: int = 80, seed: int = 4) -> tuple[PartyData, PartyData]:
    return synth_split(rows, 2, 3, seed=seed)


def test_labels_of_one_class_stop_both_parties_with_a_clear_message(tmp_path):
    g, h = _small()
    g.y[:] = 1
    gctx, hctx = make_contexts(tmp_path, g, h, _config())
    gerr, herr = _run_both(phase.run_guest, phase.run_host, gctx, hctx)
    assert isinstance(gerr, DataError) and "all labels are 1; need both classes" in str(gerr)
    assert isinstance(herr, PeerAborted) and herr.peer == "guest" and "all labels are 1" in herr.reason
    assert str(herr).startswith("the guest stopped training: ")
    assert not (tmp_path / "guest" / "model.json").exists() and not (tmp_path / "host" / "model.json").exists()


def test_an_unstable_learning_rate_is_refused_before_training_with_a_limit_to_use(tmp_path, breast):
    g, h = breast
    gctx, hctx = make_contexts(tmp_path, g, h, _config("lr.learning_rate=1.0"))
    gerr, herr = _run_both(phase.run_guest, phase.run_host, gctx, hctx)
    assert isinstance(herr, TrainingError)
    assert "learning_rate 1 is unstable for the host's columns" in str(herr) and "use learning_rate <" in str(herr)
    assert isinstance(gerr, PeerAborted) and str(gerr).startswith("the host refused to train: ")
    assert "use learning_rate <" in str(gerr)


def test_divergence_during_training_stops_both_parties_with_what_to_change(tmp_path):
    # Each party's single column is stable at lr 6 alone; together (x_h ~ x_g) training diverges.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 1))
    y = (x[:, 0] + rng.normal(size=60) > 0).astype(np.int8)
    ids = np.array([str(i) for i in range(60)])
    g = PartyData("guest", ids, ["a"], x, y)
    h = PartyData("host", ids.copy(), ["b"], x + 0.01 * rng.normal(size=(60, 1)))
    gctx, hctx = make_contexts(tmp_path, g, h, _config("lr.learning_rate=6.0", "lr.epochs=30", "lr.validation=0"))
    gerr, herr = _run_both(phase.run_guest, phase.run_host, gctx, hctx)
    assert isinstance(gerr, TrainingError) and "training diverged at epoch" in str(gerr)
    assert "learning_rate 6 is too large" in str(gerr) and "use learning_rate < 2.37" in str(gerr)
    assert isinstance(herr, PeerAborted) and "training diverged" in str(herr)
    assert not (tmp_path / "guest" / "model.json").exists()


def test_a_host_that_drops_out_mid_epoch_is_a_clear_error_and_leaves_no_model(tmp_path):
    g, h = _small(120)

    def dropping_host(ctx: PartyContext) -> None:
        inner = ctx.transport

        class Crashing(Recorder):
            def send(self, address: Address, payload: Payload) -> None:
                if address.tag == "e0.b1.scores":
                    inner.close()
                    raise ConnectionError("host process killed")
                inner.send(address, payload)

        ctx.transport = Crashing(inner)
        phase.run_host(ctx)

    gctx, hctx = make_contexts(tmp_path, g, h, _config("lr.batch_size=30"))
    with pytest.raises(TransportError, match="lr: the host dropped out during epoch 1, batch 2"):
        run_pair(phase.run_guest, dropping_host, gctx, hctx)
    for name in ("model.json", "predictions.csv", "metrics.json"):
        assert not (tmp_path / "guest" / name).exists()


def test_guest_and_host_with_different_settings_refuse_to_train(tmp_path):
    g, h = _small()
    gctx, hctx = make_contexts(tmp_path, g, h, _config("lr.learning_rate=0.1"))
    hctx.config = _config("lr.learning_rate=0.2")
    gerr, herr = _run_both(phase.run_guest, phase.run_host, gctx, hctx)
    assert isinstance(herr, TrainingError) and "learning_rate: 0.1 vs 0.2" in str(herr)
    assert isinstance(gerr, PeerAborted) and "host refused to train" in str(gerr)


def test_batches_too_small_for_privacy_are_refused(tmp_path):
    g, h = _small()
    gctx, hctx = make_contexts(tmp_path, g, h, _config("lr.batch_size=3"))
    gerr, herr = _run_both(phase.run_guest, phase.run_host, gctx, hctx)
    assert isinstance(gerr, TrainingError) and "too small for privacy" in str(gerr)
    assert isinstance(herr, PeerAborted) and "too small for privacy" in herr.reason


def test_bad_lr_settings_are_config_errors():
    from nodes.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[lr\] learning_rate must be > 0"):
        phase.options_from_config(_config("lr.learning_rate=0"))
    with pytest.raises(ConfigError, match=r"\[lr\] penalty"):
        _config("lr.penalty=\"l3\"")
    assert isinstance(phase.options_from_config(_config()), LrOptions)
