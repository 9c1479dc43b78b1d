"""A party's table: IDs, feature columns and (guest only) binary labels, validated.

`parse_party_table` turns the text cells of a CSV into a `PartyData`, refusing
anything a federated job cannot use with a one-line message naming the source,
line and column. Reading files is the runtime's job (`nodes.datafiles`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vfl.errors import DataError

Role = Literal["guest", "host"]
ID_COLUMN = "id"
LABEL_COLUMN = "y"


@dataclass
class PartyData:
    """One party's rows: `ids` (str), `X` (n x d float64), `y` (n, int8; guest only)."""

    role: Role
    ids: np.ndarray
    features: list[str]
    X: np.ndarray
    y: np.ndarray | None = None
    source: str = field(default="<memory>", compare=False)

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    def take(self, rows: Sequence[int] | np.ndarray) -> PartyData:
        """The rows at `rows`, in that order (e.g. the aligned intersection)."""
        idx = np.asarray(rows, dtype=np.int64)
        return PartyData(self.role, self.ids[idx], list(self.features), self.X[idx],
                         None if self.y is None else self.y[idx], self.source)

    def select(self, features: Sequence[str]) -> PartyData:
        """Only the named feature columns, in the given order."""
        pos = {f: i for i, f in enumerate(self.features)}
        missing = [f for f in features if f not in pos]
        if missing:
            raise DataError(f"{self.source}: no feature column {missing[0]!r}")
        cols = [pos[f] for f in features]
        return PartyData(self.role, self.ids, list(features), self.X[:, cols], self.y, self.source)


def _number(cell: str, where: str, column: str) -> float:
    text = cell.strip()
    if text == "":
        raise DataError(f"{where}, column {column!r}: empty value")
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}, column {column!r}: {text!r} is not a number") from None
    if math.isnan(v):
        raise DataError(f"{where}, column {column!r}: NaN")
    if math.isinf(v):
        raise DataError(f"{where}, column {column!r}: infinite value {text!r}")
    return v


def parse_party_table(header: Sequence[str], rows: Iterable[Sequence[str]], *, role: Role,
                      source: str = "<memory>", require_labels: bool = True) -> PartyData:
    """Validate and convert a party's table. Line numbers count the header as line 1.

    `require_labels=False` (scoring new rows): a guest table without a `y` column is
    accepted and gives `y = None`.
    """
    cols = [c.strip() for c in header]
    if not cols or cols == [""]:
        raise DataError(f"{source}: empty file (no header)")
    seen: set[str] = set()
    for c in cols:
        if c == "":
            raise DataError(f"{source}, line 1: a column has no name")
        if c in seen:
            raise DataError(f"{source}, line 1: column {c!r} appears twice")
        seen.add(c)
    if ID_COLUMN not in seen:
        raise DataError(f"{source}, line 1: no {ID_COLUMN!r} column")
    if role == "host" and LABEL_COLUMN in seen:
        raise DataError(f"{source}: host file has a label column {LABEL_COLUMN!r}; labels belong to the guest only")
    if role == "guest" and LABEL_COLUMN not in seen and require_labels:
        raise DataError(f"{source}, line 1: guest file has no label column {LABEL_COLUMN!r}")
    id_pos = cols.index(ID_COLUMN)
    y_pos = cols.index(LABEL_COLUMN) if role == "guest" and LABEL_COLUMN in seen else -1
    feat_pos = [i for i, c in enumerate(cols) if i not in (id_pos, y_pos)]
    if role == "host" and not feat_pos:
        raise DataError(f"{source}, line 1: host file has no feature columns")

    ids: list[str] = []
    first_line: dict[str, int] = {}
    X: list[list[float]] = []
    y: list[int] = []
    for lineno, row in enumerate(rows, start=2):
        if len(row) == 0 or (len(row) == 1 and row[0].strip() == ""):
            continue  # blank line
        where = f"{source}, line {lineno}"
        if len(row) != len(cols):
            raise DataError(f"{where}: {len(row)} fields, the header has {len(cols)}")
        rid = row[id_pos].strip()
        if rid == "":
            raise DataError(f"{where}, column {ID_COLUMN!r}: missing ID")
        if rid in first_line:
            raise DataError(f"{where}, column {ID_COLUMN!r}: duplicate ID {rid!r} (first on line {first_line[rid]})")
        first_line[rid] = lineno
        ids.append(rid)
        X.append([_number(row[i], where, cols[i]) for i in feat_pos])
        if y_pos >= 0:
            label = row[y_pos].strip()
            try:
                lv = float(label)
            except ValueError:
                lv = float("nan")
            if lv not in (0.0, 1.0):
                raise DataError(f"{where}, column {LABEL_COLUMN!r}: label {label!r} is not 0 or 1")
            y.append(int(lv))
    if not ids:
        raise DataError(f"{source}: no data rows")
    Xa = np.asarray(X, dtype=np.float64).reshape(len(ids), len(feat_pos))
    return PartyData(
        role=role,
        ids=np.asarray(ids, dtype=str),
        features=[cols[i] for i in feat_pos],
        X=Xa,
        y=np.asarray(y, dtype=np.int8) if y_pos >= 0 else None,
        source=source,
    )


def check_binary_labels(y: np.ndarray, source: str = "labels") -> None:
    """Refuse a label vector with a single class (nothing to learn, WoE undefined)."""
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"{source}: all labels are {int(classes[0]) if len(classes) else '?'}; "
                        "need both classes 0 and 1")
