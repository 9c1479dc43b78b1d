"""`vflchain audit`: verify run directories against the chain, or a session from its events alone.

    vflchain audit DIR [DIR] [--rpc URL | --state DIR] [--report DIR]
    vflchain audit --session ID [--rpc URL | --state DIR] [--contract ADDR] [--report DIR]

DIR is a party's run directory (`.../guest`, `.../host`, `.../coordinator`,
`.../client1`) or a `vflchain run`/`vflchain predict` --out directory holding them.
A prediction job is also checked against its training session on the same chain. The chain is `--rpc URL`, else `--state DIR`, else the
embedded chain state directory recorded in the run's job.json (its server need
not run: the state is loaded read-only). Exit 0: every check holds; 1: a check
failed (each named); 2: the audit cannot be carried out. A provenance report
(report.html, report.md, audit.json) is written to `--report DIR` (default:
`<run>/audit/` beside the party directories, or `audit-<session>/` for --session).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from chain.audit import (
    AuditUnavailable,
    Check,
    PartyFiles,
    SessionHistory,
    audit_group,
    audit_party,
    exception_line,
    failures,
    is_interrupted,
    load_history,
    load_party_files,
    resumes,
    session_checks,
    summary,
    timeline,
    training_link,
    training_session_id,
)
from chain.commitment import Binding
from chain.errors import ChainError
from nodes.ui import console

EXIT_OK, EXIT_MISMATCH, EXIT_UNAVAILABLE = 0, 1, 2
DEFAULT_STATE = ".vflchain/chain"  # where `vflchain run` keeps the embedded chain (examples/*.toml)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="verify run directories against the chain (exit 0 ok, 1 mismatch, 2 cannot check)",
        description="Verify a party's run directory (or both) against the audit contract, or rebuild a "
                    "session's history from its events alone (--session). Writes a provenance report.",
    )
    p.add_argument("dirs", nargs="*", metavar="DIR",
                   help="run directories to verify (a party's, or a `vflchain run --out` directory)")
    p.add_argument("--rpc", help="JSON-RPC URL of the chain (default: the embedded chain's state)")
    p.add_argument("--state", help="embedded chain state directory (default: the one in job.json)")
    p.add_argument("--session", help="audit a session from chain events alone (no party files)")
    p.add_argument("--contract", help="audit contract address (default: job.json's, or the one recorded "
                                      "in the state directory)")
    p.add_argument("--report", help="directory for report.html, report.md and audit.json")
    p.add_argument("--verbose", "-v", action="store_true", help="list every check, not only the failures")
    p.set_defaults(func=handle)


def config_commitment_of(config: dict[str, Any], binding: Binding, salt: bytes) -> str:
    """The runtime's config commitment, recomputed from a job.json "config" and "config_salt"."""
    from chain.commitment import TAG_CONFIG, bound_commitment, canonical_bytes
    from nodes.config import definition_of

    return "0x" + bound_commitment(TAG_CONFIG, binding, salt, canonical_bytes(definition_of(config))).hex()


def party_dirs(dirs: list[str]) -> list[Path]:
    """Party run directories: each DIR itself, or its party subdirectories (guest/ and host/ or host1/..,
    coordinator/ and clientK/), the session's opener first."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if (p / "job.json").is_file():
            out.append(p)
            continue
        subs = sorted((q for q in p.iterdir() if (q / "job.json").is_file()) if p.is_dir() else [],
                      key=lambda q: (q.name not in ("guest", "coordinator"), q.name))
        if not subs:
            raise AuditUnavailable(f"{d}: not a run directory (no job.json, nor party directories with one)")
        out += subs
    return out


def open_client(rpc: str | None, state: str | None, contract: str | None,
                lookup: str | None = None) -> tuple[Any, str]:
    """A read-only AuditClient and a description of the chain it reads.

    Without `contract`, the deployment recorded for this chain in `lookup` (default
    `state`) is used."""
    from chain.backends import open_chain
    from chain.client import AuditClient
    from chain.deploy import is_audit_contract, recorded

    if not rpc and not state:
        raise AuditUnavailable("no chain to audit against: give --rpc URL or --state DIR")
    if state and not rpc and not Path(state).is_dir():
        raise AuditUnavailable(f"no embedded chain state at {state}")
    try:
        w3 = open_chain(rpc or "", state or "")
        if not contract:
            lookup = lookup or state
            dep = recorded(lookup, w3) if lookup else None
            if dep is None:
                raise AuditUnavailable("no audit contract: give --contract ADDR (none recorded for this chain"
                                       + (f" in {lookup})" if lookup else ")"))
            contract = dep["address"]
        if not is_audit_contract(w3, contract):
            raise AuditUnavailable(f"no VflAudit contract at {contract} on this chain")
    except AuditUnavailable:
        raise
    except ChainError as exc:
        raise AuditUnavailable(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a chain that cannot be read: the audit cannot be carried out
        raise AuditUnavailable(f"cannot read the chain: {exception_line(exc)}") from None
    return AuditClient(w3, contract), (rpc or f"embedded chain state {Path(state or '').resolve()}")


def build_result(history: SessionHistory, checks: list[Check], source: str, scope: str,
                 files: list[PartyFiles], links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The audit as one JSON-ready dict (what the report renders and audit.json holds)."""
    from nodes.cli import package_version
    from nodes.communication import summarize

    s = summary(history)
    parties: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    for f in files:
        parties[f.role] = {"path": str(f.path.resolve()), "job_id": f.job.get("job_id"),
                           "account": f.job.get("account"), "status": f.job.get("status"),
                           "started": f.job.get("started"), "ended": f.job.get("ended"), "rounds": f.rounds}
        if f.is_opener and "metrics.json" in f.files:
            try:
                metrics = json.loads(f.files["metrics.json"])
            except ValueError:
                metrics = {}
    return {"version": package_version(), "scope": scope,
            "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "chain": {"source": source, "chain_id": history.chain_id, "contract": history.contract},
            "summary": s, "opened_time": history.timestamps.get(s["opened_block"]),
            "closed_time": history.timestamps.get(s["closed_block"]) if s["closed_block"] else None,
            "timeline": timeline(history), "parties": parties, "metrics": metrics, "links": links or [],
            "checks": [c.to_dict() for c in checks], "ok": not failures(checks),
            "resumes": resume_rows(files, history),
            "communication": {f.role: summarize(f.transcript) for f in files},
            "interrupted": any(is_interrupted(f, history) for f in files)}


def resume_rows(files: list[PartyFiles], history: SessionHistory) -> list[dict[str, Any]]:
    """Each party's resumes (job.json `resumed`): when, from which attested round, the new handshake's round
    and the block it was committed in."""
    rows = []
    for f in files:
        me = str(f.job.get("account") or "")
        for x in resumes(f):
            ev = None
            if x["handshake_round"] is not None:
                ev = next((e for e in history.events if e["event"] == "RoundSubmitted"
                           and int(e["args"]["round"]) == int(x["handshake_round"])
                           and str(e["args"]["party"]).lower() == me.lower()), None)
            rows.append({"party": f.role, **x, "block": ev["block_number"] if ev else None,
                         "block_time": history.timestamps.get(ev["block_number"]) if ev else None})
    return rows


def audit_dirs(dirs: list[str], rpc: str | None, state: str | None,
               contract: str | None) -> tuple[SessionHistory, list[Check], list[PartyFiles], str]:
    history, checks, files, source, _ = audit_run(dirs, rpc, state, contract)
    return history, checks, files, source


def audit_run(dirs: list[str], rpc: str | None, state: str | None, contract: str | None
              ) -> tuple[SessionHistory, list[Check], list[PartyFiles], str, list[dict[str, Any]]]:
    """Every check of the directories against their session; a prediction job's also against its
    training session (the links, for the report)."""
    files = [load_party_files(p) for p in party_dirs(dirs)]
    first = next((f for f in files if f.is_opener), files[0])
    if not state and not rpc:
        state = ((first.job.get("config") or {}).get("chain") or {}).get("state") or None
    sid = first.job.get("session_id")
    if not sid:
        raise AuditUnavailable(f"{first.path}/job.json names no session (the job never opened one)")
    client, source = open_client(rpc, state, contract or first.job.get("contract"))
    recorded_chain = first.job.get("chain_id")
    if not rpc and recorded_chain is not None and int(recorded_chain) != client.chain_id:
        url = ((first.job.get("config") or {}).get("chain") or {}).get("url") or "?"
        raise AuditUnavailable(f"the run used chain {recorded_chain} (at {url}), {source} is chain "
                               f"{client.chain_id}: give --rpc URL of the run's chain")
    history = load_history(client, sid)
    checks: list[Check] = []
    for f in files:
        checks += audit_party(f, history, config_commitment_of)
    checks += audit_group(files)
    links = _training_links(client, files, history, checks)
    return history, checks, files, source, links


def _training_links(client: Any, files: list[PartyFiles], history: SessionHistory,
                    checks: list[Check]) -> list[dict[str, Any]]:
    """Prediction jobs: each party's model against its training session, when that is on this chain."""
    links: list[dict[str, Any]] = []
    for f in files:
        if f.kind != "predict":
            continue
        tid = training_session_id(f)
        training, why = None, ""
        if tid:
            try:
                training = load_history(client, tid, timestamps=False)
            except AuditUnavailable as exc:
                why = f"training session {tid} is not on this chain ({exc})"
        checks += training_link(f, history, training, why)
        if training is not None and not any(x["session_id"] == tid for x in links):
            s = summary(training)
            links.append({"relation": "model trained in", "session_id": tid, "algorithm": s["algorithm"],
                          "status": s["status"], "closed_block": s["closed_block"],
                          "model_commitments": {p["role"]: p["model_commitment"] for p in s["participants"]}})
    return links


def handle(args: argparse.Namespace) -> int:
    con = console()
    try:
        if args.session:
            if args.dirs:
                raise AuditUnavailable("give run directories or --session, not both")
            client, source = open_client(args.rpc, args.state or (None if args.rpc else DEFAULT_STATE),
                                         args.contract, args.state or DEFAULT_STATE)
            history = load_history(client, args.session)
            checks, files, links = session_checks(history), [], []
            scope = "Session audited from chain events alone (no party files)."
            default_report = Path(f"audit-{history.session_id[2:10]}")
        else:
            if not args.dirs:
                raise AuditUnavailable("nothing to audit: give run directories or --session ID")
            history, checks, files, source, links = audit_run(args.dirs, args.rpc, args.state, args.contract)
            scope = "Run directories audited against the chain: " + ", ".join(
                f"{f.role} {f.path.resolve()}" for f in files) + "."
            parents = {f.path.resolve().parent for f in files}
            default_report = (parents.pop() if len(parents) == 1 else Path(".")) / "audit"
    except AuditUnavailable as exc:
        con.print(f"[bold red]cannot audit[/]: {exc}")
        return EXIT_UNAVAILABLE
    except ChainError as exc:
        con.print(f"[bold red]cannot audit[/]: {exc}")
        return EXIT_UNAVAILABLE
    result = build_result(history, checks, source, scope, files, links)
    paths = _write(result, Path(args.report) if args.report else default_report)
    _print(con, history, checks, result, paths, args.verbose, bool(args.session))
    return EXIT_OK if result["ok"] else EXIT_MISMATCH


def _write(result: dict[str, Any], out: Path) -> dict[str, Path]:
    from nodes.report import write_report

    return write_report(result, out)


def _print(con: Any, history: SessionHistory, checks: list[Check], result: dict[str, Any],
           paths: dict[str, Path], verbose: bool, session_only: bool) -> None:
    from rich.table import Table

    s = result["summary"]
    con.print(f"[bold]vflchain audit[/] session {s['session_id']} ({s['algorithm']}, {s['status']}) "
              f"on chain {s['chain_id']}, contract {s['contract']}")
    people = Table(show_header=True, title="participants", title_justify="left")
    for col in ("role", "organisation", "account", "joined", "finalized", "last round"):
        people.add_column(col)
    for p in s["participants"]:
        people.add_row(p["role"], p["organisation"], p["address"], str(p["joined"]), str(p["finalized"]),
                       str(p["last_round"]))
    con.print(people)
    for link in result.get("links", []):
        con.print(f"{link['relation']} session {link['session_id']} ({link['algorithm']}, {link['status']})")
    if session_only:
        tl = Table(show_header=True, title="timeline", title_justify="left")
        for col in ("block", "event", "party", "round", "what"):
            tl.add_column(col)
        for e in result["timeline"]:
            tl.add_row(str(e["block"]), e["event"], e["role"] or e["party"][:10],
                       "" if e["round"] is None else str(e["round"]), e["what"])
        con.print(tl)
    ab = s.get("aborted")
    if ab:
        when = dt.datetime.fromtimestamp(ab["time"], dt.UTC).strftime(" at %Y-%m-%d %H:%M:%S UTC") \
            if ab.get("time") else ""
        con.print(f"[bold yellow]session ABORTED[/] by the {ab['role']} {ab['party']} in block {ab['block']}{when}, "
                  f"reason hash {ab['reason_hash']}")
        for c in checks:
            if c.check == "abort reason" and c.ok:
                con.print(f"abort reason: {c.detail.split(': ', 1)[-1]}".replace("[", "\\["))
    for x in result.get("resumes", []):
        con.print(f"resumed ({x['party']}) {x['time'] or '?'}: " + (
            f"from attested round {x['from_round']}, new handshake round {x['handshake_round']}"
            + (f" (block {x['block']})" if x["block"] is not None else " (not committed)")
            if x["from_round"] is not None else "stopped before it restored a round"))
    if result.get("interrupted"):
        con.print("[bold yellow]session INTERRUPTED[/]: still active on chain, the run stopped and is resumable "
                  "(`vflchain run --resume`)")
    n = s["rounds_by_state"]
    con.print(f"rounds: {n['attested']} attested, {n['disputed']} disputed, {n['pending']} pending; "
              f"session {s['status']}" + (f" in block {s['closed_block']}" if s["closed_block"] else ""))
    bad = failures(checks)
    for c in checks if verbose else bad:
        con.print(("[green]" if c.ok else "[red]") + c.line().replace("[", "\\[") + "[/]")
    if bad:
        con.print(f"[bold red]audit FAILED[/]: {len(bad)} of {len(checks)} checks do not hold")
    elif result.get("interrupted"):
        con.print(f"[bold green]audit passed[/] [bold yellow](session INTERRUPTED, resumable)[/]: all {len(checks)} "
                  "checks hold for what was committed before the interruption")
    elif ab:
        con.print(f"[bold green]audit passed[/] [bold yellow](session ABORTED)[/]: all {len(checks)} checks hold "
                  "for what was committed before the abort")
    else:
        con.print(f"[bold green]audit passed[/]: all {len(checks)} checks hold")
    con.print(f"report: {paths['html']} (also {paths['md'].name}, {paths['json'].name})")
