"""Reading and writing party CSV files (`id`, features, and `y` for the guest)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from vfl.data import ID_COLUMN, LABEL_COLUMN, PartyData, Role, parse_party_table
from vfl.errors import DataError


def load_party_csv(path: str | Path, role: Role | str, require_labels: bool = True) -> PartyData:
    """Load and validate one party's CSV; errors name the file, line and column.

    `role`: guest, host, or host1..hostN (a host's table). `require_labels=False`: a guest file
    without labels is fine (scoring new rows).
    """
    kind: Role = "guest" if role == "guest" else "host"
    p = Path(path)
    if not str(path):
        raise DataError(f"no data file: set [{role}] data in the config")
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{p}: empty file") from None
        except csv.Error as exc:
            raise DataError(f"{p}, line 1: {exc}") from None
        try:
            return parse_party_table(header, reader, role=kind, source=str(p),
                                     require_labels=require_labels)
        except csv.Error as exc:
            raise DataError(f"{p}, line {reader.line_num}: {exc}") from None


WRITE_BLOCK = 20_000  # rows formatted at once


def write_party_csv(data: PartyData, path: str | Path) -> Path:
    """Write a party's table: id, [y,] features; floats with 17 significant digits."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    header = [ID_COLUMN] + ([LABEL_COLUMN] if data.y is not None else []) + list(data.features)
    tmp = p.with_suffix(p.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        fh.write(",".join(header) + "\n")
        # Formatted in blocks of rows: the text of a million-row table is never all in memory.
        for start in range(0, data.n_rows, WRITE_BLOCK):
            stop = min(start + WRITE_BLOCK, data.n_rows)
            block = data.X[start:stop]
            body = np.char.mod("%.17g", block).tolist() if block.size else [[]] * (stop - start)
            ids = data.ids[start:stop].tolist()
            ys = data.y[start:stop].tolist() if data.y is not None else None
            lines = []
            for k, row in enumerate(body):
                cells = [str(ids[k])] + ([str(int(ys[k]))] if ys is not None else []) + row
                lines.append(",".join(cells))
            fh.write("\n".join(lines) + "\n")
    tmp.replace(p)
    return p
