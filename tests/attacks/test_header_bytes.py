"""Attack: read the other party's data from the public parts of the messages (1024-bit keys).

The attacker is the receiving party: it sees every message as bytes on the wire
(`nodes/transport/codec.py`). Ciphertexts, masked residues and plaintext arrays the
protocol declares are payload; everything else — the message header, every field's
kind/shape/dtype/length and the header of every Paillier array (`VPA1`: precision and
shape; `VPK1`: precision, slot width, count, rows and the declared slot BOUND) — must
be a function of public values only. So two runs on different data of the same shape
must produce byte-identical headers. A packed array whose declared bound comes from
the data (the largest |u| of a batch, a column's L1 norm) fails this.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nodes.config import load_config
from nodes.phases import gmm as gmm_phase
from nodes.phases import lr as lr_phase
from nodes.testing import make_contexts, run_pair
from nodes.transport.codec import decode_header
from vfl.data import PartyData
from vfl.datasets import synth_split
from vfl.lr import rowpack

# json fields that carry masked residues (uniform mod n to whoever reads them): payload
MASKED_JSON = {"guest_gradient", "loss", "gradient"}
# declared outputs (docs/protocols/lr.md "what each party learns"): whether training stops and
# whether the validation loss improved, one bit each per epoch; and the two numbers the label
# noise is calibrated with, the host's largest row norm and operator norm rounded up to 1/8
# octave (lr.md "Label privacy"; their grid is checked in tests/test_lr_phase.py); and in GMM
# the sum over rows of the host's log-density levels, which the guest's log-likelihood needs
# (gmm.md "what each party learns")
DECLARED_JSON = {"stop", "improved", "row_norm", "op_norm", "level_total"}


def _paillier_header(blob: bytes) -> bytes:
    """The non-ciphertext prefix of a Paillier wire array (vfl/paillier/wire.py, packing.py)."""
    if blob[:4] == b"VPK1":
        (blen,) = struct.unpack(">H", blob[25:27])
        return blob[: 27 + blen + 2]
    assert blob[:4] == b"VPA1", blob[:4]
    ndim = blob[14]
    return blob[: 15 + 4 * ndim + 2]


def public_view(data: bytes) -> tuple[Any, ...]:
    """Everything in a message that is not ciphertext or masked/declared payload."""
    header, body = decode_header(data)
    view: list[Any] = [header["job"], header["phase"], header["round"], header["tag"], header["sender"]]
    for f in header["fields"]:
        item = {k: v for k, v in f.items() if k != "value"}
        if f["kind"] == "json" and f["name"] not in MASKED_JSON | DECLARED_JSON:
            item["value"] = f["value"]
        if f["kind"] == "enc":
            blob = bytes(body[f["offset"]: f["offset"] + f["length"]])
            item["paillier_header"] = _paillier_header(blob).hex()
        view.append(sorted(item.items()))
    return tuple(repr(v) for v in view)


def _capture(tmp: Path, guest: PartyData, host: PartyData, settings: list[str], phase: Any) -> list[tuple]:
    g, h = make_contexts(tmp, guest, host, load_config(None, settings))
    sent: list[tuple[str, str, bytes]] = []
    tap = lambda role, address, data: sent.append((role, repr(address), data))  # noqa: E731
    g.transport.tap = h.transport.tap = tap
    run_pair(phase.run_guest, phase.run_host, g, h)
    return sorted((role, addr, public_view(data)) for role, addr, data in sent)


def _first_difference(a: list[tuple], b: list[tuple]) -> str:
    assert len(a) == len(b), f"{len(a)} messages vs {len(b)}"
    for x, y in zip(a, b, strict=True):
        if x != y:
            return f"{x[0]} {x[1]}: {[(p, q) for p, q in zip(x[2], y[2], strict=False) if p != q][:2]}"
    return ""


def _other_host(host: PartyData, seed: int) -> PartyData:
    """Different host columns of the same shape (other values, scales and offsets), same rows."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=host.X.shape) * rng.uniform(0.5, 20, size=host.X.shape[1]) + rng.normal(size=host.X.shape[1])
    return PartyData("host", host.ids.copy(), list(host.features), X)


def _other_guest(guest: PartyData, seed: int) -> PartyData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=guest.X.shape) * rng.uniform(0.5, 20, size=guest.X.shape[1])
    y = (rng.random(guest.n_rows) < 0.3).astype(np.int8)
    return PartyData("guest", guest.ids.copy(), list(guest.features), X, y)


@pytest.fixture(scope="module")
def data():
    return synth_split(160, 3, 4, seed=21)


LR = ["lr.epochs=2", "lr.batch_size=60", "lr.validation=0.25", "lr.tol=0.0", "job.seed=5"]


def _assert_same_headers(tmp: Path, runs: list[tuple[PartyData, PartyData]], settings: list[str],
                         phase: Any) -> None:
    views = [_capture(tmp / str(i), g, h, settings, phase) for i, (g, h) in enumerate(runs)]
    for v in views[1:]:
        assert v == views[0], "a header differs with the data: " + _first_difference(views[0], v)


def test_lr_headers_do_not_depend_on_either_partys_data(tmp_path, data):
    g, h = data
    _assert_same_headers(tmp_path, [(g, h), (g, _other_host(h, 1)), (_other_guest(g, 2), h)], LR, lr_phase)


def test_row_packed_lr_headers_do_not_depend_on_either_partys_data(tmp_path, data, monkeypatch):
    monkeypatch.setattr(rowpack, "RESULT_COST", 0.0)  # pack every batch and the validation rows
    monkeypatch.setattr(rowpack, "PRODUCT_TERM_COST", 0.0)
    g, h = data
    _assert_same_headers(tmp_path, [(g, h), (g, _other_host(h, 3)), (_other_guest(g, 4), h)], LR, lr_phase)


GMM = ["gmm.k=2", 'gmm.covariance="diag"', 'gmm.init="random"', "gmm.max_iter=2", "gmm.tol=0.0",
       "gmm.n_init=1", "job.seed=5"]


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_gmm_headers_do_not_depend_on_either_partys_data(tmp_path, data, covariance):
    g, h = data
    settings = [*GMM, f'gmm.covariance="{covariance}"']
    _assert_same_headers(tmp_path, [(g, h), (g, _other_host(h, 5)), (_other_guest(g, 6), h)], settings, gmm_phase)
