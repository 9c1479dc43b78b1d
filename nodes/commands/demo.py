"""`vflchain demo`: the main job end to end (what `make demo` runs).

Grows as capabilities land: today it prepares the breast data and does a
Paillier round trip of the guest's labels under a fresh key.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from nodes.datafiles import load_party_csv, write_party_csv
from nodes.ui import console, table
from vfl.datasets import breast_split
from vfl.paillier import generate_keypair


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demonstration job (what `make demo` runs)",
                       description="Prepare the breast cancer data and run the demonstration job.")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--data", default="data/breast", help="data directory (default data/breast)")
    p.add_argument("--key-bits", type=int, default=2048)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    con = console()
    data_dir = Path(args.data)
    guest, host = breast_split(overlap=0.9)
    write_party_csv(guest, data_dir / "guest.csv")
    write_party_csv(host, data_dir / "host.csv")
    guest = load_party_csv(data_dir / "guest.csv", "guest")
    host = load_party_csv(data_dir / "host.csv", "host")
    con.print(f"[bold]data[/] {data_dir}/guest.csv: {guest.n_rows} rows, y + {len(guest.features)} features; "
              f"{data_dir}/host.csv: {host.n_rows} rows, {len(host.features)} features")

    t0 = time.perf_counter()
    pk, sk = generate_keypair(args.key_bits)
    t_key = time.perf_counter() - t0
    y = guest.y.astype(np.int64)
    t0 = time.perf_counter()
    enc = pk.encrypt(y)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = sk.decrypt(enc)
    t_dec = time.perf_counter() - t0
    ok = bool(np.array_equal(back, y))
    con.print(table(f"Paillier round trip of the guest's {len(y)} labels ({args.key_bits}-bit key)",
                    ["step", "seconds", "per second"],
                    [["key generation", t_key, ""],
                     ["encrypt", t_enc, f"{len(y) / t_enc:,.0f}"],
                     ["decrypt", t_dec, f"{len(y) / t_dec:,.0f}"]]))
    con.print(f"decrypted labels equal the originals: [bold]{'yes' if ok else 'NO'}[/]")
    return 0 if ok else 1
