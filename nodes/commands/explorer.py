"""`vflchain explorer`: a read-only local web app over the chain and run directories.

    vflchain explorer --state DIR [--runs DIR ...] [--port N]
    vflchain explorer --rpc URL --contract ADDR [--runs DIR ...] [--port N]

It serves on 127.0.0.1 (the pages name accounts and files of the consortium; expose them
through a reverse proxy of your choice if you must), holds no key and sends no
transaction. With --state it reads the embedded chain while a job runs on it. See
docs/explorer.md.
"""

from __future__ import annotations

import argparse

from chain.errors import ChainError
from nodes.errors import ConfigError
from nodes.ui import console

DEFAULT_STATE = ".vflchain/chain"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explorer", help="a read-only web app over the chain: sessions, rounds, audits, live",
                       description="Serve the consortium explorer on 127.0.0.1: organizations, sessions, each "
                       "session's rounds and commitments, the audit verdict and charts of the run directories "
                       "given (--runs), a live view of running jobs and a Verify page for uploaded run "
                       "directories. Read-only: it holds no key and sends no transaction.")
    g = p.add_argument_group("which chain")
    g.add_argument("--state", metavar="DIR", help=f"an embedded chain's state directory, read while jobs run on it "
                                                  f"(default {DEFAULT_STATE} unless --rpc)")
    g.add_argument("--rpc", metavar="URL", help="a JSON-RPC node (anvil, geth, Besu, ...); needs --contract")
    g.add_argument("--contract", metavar="ADDR", help="the audit contract (default with --state: the one recorded)")
    p.add_argument("--runs", nargs="*", default=[], metavar="DIR",
                   help="run directories to audit and plot (a party's, a `vflchain run --out`, or a folder of them)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: a free one)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from nodes.explorer.app import listen, make, serve

    if args.rpc and args.state:
        raise ConfigError("give --state DIR or --rpc URL, not both")
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port {args.port}: not a TCP port")
    state = None if args.rpc else (args.state or DEFAULT_STATE)
    explorer = make(state, args.rpc or "", args.contract or "", args.runs)
    explorer.index.refresh(force=True)
    if explorer.index.error and not explorer.index.contract:
        if args.rpc:
            raise ChainError(explorer.index.error)
        console().print(f"[yellow]{explorer.index.error}[/]: waiting for one (the pages say so until then)")
    sock = listen("127.0.0.1", args.port)  # this machine only

    def ready(url: str) -> None:
        print(f"vflchain explorer: {url} (reading {explorer.index.source.describe()}; Ctrl-C stops it)", flush=True)

    serve(explorer, sock, ready)
    return 0
