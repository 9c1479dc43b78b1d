"""Row packing in LR (vfl.lr.rowpack): same results as the ordinary path, every slot masked (1024-bit keys)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nodes.phases import lr as phase
from nodes.testing import make_contexts
from nodes.transport.base import TransportError
from tests.test_lr_phase import Recorder, _config, _looks_masked, _run, _run_both
from vfl.data import PartyData
from vfl.datasets import synth_split
from vfl.errors import PaillierError
from vfl.lr import fit_reference, privacy
from vfl.lr import rowpack as rp
from vfl.lr.protocol import (
    MATRIX_PRECISION_BITS,
    decrypt_masked,
    guest_gradient_masked,
    guest_loss_masked,
    guest_residual_offsets_encrypted,
    guest_residuals_encrypted,
    host_gradient_masked,
    host_partial_scores_encrypted,
    unmask_values,
)
from vfl.lr.taylor import residuals, sample_losses, signed_labels
from vfl.paillier import EncryptedArray, PackedEncryptedArray, decrypt_slots
from vfl.paillier.packing import STAT_BITS

P = 48  # [paillier] precision


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(8)
    m = 103  # not a multiple of the slot count: the last packed ciphertext is partly empty
    Xg = np.hstack([rng.normal(size=(m, 3)), np.ones((m, 1))])
    Xh = rng.normal(size=(m, 5)) * 3
    y_pm = signed_labels((rng.random(m) < 0.5).astype(np.int8))
    wg, wh = rng.normal(size=4) * 0.3, rng.normal(size=5) * 0.3
    return Xg, Xh, y_pm, wg, wh


@pytest.fixture
def always_pack(monkeypatch):
    """Pack every batch and validation set, whatever its size."""
    monkeypatch.setattr(rp, "RESULT_COST", 0.0)
    monkeypatch.setattr(rp, "PRODUCT_TERM_COST", 0.0)


def test_packed_steps_give_exactly_the_ordinary_paths_gradients_and_loss(keys_1024, batch):
    (gpk, gsk), (hpk, hsk) = keys_1024
    Xg, Xh, y_pm, wg, wh = batch
    m, u_g, u_h = len(y_pm), Xg @ wg, Xh @ wh
    lay_g, lay_h = rp.layout(gpk, m, P), rp.layout(hpk, m, P)
    assert lay_g.slots >= 4 and lay_g.groups < m
    scores = rp.host_partial_scores_packed(hpk, Xh, wh, lay_h, 1.25, P)
    offsets = rp.guest_residual_offsets_packed(gpk, u_g, y_pm, lay_g, P)
    assert scores.scores.cipher.size == lay_h.groups and offsets.cipher.size == lay_g.groups
    grad_g = rp.guest_gradient_masked_packed(rp.guest_residuals_packed(scores.scores, u_g, y_pm), Xg, P)
    loss = rp.guest_loss_masked_packed(scores.scores, u_g, y_pm, scores.loss_share, 0.5, P)
    grad_h = rp.host_gradient_masked_packed(offsets, u_h, Xh, P)
    packed = (unmask_values(rp.decrypt_products(hsk, grad_g.enc, 4), grad_g),  # type: ignore[arg-type]
              unmask_values(rp.decrypt_products(gsk, grad_h.enc, 5), grad_h),  # type: ignore[arg-type]
              unmask_values(rp.decrypt_loss(hsk, loss.cross, loss.rest), loss.masked)[0])

    plain = host_partial_scores_encrypted(hpk, Xh, wh, 1.25, P)
    g0 = guest_gradient_masked(guest_residuals_encrypted(plain.scores, u_g, y_pm), Xg, P, packed=True)
    h0 = host_gradient_masked(guest_residual_offsets_encrypted(gpk, u_g, y_pm, P), u_h, Xh, P)
    l0 = guest_loss_masked(plain.scores, u_g, y_pm, plain.loss_share, 0.5, P)
    np.testing.assert_array_equal(packed[0], unmask_values(decrypt_masked(hsk, g0.enc), g0))
    np.testing.assert_array_equal(packed[1], unmask_values(decrypt_masked(gsk, h0.enc), h0))
    assert packed[2] == unmask_values(decrypt_masked(hsk, l0.enc), l0)[0]
    d = residuals(u_g + u_h, y_pm)
    # columns on the 2^-MATRIX_PRECISION_BITS grid: within m * 2^-(bits + 1) * max|d| of X^T d
    tol = m * 2.0 ** -(MATRIX_PRECISION_BITS + 1) * np.abs(d).max() + 1e-9
    np.testing.assert_allclose(packed[1], Xh.T @ d, rtol=0, atol=tol)
    assert packed[2] == pytest.approx(np.sum(sample_losses(u_g + u_h, y_pm)) + 1.75, abs=1e-8)


def test_every_slot_the_key_owner_decrypts_is_masked_not_only_the_wanted_ones(keys_1024, batch):
    (gpk, gsk), _ = keys_1024
    Xg, Xh, y_pm, wg, wh = batch
    u_g, u_h = Xg @ wg, Xh @ wh
    lay = rp.layout(gpk, len(y_pm), P)
    grad_h = rp.host_gradient_masked_packed(rp.guest_residual_offsets_packed(gpk, u_g, y_pm, lay, P), u_h, Xh, P)
    slots = decrypt_slots(gsk, grad_h.enc)  # type: ignore[arg-type]
    assert slots.shape == (5 * lay.slots, lay.slots)
    # unmasked, a slot (wanted or cross term) is below 2^82 (74 fractional bits); masks have 80 bits
    # more than the public slot bound (> 2^109): below 2^150 with probability < 2^-39
    assert all(int(v) > 1 << 150 for v in slots.ravel().tolist())
    # the declared bound is the public one, whatever the host's columns are
    assert grad_h.enc.bound == rp.gradient_product_bound(lay.groups, P) + (
        1 << (rp.gradient_product_bound(lay.groups, P).bit_length() + STAT_BITS))


def test_received_packed_arrays_of_another_layout_are_refused(keys_1024, batch):
    (gpk, _), (hpk, _) = keys_1024
    Xg, Xh, y_pm, wg, wh = batch
    m, u_g, u_h = len(y_pm), Xg @ wg, Xh @ wh
    lay = rp.layout(gpk, m, P)
    good = rp.guest_residual_offsets_packed(gpk, u_g, y_pm, lay, P)
    assert rp.check_rows(good, lay, gpk, P + 2, rp.offsets_bound(P)) is good
    wider = rp.RowLayout(m, lay.slot_bits + 7, (gpk.bits - 2) // (lay.slot_bits + 7))
    with pytest.raises(PaillierError, match="expected"):
        rp.check_rows(rp.guest_residual_offsets_packed(gpk, u_g, y_pm, wider, P), lay, gpk, P + 2, rp.offsets_bound(P))
    with pytest.raises(PaillierError, match="unexpected key"):
        rp.check_rows(good, lay, hpk, P + 2, rp.offsets_bound(P))
    with pytest.raises(PaillierError, match="unpacked"):
        rp.check_rows(gpk.encrypt(u_g), lay, gpk, P, rp.offsets_bound(P))
    grad_h = rp.host_gradient_masked_packed(good, u_h, Xh, P)
    with pytest.raises(PaillierError, match="shape"):
        rp.check_products(grad_h.enc, 4, lay, gpk)  # 5 host columns, not 4
    with pytest.raises(PaillierError, match="exceed the declared bound"):
        rp.encrypt_rows(gpk, np.full(m, 1e7), lay, P, rp.offsets_bound(P))


def test_packing_pays_only_for_large_batches_and_few_columns(keys_1024):
    (gpk, _), (hpk, _) = keys_1024
    breast = rp.plan_batch(455, gpk, hpk, P, 11, 20, True, True)
    assert breast.offsets is None and breast.scores is None
    big = rp.plan_batch(80_000, gpk, hpk, P, 11, 40, True, True)
    assert big.scores is not None and big.offsets is None  # 40 host columns: dearer products eat the saving
    assert rp.plan_batch(80_000, gpk, hpk, P, 11, 10, True, True).offsets is not None
    assert rp.plan_batch(80_000, gpk, hpk, P, 11, 10, False, False) == rp.BatchPacking(None, None)
    assert rp.plan_validation(20_000, hpk, P) is not None and rp.plan_validation(114, hpk, P) is None
    assert not rp.columns_fit(np.array([[rp.COLUMN_BOUND * 2]]))


# -- the phase with packing forced ------------------------------------------------------------

SYNTH = ("lr.epochs=3", "lr.batch_size=90", "lr.validation=0.25", "lr.tol=0.0", "job.seed=3")


@pytest.fixture(scope="module")
def synth():
    return synth_split(240, 3, 4, seed=12)


def _replayed_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guest's label noise from a seeded generator: two runs add the same noise (test only)."""
    monkeypatch.setattr(privacy, "_SYSTEM", random.Random(2024))


@pytest.fixture
def packed_run(tmp_path, synth, always_pack, monkeypatch):
    g, h = synth
    _replayed_noise(monkeypatch)
    gctx, hctx, rg, rh = _run(tmp_path / "packed", g, h, _config(*SYNTH), record=True)
    return gctx, hctx, rg, rh


def test_packed_federated_weights_equal_the_reference_and_the_unpacked_run(packed_run, synth, tmp_path,
                                                                          monkeypatch):
    g, h = synth
    _, _, rg, rh = packed_run
    cfg = _config(*SYNTH)
    ref = fit_reference(g.X, h.X, g.y, phase.options_from_config(cfg), host_noise=rg["host_noise"])
    np.testing.assert_allclose(rg["model"]["weights"], ref.guest.weights, rtol=0, atol=1e-6)
    assert rg["model"]["intercept"] == pytest.approx(ref.guest.intercept, abs=1e-6)
    np.testing.assert_allclose(rh["model"]["weights"], ref.host.weights, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rg["metrics"]["training"]["loss"], ref.losses, atol=1e-9)
    np.testing.assert_allclose(rg["metrics"]["training"]["validation_loss"], ref.validation_losses, atol=1e-9)
    _replayed_noise(monkeypatch)
    _, _, ug, uh = _run(tmp_path / "unpacked", g, h, cfg)
    np.testing.assert_allclose(rg["model"]["weights"], ug["model"]["weights"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(rh["model"]["weights"], uh["model"]["weights"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(rg["metrics"]["training"]["loss"], ug["metrics"]["training"]["loss"], atol=1e-12)


def _check_received(received, own_pk, own_sk, peer_pk) -> dict[str, int]:
    """Everything a party received during training: the peer's packed rows (undecryptable) and
    packed products / residues that are masked in every slot. Returns counts of what was seen."""
    seen = {"rows": 0, "products": 0}
    for address, payload in received:
        if address.tag == "final_scores":
            continue  # evaluation, after training: a documented disclosure
        for name, value in payload.items():
            if isinstance(value, PackedEncryptedArray) and value.public_key == peer_pk:
                with pytest.raises(Exception, match="different public key"):
                    own_sk.decrypt_raw(value.ciphertexts()[:1])
                assert len(value.vshape) == 2 and value.vshape[0] == 1, (address, name)
                seen["rows"] += 1
            elif isinstance(value, PackedEncryptedArray):
                assert value.public_key == own_pk and value.vshape[1] == value.count == value.slots
                assert value.vshape[0] % value.slots == 0  # (columns*S, S) products: every slot masked
                assert all(int(v) > 1 << 110 for v in decrypt_slots(own_sk, value).ravel().tolist()), (address, name)
                seen["products"] += 1
            elif isinstance(value, EncryptedArray):
                if value.public_key == peer_pk:
                    continue  # the other party's loss share: it cannot decrypt it
                assert _looks_masked(decrypt_masked(own_sk, value), own_pk.n), (address, name)
            elif isinstance(value, np.ndarray):
                pytest.fail(f"plaintext array received: {address}/{name}")
            elif isinstance(value, list) and value and isinstance(value[0], int):
                assert _looks_masked(value, peer_pk.n), (address, name)
    return seen


def test_with_row_packing_residuals_and_partial_scores_never_cross_in_plaintext(packed_run, keys_1024):
    (gpk, gsk), (hpk, hsk) = keys_1024
    gctx, hctx, _, _ = packed_run
    at_host = _check_received(hctx.transport.received, hpk, hsk, gpk)
    at_guest = _check_received(gctx.transport.received, gpk, gsk, hpk)
    # 3 epochs x 2 batches: packed Enc_g(c) to the host; packed Enc_h(u_h) (and validation scores) to the guest
    assert at_host["rows"] == 6 and at_guest["rows"] == 6 + 3
    assert at_host["products"] == 6 * 2 + 3 and at_guest["products"] == 6  # gradient + loss cross; validation


def test_a_packed_message_with_a_wrong_layout_is_a_clear_error(tmp_path, synth, always_pack):
    g, h = synth

    class Tampering(Recorder):
        def send(self, address, payload):
            if address.tag == "e0.b0.offsets":
                lay = rp.layout(gctx.public_key, 90, P)
                wider = rp.RowLayout(90, lay.slot_bits + 3, (gctx.public_key.bits - 2) // (lay.slot_bits + 3))
                payload = {"offsets": rp.encrypt_rows(gctx.public_key, np.zeros(90), wider, P + 2,
                                                      rp.offsets_bound(P))}
            self.inner.send(address, payload)

    gctx, hctx = make_contexts(tmp_path, g, h, _config(*SYNTH))
    gctx.transport = Tampering(gctx.transport)
    _, herr = _run_both(phase.run_guest, phase.run_host, gctx, hctx)
    assert isinstance(herr, TransportError)
    assert "malformed message e0.b0.offsets: field 'offsets': packed rows" in str(herr)


def test_a_host_with_columns_beyond_the_bound_sends_its_gradient_unpacked_and_equals_the_reference(tmp_path, synth):
    g, h = synth
    wide = PartyData("host", h.ids, list(h.features), h.X * 1e5)  # beyond COLUMN_BOUND, not standardized
    cfg = _config("lr.epochs=2", "lr.batch_size=90", "lr.tol=0.0", "lr.standardize=false",
                  "lr.learning_rate=1e-11", "lr.alpha=0.0", "job.seed=3")
    gctx, _, rg, rh = _run(tmp_path, g, wide, cfg, record=True)
    grads = [p["gradient"] for a, p in gctx.transport.received if a.tag.endswith(".gradients")]
    assert grads and not any(isinstance(v, PackedEncryptedArray) for v in grads)  # masked mod n, no bound sent
    ref = fit_reference(g.X, wide.X, g.y, phase.options_from_config(cfg), host_noise=rg["host_noise"])
    np.testing.assert_allclose(rh["model"]["weights"], ref.host.weights, rtol=1e-6, atol=0)
    np.testing.assert_allclose(rg["model"]["weights"], ref.guest.weights, rtol=0, atol=1e-9)
