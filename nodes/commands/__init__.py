"""Subcommands of `vflchain`, one module each (see DESIGN.md, Commands)."""

from nodes.commands import audit, chain_cmd, data, demo, node, predict, run, sweep

COMMANDS = [run, node, audit, chain_cmd, predict, data, demo, sweep]
