"""`vflchain demo`: the main job end to end (what `make demo` runs).

Writes the breast cancer split with 90% shared IDs, then runs
`examples/breast_lr.toml` exactly as `vflchain run` does: the embedded chain,
the host node and the guest node as three processes over gRPC on loopback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nodes.datafiles import write_party_csv
from nodes.errors import ConfigError
from nodes.ui import console
from vfl.datasets import breast_split

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demonstration job (what `make demo` runs)",
                       description="Prepare the breast cancer data and run the demonstration job "
                       "(examples/breast_lr.toml) as three processes: chain, host, guest.")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo; replaced)")
    p.add_argument("--data", default="data/breast", help="data directory (default data/breast)")
    p.add_argument("--config", default=str(EXAMPLES / "breast_lr.toml"),
                   help="job config (default examples/breast_lr.toml)")
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from nodes.launch import Launcher

    con = console()
    if not Path(args.config).is_file():
        raise ConfigError(f"{args.config}: no such config file")
    data_dir = Path(args.data).resolve()
    guest, host = breast_split(overlap=0.9)
    write_party_csv(guest, data_dir / "guest.csv")
    write_party_csv(host, data_dir / "host.csv")
    shared = len(set(guest.ids.tolist()) & set(host.ids.tolist()))
    con.print(f"[bold]data[/] {data_dir}: guest {guest.n_rows} rows (y + {len(guest.features)} features), "
              f"host {host.n_rows} rows ({len(host.features)} features), {shared} IDs in both")
    sets = [f"guest.data={data_dir / 'guest.csv'}", f"host.data={data_dir / 'host.csv'}",
            f"paillier.key_bits={args.key_bits}", *args.set]
    return Launcher(args.config, args.out, sets, force=True).run()
