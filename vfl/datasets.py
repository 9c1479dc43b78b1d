"""Example vertical datasets, generated in memory (writing them is `nodes.datafiles`).

- `breast_split`: scikit-learn's breast cancer data in FATE's two-party layout:
  guest = label y (1 = benign, the event) + sklearn columns 20..29 as x0..x9,
  host = sklearn columns 0..19 as x0..x19, standardized with the population std.
- `synth_split`: a synthetic classification problem of any size, split by columns.
- `breast_split_hosts` / `synth_split_hosts`: the same data with the host columns split
  between N hosts in order (`split_columns`: near-equal contiguous blocks; breast's host
  k keeps FATE's names, e.g. host1 x0..x9 and host2 x10..x19 for N = 2). N = 1 is exactly
  the two-party split.

All can give each party a different, overlapping ID set (`overlap` < 1), with
rows shuffled independently per party, so that alignment is a real problem.
"""

from __future__ import annotations

import numpy as np

from vfl.data import PartyData
from vfl.errors import DataError

GUEST_COLUMNS = slice(20, 30)
HOST_COLUMNS = slice(0, 20)


def standardize(X: np.ndarray) -> np.ndarray:
    """Zero mean, unit population standard deviation (ddof=0), per column."""
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return (X - X.mean(axis=0)) / std


def _partition(n: int, overlap: float, shuffle: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices held by the guest and by the host."""
    if not 0.0 < overlap <= 1.0:
        raise DataError(f"overlap must be in (0, 1], got {overlap}")
    rng = np.random.default_rng(seed)
    if overlap == 1.0 and not shuffle:
        rows = np.arange(n)
        return rows, rows
    perm = rng.permutation(n)
    shared = int(round(overlap * n))
    rest = perm[shared:]
    guest = np.concatenate([perm[:shared], rest[0::2]])
    host = np.concatenate([perm[:shared], rest[1::2]])
    return rng.permutation(guest), rng.permutation(host)


def _split(X: np.ndarray, y: np.ndarray, guest_cols: np.ndarray, host_cols: np.ndarray,
           overlap: float, shuffle: bool, seed: int, source: str) -> tuple[PartyData, PartyData]:
    n = len(y)
    g_rows, h_rows = _partition(n, overlap, shuffle, seed)
    ids = np.asarray([str(i) for i in range(n)], dtype=str)
    guest = PartyData("guest", ids[g_rows], [f"x{i}" for i in range(len(guest_cols))],
                      X[np.ix_(g_rows, guest_cols)], y[g_rows].astype(np.int8), f"{source}:guest")
    host = PartyData("host", ids[h_rows], [f"x{i}" for i in range(len(host_cols))],
                     X[np.ix_(h_rows, host_cols)], None, f"{source}:host")
    return guest, host


def breast_split(overlap: float = 1.0, shuffle: bool = False, seed: int = 42) -> tuple[PartyData, PartyData]:
    """FATE's two-party breast cancer split (569 rows; 10 guest and 20 host features)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    X = standardize(np.asarray(data.data, dtype=np.float64))
    y = np.asarray(data.target, dtype=np.int8)
    return _split(X, y, np.arange(30)[GUEST_COLUMNS], np.arange(30)[HOST_COLUMNS],
                  overlap, shuffle, seed, "breast")


def synth_split(rows: int, guest_features: int, host_features: int, overlap: float = 1.0,
                shuffle: bool = False, seed: int = 42) -> tuple[PartyData, PartyData]:
    """A synthetic binary classification problem split by columns between the parties."""
    from sklearn.datasets import make_classification

    if rows < 2 or guest_features < 0 or host_features < 1:
        raise DataError("synthetic data needs >= 2 rows, >= 0 guest and >= 1 host features")
    d = guest_features + host_features
    informative = max(1, min(d, d // 2 + 1))
    X, y = make_classification(
        n_samples=rows, n_features=d, n_informative=informative,
        n_redundant=min(d - informative, d // 4), n_clusters_per_class=2,
        class_sep=1.0, flip_y=0.02, shuffle=True, random_state=seed,
    )
    X = standardize(X.astype(np.float64))
    return _split(X, y.astype(np.int8), np.arange(guest_features),
                  np.arange(guest_features, d), overlap, shuffle, seed, "synth")


def split_columns(n_columns: int, parts: int) -> list[np.ndarray]:
    """Near-equal contiguous blocks of column positions, the first ones one larger (7, 7, 6 of 20)."""
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise DataError(f"the number of hosts must be an integer >= 1, got {parts!r}")
    if parts > n_columns:
        raise DataError(f"{n_columns} host columns cannot be split between {parts} hosts (one column each at least)")
    return [b.astype(np.int64) for b in np.array_split(np.arange(n_columns), parts)]


def _partition_many(n: int, parties: int, overlap: float, shuffle: bool,
                    seed: int) -> list[np.ndarray]:
    """Row indices of each of `parties` parties: a shared `overlap` fraction, the rest dealt round robin."""
    if not 0.0 < overlap <= 1.0:
        raise DataError(f"overlap must be in (0, 1], got {overlap}")
    rng = np.random.default_rng(seed)
    if overlap == 1.0 and not shuffle:
        return [np.arange(n) for _ in range(parties)]
    perm = rng.permutation(n)
    shared = int(round(overlap * n))
    rest = perm[shared:]
    return [rng.permutation(np.concatenate([perm[:shared], rest[p::parties]])) for p in range(parties)]


def _split_hosts(X: np.ndarray, y: np.ndarray, guest_cols: np.ndarray, host_cols: np.ndarray,
                 host_names: list[str], hosts: int, overlap: float, shuffle: bool, seed: int,
                 source: str) -> tuple[PartyData, list[PartyData]]:
    if hosts == 1:
        guest, host = _split(X, y, guest_cols, host_cols, overlap, shuffle, seed, source)
        return guest, [host]
    blocks = split_columns(len(host_cols), hosts)
    n = len(y)
    rows = _partition_many(n, hosts + 1, overlap, shuffle, seed)
    ids = np.asarray([str(i) for i in range(n)], dtype=str)
    g = rows[0]
    guest = PartyData("guest", ids[g], [f"x{i}" for i in range(len(guest_cols))],
                      X[np.ix_(g, guest_cols)], y[g].astype(np.int8), f"{source}:guest")
    out = []
    for k, block in enumerate(blocks, 1):
        r = rows[k]
        out.append(PartyData("host", ids[r], [host_names[j] for j in block.tolist()],
                             X[np.ix_(r, host_cols[block])], None, f"{source}:host{k}"))
    return guest, out


def breast_split_hosts(hosts: int = 1, overlap: float = 1.0, shuffle: bool = False,
                       seed: int = 42) -> tuple[PartyData, list[PartyData]]:
    """FATE's breast split with its 20 host columns divided between `hosts` hosts, in order.

    Host k keeps FATE's names of its columns (host1 x0..x9, host2 x10..x19 for two hosts);
    `hosts` = 1 gives exactly `breast_split`.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    X = standardize(np.asarray(data.data, dtype=np.float64))
    y = np.asarray(data.target, dtype=np.int8)
    host_cols = np.arange(30)[HOST_COLUMNS]
    return _split_hosts(X, y, np.arange(30)[GUEST_COLUMNS], host_cols,
                        [f"x{i}" for i in range(len(host_cols))], hosts, overlap, shuffle, seed, "breast")


def synth_split_hosts(rows: int, guest_features: int, host_features: int, hosts: int = 1,
                      overlap: float = 1.0, shuffle: bool = False,
                      seed: int = 42) -> tuple[PartyData, list[PartyData]]:
    """`synth_split` with the host columns divided between `hosts` hosts (host k: x<first>..x<last>)."""
    if hosts == 1:
        guest, host = synth_split(rows, guest_features, host_features, overlap, shuffle, seed)
        return guest, [host]
    split_columns(host_features, hosts)  # refuses too few columns before generating anything
    guest, host = synth_split(rows, guest_features, host_features, 1.0, False, seed)
    X = np.hstack([guest.X, host.X])
    d_g = guest_features
    return _split_hosts(X, np.asarray(guest.y), np.arange(d_g), np.arange(d_g, d_g + host_features),
                        [f"x{i}" for i in range(host_features)], hosts, overlap, shuffle, seed, "synth")
