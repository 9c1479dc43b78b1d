"""`vflchain run`: both parties on this machine as separate processes."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a job: embedded chain, host and guest as separate processes",
        description="Run a two-party job on this machine: the embedded chain (unless "
        "[chain] url is set), the host node and the guest node as separate processes "
        "over the real transport. Ctrl-C stops all three (the session is aborted).",
    )
    p.add_argument("--config", required=True, help="job config (TOML)")
    p.add_argument("--out", required=True, help="output directory (gets guest/, host/ and logs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set lr.epochs=20 (repeatable)")
    p.add_argument("--force", action="store_true", help="replace the run directories of an earlier run in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the killed job in --out from the last round both parties attested on chain")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from nodes.algorithms import get
    from nodes.config import load_config
    from nodes.launch import Launcher

    if get(load_config(args.config, args.set).job.algorithm).topology == "horizontal":
        from nodes.hfl_launch import HflLauncher

        return HflLauncher(args.config, args.out, args.set, force=args.force).run()
    return Launcher(args.config, args.out, args.set, force=args.force, resume=args.resume).run()
