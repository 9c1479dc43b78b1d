"""The `vflchain` command line.

Each subcommand lives in its own module under `nodes.commands` and exposes
`register(subparsers)`. Every handler returns an exit code; errors raised on
purpose by any layer become one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from chain.errors import ChainError
from nodes.commands import MODULES, load
from nodes.errors import NodeError, NotYetAvailable
from vfl.errors import VflError


def package_version() -> str:
    try:
        return version("vflchain")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `command`, only that subcommand (its module alone is imported)."""
    parser = argparse.ArgumentParser(
        prog="vflchain",
        description="Blockchain-anchored vertical federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"vflchain {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in load([command] if command else None):
        module.register(sub)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand `argv` names, if it is one of ours."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in MODULES else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NotYetAvailable as exc:
        print(f"vflchain: {exc}", file=sys.stderr)
        return 2
    except (VflError, ChainError, NodeError) as exc:
        print(f"vflchain: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print("vflchain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
