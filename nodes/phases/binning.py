"""Feature binning, WoE/IV and feature selection between the guest and the host.

Protocol (docs/protocols/binning.md), two rounds on `ctx.channel("binning")`:

round r1 (binning)
    guest -> host  labels_meta      {"n_rows", "chunks"} (or {"abort": message})
    guest -> host  labels.<i>       {"labels": Enc_g(y[chunk i])}           guest_encrypt_labels
    host           bins its own columns; split points stay at the host     host_bin_features
    host -> guest  bin_sums         {"features": ["host.x0", ...], "n_bins", "bin_sizes",
                                     "constant", "event_counts": Enc_g(per-bin sum of y), packed
                                     "slots" counts of "slot_bits" bits to a ciphertext}
                                                      host_encrypted_bin_sums, host_pack_bin_sums
    guest          decrypts, WoE/IV of every host bin                      guest_woe_iv_from_counts
round r2 (selection)
    guest -> host  selection        {"kept", "dropped", "rule", "woe_transform"}
    each party     keeps its own selected columns; with woe_transform the guest replaces its own
                   by standardized WoE, the host its own by one 0/1 column per bin (BinIndicators)

The host learns nothing about the labels in r1 (ciphertexts under the guest's key, summed and
re-randomized before they go back) and in r2 only which of its columns are kept: no WoE or IV,
from which it could solve each bin's event count; the guest never receives a host split point.

Afterwards `ctx.data` holds only the selected own columns (guest: WoE-standardized, host: bin
indicators "<column>[bin<b>]", when [selection] woe_transform = true) and `ctx.state` holds:
    "binning":    BinningOutcome (features as this party sees them, the selection, kept columns)
    "preprocess": WoeStandardizer | BinIndicators | None — what a saved model needs to score new raw rows
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from nodes.algorithms import generic_role
from nodes.context import PartyContext
from nodes.errors import NodeError
from nodes.session import PeerAborted, Session, abort_reason, as_session, raise_if_aborted
from nodes.transport.base import PhaseChannel
from nodes.ui import console, progress, table
from vfl.binning import (
    BinIndicators,
    FeatureBinning,
    HostBins,
    PackedCounts,
    Preprocessing,
    WoeStandardizer,
    check_bin_count,
    guest_decrypt_event_counts,
    guest_encrypt_labels,
    guest_woe_iv_from_counts,
    host_bin_features,
    host_encrypted_bin_sums,
    host_pack_bin_sums,
    interval_labels,
    plaintext_binning,
)
from vfl.data import PartyData, check_binary_labels
from vfl.errors import DataError, VflError
from vfl.paillier import EncryptedArray
from vfl.selection import (
    Selection,
    SelectionRule,
    hosts_without_features,
    own_columns,
    public_names,
    select_by_iv,
)

PHASE = "binning"
HOST_PREFIX = "host."
LABEL_CHUNK = 4096  # label ciphertexts per message: ~2 MB at 2048-bit keys, and a progress step
# Waiting allowances on top of [transport] timeout, generous for slow machines and large keys:
SECONDS_PER_ENCRYPTION = 0.02  # host waiting for the next chunk of label ciphertexts
SECONDS_PER_CIPHERTEXT_OP = 2e-5  # per (row x feature) of ciphertext sums still to do at the host
HOST_FEATURES_ALLOWANCE = 100
CSV_COLUMNS = ["feature", "bin", "interval", "event_count", "event_ratio", "non_event_count",
               "non_event_ratio", "woe", "iv_bin", "iv_total"]
TOP_PLOTTED = 6


# -- messages -------------------------------------------------------------------------------


class LabelsMeta(TypedDict, total=False):
    n_rows: int
    chunks: int
    abort: str


class LabelsChunk(TypedDict):
    labels: EncryptedArray  # Enc_guest(y) for rows [i*LABEL_CHUNK, (i+1)*LABEL_CHUNK)


class BinSums(TypedDict, total=False):
    features: list[str]  # public names: "host.<column>" or anonymous "host.f<j>"
    n_bins: np.ndarray  # (f,) int64
    bin_sizes: np.ndarray  # (f, max bins) int64, zero-padded
    constant: np.ndarray  # (f,) bool: one distinct value
    event_counts: EncryptedArray  # per-bin event counts packed `slots` to a ciphertext, row-major
    slot_bits: int  #   over (f, max bins), under the guest's key, re-randomized
    slots: int
    abort: str


class SelectionMessage(TypedDict, total=False):
    kept: list[str]  # public names of the host's columns to keep
    dropped: list[str]
    rule: dict[str, Any]  # the configured rule (public), not its outcome
    woe_transform: bool  # the host then trains on bin indicators; no WoE or IV is ever sent
    abort: str


# -- results --------------------------------------------------------------------------------


@dataclass
class BinningOutcome:
    """What the phase leaves in ctx.state["binning"]."""

    role: str
    features: list[FeatureBinning]  # guest: own + host.* (no host split points); host: own columns
    kept: list[str]  # own columns kept, in column order
    selection: Selection | None  # the guest's decision (guest only)
    host_selection: dict[str, Any] | None = None  # what the host was told (host only)
    preprocess: Preprocessing | None = None


# -- guest ----------------------------------------------------------------------------------


def run_guest(party: PartyContext | Session, outputs: bool = True) -> BinningOutcome:
    """The guest's side (of one host or several: the same labels to each, one selection over
    every feature, each host told only its own columns); `outputs=False` skips files, plots
    and tables (benchmarks)."""
    session = as_session(party)
    ctx = session.ctx
    data = _require_data(ctx, "guest")
    hosts = session.peers
    chs = {h: session.channel(h, PHASE) for h in hosts}
    bins, method = ctx.config.binning.bins, ctx.config.binning.method
    r1 = ctx.next_round()
    n = data.n_rows
    with _abort_on_error(chs, "labels_meta", r1):
        if data.y is None:
            raise DataError(f"{data.source}: the guest has no label column")
        check_binary_labels(data.y, f"{data.source}: labels")
        check_bin_count(bins, n)
        rule = SelectionRule(ctx.config.selection.iv_threshold, ctx.config.selection.top_k)
        own = plaintext_binning(data.X, data.y, data.features, bins, method)
    chunks = -(-n // LABEL_CHUNK)
    for ch in chs.values():
        ch.send("labels_meta", {"n_rows": n, "chunks": chunks}, round=r1)
    with progress("binning: encrypting labels", n) as advance:
        for i in range(chunks):  # encrypted once, the same ciphertexts to every host
            part = data.y[i * LABEL_CHUNK:(i + 1) * LABEL_CHUNK]
            labels = guest_encrypt_labels(part, ctx.public_key, check=False)
            for ch in chs.values():
                ch.send(f"labels.{i}", {"labels": labels}, round=r1)
            advance(len(part))
    # the host may still be summing: allow for up to HOST_FEATURES_ALLOWANCE host columns
    wait = ctx.config.transport.timeout + SECONDS_PER_CIPHERTEXT_OP * n * HOST_FEATURES_ALLOWANCE
    host_features: dict[str, list[str]] = {}
    features = list(own)
    for h, ch in chs.items():
        # a host that stopped: the others wait for the selection of r2 and are told which one
        with _abort_on_error(chs, "selection", r1 + 1, forward=len(hosts) > 1):
            msg: BinSums = ch.recv("bin_sums", round=r1, timeout=wait)  # type: ignore[assignment]
            _raise_if_aborted(msg, h)
        with _abort_on_error(chs, "selection", r1 + 1, forward=len(hosts) > 1):  # r2: what the hosts wait for
            names, n_bins, sizes, constant, packed = _check_bin_sums(msg, ctx, data, h)
            counts = guest_decrypt_event_counts(ctx.private_key, packed, n)
            tables = guest_woe_iv_from_counts(counts, sizes, n_bins, n, host=h)
        host_features[h] = names
        features += [FeatureBinning(name, int(m), None, t, bool(c))
                     for name, m, t, c in zip(names, n_bins, tables, constant, strict=True)]
    ctx.commit_round(r1, PHASE, _guest_round_params(features))

    r2 = ctx.next_round()
    selection = select_by_iv({f.name: f.iv for f in features}, rule,
                             {f.name: _single_bin_reason(f) for f in features if f.n_bins == 1})
    problem = _selection_problem(selection, host_features, rule)
    if problem:
        for ch in chs.values():
            ch.send("selection", {"abort": problem}, round=r2)
        raise DataError(problem)
    woe_transform = bool(ctx.config.selection.woe_transform)
    # Only the kept/dropped split of each host's own columns leaves the guest (selection needs it);
    # a WoE or IV would let the host solve its bins' event counts (tests/attacks/test_woe_inversion.py).
    for h, ch in chs.items():
        host_names = set(host_features[h])
        out: SelectionMessage = {
            "kept": [s for s in selection.kept if s in host_names],
            "dropped": [s for s in selection.dropped if s in host_names],
            "rule": selection.rule.to_json(),
            "woe_transform": woe_transform,
        }
        ch.send("selection", dict(out), round=r2)
    kept = own_columns(selection.kept, {f: f for f in data.features})
    preprocess = _apply_selection(ctx, kept, {f.name: f for f in own}, woe_transform)
    ctx.commit_round(r2, PHASE, {"selection": selection.to_json(),
                                 "preprocess": preprocess.to_json() if preprocess else None})

    outcome = BinningOutcome("guest", features, kept, selection, preprocess=preprocess)
    ctx.state["binning"] = outcome
    if outputs:
        _write_guest_outputs(ctx, outcome)
    return outcome


def _check_bin_sums(msg: BinSums, ctx: PartyContext, data: PartyData, host: str = "host"
                    ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, PackedCounts]:
    try:
        names = [str(s) for s in msg["features"]]
        n_bins = np.asarray(msg["n_bins"], dtype=np.int64)
        sizes = np.asarray(msg["bin_sizes"], dtype=np.int64)
        constant = np.asarray(msg["constant"], dtype=bool)
        enc = msg["event_counts"]
        slot_bits, slots = int(msg["slot_bits"]), int(msg["slots"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"binning: malformed bin sums from the {host}: {exc}") from None
    if not isinstance(enc, EncryptedArray) or enc.public_key != ctx.public_key:
        raise DataError(f"binning: the {host}'s event counts are not ciphertexts under the guest's key")
    f = len(names)
    if f == 0 or sizes.ndim != 2 or sizes.shape[0] != f or n_bins.shape != (f,) or constant.shape != (f,):
        raise DataError(f"binning: the {host} sent {f} feature names with shapes "
                        f"{n_bins.shape}, {sizes.shape}, {constant.shape} that do not agree")
    prefix = f"{host}."  # "host." in a two-party job (HOST_PREFIX), "host2." with several hosts
    clash = [s for s in names if not s.startswith(prefix) or s in data.features]
    if clash or len(set(names)) != f:
        raise DataError(f"binning: {generic_role(host)} feature names must be unique and start with {prefix!r}; "
                        f"got {clash[0] if clash else 'duplicates'!r}")
    return names, n_bins, sizes, constant, PackedCounts(enc, slot_bits, slots, tuple(sizes.shape))


def _single_bin_reason(f: FeatureBinning) -> str:
    if f.constant:
        return "constant column (one distinct value): a single bin, IV 0"
    return "a single bin (one value fills every quantile), IV 0"


def _selection_problem(selection: Selection, host_features: dict[str, list[str]], rule: SelectionRule) -> str:
    if not selection.kept:
        return (f"feature selection kept no feature ({rule.describe()}); "
                "lower [selection] iv_threshold")
    missing = hosts_without_features(selection, host_features)
    if missing == ["host"]:
        return (f"feature selection kept none of the host's features ({rule.describe()}); a vertical "
                "model needs at least one: lower [selection] iv_threshold or raise [selection] top_k")
    if missing:
        return (f"feature selection kept none of {', '.join(missing)}'s features ({rule.describe()}); a vertical "
                "model needs at least one of each host: lower [selection] iv_threshold or raise [selection] top_k")
    return ""


def _guest_round_params(features: Sequence[FeatureBinning]) -> dict[str, Any]:
    return {
        "split_points": {f.name: f.split_points.tolist() for f in features if f.split_points is not None},
        "event_count": {f.name: f.table.event_count.tolist() for f in features if f.table},
        "non_event_count": {f.name: f.table.non_event_count.tolist() for f in features if f.table},
        "woe": {f.name: f.table.woe.tolist() for f in features if f.table},
        "iv": {f.name: f.table.iv for f in features if f.table},
    }


# -- host -----------------------------------------------------------------------------------


def run_host(party: PartyContext | Session, outputs: bool = True) -> BinningOutcome:
    """A host's side (the same with several hosts: its columns are known as "host<k>.<column>");
    `outputs=False` skips files and tables (benchmarks)."""
    session = as_session(party)
    ctx = session.ctx
    data = _require_data(ctx, "host")
    ch = session.channel("guest", PHASE)
    bins, method = ctx.config.binning.bins, ctx.config.binning.method
    public = public_names(session.role, data.features, ctx.config.binning.anonymous)
    r1 = ctx.next_round()
    meta: LabelsMeta = ch.recv("labels_meta", round=r1)  # type: ignore[assignment]
    _raise_if_aborted(meta, "guest")
    with _abort_on_error({"guest": ch}, "bin_sums", r1):
        try:
            n_rows, chunks = int(meta["n_rows"]), int(meta["chunks"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"binning: malformed labels_meta from the guest: {exc!r}") from None
        if n_rows != data.n_rows:
            raise DataError(f"binning: the guest has {n_rows} aligned rows, the host {data.n_rows}; "
                            "run the intersection phase first")
        if chunks != -(-n_rows // LABEL_CHUNK):
            raise DataError(f"binning: the guest announced {chunks} label chunks for {n_rows} rows")
        own = host_bin_features(data.X, data.features, bins, method)
        acc: EncryptedArray | None = None
        with progress("binning: summing encrypted labels per bin", n_rows) as advance:
            for i in range(chunks):
                wait = ctx.config.transport.timeout + SECONDS_PER_ENCRYPTION * LABEL_CHUNK
                part = ch.recv(f"labels.{i}", round=r1, timeout=wait).get("labels")
                rows = slice(i * LABEL_CHUNK, min((i + 1) * LABEL_CHUNK, n_rows))
                acc = _add(acc, _partial_sums(part, own, rows, ctx))
                advance(rows.stop - rows.start)
        assert acc is not None
        packed = host_pack_bin_sums(acc, n_rows)
    reply: BinSums = {
        "features": [public[f] for f in own.features],
        "n_bins": own.n_bins,
        "bin_sizes": own.bin_sizes,
        "constant": own.constant,
        "event_counts": packed.cipher,
        "slot_bits": packed.slot_bits,
        "slots": packed.slots,
    }
    ch.send("bin_sums", dict(reply), round=r1)
    ctx.commit_round(r1, PHASE, {"split_points": {f: p.tolist() for f, p in
                                                  zip(own.features, own.split_points, strict=True)}})

    r2 = ctx.next_round()
    sel: SelectionMessage = ch.recv("selection", round=r2, timeout=ctx.config.transport.timeout)  # type: ignore[assignment]
    _raise_if_aborted(sel, "guest")
    kept_public, woe_transform = _check_selection(sel, public)
    kept = own_columns(kept_public, public)
    points = dict(zip(own.features, own.split_points, strict=True))
    features = [FeatureBinning(f, int(m), p, None, bool(c))
                for f, p, m, c in zip(own.features, own.split_points, own.n_bins, own.constant, strict=True)]
    # with woe_transform: one weight per bin of its own split points (contains the WoE model)
    preprocess = BinIndicators.fit(kept, [points[f] for f in kept]) if woe_transform and kept else None
    _set_data(ctx, kept, preprocess)
    host_selection = {"rule": sel["rule"], "kept": [public[f] for f in kept],
                      "dropped": [public[f] for f in data.features if f not in kept]}
    ctx.commit_round(r2, PHASE, {"kept": kept, "preprocess": preprocess.to_json() if preprocess else None})

    outcome = BinningOutcome(session.role, features, kept, None, host_selection, preprocess)
    ctx.state["binning"] = outcome
    if outputs:
        _write_host_outputs(ctx, outcome, public)
    return outcome


def _partial_sums(part: Any, own: HostBins, rows: slice, ctx: PartyContext) -> EncryptedArray:
    if not isinstance(part, EncryptedArray) or ctx.peer_key is None or part.public_key != ctx.peer_key:
        raise DataError("binning: the guest's labels are not ciphertexts under the guest's key")
    if part.ndim != 1 or part.shape[0] != rows.stop - rows.start or part.precision != 0:
        raise DataError(f"binning: a label chunk of shape {part.shape} does not fit rows "
                        f"{rows.start}..{rows.stop - 1}")
    return host_encrypted_bin_sums(part, own.index[rows], own.width, rerandomize=False)


def _add(acc: EncryptedArray | None, part: EncryptedArray) -> EncryptedArray:
    return part if acc is None else acc + part


def _check_selection(sel: SelectionMessage, public: dict[str, str]) -> tuple[list[str], bool]:
    try:
        kept = [str(s) for s in sel["kept"]]
        dropped = [str(s) for s in sel["dropped"]]
        woe_transform = bool(sel["woe_transform"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"binning: malformed selection from the guest: {exc!r}") from None
    known = set(public.values())
    unknown = [s for s in kept + dropped if s not in known]
    if unknown:
        raise DataError(f"binning: the guest's selection names {unknown[0]!r}, not a host feature")
    return kept, woe_transform


# -- shared ---------------------------------------------------------------------------------


def _require_data(ctx: PartyContext, role: str) -> PartyData:
    if generic_role(ctx.role) != role:
        raise NodeError(f"binning: run_{role} called for the {ctx.role}")
    if ctx.data is None:
        raise NodeError(f"binning: the {role} has no data (run the intersection phase first)")
    return ctx.data


@contextmanager
def _abort_on_error(chs: dict[str, PhaseChannel], tag: str, round_no: int, forward: bool = False) -> Iterator[None]:
    """On a VflError, send the peers `{"abort": message}` as the message they wait for, then re-raise.

    `forward` (a guest of several hosts): any error, a host's abort included, goes to every
    other host (best effort), naming the host that stopped.
    """
    try:
        yield
    except VflError as exc:
        for ch in chs.values():
            ch.send(tag, {"abort": str(exc)}, round=round_no)
        raise
    except Exception as exc:
        if not forward:
            raise
        skip = exc.peer if isinstance(exc, PeerAborted) else ""
        for peer, ch in chs.items():
            if peer != skip:
                try:
                    ch.send(tag, {"abort": abort_reason(exc)}, round=round_no)
                except Exception:  # noqa: BLE001 - that host may be gone too; this error is what matters
                    pass
        raise


def _raise_if_aborted(msg: dict[str, Any], peer: str) -> None:
    raise_if_aborted(msg, peer, "stopped binning")


def _apply_selection(ctx: PartyContext, kept: list[str], own: dict[str, FeatureBinning],
                     woe_transform: bool) -> WoeStandardizer | None:
    preprocess = None
    if woe_transform and kept:
        assert ctx.data is not None
        preprocess = WoeStandardizer.fit(ctx.data.select(kept).X, kept,
                                         [own[f].split_points for f in kept],  # type: ignore[misc]
                                         [own[f].table.woe for f in kept])  # type: ignore[union-attr]
    _set_data(ctx, kept, preprocess)
    return preprocess


def _set_data(ctx: PartyContext, kept: list[str], preprocess: Preprocessing | None) -> None:
    assert ctx.data is not None
    data = ctx.data.select(kept)
    if preprocess is not None:
        data = dataclasses.replace(data, features=preprocess.columns, X=preprocess.transform(data.X))
    ctx.data = data
    ctx.state["preprocess"] = preprocess


# -- outputs --------------------------------------------------------------------------------


def binning_csv(features: Sequence[FeatureBinning]) -> str:
    """binning.csv (DESIGN.md): one row per feature and bin; unknown cells stay empty.

    At the guest every feature has its table (host features without intervals); at the host
    only its own intervals (it never learns a count, WoE or IV of its bins).
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for f in features:
        intervals = f.intervals()
        t = f.table
        for b in range(f.n_bins):
            if t is not None:
                cells = [int(t.event_count[b]), repr(float(t.event_rate[b])), int(t.non_event_count[b]),
                         repr(float(t.non_event_rate[b])), repr(float(t.woe[b])), repr(float(t.iv_bin[b])),
                         repr(t.iv)]
            else:
                cells = ["", "", "", "", "", "", ""]
            w.writerow([f.name, b, intervals[b], *cells])
    return buf.getvalue()


def _short_intervals(f: FeatureBinning) -> list[str]:
    if f.split_points is None:
        return [f"bin {b}" for b in range(f.n_bins)]
    return interval_labels(f.split_points, fmt=lambda v: f"{v:.4g}")


def _write_guest_outputs(ctx: PartyContext, outcome: BinningOutcome) -> None:
    from nodes import plots

    assert outcome.selection is not None
    ctx.rundir.write_text("binning.csv", binning_csv(outcome.features))
    ctx.rundir.write_json("selection.json", outcome.selection.to_json())
    ranked = sorted(outcome.features, key=lambda f: -(f.iv or 0.0))
    top = [f for f in ranked if f.n_bins > 1][:TOP_PLOTTED]
    if top:
        plots.later("binning", "plot_bin_counts", top, ctx.rundir.plot_path("binning_counts.png"))
        plots.later("binning", "plot_woe", top, ctx.rundir.plot_path("binning_woe.png"))
    con = console()
    decisions = {d.feature: d for d in outcome.selection.decisions}
    con.print(table(f"Binning: IV per feature ({outcome.selection.rule.describe()})",
                    ["feature", "bins", "IV", "rank", "kept", "note"],
                    [[f.name, f.n_bins, f"{f.iv:.4f}", decisions[f.name].rank,
                      "yes" if decisions[f.name].kept else "no", decisions[f.name].reason] for f in ranked]))
    for f in top[:1]:
        t = f.table
        assert t is not None
        con.print(table(f"Binning of {f.name} (IV {t.iv:.4f})",
                        ["binning", "event_count", "event_ratio", "non_event_count", "non_event_ratio",
                         "woe", "iv"],
                        [[interval, int(t.event_count[b]), f"{t.event_rate[b]:.4f}", int(t.non_event_count[b]),
                          f"{t.non_event_rate[b]:.4f}", f"{t.woe[b]:.4f}", f"{t.iv_bin[b]:.4f}"]
                         for b, interval in enumerate(_short_intervals(f))]))
    for f in outcome.features:
        if f.n_bins == 1:
            con.print(f"[yellow]binning: feature {f.name!r}: {_single_bin_reason(f)}; dropped[/]")


def _write_host_outputs(ctx: PartyContext, outcome: BinningOutcome, public: dict[str, str]) -> None:
    ctx.rundir.write_text("binning.csv", binning_csv(outcome.features))
    assert outcome.host_selection is not None
    sel = outcome.host_selection
    ctx.rundir.write_json("selection.json", {
        "rule": sel["rule"],
        "kept": [{"feature": f, "public_name": public[f]} for f in outcome.kept],
        "dropped": [{"feature": f, "public_name": public[f]} for f in public if f not in outcome.kept],
    })
    rows = [[f.name, public[f.name], f.n_bins, "yes" if f.name in outcome.kept else "no"]
            for f in outcome.features]
    console().print(table("Binning (host): own features; split points stay here",
                          ["feature", "known to the guest as", "bins", "kept"], rows))
    for f in outcome.features:
        if f.n_bins == 1:
            console().print(f"[yellow]binning: feature {f.name!r}: {_single_bin_reason(f)}[/]")
