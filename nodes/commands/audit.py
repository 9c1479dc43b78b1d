"""`vflchain audit`: verify run directories against the chain."""

from __future__ import annotations

import argparse

from nodes.errors import NotYetAvailable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="verify run directories against the chain (exit 0 ok, 1 mismatch, 2 cannot check)",
        description="Verify a party's run directory (or both) against the audit contract.",
    )
    p.add_argument("dirs", nargs="*", metavar="DIR", help="run directories to verify")
    p.add_argument("--rpc", help="JSON-RPC URL of the chain (default: the embedded chain's state)")
    p.add_argument("--session", help="audit a session from chain events alone (no party files)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    raise NotYetAvailable("audit: not yet available")
