"""Feature binning, Weight of Evidence and Information Value, and the federated steps that
compute them for the host's features without the host ever seeing a label.

Conventions (FATE 1.x, as in the seed paper):

- **Quantile split points.** For B bins over n values, the k-th split point (k = 1..B) is the
  ceil(k*n/B)-th smallest value, with no interpolation; the B-th is the maximum.
- **Bucket (equal-width) split points.** min + k*(max - min)/B for k = 1..B-1, then the maximum.
- Repeated split points are merged, so a feature may get fewer than B bins. A feature with one
  distinct value gets a single bin (WoE 0, IV 0) and is reported as constant, not refused.
- **Bins are right-closed**: bin i holds split[i-1] < x <= split[i]; the first bin is open to
  -inf, and values above the last split point (new rows) fall into the last bin.
- **event = label 1.** event% of a bin = its event count / all events, non_event% likewise.
  WoE = ln(non_event% / event%). When a bin has no events or no non-events (or neither), 0.5
  is added to *both* of its counts before taking the rates; the totals are never adjusted.
  IV = sum over bins of (non_event% - event%) * WoE.

The federated steps, in protocol order (docs/protocols/binning.md; the phase in
nodes/phases/binning.py uses the same names):

1. `guest_encrypt_labels`: the guest encrypts y under its own Paillier key.
2. `host_bin_features` + `host_encrypted_bin_sums`: the host bins its own columns (its split
   points stay with it) and sums the label ciphertexts per bin of every feature;
   `host_pack_bin_sums` packs those encrypted event counts many to a ciphertext and
   re-randomizes them; they go back with the plain bin sizes.
3. `guest_decrypt_event_counts` + `guest_woe_iv_from_counts`: the guest decrypts the counts
   and computes WoE/IV of every host bin.

`plaintext_binning` is the centralized reference on joined data (and the guest's own path).
`WoeStandardizer` turns selected columns into standardized WoE values for training (the
guest's own columns, `[selection] woe_transform`); `BinIndicators` turns the host's into one
0/1 column per bin of its own split points, so the host needs no WoE (docs/protocols/binning.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vfl.data import check_binary_labels
from vfl.errors import DataError, PaillierError
from vfl.paillier import (
    EncryptedArray,
    PackedEncryptedArray,
    PrivateKey,
    PublicKey,
    decrypt_slots,
    pack,
)
from vfl.paillier.packing import slot_bits_for, slots_for

Method = Literal["quantile", "bucket"]
METHODS: tuple[str, ...] = ("quantile", "bucket")
ADJUSTMENT = 0.5  # added to both counts of a bin where one of them is 0


# -- split points and bin assignment --------------------------------------------------------


def check_bin_count(bins: int, n_rows: int, where: str = "[binning] bins") -> None:
    """Refuse bin counts that cannot work: fewer than 2, or more bins than rows."""
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer):
        raise DataError(f"{where} must be an integer, got {bins!r}")
    if bins < 2:
        raise DataError(f"{where} must be >= 2, got {bins}")
    if n_rows < 1:
        raise DataError("cannot bin a feature with no rows")
    if bins > n_rows:
        raise DataError(f"{where} = {bins} is more than the {n_rows} rows to bin; use at most {n_rows}")


def _column(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"feature {name!r}: expected a 1-d column, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"feature {name!r}: NaN or infinite values cannot be binned")
    return arr


def quantile_split_points(x: np.ndarray, bins: int, name: str = "x") -> np.ndarray:
    """Upper bounds of the quantile bins: the ceil(k*n/B)-th smallest values, merged."""
    arr = _column(x, name)
    n = arr.size
    check_bin_count(bins, n)
    ordered = np.sort(arr, kind="stable")
    ranks = np.array([-(-k * n // bins) for k in range(1, bins + 1)], dtype=np.int64)  # ceil(k*n/B)
    return np.unique(ordered[ranks - 1])


def bucket_split_points(x: np.ndarray, bins: int, name: str = "x") -> np.ndarray:
    """Upper bounds of equal-width bins between min and max, merged; the last is the max."""
    arr = _column(x, name)
    check_bin_count(bins, arr.size)
    lo, hi = float(arr.min()), float(arr.max())
    width = (hi - lo) / bins
    inner = [lo + width * k for k in range(1, bins)]
    return np.unique(np.array([*(v for v in inner if v < hi), hi], dtype=np.float64))


def split_points(x: np.ndarray, bins: int, method: str = "quantile", name: str = "x") -> np.ndarray:
    """Split points of one feature by `method` ("quantile" or "bucket")."""
    if method == "quantile":
        return quantile_split_points(x, bins, name)
    if method == "bucket":
        return bucket_split_points(x, bins, name)
    raise DataError(f"[binning] method must be \"quantile\" or \"bucket\", got {method!r}")


def assign_bins(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bin index of every value: the first split point >= x (right-closed); beyond the last: last bin."""
    idx = np.searchsorted(np.asarray(points, dtype=np.float64), np.asarray(x, dtype=np.float64), side="left")
    return np.minimum(idx, len(points) - 1).astype(np.int64)


def interval_labels(points: np.ndarray, fmt: Callable[[float], str] = repr) -> list[str]:
    """Labels of the bins: "(-inf, s1]", "(s1, s2]", ..., "(s_{m-1}, +inf)" (full precision by default)."""
    pts = [fmt(float(p)) for p in points]
    if len(pts) == 1:
        return ["(-inf, +inf)"]
    out = [f"(-inf, {pts[0]}]"]
    out += [f"({pts[i - 1]}, {pts[i]}]" for i in range(1, len(pts) - 1)]
    out.append(f"({pts[-2]}, +inf)")
    return out


# -- counts, WoE and IV ---------------------------------------------------------------------


@dataclass(frozen=True)
class WoeTable:
    """Per-bin label counts, the rates used in WoE (adjusted where a count is 0), WoE and IV."""

    event_count: np.ndarray  # int64, label 1 per bin
    non_event_count: np.ndarray  # int64, label 0 per bin
    event_rate: np.ndarray  # event% as used in WoE
    non_event_rate: np.ndarray
    woe: np.ndarray
    iv_bin: np.ndarray
    iv: float

    @property
    def n_bins(self) -> int:
        return int(self.woe.size)

    def to_json(self) -> dict[str, Any]:
        return {"event_count": self.event_count.tolist(), "non_event_count": self.non_event_count.tolist(),
                "woe": self.woe.tolist(), "iv_bin": self.iv_bin.tolist(), "iv": self.iv}


def bin_label_counts(bin_index: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(event, non_event) counts per bin of one feature, from its bin index and the labels."""
    b = np.asarray(bin_index, dtype=np.int64)
    yy = np.asarray(y).astype(np.int64)
    sizes = np.bincount(b, minlength=n_bins)
    events = np.bincount(b, weights=None if yy.size == 0 else yy, minlength=n_bins)
    events = np.rint(events).astype(np.int64)
    return events, sizes.astype(np.int64) - events


def woe_iv(event_count: np.ndarray, non_event_count: np.ndarray,
           adjustment: float = ADJUSTMENT) -> WoeTable:
    """WoE and IV of one feature from its per-bin counts (FATE 1.x conventions, module docstring)."""
    ev = np.asarray(event_count, dtype=np.int64)
    ne = np.asarray(non_event_count, dtype=np.int64)
    if ev.shape != ne.shape or ev.ndim != 1 or ev.size == 0:
        raise DataError(f"per-bin counts must be two 1-d arrays of equal length, got {ev.shape} and {ne.shape}")
    if np.any(ev < 0) or np.any(ne < 0):
        raise DataError("per-bin counts cannot be negative")
    e_total, n_total = int(ev.sum()), int(ne.sum())
    if e_total == 0 or n_total == 0:
        only = 0 if e_total == 0 else 1
        raise DataError(f"labels: all labels are {only}; WoE needs both classes 0 and 1")
    adjust = (ev == 0) | (ne == 0)
    e_adj = ev + np.where(adjust, adjustment, 0.0)
    n_adj = ne + np.where(adjust, adjustment, 0.0)
    e_rate = e_adj / e_total
    n_rate = n_adj / n_total
    woe = np.log(n_rate / e_rate)
    iv_bin = (n_rate - e_rate) * woe
    return WoeTable(ev, ne, e_rate, n_rate, woe, iv_bin, float(iv_bin.sum()))


@dataclass(frozen=True)
class FeatureBinning:
    """One feature's binning as one party sees it.

    The owner of a column holds its `split_points`; only the guest holds a `table` (it alone
    has the labels). At the guest, host features have `split_points=None`.
    """

    name: str
    n_bins: int
    split_points: np.ndarray | None = None
    table: WoeTable | None = None
    constant: bool = False  # one distinct value

    @property
    def iv(self) -> float | None:
        return None if self.table is None else self.table.iv

    def intervals(self) -> list[str]:
        return interval_labels(self.split_points) if self.split_points is not None else [""] * self.n_bins


def bin_columns(X: np.ndarray, features: Sequence[str], bins: int,
                method: str = "quantile") -> tuple[list[np.ndarray], np.ndarray]:
    """Split points of every column and the (n, f) matrix of bin indices."""
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2 or Xa.shape[1] != len(features):
        raise DataError(f"{len(features)} feature names for a matrix of shape {Xa.shape}")
    check_bin_count(bins, Xa.shape[0])
    points = [split_points(Xa[:, j], bins, method, name) for j, name in enumerate(features)]
    index = np.empty(Xa.shape, dtype=np.int64)
    for j, pts in enumerate(points):
        index[:, j] = assign_bins(Xa[:, j], pts)
    return points, index


def plaintext_binning(X: np.ndarray, y: np.ndarray, features: Sequence[str], bins: int,
                      method: str = "quantile") -> list[FeatureBinning]:
    """Binning with WoE/IV of every column, computed in one place with the labels at hand.

    The guest's path for its own columns, and the centralized reference that the federated
    result must equal when run on the joined (guest + host) columns.
    """
    yy = np.asarray(y)
    check_binary_labels(yy)
    points, index = bin_columns(X, features, bins, method)
    out = []
    for j, name in enumerate(features):
        m = len(points[j])
        ev, ne = bin_label_counts(index[:, j], yy, m)
        out.append(FeatureBinning(name, m, points[j], woe_iv(ev, ne),
                                  constant=bool(np.ptp(np.asarray(X)[:, j]) == 0)))
    return out


# -- federated steps ------------------------------------------------------------------------


def guest_encrypt_labels(y: np.ndarray, public_key: PublicKey, check: bool = True) -> EncryptedArray:
    """Step 1 (guest): the labels as integer ciphertexts (precision 0) under the guest's own key.

    Refuses a single-class label column first (WoE is undefined there); pass `check=False`
    when encrypting a chunk of a column already checked.
    """
    yy = np.asarray(y)
    if check:
        check_binary_labels(yy)
    if yy.ndim != 1 or (yy.size and not np.all((yy == 0) | (yy == 1))):
        raise DataError("labels must be a 1-d column of 0 and 1")
    return public_key.encrypt(yy.astype(np.int64))


@dataclass(frozen=True)
class HostBins:
    """The host's own binning: split points (kept at the host), bin index, bin counts and sizes."""

    features: list[str]
    split_points: list[np.ndarray]
    index: np.ndarray  # (n, f) int64
    n_bins: np.ndarray  # (f,) int64
    bin_sizes: np.ndarray  # (f, max bins) int64, zero-padded
    constant: np.ndarray  # (f,) bool

    @property
    def width(self) -> int:
        return int(self.bin_sizes.shape[1])


def host_bin_features(X: np.ndarray, features: Sequence[str], bins: int,
                      method: str = "quantile") -> HostBins:
    """Step 2a (host): bin every own column; only bin counts and sizes will leave the host."""
    points, index = bin_columns(X, features, bins, method)
    n_bins = np.array([len(p) for p in points], dtype=np.int64)
    width = int(n_bins.max()) if n_bins.size else 1
    sizes = np.zeros((len(points), width), dtype=np.int64)
    for j in range(len(points)):
        sizes[j] = np.bincount(index[:, j], minlength=width)
    constant = np.array([np.ptp(np.asarray(X, dtype=np.float64)[:, j]) == 0 for j in range(len(points))],
                        dtype=bool)
    return HostBins(list(features), points, index, n_bins, sizes, constant)


def host_encrypted_bin_sums(encrypted_labels: EncryptedArray, bin_index: np.ndarray, width: int,
                            rerandomize: bool = True) -> EncryptedArray:
    """Step 2b (host): per bin of every own feature, the sum of the label ciphertexts.

    `bin_index` is the (n, f) bin index of the rows the ciphertexts belong to (a chunk of
    rows gives partial sums, which add up). Returns an (f, width) array of encrypted event
    counts (bins beyond a feature's count encrypt 0), re-randomized unless told otherwise so
    that the guest cannot relate them to the ciphertexts it sent; only skip that for partial
    sums that are added up and re-randomized before they leave.
    """
    index = np.asarray(bin_index, dtype=np.int64)
    n = index.shape[0]
    if encrypted_labels.ndim != 1 or encrypted_labels.shape[0] != n:
        got = encrypted_labels.shape[0] if encrypted_labels.ndim else 0
        raise DataError(f"{got} encrypted labels for {n} rows of host bins")
    if index.ndim != 2:
        raise DataError(f"bin index must be a (rows, features) matrix, got shape {index.shape}")
    sums = encrypted_labels.group_sum(index, width)
    return sums.rerandomize() if rerandomize else sums


@dataclass(frozen=True)
class PackedCounts:
    """Non-negative integer counts packed into few ciphertexts: `slots` counts of `slot_bits` each."""

    cipher: EncryptedArray  # (m,), slot k of ciphertext i holds count i*slots + k at bit s*k
    slot_bits: int
    slots: int
    shape: tuple[int, ...]  # of the counts before packing

    @property
    def count(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def packing_layout(key_bits: int, max_count: int) -> tuple[int, int]:
    """(slot_bits, slots) of `vfl.paillier.packing` for counts in [0, max_count] under a key of `key_bits`."""
    slot_bits = slot_bits_for(max_count)
    return slot_bits, max(1, (key_bits - 2) // slot_bits)


def host_pack_bin_sums(sums: EncryptedArray, max_count: int) -> PackedCounts:
    """Step 2c (host): pack the encrypted per-bin counts, many per ciphertext, and re-randomize.

    Every count is an integer in [0, max_count] (at most the number of rows), so counts sit
    side by side in one plaintext (`vfl.paillier.packing.pack`: Horner's rule on ciphertexts,
    slot_bits squarings per count). The guest then decrypts and the host re-randomizes a few
    ciphertexts instead of one per bin, and the reply shrinks as much.
    """
    if sums.precision != 0:
        raise DataError("only integer (precision 0) counts can be packed")
    packed = pack(sums.reshape(-1), bound=max_count).rerandomize()
    cipher = EncryptedArray(sums.public_key, packed.cipher.reshape(-1), 0)
    return PackedCounts(cipher, packed.slot_bits, packed.slots, tuple(sums.shape))


def guest_decrypt_event_counts(private_key: PrivateKey, packed: PackedCounts, max_count: int) -> np.ndarray:
    """Step 3a (guest): decrypt the packed per-bin event counts to exact integers.

    Refuses a layout whose slots could not hold `max_count` (the number of rows) without carry,
    and counts outside [0, max_count].
    """
    pk = private_key.public_key
    s, k = packed.slot_bits, packed.slots
    try:
        if s < slot_bits_for(max_count) or k != slots_for(pk, s) or packed.cipher.ndim != 1:
            raise PaillierError("layout")
        arr = PackedEncryptedArray(pk, packed.cipher.cipher.reshape(1, -1), 0, slot_bits=s, count=packed.count,
                                   bound=max_count, vshape=(packed.count,))
    except PaillierError:
        raise DataError(f"malformed packed counts: {packed.cipher.shape[0] if packed.cipher.ndim else 0} "
                        f"ciphertexts of {k} slots x {s} bits for {packed.count} counts") from None
    try:
        values = [int(v) for v in decrypt_slots(private_key, arr).tolist()]
    except PaillierError:
        raise DataError("decrypted packed counts overflow their slots: the host's sums are malformed") from None
    if any(v < 0 or v > max_count for v in values):
        raise DataError(f"decrypted event counts outside [0, {max_count}]: the host's sums are malformed")
    return np.asarray(values, dtype=np.int64).reshape(packed.shape)


def guest_woe_iv_from_counts(event_counts: np.ndarray, bin_sizes: np.ndarray,
                             n_bins: np.ndarray, n_rows: int, host: str = "host") -> list[WoeTable]:
    """Step 3b (guest): WoE/IV of every host feature from its event counts and bin sizes.

    Checks that the host's numbers are consistent (each feature's bins hold all rows, no
    bin has more events than rows) before using them. `host` names the host in errors
    (e.g. "host2" with several hosts; each host's counts are checked on their own).
    """
    ev = np.asarray(event_counts, dtype=np.int64)
    sizes = np.asarray(bin_sizes, dtype=np.int64)
    nb = np.asarray(n_bins, dtype=np.int64)
    if ev.shape != sizes.shape or ev.ndim != 2 or nb.shape != (ev.shape[0],):
        raise DataError(f"{host} bin counts of shapes {ev.shape}, {sizes.shape}, {nb.shape} do not agree")
    tables = []
    for j in range(ev.shape[0]):
        m = int(nb[j])
        if not 1 <= m <= ev.shape[1] or np.any(sizes[j, m:] != 0):
            raise DataError(f"{host} feature {j}: bin count {m} does not match its bin sizes")
        e, s = ev[j, :m], sizes[j, :m]
        if int(s.sum()) != n_rows or np.any(e < 0) or np.any(e > s):
            raise DataError(f"{host} feature {j}: bin sizes and event counts are inconsistent with {n_rows} rows")
        tables.append(woe_iv(e, s - e))
    return tables


# -- WoE transform --------------------------------------------------------------------------


def woe_transform(x: np.ndarray, points: np.ndarray, woe: np.ndarray) -> np.ndarray:
    """Replace every value by the WoE of its bin (right-closed bins of `points`)."""
    pts = np.asarray(points, dtype=np.float64)
    w = np.asarray(woe, dtype=np.float64)
    if pts.shape != w.shape or pts.ndim != 1 or pts.size == 0:
        raise DataError(f"{w.size} WoE values for {pts.size} split points")
    return w[assign_bins(x, pts)]


@dataclass(frozen=True)
class WoeStandardizer:
    """Columns -> WoE of their bin -> zero mean, unit (population) variance.

    Why standardize: the Taylor-approximated logistic loss is quadratic, and plain gradient
    descent on it diverges when lr * (0.25 * lambda_max(X^T X / n) + alpha) >= 2. Raw WoE
    columns are uncentred and strongly correlated, which makes lambda_max large; centred,
    unit-variance columns bound it by the number of columns (the trace of a correlation matrix).
    Each party fits this on its own columns; nothing crosses the wire.
    """

    features: list[str]
    split_points: list[np.ndarray]
    woe: list[np.ndarray]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, features: Sequence[str], split_points: Sequence[np.ndarray],
            woe: Sequence[np.ndarray]) -> WoeStandardizer:
        pts = [np.asarray(p, dtype=np.float64) for p in split_points]
        ws = [np.asarray(w, dtype=np.float64) for w in woe]
        raw = _woe_columns(X, pts, ws)
        mean = raw.mean(axis=0) if raw.shape[0] else np.zeros(raw.shape[1])
        std = raw.std(axis=0) if raw.shape[0] else np.ones(raw.shape[1])
        std = np.where(std > 0, std, 1.0)
        return cls(list(features), pts, ws, mean, std)

    @property
    def columns(self) -> list[str]:
        """The output columns (the model's features): the input columns, transformed in place."""
        return list(self.features)

    def transform(self, X: np.ndarray) -> np.ndarray:
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim != 2 or Xa.shape[1] != len(self.features):
            raise DataError(f"WoE transform of {len(self.features)} features got a matrix of shape {Xa.shape}")
        return (_woe_columns(Xa, self.split_points, self.woe) - self.mean) / self.std

    def to_json(self) -> dict[str, Any]:
        """What a saved model needs to score new rows (model.json's preprocessing)."""
        return {"kind": "woe+standardize", "features": list(self.features),
                "split_points": [p.tolist() for p in self.split_points],
                "woe": [w.tolist() for w in self.woe],
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> WoeStandardizer:
        try:
            if obj.get("kind") != "woe+standardize":
                raise ValueError(f"unknown preprocessing kind {obj.get('kind')!r}")
            feats = [str(f) for f in obj["features"]]
            pts = [np.asarray(p, dtype=np.float64) for p in obj["split_points"]]
            ws = [np.asarray(w, dtype=np.float64) for w in obj["woe"]]
            mean = np.asarray(obj["mean"], dtype=np.float64)
            std = np.asarray(obj["std"], dtype=np.float64)
            if not (len(feats) == len(pts) == len(ws) == mean.size == std.size):
                raise ValueError("lengths differ")
            if any(p.shape != w.shape or p.size == 0 for p, w in zip(pts, ws, strict=True)):
                raise ValueError("split points and WoE values differ in length")
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed WoE preprocessing: {exc}") from None
        return cls(feats, pts, ws, mean, std)


# -- bin indicators (the host's transform: no label-derived value needed) -----------------------


def bin_indicators(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """One 0/1 column per bin of `points` (right-closed bins): row i has a 1 in the column of its bin."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 1 or pts.size == 0:
        raise DataError(f"bin indicators need a 1-d array of split points, got shape {pts.shape}")
    out = np.zeros((np.asarray(x).shape[0], pts.size), dtype=np.float64)
    out[np.arange(out.shape[0]), assign_bins(x, pts)] = 1.0
    return out


def indicator_names(feature: str, n_bins: int) -> list[str]:
    """Names of a feature's indicator columns: "<feature>[bin0]", "<feature>[bin1]", ..."""
    return [f"{feature}[bin{b}]" for b in range(n_bins)]


@dataclass(frozen=True)
class BinIndicators:
    """Columns -> one 0/1 indicator column per bin of each (own split points only).

    The host's transform under `[selection] woe_transform`: a weight per bin spans every
    function of the bin, so it contains the WoE model (a * WoE[bin] + c) without needing the
    WoE, which is label-derived and would tell the host each bin's event count. All bins are
    kept: a feature's indicators sum to 1 (collinear with the guest's intercept, and after
    `[lr] standardize` linearly dependent), which neither the L2 penalty nor gradient descent
    from zero minds (it stays in X's row space and reaches the same scores); dropping a
    reference bin would make the penalty depend on which bin was dropped. Raw indicators
    have lambda_max(X^T X/n) <= the number of features (each row has one 1 per feature).
    """

    features: list[str]  # the raw input columns
    split_points: list[np.ndarray]

    @property
    def columns(self) -> list[str]:
        """The output columns (the model's features), in order."""
        return [c for f, p in zip(self.features, self.split_points, strict=True)
                for c in indicator_names(f, p.size)]

    @classmethod
    def fit(cls, features: Sequence[str], split_points: Sequence[np.ndarray]) -> BinIndicators:
        pts = [np.asarray(p, dtype=np.float64) for p in split_points]
        if len(pts) != len(features) or any(p.ndim != 1 or p.size == 0 for p in pts):
            raise DataError(f"bin indicators: {len(pts)} split point arrays for {len(features)} features")
        return cls(list(features), pts)

    def transform(self, X: np.ndarray) -> np.ndarray:
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim != 2 or Xa.shape[1] != len(self.features):
            raise DataError(f"bin indicators of {len(self.features)} features got a matrix of shape {Xa.shape}")
        if not self.features:
            return np.zeros((Xa.shape[0], 0))
        return np.hstack([bin_indicators(Xa[:, j], p) for j, p in enumerate(self.split_points)])

    def to_json(self) -> dict[str, Any]:
        """What a saved model needs to score new rows (model.json's preprocessing)."""
        return {"kind": "bin-indicators", "features": list(self.features),
                "split_points": [p.tolist() for p in self.split_points], "columns": self.columns}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> BinIndicators:
        try:
            if obj.get("kind") != "bin-indicators":
                raise ValueError(f"unknown preprocessing kind {obj.get('kind')!r}")
            feats = [str(f) for f in obj["features"]]
            pts = [np.asarray(p, dtype=np.float64) for p in obj["split_points"]]
            out = cls.fit(feats, pts)
            if "columns" in obj and [str(c) for c in obj["columns"]] != out.columns:
                raise ValueError("columns do not match the features and split points")
        except (KeyError, TypeError, ValueError, DataError) as exc:
            raise DataError(f"malformed bin-indicator preprocessing: {exc}") from None
        return out


Preprocessing = WoeStandardizer | BinIndicators


def preprocessing_from_json(obj: Mapping[str, Any]) -> Preprocessing:
    """A saved model's preprocessing by its "kind" ("woe+standardize" | "bin-indicators")."""
    if not isinstance(obj, Mapping):
        raise DataError(f"malformed preprocessing: expected an object, got {type(obj).__name__}")
    if obj.get("kind") == "bin-indicators":
        return BinIndicators.from_json(obj)
    return WoeStandardizer.from_json(obj)


def _woe_columns(X: np.ndarray, points: Sequence[np.ndarray], woe: Sequence[np.ndarray]) -> np.ndarray:
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2 or Xa.shape[1] != len(points) or len(points) != len(woe):
        raise DataError(f"WoE tables for {len(points)} features, data of shape {Xa.shape}")
    out = np.empty_like(Xa)
    for j in range(Xa.shape[1]):
        out[:, j] = woe_transform(Xa[:, j], points[j], woe[j])
    return out


__all__ = [
    "ADJUSTMENT", "METHODS", "BinIndicators", "FeatureBinning", "HostBins", "PackedCounts", "Preprocessing",
    "WoeStandardizer", "WoeTable", "assign_bins", "bin_columns", "bin_indicators", "bin_label_counts",
    "bucket_split_points", "check_bin_count", "guest_decrypt_event_counts", "guest_encrypt_labels",
    "guest_woe_iv_from_counts", "host_bin_features", "host_encrypted_bin_sums", "host_pack_bin_sums",
    "indicator_names", "interval_labels", "packing_layout", "plaintext_binning", "preprocessing_from_json",
    "quantile_split_points", "split_points", "woe_iv", "woe_transform",
]
