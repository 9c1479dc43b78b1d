"""`vflchain node`: one party's node, for a real two-machine deployment (and for `vflchain run`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from nodes.config import load_config
from nodes.errors import ConfigError
from nodes.ui import console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="run one party's node (guest or host)",
                       description="Run one party's node of a job: the guest drives (handshake, session, "
                       "PSI, phases, close); the host waits for the guest.")
    p.add_argument("--config", required=True, help="job config (TOML)")
    p.add_argument("--role", required=True,
                   help="guest or host (host1..hostN with [job] hosts = N); for horizontal (hfl-lr) jobs coordinator or client1..clientN")
    p.add_argument("--out", help="this party's run directory (default: [ROLE] out from the config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the killed job in --out (same session, from the last round both parties "
                   "attested on chain); the peer must resume too (docs/runtime.md)")
    p.add_argument("--model", metavar="DIR",
                   help="score new rows instead of training: this party's saved model (the trained job's "
                   "run directory, DIR/<role>/model.json, or a model.json); see `vflchain predict`")
    p.add_argument("--once", action="store_true",
                   help="host: fail when the guest is refused in the handshake, instead of waiting for the "
                   "next guest (the default: a refused guest gets nothing on chain and the host serves on)")
    p.add_argument("--events", choices=["text", "json"], default="text",
                   help="progress on stdout as text (default) or as JSON lines (what `vflchain run` reads)")
    p.add_argument("--chain-info", metavar="FILE",
                   help="take [chain] url and contract from FILE, waiting (after loading the data) until it "
                   "appears: {\"url\": ..., \"contract\": ...}, or {\"error\": ...} to give up (how `vflchain run` "
                   "starts the nodes while its chain starts)")
    p.add_argument("--chain-wait", type=float, default=None, metavar="SECONDS",
                   help="how long to wait for --chain-info FILE (default 180)")
    p.set_defaults(func=handle)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def text_event(event: dict[str, Any]) -> str | None:
    """A progress event as one line of text (None: not worth a line)."""
    kind, role = event.get("event"), event.get("role", "")
    tag = f"[bold cyan]{role:>5}[/]"
    if kind == "status":
        return f"{tag} {event['text']}"
    if kind == "session":
        tx = f" (tx {str(event.get('tx_hash') or '')[:12]}…)" if event.get("tx_hash") else ""
        return f"{tag} session {event['action']} on chain{tx}"
    if kind == "phase_start":
        return f"{tag} [bold]{event['phase']}[/]"
    if kind == "phase_skipped":
        return f"{tag} {event['phase']}: skipped ({event.get('reason')})"
    if kind == "phase_step":
        extra = ", ".join(f"{k} {v}" for k, v in event.items() if k not in ("event", "role", "phase", "step"))
        return f"{tag}   {event['phase']}: {event['step']}" + (f" ({extra})" if extra else "")
    if kind == "round":
        loss = f", loss {event['loss']:.6g}" if isinstance(event.get("loss"), float) else ""
        return f"{tag}   round {event['round']} committed ({event['phase']}{loss})"
    if kind == "output":
        return escape(event["text"])
    if kind == "failed":
        return f"{tag} [bold red]failed[/]: {event['error']}"
    return None


def _event_sink(mode: str, con: Any) -> Callable[[dict[str, Any]], None]:
    """Where a node's progress events go: JSON lines for a launcher (`--events json`), or text."""

    def events(event: dict[str, Any]) -> None:
        if mode == "json":
            sys.stdout.write(json.dumps(event, default=str) + "\n")
            sys.stdout.flush()
        else:
            line = text_event(event)
            if line:
                con.print(line)

    return events


def _chain_factory(args: argparse.Namespace, connect: Any) -> Any:
    """`connect(cfg, role)`, after waiting for the chain announced in --chain-info (if given)."""
    if not args.chain_info:
        if args.chain_wait is not None:
            raise ConfigError("--chain-wait needs --chain-info")
        return connect
    from nodes.chainlink import CHAIN_WAIT, when_announced

    wait = CHAIN_WAIT if args.chain_wait is None else args.chain_wait
    return when_announced(Path(args.chain_info), wait, connect)


def handle(args: argparse.Namespace) -> int:
    from nodes.algorithms import get
    from nodes.job import PartyNode, chain_link

    cfg = load_config(args.config, args.set)
    if get(cfg.job.algorithm).topology == "horizontal":
        return _handle_hfl(args, cfg)
    if args.role not in ("guest", *cfg.host_roles()):
        hosts = "host" if cfg.job.hosts == 1 else f"host1..host{cfg.job.hosts} ([job] hosts = {cfg.job.hosts})"
        raise ConfigError(f"--role must be guest or {hosts}, got {args.role!r}")
    out = args.out or cfg.party(args.role).out
    if not out:
        raise ConfigError(f"no run directory: pass --out or set [{args.role}] out in the config")
    signal.signal(signal.SIGTERM, _terminate)
    con = console()
    events = _event_sink(args.events, con)

    job = PartyNode(cfg, args.role, Path(out), force=args.force, events=events, model=args.model,
                    chain_factory=_chain_factory(args, chain_link), serve=not args.once,
                    resume=args.resume).run()
    if args.events == "text":
        con.print(f"{args.role} complete: job {job['job_id']}, session {job['session_id']}, "
                  f"{job['rounds']} rounds; files in {out}")
    return 0


def _handle_hfl(args: argparse.Namespace, cfg: Any) -> int:
    """A horizontal job's coordinator or client node."""
    from nodes.hfl_node import HflNode, chain_link

    if getattr(args, "model", None):
        raise ConfigError("horizontal (hfl-lr) jobs have no prediction mode: --model is for vertical jobs")
    out = args.out or (str(Path(cfg.federation.out) / args.role) if cfg.federation.out else "")
    if not out:
        raise ConfigError("no run directory: pass --out or set [federation] out in the config")
    signal.signal(signal.SIGTERM, _terminate)
    con = console()
    events = _event_sink(args.events, con)

    job = HflNode(cfg, args.role, Path(out), force=args.force, events=events,
                  chain_factory=_chain_factory(args, chain_link)).run()
    if args.events == "text":
        con.print(f"{args.role} complete: job {job['job_id']}, session {job['session_id']}, "
                  f"{job['rounds']} rounds; files in {out}")
    return 0
