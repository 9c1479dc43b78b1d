"""Attack (issue 16, leak 1): the host solves its bins' event counts from what the WoE transform sends it.

Before the fix, with `[selection] woe_transform = true` the guest's `selection` message gave
the host the WoE of every bin of its kept features (and every IV). WoE_b = ln(N_b/N / (E_b/E))
with its own bin sizes n_b = E_b + N_b and n: for each total E there is at most one count per
bin with that WoE, and only the right E makes the counts add up. Every row of a bin with no
events (or no non-events) then has a known label.

The attacker here is the host in a REAL two-process job (`vflchain run`, 1024-bit keys: the
property does not depend on key size): it reads the raw bytes its node received
(`[transport] capture`), decodes them with `nodes.transport.codec`, takes any per-bin values
of its features it finds, and inverts them with its own bins (its rows after PSI, its own
split points). After the fix the host receives no per-bin value: zero labels. On the old
code this attack determined 294 of the 512 aligned labels of the breast split (all correct).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nodes.datafiles import load_party_csv
from nodes.transport.base import Address
from nodes.transport.codec import decode_header, decode_message, keyring
from vfl.binning import ADJUSTMENT, host_bin_features
from vfl.paillier import PublicKey

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "breast_lr.toml"
BINS = 10  # [binning] bins of examples/breast_lr.toml (the host's own setting)


@pytest.fixture(scope="module")
def woe_job(tmp_path_factory, chain_server, breast_dir) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("woe-attack")
    out, capture = tmp / "run", tmp / "capture"
    sets = [f"guest.data={breast_dir / 'guest.csv'}", f"host.data={breast_dir / 'host.csv'}",
            "guest.address=127.0.0.1:0", "host.address=127.0.0.1:0", f"chain.state={chain_server[0]}",
            "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.liveness_grace=2.0",
            "transport.connect_timeout=15.0",
            "selection.woe_transform=true", "lr.epochs=1", f"transport.capture={capture}"]
    cmd = [sys.executable, "-m", "nodes.cli", "run", "--config", str(CONFIG), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert res.returncode == 0, res.stderr + res.stdout
    return {"out": out, "capture": capture, "data": breast_dir}


# -- the attacker's code: only what the host's node received and the host's own data -----------


def _public_key(capture: Path, tag: str) -> PublicKey:
    (f,) = [f for f in capture.glob("*.bin") if decode_header(f.read_bytes())[0]["tag"] == tag]
    return PublicKey.from_json(decode_message(f.read_bytes(), {})[2]["public_key"])


def received_messages(capture: Path) -> list[tuple[Address, dict[str, Any]]]:
    """Every message the host's node received (`capture/host`), decoded from its raw wire bytes.

    Ciphertexts come under the guest's key (sent in its `hello`) or the host's own (the
    host has it; read here from its handshake reply, which the guest's node captured).
    """
    keys = keyring(_public_key(capture / "host", "hello"), _public_key(capture / "guest", "hello_reply"))
    out = []
    for f in sorted((capture / "host").glob("*.bin")):
        address, _, payload = decode_message(f.read_bytes(), keys)
        out.append((address, payload))
    return out


def per_bin_values(messages: list[tuple[Address, dict[str, Any]]], n_bins: dict[str, int]
                   ) -> dict[str, list[float]]:
    """Any JSON object in any payload that maps a host feature's public name to one number per bin."""
    found: dict[str, list[float]] = {}

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if (k in n_bins and isinstance(v, list) and len(v) == n_bins[k]
                        and all(isinstance(x, int | float) for x in v)):
                    found[k] = [float(x) for x in v]
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    for _, payload in messages:
        walk({k: v for k, v in payload.items() if not isinstance(v, np.ndarray | bytes)})
    return found


def solve_counts_from_woe(woe: list[float], sizes: np.ndarray, n: int) -> np.ndarray | None:
    """Per-bin event counts with exactly these WoE values (FATE conventions), or None."""
    w = np.asarray(woe)
    for E in range(1, n):
        N = n - E
        counts = []
        for b, nb in enumerate(sizes):
            e = np.arange(nb + 1, dtype=np.float64)
            ne = nb - e
            empty = (e == 0) | (ne == 0)
            ea, na = e + ADJUSTMENT * empty, ne + ADJUSTMENT * empty
            with np.errstate(divide="ignore"):
                cand = np.log((na / N) / (ea / E))
            hit = np.flatnonzero(np.abs(cand - w[b]) < 1e-9)
            if len(hit) != 1:
                break
            counts.append(int(hit[0]))
        else:
            if sum(counts) == E:
                return np.array(counts)
    return None


def labels_determined(capture: Path, data: Path) -> dict[str, int]:
    """Row ID -> label, for every host row whose label the host can work out from what it received."""
    host = load_party_csv(data / "host.csv", "host", require_labels=False)
    guest_ids = set(load_party_csv(data / "guest.csv", "guest").ids.tolist())
    # the host's aligned rows: the PSI output it holds (read here from the two ID columns)
    aligned = host.take(np.flatnonzero([i in guest_ids for i in host.ids]))
    mine = host_bin_features(aligned.X, aligned.features, BINS, "quantile")
    public = {f"host.{f}": j for j, f in enumerate(mine.features)}
    values = per_bin_values(received_messages(capture),
                            {name: int(mine.n_bins[j]) for name, j in public.items()})
    known: dict[str, int] = {}
    for name, woe in values.items():
        j = public[name]
        sizes = mine.bin_sizes[j, :mine.n_bins[j]]
        counts = solve_counts_from_woe(woe, sizes, aligned.n_rows)
        if counts is None:
            continue
        for b, (e, nb) in enumerate(zip(counts, sizes, strict=True)):
            if nb and e in (0, nb):  # a pure bin: every row in it has the same label
                for rid in aligned.ids[mine.index[:, j] == b]:
                    known[str(rid)] = int(e == nb)
    return known


def labels_from_first_gradient(run: Path, capture: Path, data: Path) -> dict[str, int]:
    """Row ID -> label from the host's own first LR step on its bin-indicator columns.

    At w = 0 the residual is d = 1/2 - y, and the host learns its gradient X_h^T d / m (it
    unmasks it; its first checkpoint holds w_1 = -learning_rate * gradient under L2). For a
    column z_b = (1[bin b] - mean_b) / scale_b: sum_i z_ib d_i = (S_b - mean_b S) / scale_b, with
    S_b = n_b/2 - e_b over the training rows of bin b and S = m/2 - E. For each total E this
    gives every e_b; only the right E makes them all integers in [0, n_b].
    """
    import json

    host = load_party_csv(data / "host.csv", "host", require_labels=False)
    guest_ids = set(load_party_csv(data / "guest.csv", "guest").ids.tolist())
    aligned = host.take(np.flatnonzero([i in guest_ids for i in host.ids]))
    model = json.loads((run / "host" / "model.json").read_text())
    pre = model.get("preprocess") or {}
    if pre.get("kind") != "bin-indicators":
        return {}
    messages = received_messages(capture)
    (setup,) = [p for a, p in messages if a.phase == "lr" and a.tag == "setup"]
    val = set(setup["validation_ids"])
    opts = setup["options"]
    train = np.array([i not in val for i in aligned.ids])
    first = min((json.loads(f.read_text()) for f in (run / "host" / "checkpoints").glob("*.json")
                 if json.loads(f.read_text())["phase"] == "lr"), key=lambda c: c["round"])
    if opts["penalty"] != "l2" or opts.get("warm_start"):
        return {}
    grad = -np.asarray(first["params"]["weights"]) / opts["learning_rate"]
    mean, scale = np.asarray(model["scaling"]["mean"]), np.asarray(model["scaling"]["scale"])
    m = int(train.sum())
    ids = aligned.ids[train]
    known: dict[str, int] = {}
    col = 0
    for feature, points in zip(pre["features"], pre["split_points"], strict=True):
        x = aligned.X[train, aligned.features.index(feature)]
        B = len(points)
        idx = np.minimum(np.searchsorted(np.asarray(points), x, side="left"), B - 1)
        nb = np.bincount(idx, minlength=B)
        cols = slice(col, col + B)
        col += B
        base = mean[cols] * 0.5 * m + scale[cols] * m * grad[cols]  # S_b = base_b - mean_b * E
        for E in range(m + 1):
            e = 0.5 * nb - (base - mean[cols] * E)
            if np.all(np.abs(e - np.rint(e)) < 1e-3) and np.all(np.rint(e) >= 0) and np.all(np.rint(e) <= nb):
                counts = np.rint(e).astype(int)
                for b in range(B):
                    if nb[b] and counts[b] in (0, nb[b]):
                        for rid in ids[idx == b]:
                            known[str(rid)] = int(counts[b] == nb[b])
                break
    return known


# -- the tests ----------------------------------------------------------------------------------


def test_host_determines_no_label_from_what_the_woe_transform_sends_it(woe_job) -> None:
    capture = woe_job["capture"]
    assert (capture / "host").is_dir() and (capture / "guest").is_dir()
    tags = {decode_header(f.read_bytes())[0]["tag"] for f in (capture / "host").glob("*.bin")}
    assert {"hello", "labels_meta", "selection"} <= tags  # the capture holds the whole job
    known = labels_determined(capture, woe_job["data"])
    truth = load_party_csv(woe_job["data"] / "guest.csv", "guest")
    label = dict(zip(truth.ids.tolist(), truth.y.tolist(), strict=True))
    assert all(label[r] == y for r, y in known.items())  # whatever it finds is right...
    assert len(known) == 0, f"the host determined {len(known)} labels"  # ...and it finds nothing


def test_the_attacker_inverts_woe_exactly_when_it_gets_them() -> None:
    """The inversion itself (no network): counts back from FATE-convention WoE, pure bins included."""
    from vfl.binning import woe_iv

    events, sizes = np.array([0, 7, 12, 30, 5]), np.array([9, 20, 15, 30, 26])
    table = woe_iv(events, sizes - events)
    assert math.isfinite(table.iv)
    solved = solve_counts_from_woe(table.woe.tolist(), sizes, int(sizes.sum()))
    assert solved is not None and solved.tolist() == events.tolist()


def test_host_determines_no_label_from_its_first_gradient_on_bin_indicators(woe_job) -> None:
    """One weight per host bin makes the host's first LR gradient the per-bin label sums of its
    training rows (241 of 512 labels on the breast split without noise); the guest's label noise
    ([lr] label_noise, protocols/lr.md) leaves no total for which every bin count is an integer."""
    known = labels_from_first_gradient(woe_job["out"], woe_job["capture"], woe_job["data"])
    truth = load_party_csv(woe_job["data"] / "guest.csv", "guest")
    label = dict(zip(truth.ids.tolist(), truth.y.tolist(), strict=True))
    assert all(label[r] == y for r, y in known.items())
    assert len(known) == 0, f"the host determined {len(known)} labels"
