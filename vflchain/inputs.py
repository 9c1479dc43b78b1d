"""A party's data as run_job takes it: a CSV path, a DataFrame, an array, a mapping or a PartyData.

Everything in memory is validated like a CSV file (vfl.data.parse_party_table: the same
one-line errors, naming the party, row and column) and then written to the job's work
directory as the party's CSV file, which its node reads as `vflchain run` would.

- path (str or Path): the party's CSV file (`id`, [`y`,] features), used as it is.
- DataFrame (anything with `.columns` and `.to_numpy()`): its columns; `id` if present, else
  the index gives the row IDs; `y` (guest only) the labels.
- 2-D array: the feature columns `x0`, `x1`, ...; row IDs are the row positions ("0", "1", ...),
  so the parties' rows are matched by position.
- mapping {"X": 2-D array, "ids": optional, "y": optional, "features": optional names}.
- vfl.data.PartyData.
The guest's labels may also come separately (`labels=`); giving them twice is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nodes.datafiles import write_party_csv
from vfl.data import ID_COLUMN, LABEL_COLUMN, PartyData, parse_party_table
from vfl.errors import DataError

PartyInput = Any  # str | Path | PartyData | DataFrame | np.ndarray | Mapping[str, Any]
MAPPING_KEYS = ("X", "ids", "y", "features")


def _cell(v: Any) -> str:
    """A value as CSV text that parses back to exactly the same float (or the ID's text)."""
    if isinstance(v, float | np.floating):
        return repr(float(v))
    return str(v)


def _table(role: str, party: str, columns: list[str], ids: Sequence[Any], X: np.ndarray,
           y: Sequence[Any] | None, require_labels: bool) -> PartyData:
    """Validate one party's columns as parse_party_table validates a CSV file."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(f"{party}: feature array must be 2-D (rows x columns), got shape {X.shape}")
    if len(ids) != X.shape[0] or (y is not None and len(y) != X.shape[0]):
        raise DataError(f"{party}: {X.shape[0]} rows of features, {len(ids)} IDs"
                        + (f" and {len(y)} labels" if y is not None else ""))
    header = [ID_COLUMN] + ([LABEL_COLUMN] if y is not None else []) + [str(c) for c in columns]
    rows = ([_cell(ids[i])] + ([_cell(y[i])] if y is not None else []) + [_cell(v) for v in X[i].tolist()]
            for i in range(X.shape[0]))
    return parse_party_table(header, rows, role="guest" if role == "guest" else "host",
                             source=f"{party} data", require_labels=require_labels)


def party_table(value: PartyInput, party: str, role: str, labels: Any = None,
                require_labels: bool = False) -> Path | PartyData:
    """One party's input as a CSV path to use as it is, or a validated PartyData to write.

    `party` names it in errors ("guest", "host1", "client2"); `role` is its kind ("guest" holds
    labels, anything else does not). DataError (one line) for anything a job cannot use."""
    if labels is not None and role != "guest":
        raise DataError(f"{party}: only the guest has labels")
    if isinstance(value, str | Path):
        if labels is not None:
            raise DataError(f"{party}: labels= goes with in-memory data, not with the file {value}")
        p = Path(value)
        if not p.is_file():
            raise DataError(f"{party} data {value}: no such file")
        return p.resolve()
    if isinstance(value, PartyData):
        if labels is not None and value.y is not None:
            raise DataError(f"{party}: labels given twice (labels= and the data's y)")
        y = value.y if labels is None else np.asarray(labels)
        return _table(role, party, list(value.features), value.ids.tolist(), value.X,
                      None if y is None else np.asarray(y).tolist(), require_labels)
    if hasattr(value, "columns") and hasattr(value, "to_numpy"):  # a DataFrame (pandas, polars-like)
        cols = [str(c) for c in value.columns]
        data = {c: value[c].to_numpy() if hasattr(value[c], "to_numpy") else np.asarray(value[c]) for c in cols}
        if ID_COLUMN in data:
            ids = [str(x) for x in data.pop(ID_COLUMN).tolist()]
        elif hasattr(value, "index"):
            ids = [str(x) for x in list(value.index)]
        else:
            ids = [str(i) for i in range(len(next(iter(data.values()), [])))]
        y = data.pop(LABEL_COLUMN, None)
        if y is not None and role != "guest":
            raise DataError(f"{party} data: a {LABEL_COLUMN!r} column; labels belong to the guest only")
        if y is not None and labels is not None:
            raise DataError(f"{party}: labels given twice (labels= and a {LABEL_COLUMN!r} column)")
        features = list(data)
        try:
            X = np.column_stack([np.asarray(data[c], dtype=np.float64) for c in features]) if features \
                else np.empty((len(ids), 0))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{party} data: a feature column is not numeric ({exc})") from None
        y = y if labels is None else labels
        return _table(role, party, features, ids, X, None if y is None else list(y), require_labels)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(MAPPING_KEYS))
        if unknown or "X" not in value:
            raise DataError(f"{party} data: a mapping needs \"X\" and may have {', '.join(MAPPING_KEYS[1:])}"
                            + (f" (unknown key {unknown[0]!r})" if unknown else ""))
        X = _array(value["X"], party)
        y = value.get("y")
        if y is not None and labels is not None:
            raise DataError(f"{party}: labels given twice (labels= and \"y\")")
        y = y if labels is None else labels
        ids = value.get("ids")
        features = value.get("features")
        return _table(role, party, [f"x{j}" for j in range(X.shape[1])] if features is None else list(features),
                      [str(i) for i in range(X.shape[0])] if ids is None else list(ids), X,
                      None if y is None else list(np.asarray(y).tolist()), require_labels)
    if isinstance(value, np.ndarray | list | tuple):
        X = _array(value, party)
        return _table(role, party, [f"x{j}" for j in range(X.shape[1])], [str(i) for i in range(X.shape[0])], X,
                      None if labels is None else list(np.asarray(labels).tolist()), require_labels)
    raise DataError(f"{party} data: expected a CSV path, a DataFrame, a 2-D array, a mapping with \"X\" or a "
                    f"PartyData, got {type(value).__name__}")


def _array(value: Any, party: str) -> np.ndarray:
    try:
        X = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{party} data: the features are not numeric ({exc})") from None
    if X.ndim != 2:
        raise DataError(f"{party} data: feature array must be 2-D (rows x columns), got shape {X.shape}")
    return X


def write_table(table: Path | PartyData, path: Path) -> Path:
    """The CSV path of a party's table: the given file, or `table` written to `path`."""
    return table if isinstance(table, Path) else write_party_csv(table, path)
