"""Subcommands of `vflchain`, one module each (see DESIGN.md, Commands).

Each module is imported only when its command runs (or for the full `--help`): the
launcher of `vflchain run` and the nodes it starts load neither web3's command-line
tools (`chain`) nor the auditor (`audit`) before they start working.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# command -> its module under nodes.commands, in the order of `vflchain --help`
MODULES = {"run": "run", "node": "node", "audit": "audit", "chain": "chain_cmd", "predict": "predict",
           "data": "data", "demo": "demo", "sweep": "sweep", "explorer": "explorer"}


def load(commands: list[str] | None = None) -> list[ModuleType]:
    """The modules of `commands` (default: all), each exposing `register(subparsers)`."""
    return [importlib.import_module(f"nodes.commands.{MODULES[c]}") for c in (commands or MODULES)]
