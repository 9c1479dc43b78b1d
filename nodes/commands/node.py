"""`vflchain node`: one party's node, for a real two-machine deployment."""

from __future__ import annotations

import argparse

from nodes.errors import NotYetAvailable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="run one party's node (guest or host)",
                       description="Run one party's node of a job.")
    p.add_argument("--config", required=True, help="job config (TOML)")
    p.add_argument("--role", required=True, choices=["guest", "host"])
    p.add_argument("--out", help="this party's run directory (default: from the config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    raise NotYetAvailable("node: not yet available")
