"""The federated binning phase: guest and host against each other (in-memory transport, 1024-bit keys)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nodes.config import JobConfig
from nodes.context import PartyContext
from nodes.phases import binning as phase
from nodes.session import PeerAborted
from nodes.testing import make_contexts, run_pair
from nodes.transport.base import Address
from nodes.transport.codec import decode_message, encode_message, keyring
from vfl.binning import BinIndicators, WoeStandardizer, plaintext_binning
from vfl.data import PartyData
from vfl.datasets import synth_split
from vfl.errors import DataError
from vfl.paillier import EncryptedArray


class Tap:
    """A transport wrapper that keeps the exact bytes of every message its party sends."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.role, self.peer = inner.role, inner.peer
        self.sent: list[tuple[Address, bytes]] = []

    def send(self, address: Address, payload: dict[str, Any]) -> None:
        self.sent.append((address, encode_message(address, self.role, payload)))
        self.inner.send(address, payload)

    def recv(self, address: Address, timeout: float | None = None) -> dict[str, Any]:
        return self.inner.recv(address, timeout)

    def close(self, *args: Any) -> None:
        self.inner.close(*args)


def config(**sections: dict[str, Any]) -> JobConfig:
    cfg = JobConfig()
    for name, values in sections.items():
        setattr(cfg, name, dataclasses.replace(getattr(cfg, name), **values))
    return cfg


def contexts(tmp: Path, guest: PartyData, host: PartyData, cfg: JobConfig) -> tuple[PartyContext, PartyContext]:
    g, h = make_contexts(tmp, guest, host, cfg)
    g.transport, h.transport = Tap(g.transport), Tap(h.transport)
    return g, h


def run_both(g: PartyContext, h: PartyContext) -> tuple[Any, Any]:
    """Run both sides; return each side's result or the exception it raised."""
    out: dict[str, Any] = {}

    def go(name: str, fn: Any, ctx: PartyContext) -> None:
        try:
            out[name] = fn(ctx)
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            out[name] = exc
            ctx.transport.close()

    th = threading.Thread(target=go, args=("host", phase.run_host, h))
    th.start()
    go("guest", phase.run_guest, g)
    th.join(60)
    assert not th.is_alive()
    return out["guest"], out["host"]


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory, breast):
    guest, host = breast
    tmp = tmp_path_factory.mktemp("breast")
    g, h = contexts(tmp, guest, host, config(selection={"woe_transform": True, "top_k": 12}))
    gout, hout = run_pair(phase.run_guest, phase.run_host, g, h)
    return {"tmp": tmp, "g": g, "h": h, "gout": gout, "hout": hout, "guest": guest, "host": host}


def joined_reference(guest: PartyData, host: PartyData, names: list[str], bins: int = 10,
                     method: str = "quantile") -> dict[str, Any]:
    X = np.hstack([guest.X, host.X])
    return {f.name: f for f in plaintext_binning(X, guest.y, guest.features + names, bins, method)}


def assert_same_tables(federated: list[Any], reference: dict[str, Any]) -> None:
    assert [f.name for f in federated] == list(reference)
    for f in federated:
        r = reference[f.name]
        assert f.n_bins == r.n_bins
        assert f.table.event_count.tolist() == r.table.event_count.tolist(), f.name
        assert f.table.non_event_count.tolist() == r.table.non_event_count.tolist(), f.name
        np.testing.assert_allclose(f.table.woe, r.table.woe, rtol=0, atol=1e-12, err_msg=f.name)
        assert abs(f.iv - r.iv) <= 1e-12, f.name


# -- equal to centralized -----------------------------------------------------------------


def test_federated_woe_iv_of_every_feature_equals_plaintext_on_joined_data(breast_run):
    guest, host = breast_run["guest"], breast_run["host"]
    ref = joined_reference(guest, host, [f"host.{c}" for c in host.features])
    assert_same_tables(breast_run["gout"].features, ref)
    assert len(breast_run["gout"].features) == 30


def test_guest_x0_table_follows_fate_conventions_on_the_breast_split(breast_run):
    guest = breast_run["guest"]
    x, y = guest.X[:, 0].tolist(), guest.y.tolist()
    n, bins = len(x), 10
    ordered = sorted(x)
    splits = sorted({ordered[math.ceil(k * n / bins) - 1] for k in range(1, bins + 1)})
    events, non_events = [0] * len(splits), [0] * len(splits)
    for v, label in zip(x, y, strict=True):
        b = next(i for i, s in enumerate(splits) if v <= s)  # right-closed
        if label == 1:
            events[b] += 1
        else:
            non_events[b] += 1
    E, N = sum(events), sum(non_events)
    woe, iv = [], 0.0
    for e, ne in zip(events, non_events, strict=True):
        if e == 0 or ne == 0:
            e, ne = e + 0.5, ne + 0.5
        w = math.log((ne / N) / (e / E))
        woe.append(w)
        iv += (ne / N - e / E) * w

    x0 = breast_run["gout"].features[0]
    assert x0.name == "x0"
    assert x0.split_points.tolist() == splits
    assert x0.table.event_count.tolist() == events
    assert x0.table.non_event_count.tolist() == non_events
    np.testing.assert_allclose(x0.table.woe, woe, rtol=0, atol=1e-12)
    assert abs(x0.iv - iv) <= 1e-12
    assert E == 357  # event = label 1 = benign on the breast data


def test_bucket_binning_with_anonymous_host_names_and_many_label_chunks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(phase, "LABEL_CHUNK", 64)  # 300 rows -> 5 label messages
    guest, host = synth_split(300, 3, 4, seed=5)
    host.X[:, 1] = 2.5  # a constant host column: reported, not crashed on
    g, h = contexts(tmp_path, guest, host,
                    config(binning={"method": "bucket", "bins": 8, "anonymous": True},
                           selection={"iv_threshold": 0.0}))
    gout, hout = run_pair(phase.run_guest, phase.run_host, g, h)
    ref = joined_reference(guest, host, [f"host.f{j}" for j in range(4)], bins=8, method="bucket")
    assert_same_tables(gout.features, ref)
    label_msgs = [a.tag for a, _ in g.transport.sent if a.tag.startswith("labels.")]
    assert label_msgs == [f"labels.{i}" for i in range(5)]
    const = next(f for f in gout.features if f.name == "host.f1")
    assert const.constant and const.n_bins == 1 and const.iv == 0.0
    assert "host.f1" in gout.selection.dropped and "x1" not in hout.kept
    sel = json.loads((tmp_path / "guest" / "selection.json").read_text())
    reason = "constant column (one distinct value): a single bin, IV 0"
    assert {"feature": "host.f1", "iv": 0.0, "rank": 7, "reason": reason} in sel["dropped"]
    printed = capsys.readouterr().out
    assert f"binning: feature 'host.f1': {reason}; dropped" in printed  # the guest's report
    assert f"binning: feature 'x1': {reason}" in printed  # the host's report
    assert not any("x0" in a.tag for a, _ in h.transport.sent)
    assert "x0" not in json.dumps([decode_message(b, keyring(g.public_key, h.public_key))[2]["features"]
                                   for a, b in h.transport.sent if a.tag == "bin_sums"])


# -- privacy --------------------------------------------------------------------------------


def _decoded(ctx_from: PartyContext, ctx_to: PartyContext) -> list[tuple[Address, bytes, dict[str, Any]]]:
    keys = keyring(ctx_from.public_key, ctx_to.public_key)
    return [(a, raw, decode_message(raw, keys)[2]) for a, raw in ctx_from.transport.sent]


def _values(obj: Any) -> list[Any]:
    """Every leaf of a JSON value or array, flattened."""
    if isinstance(obj, np.ndarray):
        return obj.ravel().tolist()
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _values(x)]
    if isinstance(obj, list | tuple):
        return [v for x in obj for v in _values(x)]
    return [obj]


def test_host_receives_labels_only_as_ciphertexts_under_the_guest_key(breast_run):
    g, h, y = breast_run["g"], breast_run["h"], breast_run["guest"].y
    to_host = _decoded(g, h)
    assert [a.tag for a, _, _ in to_host] == ["labels_meta", "labels.0", "selection"]
    labels = to_host[1][2]["labels"]
    assert isinstance(labels, EncryptedArray) and labels.public_key == g.public_key and labels.shape == y.shape
    y_forms = [y.astype(dt).tobytes() for dt in ("<i1", "<i2", "<i4", "<i8", "<f8", "|b1")]
    y_json = json.dumps(y.tolist(), separators=(",", ":")).encode()
    for address, raw, payload in to_host:
        for name, value in payload.items():
            if isinstance(value, np.ndarray):
                assert not (value.size == y.size and np.array_equal(value.ravel(), y)), (address, name)
        assert not any(form in raw for form in y_forms), address
        assert y_json not in raw.replace(b" ", b"")
    # the host holds no key that opens the labels
    assert h.private_key.public_key != labels.public_key


def test_the_selection_tells_the_host_only_which_of_its_columns_are_kept(breast_run):
    """With woe_transform the host gets no WoE or IV (from which its bins' event counts follow)."""
    g, h, gout = breast_run["g"], breast_run["h"], breast_run["gout"]
    (_, _, sel), = [m for m in _decoded(g, h) if m[0].tag == "selection"]
    assert set(sel) == {"kept", "dropped", "rule", "woe_transform"} and sel["woe_transform"] is True
    host_names = {f.name for f in gout.features if f.name.startswith("host.")}
    assert set(sel["kept"]) | set(sel["dropped"]) == host_names
    assert sel["rule"] == gout.selection.rule.to_json()


def test_guest_never_receives_a_host_split_point(breast_run):
    g, h = breast_run["g"], breast_run["h"]
    split_values = {float(v) for f in breast_run["hout"].features for v in f.split_points}
    assert len(split_values) > 150
    to_guest = _decoded(h, g)
    assert [a.tag for a, _, _ in to_guest] == ["bin_sums"]
    packed = to_guest[0][2]["event_counts"]  # 20 features x 10 bins, 92 counts per ciphertext
    assert packed.public_key == g.public_key and packed.shape == (3,)
    for address, raw, payload in to_guest:
        leaves = [v for name, value in payload.items() if not isinstance(value, EncryptedArray)
                  for v in _values(value)]
        assert not split_values & {float(v) for v in leaves if isinstance(v, float)}
        for s in split_values:
            assert struct.pack("<d", s) not in raw and repr(s).encode() not in raw, (address, s)
    for f in breast_run["gout"].features[10:]:
        assert f.name.startswith("host.") and f.split_points is None
    guest_csv = (breast_run["tmp"] / "guest" / "binning.csv").read_text()
    assert not any(repr(s) in guest_csv for s in split_values)


def test_both_parties_commit_the_same_transcript_for_each_binning_round(breast_run):
    tmp = breast_run["tmp"]
    rounds = {side: [json.loads(line) for line in (tmp / side / "rounds.jsonl").read_text().splitlines()]
              for side in ("guest", "host")}
    assert [r["round"] for r in rounds["guest"]] == [1, 2] == [r["round"] for r in rounds["host"]]
    for a, b in zip(rounds["guest"], rounds["host"], strict=True):
        assert a["transcript_digest"] == b["transcript_digest"] and a["phase"] == "binning"
    host_params = json.loads((tmp / "host" / "checkpoints" / "round-0001.json").read_text())["params"]
    assert set(host_params) == {"split_points"} and len(host_params["split_points"]) == 20


# -- selection and transform ----------------------------------------------------------------


def test_guest_trains_on_standardized_woe_and_host_on_indicators_of_its_own_bins(breast_run):
    g, h, gout, hout = breast_run["g"], breast_run["h"], breast_run["gout"], breast_run["hout"]
    ranked = sorted(gout.features, key=lambda f: -f.iv)[:12]
    chosen = {f.name for f in ranked}
    assert set(gout.selection.kept) == chosen
    assert g.data.features == [c for c in breast_run["guest"].features if c in chosen]
    assert hout.kept == [c for c in breast_run["host"].features if f"host.{c}" in chosen]
    assert g.data.features and hout.kept
    ref = joined_reference(breast_run["guest"], breast_run["host"],
                           [f"host.{c}" for c in breast_run["host"].features])
    cols = g.data.features
    raw = breast_run["guest"].select(cols).X
    expect = WoeStandardizer.fit(raw, cols, [ref[c].split_points for c in cols],
                                 [ref[c].table.woe for c in cols]).transform(raw)
    np.testing.assert_allclose(g.data.X, expect, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.data.X.mean(axis=0), 0.0, atol=1e-12)
    assert g.state["preprocess"].features == cols and g.state["binning"] is gout
    # the host: one 0/1 column per bin of each kept column, with its own split points
    pre = h.state["preprocess"]
    assert isinstance(pre, BinIndicators) and pre.features == hout.kept
    assert h.data.features == pre.columns == [f"{c}[bin{b}]" for c in hout.kept
                                              for b in range(ref[f"host.{c}"].n_bins)]
    expect_h = BinIndicators.fit(hout.kept, [ref[f"host.{c}"].split_points for c in hout.kept])
    np.testing.assert_array_equal(h.data.X, expect_h.transform(breast_run["host"].select(hout.kept).X))
    assert h.data.X.sum(axis=1).tolist() == [len(hout.kept)] * h.data.n_rows
    assert h.state["binning"] is hout


def test_run_directory_files_follow_the_design(breast_run):
    tmp = breast_run["tmp"]
    with (tmp / "guest" / "binning.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == phase.CSV_COLUMNS
    assert len(rows) == sum(f.n_bins for f in breast_run["gout"].features)
    host_rows = [r for r in rows if r["feature"].startswith("host.")]
    assert host_rows and all(r["interval"] == "" and r["woe"] != "" for r in host_rows)
    assert rows[0]["interval"].startswith("(-inf, ")
    with (tmp / "host" / "binning.csv").open() as fh:
        hrows = list(csv.DictReader(fh))
    assert {r["feature"] for r in hrows} == set(breast_run["host"].features)
    assert all(r["interval"] for r in hrows)
    assert all(r[c] == "" for r in hrows for c in phase.CSV_COLUMNS[3:])  # no count, WoE or IV
    sel = json.loads((tmp / "guest" / "selection.json").read_text())
    assert len(sel["kept"]) == 12 and len(sel["dropped"]) == 18 and sel["rule"]["top_k"] == 12
    hsel = json.loads((tmp / "host" / "selection.json").read_text())
    assert [k["feature"] for k in hsel["kept"]] == breast_run["hout"].kept
    assert all(set(k) == {"feature", "public_name"} for k in hsel["kept"] + hsel["dropped"])
    for name in ("binning_counts.png", "binning_woe.png"):
        assert (tmp / "guest" / "plots" / name).stat().st_size > 10_000


# -- bad input ------------------------------------------------------------------------------


def test_single_class_labels_stop_both_parties_with_a_clear_message(tmp_path, breast):
    guest, host = breast
    guest = dataclasses.replace(guest, y=np.ones_like(guest.y))
    gres, hres = run_both(*contexts(tmp_path, guest, host, config()))
    assert isinstance(gres, DataError) and "all labels are 1; need both classes 0 and 1" in str(gres)
    assert isinstance(hres, PeerAborted) and "all labels are 1" in str(hres)
    assert not (tmp_path / "guest" / "binning.csv").exists()


def test_more_bins_than_rows_is_refused_naming_the_setting(tmp_path):
    guest, host = synth_split(12, 2, 2, seed=1)
    gres, hres = run_both(*contexts(tmp_path, guest, host, config(binning={"bins": 20})))
    assert isinstance(gres, DataError) and "[binning] bins = 20 is more than the 12 rows" in str(gres)
    assert isinstance(hres, PeerAborted)


def test_a_selection_that_leaves_the_host_nothing_is_refused_on_both_sides(tmp_path, breast):
    guest, host = breast
    gres, hres = run_both(*contexts(tmp_path, guest, host, config(selection={"top_k": 2})))
    assert isinstance(gres, DataError) and "kept none of the host's features" in str(gres)
    assert isinstance(hres, PeerAborted) and "[selection]" in str(hres)


def test_guest_refuses_host_counts_that_do_not_add_up_and_tells_the_host(tmp_path, monkeypatch):
    real = phase.host_bin_features

    def lying(*args: Any, **kwargs: Any) -> Any:
        bins = real(*args, **kwargs)
        bins.bin_sizes[0, 0] += 1  # one more row than the host has
        return bins

    monkeypatch.setattr(phase, "host_bin_features", lying)
    guest, host = synth_split(60, 2, 2, seed=3)
    gres, hres = run_both(*contexts(tmp_path, guest, host, config(binning={"bins": 4})))
    assert isinstance(gres, DataError) and "inconsistent with 60 rows" in str(gres)
    assert isinstance(hres, PeerAborted) and "inconsistent with 60 rows" in str(hres)
