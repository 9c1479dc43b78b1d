"""`vflchain predict`: score new aligned rows with both parties' saved models."""

from __future__ import annotations

import argparse

from nodes.errors import NotYetAvailable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score new rows with both parties' saved models",
                       description="Score new aligned rows with both parties' saved models.")
    p.add_argument("--config", required=True, help="job config (TOML) naming the new data")
    p.add_argument("--model", required=True, help="run directory of the trained job")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    raise NotYetAvailable("predict: not yet available")
