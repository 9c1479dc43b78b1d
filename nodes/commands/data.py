"""`vflchain data`: write example and synthetic vertical datasets (a guest and 1..N hosts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nodes.datafiles import write_party_csv
from nodes.ui import console
from vfl.datasets import breast_split, breast_split_hosts, synth_split, synth_split_hosts


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory for guest.csv and host.csv (host1.csv..hostN.csv with --hosts N)")
    p.add_argument("--overlap", type=float, default=1.0,
                   help="fraction of rows every party holds (default 1.0); below 1 each party "
                        "also holds IDs the others lack, rows shuffled")
    p.add_argument("--shuffle", action="store_true", help="shuffle each party's rows independently")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--hosts", type=int, default=1, metavar="N",
                   help="split the host columns between N hosts: host1.csv..hostN.csv "
                        "(default 1: one host.csv)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="write example and synthetic vertical (guest + 1..N hosts) datasets",
                       description="Write example and synthetic vertical datasets: a guest and one host, "
                                   "or N hosts with --hosts N.")
    dsub = p.add_subparsers(dest="dataset", metavar="DATASET")
    dsub.required = True
    b = dsub.add_parser("breast", help="FATE-style two-party split of the breast cancer data",
                        description="scikit-learn's breast cancer data in FATE's two-party layout: "
                        "guest = y + 10 features, host = 20 features, standardized; with --hosts N "
                        "the 20 host features split between host1..hostN in order.")
    _common(b)
    b.add_argument("--horizontal", type=int, default=0, metavar="N",
                   help="instead: split by rows into N clients' files client1.csv..clientN.csv (id, y, all "
                        "30 features) for horizontal (hfl-lr) jobs")
    b.add_argument("--skew", type=float, default=0.0,
                   help="with --horizontal: label skew in [0, 1] (0 IID shards, 1 sorted by label)")
    b.set_defaults(func=handle)
    s = dsub.add_parser("synth", help="synthetic classification split of any size",
                        description="A synthetic binary classification problem split by columns.")
    _common(s)
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--guest-features", type=int, default=10)
    s.add_argument("--host-features", type=int, default=20)
    s.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if getattr(args, "horizontal", 0):
        return _horizontal(args)
    if args.hosts != 1:
        return _many_hosts(args)
    if args.dataset == "breast":
        guest, host = breast_split(args.overlap, args.shuffle, args.seed)
    else:
        guest, host = synth_split(args.rows, args.guest_features, args.host_features,
                                  args.overlap, args.shuffle, args.seed)
    out = Path(args.out)
    g = write_party_csv(guest, out / "guest.csv")
    h = write_party_csv(host, out / "host.csv")
    shared = len(set(guest.ids.tolist()) & set(host.ids.tolist()))
    console().print(f"wrote {g} ({guest.n_rows} rows, y + {len(guest.features)} features)")
    console().print(f"wrote {h} ({host.n_rows} rows, {len(host.features)} features)")
    console().print(f"IDs in both: {shared}")
    return 0


def _many_hosts(args: argparse.Namespace) -> int:
    """`--hosts N`: guest.csv and host1.csv..hostN.csv, the host columns split in order."""
    if args.dataset == "breast":
        guest, hosts = breast_split_hosts(args.hosts, args.overlap, args.shuffle, args.seed)
    else:
        guest, hosts = synth_split_hosts(args.rows, args.guest_features, args.host_features, args.hosts,
                                         args.overlap, args.shuffle, args.seed)
    out = Path(args.out)
    g = write_party_csv(guest, out / "guest.csv")
    console().print(f"wrote {g} ({guest.n_rows} rows, y + {len(guest.features)} features)")
    shared = set(guest.ids.tolist())
    for k, host in enumerate(hosts, 1):
        path = write_party_csv(host, out / f"host{k}.csv")
        console().print(f"wrote {path} ({host.n_rows} rows, {len(host.features)} features: "
                        f"{host.features[0]}..{host.features[-1]})")
        shared &= set(host.ids.tolist())
    console().print(f"IDs in all {len(hosts) + 1} files: {len(shared)}")
    return 0


def _horizontal(args: argparse.Namespace) -> int:
    """`vflchain data breast --horizontal N --skew S`: N non-IID row shards."""
    from vfl.hfl.shards import breast_horizontal

    shards = breast_horizontal(args.horizontal, args.skew, args.seed)
    out = Path(args.out)
    for k, shard in enumerate(shards, 1):
        path = write_party_csv(shard, out / f"client{k}.csv")
        share = float(shard.y.mean()) if shard.y is not None else 0.0
        console().print(f"wrote {path} ({shard.n_rows} rows, y + {len(shard.features)} features, "
                        f"{share:.0%} label 1)")
    return 0
