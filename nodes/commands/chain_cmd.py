"""`vflchain chain`: contract operations and the embedded chain server."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from web3 import Web3

from chain.accounts import PASSPHRASE_ENV, is_dev_chain, new_keystore, party_account
from chain.backends import close, open_chain
from chain.client import AuditClient, session_label
from chain.errors import ChainError
from nodes.errors import ConfigError
from nodes.ui import console, table

DEFAULT_STATE = ".vflchain/chain"
_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")


def _chain_options(p: argparse.ArgumentParser, contract: bool = True, signer: bool = False) -> None:
    g = p.add_argument_group("which chain")
    g.add_argument("--config", metavar="TOML", help="take url, state and contract from this job config's [chain]")
    g.add_argument("--rpc", metavar="URL", help="a JSON-RPC node (default: the embedded chain of --state)")
    g.add_argument("--state", metavar="DIR",
                   help=f"the embedded chain's state directory, also where deployments are recorded "
                        f"(default: {DEFAULT_STATE})")
    if contract:
        g.add_argument("--contract", metavar="ADDR",
                       help="the audit contract (default: the deployment recorded for this chain)")
    if signer:
        s = p.add_argument_group("signing (the admin)")
        s.add_argument("--keystore", metavar="FILE",
                       help="eth-account keystore of the admin (default on dev chains: the dev admin key)")
        s.add_argument("--passphrase-env", default=PASSPHRASE_ENV, metavar="VAR",
                       help=f"environment variable holding the keystore passphrase (default {PASSPHRASE_ENV})")


def _party_options(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("signing (a participant of the session)")
    s.add_argument("--role", choices=["guest", "host"], default="guest",
                   help="whose account signs: its keystore in --config's [guest]/[host], else its dev key "
                        "on a development chain (default guest)")
    s.add_argument("--keystore", metavar="FILE", help="eth-account keystore of the participant (overrides --role)")
    s.add_argument("--passphrase-env", default=PASSPHRASE_ENV, metavar="VAR",
                   help=f"environment variable holding the keystore passphrase (default {PASSPHRASE_ENV})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chain", help="contract operations and the embedded chain",
                       description="Contract operations and the embedded chain server. Without --rpc, "
                       "commands use the embedded chain of --state: its running server if there is one, "
                       "else the state directory directly.")
    csub = p.add_subparsers(dest="chain_command", metavar="ACTION")
    csub.required = True

    c = csub.add_parser("serve", help="serve the embedded chain over JSON-RPC on 127.0.0.1",
                        description="Serve the embedded chain (eth-tester on py-evm) over JSON-RPC on "
                        "127.0.0.1 until Ctrl-C/SIGTERM. State persists in --state: stop and serve again "
                        "and the contract, its storage and events are all there. Writes DIR/server.json "
                        "(url, pid) while running.")
    c.add_argument("--state", default=DEFAULT_STATE, metavar="DIR", help=f"state directory (default {DEFAULT_STATE})")
    c.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one, see server.json)")
    c.set_defaults(func=handle_serve)

    c = csub.add_parser("deploy", help="deploy the audit contract",
                        description="Deploy VflAudit and record it in the state directory. On a development "
                        "chain without --keystore the dev admin deploys and the dev guest and host are "
                        "registered. An existing recorded deployment is reused unless --new.")
    _chain_options(c, contract=False, signer=True)
    c.add_argument("--new", action="store_true", help="deploy a new contract even if one is recorded")
    c.set_defaults(func=handle_deploy)

    c = csub.add_parser("status", help="show the chain and the contract",
                        description="Chain id, head block, the contract, its admin, participants and sessions.")
    _chain_options(c)
    c.add_argument("--json", action="store_true", help="print JSON instead of tables")
    c.set_defaults(func=handle_status)

    c = csub.add_parser("events", help="list the contract's events",
                        description="The contract's events in chain order, from the logs alone.")
    _chain_options(c)
    c.add_argument("--session", metavar="ID", help="only this session (0x + 64 hex, or a job id)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.set_defaults(func=handle_events)

    c = csub.add_parser("sessions", help="list the sessions and their status",
                        description="Every session of the contract: status, participants, last activity "
                        "and when an idle one may be expired (`vflchain chain expire`).")
    _chain_options(c)
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=handle_sessions)

    c = csub.add_parser("abort", help="abort a stranded session one takes part in",
                        description="Abort an opened or active session (for example one whose job was "
                        "killed) as one of its participants, with the hash of a reason.")
    c.add_argument("session", help="the session (0x + 64 hex, or a job id)")
    c.add_argument("--reason", default="aborted by its operator", help="why (its keccak256 goes on chain)")
    _chain_options(c)
    _party_options(c)
    c.set_defaults(func=handle_abort)

    c = csub.add_parser("expire", help="expire a session idle for longer than its timeout",
                        description="End an opened or active session nobody has written to for longer than "
                        "the timeout its guest set ([chain] session_timeout), as one of its participants. "
                        "Refused (NotExpired) before then.")
    c.add_argument("session", help="the session (0x + 64 hex, or a job id)")
    _chain_options(c)
    _party_options(c)
    c.set_defaults(func=handle_expire)

    c = csub.add_parser("register", help="register a participant (admin)",
                        description="Register an organisation's account with a role (admin only).")
    c.add_argument("address", help="the participant's account address")
    c.add_argument("--role", required=True, choices=["guest", "host", "auditor"])
    c.add_argument("--org", required=True, help="organisation name")
    _chain_options(c, signer=True)
    c.set_defaults(func=handle_register)

    c = csub.add_parser("revoke", help="revoke a participant (admin)",
                        description="Revoke a participant: it can write nothing more (admin only).")
    c.add_argument("address", help="the participant's account address")
    _chain_options(c, signer=True)
    c.set_defaults(func=handle_revoke)

    c = csub.add_parser("new-account", help="create an encrypted keystore for a party",
                        description="Create a new key and save it as an eth-account keystore, encrypted "
                        "with the passphrase in the environment variable.")
    c.add_argument("--keystore", required=True, metavar="FILE", help="where to write it (must not exist)")
    c.add_argument("--passphrase-env", default=PASSPHRASE_ENV, metavar="VAR")
    c.set_defaults(func=handle_new_account)

    c = csub.add_parser("compile", help="recompile the contract into contracts/VflAudit.json",
                        description="Compile contracts/VflAudit.sol with solc 0.8.37 (npm wasm build) and "
                        "write the committed artifact.")
    c.add_argument("--check", action="store_true", help="only check that the artifact is current (exit 1 if not)")
    c.set_defaults(func=handle_compile)


# ------------------------------------------------------------------ resolution


def _where(args: argparse.Namespace) -> tuple[str, Path, str]:
    """(rpc url, state dir, contract) from the flags, then the config, then defaults."""
    url, state, contract = args.rpc or "", args.state or "", getattr(args, "contract", None) or ""
    if args.config:
        from nodes.config import load_config

        cfg = load_config(args.config)
        url = url or cfg.chain.url
        state = state or cfg.chain.state
        contract = contract or cfg.chain.contract
    return url, Path(state or DEFAULT_STATE), contract


def _contract(w3: Web3, state: Path, contract: str) -> str:
    from chain.deploy import is_audit_contract, recorded

    if contract:
        if not is_audit_contract(w3, contract):
            raise ChainError(f"{contract}: no VflAudit contract at this address on chain {w3.eth.chain_id}")
        return Web3.to_checksum_address(contract)
    dep = recorded(state, w3)
    if dep is None:
        raise ChainError(f"no audit contract recorded in {state} for chain {w3.eth.chain_id}; "
                         "run `vflchain chain deploy` or give --contract")
    return dep["address"]


def _signer(args: argparse.Namespace, w3: Web3):
    return party_account(int(w3.eth.chain_id), "admin", args.keystore or "", args.passphrase_env)


def _session_arg(text: str) -> bytes:
    """A session id given as 0x + 64 hex digits (a job id is looked up by `_session_of_job`)."""
    if _HEX32.match(text):
        return bytes.fromhex(text[2:])
    if text.startswith("0x"):
        raise ConfigError(f"--session {text}: a session id is 0x followed by 64 hex digits")
    return b""


def _session_of_job(client: AuditClient, job_id: str) -> bytes:
    """The session opened for `job_id`: its id derives from the opener, so look its label up on chain."""
    opened = client.sessions_labelled(session_label(job_id))
    if not opened:
        raise ChainError(f"--session {job_id}: no session was opened for this job id on {client.address}")
    if len(opened) > 1:
        who = ", ".join(f"{e['args']['sessionId']} by {e['args']['guest']}" for e in opened)
        raise ChainError(f"--session {job_id}: {len(opened)} sessions were opened for this job id ({who}); "
                         "give the session id")
    return bytes.fromhex(str(opened[0]["args"]["sessionId"])[2:])


# -------------------------------------------------------------------- handlers


def handle_serve(args: argparse.Namespace) -> int:
    from chain.embedded import serve

    def ready(info: dict[str, Any]) -> None:
        console().print(f"serving the embedded chain of {info['state']} at {info['url']} "
                        f"(chain id {info['chain_id']}, pid {info['pid']}); Ctrl-C stops it")

    serve(args.state, args.port, on_ready=ready)
    console().print("stopped; state saved")
    return 0


def handle_deploy(args: argparse.Namespace) -> int:
    from chain.deploy import deploy, dev_contract, record, recorded

    url, state, _ = _where(args)
    w3 = open_chain(url, state, write=True)
    try:
        chain_id = int(w3.eth.chain_id)
        existing = recorded(state, w3)
        if existing is not None and not args.new:
            console().print(f"VflAudit already deployed at {existing['address']} on chain {chain_id} "
                            f"(block {existing['block_number']}); --new deploys another")
            return 0
        if not args.keystore and is_dev_chain(chain_id) and existing is None:
            address = dev_contract(w3, state)
        else:
            dep = deploy(w3, _signer(args, w3))
            record(state, dep)
            address = dep["address"]
        console().print(f"VflAudit deployed at {address} on chain {chain_id}; recorded in {state}")
    finally:
        close(w3)
    return 0


def handle_status(args: argparse.Namespace) -> int:
    url, state, contract = _where(args)
    w3 = open_chain(url, state)
    try:
        info: dict[str, Any] = {"chain_id": int(w3.eth.chain_id), "block": int(w3.eth.block_number),
                                "client": w3.client_version, "url": url or str(state)}
        address = _contract(w3, state, contract)
        client = AuditClient(w3, address)
        sessions = [client.session(bytes.fromhex(s[2:])) for s in client.sessions()]
        info.update(contract=address, admin=client.admin(), participants=client.participants(), sessions=sessions)
    finally:
        close(w3)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    con = console()
    con.print(f"chain {info['chain_id']} ({info['client']}) at {info['url']}, head block {info['block']}")
    con.print(f"VflAudit at {info['contract']}, admin {info['admin']}")
    con.print(table("participants", ["address", "role", "organisation", "revoked", "block"],
                    [[p["address"], p["role"], p["organisation"], "yes" if p["revoked"] else "",
                      p["registered_block"]] for p in info["participants"]]))
    con.print(table("sessions", ["session", "algorithm", "status", "participants", "joined", "finalized"],
                    [[s["session_id"][:18] + "…", s["algorithm"], s["status"], len(s["participants"]),
                      s["joined"], s["finalized"]] for s in sessions]))
    return 0


def _when(ts: int) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def _expiry(s: dict[str, Any], now: int) -> str:
    """When an open session may be expired ("now" if it already may)."""
    if s["status"] not in ("opened", "active"):
        return ""
    at = s["last_activity"] + s["timeout"]
    return "now" if now > at else f"in {at - now} s"


def handle_sessions(args: argparse.Namespace) -> int:
    url, state, contract = _where(args)
    w3 = open_chain(url, state)
    try:
        client = AuditClient(w3, _contract(w3, state, contract))
        sessions = [client.session(bytes.fromhex(s[2:])) for s in client.sessions()]
        now = int(w3.eth.get_block("latest")["timestamp"])
    finally:
        close(w3)
    if args.json:
        print(json.dumps(sessions, indent=1))
        return 0
    console().print(table(f"{len(sessions)} sessions of {client.address}",
                          ["session", "algorithm", "status", "joined", "final", "last activity (UTC)",
                           "timeout", "expirable"],
                          [[_short(s["session_id"]), s["algorithm"], s["status"],
                            f"{s['joined']}/{len(s['participants'])}", f"{s['finalized']}/{len(s['participants'])}",
                            _when(s["last_activity"]), f"{s['timeout']} s", _expiry(dict(s), now)]
                           for s in sessions]))
    return 0


def _party_write(args: argparse.Namespace, action: str) -> int:
    from eth_utils import keccak

    sid = _session_arg(args.session)
    url, state, contract = _where(args)
    keystore = args.keystore or ""
    if not keystore and args.config:
        from nodes.config import load_config

        keystore = load_config(args.config).party(args.role).keystore
    w3 = open_chain(url, state, write=True)
    try:
        client = AuditClient(w3, _contract(w3, state, contract),
                             party_account(int(w3.eth.chain_id), args.role, keystore, args.passphrase_env))
        if sid == b"":
            sid = _session_of_job(client, args.session)
        if action == "abort":
            r = client.abort_session(sid, keccak(text=args.reason))
        else:
            r = client.expire_session(sid)
        status = client.session(sid)["status"]
    finally:
        close(w3)
    console().print(f"session 0x{sid.hex()} {status} by {client.account.address} in block {r['block_number']} "  # type: ignore[union-attr]
                    f"(tx {r['tx_hash']})")
    return 0


def handle_abort(args: argparse.Namespace) -> int:
    return _party_write(args, "abort")


def handle_expire(args: argparse.Namespace) -> int:
    return _party_write(args, "expire")


def _short(v: Any) -> str:
    if isinstance(v, str) and v.startswith("0x") and len(v) > 20:
        return v[:10] + "…" + v[-4:]
    if isinstance(v, list):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    return str(v)


def handle_events(args: argparse.Namespace) -> int:
    sid = _session_arg(args.session) if args.session else None
    url, state, contract = _where(args)
    w3 = open_chain(url, state)
    try:
        client = AuditClient(w3, _contract(w3, state, contract))
        if sid == b"":
            sid = _session_of_job(client, args.session)
        events = client.events(sid)
    finally:
        close(w3)
    if args.json:
        for ev in events:
            print(json.dumps(ev))
        return 0
    console().print(table(f"{len(events)} events of {client.address}", ["block", "event", "arguments"],
                          [[ev["block_number"], ev["event"],
                            ", ".join(f"{k}={_short(v)}" for k, v in ev["args"].items())] for ev in events]))
    return 0


def _admin_write(args: argparse.Namespace, action: str) -> int:
    url, state, contract = _where(args)
    w3 = open_chain(url, state, write=True)
    try:
        client = AuditClient(w3, _contract(w3, state, contract), _signer(args, w3))
        if action == "register":
            r = client.register_participant(args.address, args.role, args.org)
            what = f"registered {Web3.to_checksum_address(args.address)} as {args.role} ({args.org})"
        else:
            r = client.revoke(args.address)
            what = f"revoked {Web3.to_checksum_address(args.address)}"
    finally:
        close(w3)
    console().print(f"{what} in block {r['block_number']} (tx {r['tx_hash']})")
    return 0


def handle_register(args: argparse.Namespace) -> int:
    return _admin_write(args, "register")


def handle_revoke(args: argparse.Namespace) -> int:
    return _admin_write(args, "revoke")


def handle_new_account(args: argparse.Namespace) -> int:
    address = new_keystore(args.keystore, args.passphrase_env)
    console().print(f"created {args.keystore} for account {address}")
    return 0


def handle_compile(args: argparse.Namespace) -> int:
    from chain.compiler import main as compiler_main

    return compiler_main(["--check"] if args.check else [])
