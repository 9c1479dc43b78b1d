"""`vflchain chain`: contract operations and the embedded chain server."""

from __future__ import annotations

import argparse

from nodes.errors import NotYetAvailable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chain", help="contract operations and the embedded chain",
                       description="Contract operations and the embedded chain server.")
    csub = p.add_subparsers(dest="chain_command", metavar="ACTION")
    csub.required = True
    for name, text in [
        ("deploy", "deploy the audit contract"),
        ("status", "show the chain and the contract"),
        ("events", "list the contract's events"),
        ("serve", "serve the embedded chain over JSON-RPC on 127.0.0.1"),
    ]:
        c = csub.add_parser(name, help=text, description=text)
        c.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    raise NotYetAvailable(f"chain {args.chain_command}: not yet available")
