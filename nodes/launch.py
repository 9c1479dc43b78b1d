"""`vflchain run`: the embedded chain, the host node and the guest node as three processes on this machine.

The launcher starts the chain (unless `[chain] url` is set) and, at the same
moment, `vflchain node --role host` and `--role guest` as separate processes in
their own process groups; while the nodes import and load their data, it waits
for the chain to answer, makes sure the audit contract is deployed and both
parties registered (development chains), and announces the chain's URL and
contract to the nodes in `logs/chain.json` (`vflchain node --chain-info`; an
error there if it could not, and the nodes are stopped). It shows their
progress and prints a summary once both run directories say complete. The
embedded chain is shared: any number of jobs may use one `[chain] state` at once
(`chain.processes.share_server`: a lease per launcher; the first starts the server,
the others attach, the last one done stops it, while its node processes exit; a
server started by hand with `vflchain chain serve` is left running). If one node fails, the other is given
time to fail on its own (it learns of it over the link) and is then stopped.
Ctrl-C stops the nodes first (each aborts the session and marks its run
directory failed), then the chain.

Layout of `--out DIR`: `guest/` and `host/` (the parties' run directories) and
`logs/` (each process's stderr, `processes.json` with their PIDs, `chain.json`).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.table import Table

from nodes.config import JobConfig, load_config
from nodes.errors import ConfigError, NodeError
from nodes.transport.tls import split_host_port
from nodes.ui import console

if TYPE_CHECKING:
    from chain.processes import ChainLease, ServerHandle, SharedStart

ROLES = ("host", "guest")  # start order: the host waits for the guest


@dataclass
class NodeProcess:
    role: str
    proc: subprocess.Popen
    log: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    exited_at: float | None = None
    complete: bool = False  # its job.json says complete: only its process exit is left


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_bindable(role: str, address: str) -> None:
    host, port = split_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"[{role}] address {address} cannot be used on this machine ({exc.strerror}); "
                              f"pick another port, or port 0 for a free one") from None


def _stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return " ".join(str(exc).split()) or type(exc).__name__


def _keystore_address(path: str) -> str:
    from eth_utils import to_checksum_address

    try:
        return to_checksum_address("0x" + json.loads(Path(path).read_text())["address"].removeprefix("0x"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"keystore {path}: cannot read its address ({exc})") from None


def vertical_parties(cfg: JobConfig) -> dict[str, tuple[str, str]]:
    """The accounts a vertical job registers on a fresh contract: address -> (contract role, organisation);
    host1..hostN register as hosts (dev keys: host k has index 1 + k)."""
    from chain.accounts import DEV_INDEX, dev_account

    parties = {}
    for role in ("guest", *cfg.host_roles()):
        p = cfg.party(role)
        addr = _keystore_address(p.keystore) if p.keystore else dev_account(DEV_INDEX[role]).address
        parties[addr] = ("guest" if role == "guest" else "host", p.name or f"{role} organisation")
    return parties


def start_chain(cfg: JobConfig, logs: Path) -> tuple[str, SharedStart | None, ChainLease | None]:
    """(the chain's URL if it is known now, else the embedded server being started or attached to,
    not answering yet: `ready_chain` waits; this launcher's lease on the embedded chain, to release
    when done). `[chain] url`: that URL, no lease.

    Standard library only (chain.processes), so the nodes can start while the chain starts."""
    from chain.processes import share_server

    if cfg.chain.url:
        return cfg.chain.url, None, None
    lease, url, starting = share_server(Path(cfg.chain.state), log_file=logs / "chain.log")
    return url, starting, lease


def ready_chain(cfg: JobConfig, url: str, starting: SharedStart | None,
                parties: dict[str, tuple[str, str]]) -> tuple[str, str, ServerHandle | None]:
    """(url, contract address, the chain server if this launcher waited for one), once the chain answers.

    Without `[chain] contract`, deploys the contract and registers `parties` (address -> (role,
    organisation)), or reuses the one the state directory already holds for them (under the state
    directory's deploy lock: jobs sharing the chain do this at the same time). Stops a server it
    was starting if that does not answer."""
    started: ServerHandle | None = None
    try:
        # web3 and eth-account (~1 s) are imported while the chain starts, not after
        from chain.backends import connect
        from chain.deploy import dev_contract

        if starting is not None:
            started = starting.wait()
            url = started.url
    except BaseException:
        if starting is not None:
            starting.stop()
        raise
    contract = cfg.chain.contract
    if not contract:
        contract = dev_contract(connect(url, retry_seconds=cfg.chain.retry_seconds), Path(cfg.chain.state),
                                parties)
    return url, contract, started


def announce_chain(path: Path, info: dict[str, str]) -> None:
    """Write the chain info the nodes wait for (`vflchain node --chain-info`), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    tmp.replace(path)


class Launcher:
    """Runs one job as three processes and reports on it."""

    command = "run"
    predicting = False  # `vflchain predict`: the nodes score rows with saved models

    def __init__(self, config: str, out: str, sets: list[str], force: bool = False,
                 grace: float | None = None, resume: bool = False) -> None:
        self.config_path = config
        self.sets = list(sets)
        self.cfg = load_config(config, self.sets)
        self.out = Path(out).resolve()
        self.force = force
        self.resume = resume  # `run --resume`: each node continues its killed job in --out (--resume)
        self.grace = grace if grace is not None else self.cfg.transport.liveness_grace + 10.0
        self.con = console()
        self.nodes: dict[str, NodeProcess] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.chain: ServerHandle | None = None
        self.lease: ChainLease | None = None  # this launcher's use of the shared embedded chain
        self.url = ""
        self.contract = ""
        self.chain_info = Path()  # logs/chain.json: where the nodes learn the chain's URL and contract

    # -- what varies between kinds of job (the horizontal launcher overrides these) --

    def _roles(self) -> list[str]:
        """The parties, each with its run directory under --out."""
        return ["guest", *self.cfg.host_roles()]

    def _start_order(self) -> list[str]:
        """The order the nodes start in: the waiting side first."""
        return [*self.cfg.host_roles(), "guest"]

    def _chain_parties(self) -> dict[str, tuple[str, str]]:
        return vertical_parties(self.cfg)

    def _title(self) -> str:
        return f"{self.cfg.job.algorithm} job"

    # -- set-up --------------------------------------------------------------------

    def _prepare_out(self) -> Path:
        parts = [self.out / n for n in (*self._roles(), "logs")]
        if any(p.exists() and any(p.iterdir()) for p in parts) and not self.resume:
            if not self.force:
                raise ConfigError(f"{self.out} already holds a run; choose another --out or pass --force")
            for p in parts:
                shutil.rmtree(p, ignore_errors=True)
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs

    def _addresses(self) -> list[str]:
        """--set overrides giving each party a usable loopback port (port 0: a free one)."""
        extra = []
        for role in ("guest", *self.cfg.host_roles()):
            p = self.cfg.party(role)
            host, port = split_host_port(p.address)
            if port == 0:
                p.address = f"{host}:{_free_port()}"
                extra.append(f"{role}.address={p.address}")
            _check_bindable(role, p.listen or p.address)
        return extra

    def _node_args(self, role: str) -> list[str]:
        """Extra `vflchain node` arguments for a role (`vflchain predict` adds --model)."""
        return []

    def _check_data(self) -> None:
        """Both parties' data files load (fail before the chain and the nodes start, with one line)."""
        from nodes.algorithms import get
        from nodes.datafiles import load_party_csv

        spec = get(self.cfg.job.algorithm + ("-predict" if self.predicting else ""))
        for role in ("guest", *self.cfg.host_roles()):
            load_party_csv(self.cfg.party(role).data, role, require_labels=spec.needs_labels)

    def _partner_sets(self, role: str) -> list[str]:
        """Both parties run from this one config: unless its [policy] lists partners, each node's
        partner is the other party's account (nodes.policy; the dev-chain default covers dev keys only)."""
        if role not in ("guest", *self.cfg.host_roles()) or self.cfg.policy.partners:
            return []
        other = "host" if role == "guest" else "guest"
        accounts = [a for a, (r, _) in vertical_parties(self.cfg).items() if r == other]
        return ["policy.partners=[" + ", ".join(f'"{a}"' for a in accounts) + "]"]

    def _spawn(self, role: str, sets: list[str], logs: Path) -> NodeProcess:
        sets = [*sets, *self._partner_sets(role)]
        cmd = [sys.executable, "-m", "nodes.cli", "node", "--config", str(self.config_path), "--role", role,
               "--out", str(self.out / role), "--events", "json", "--chain-info", str(self.chain_info), "--once",
               *self._node_args(role), *(["--resume"] if self.resume else [])]
        for s in sets:
            cmd += ["--set", s]
        log = logs / f"{role}.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=fh, stdin=subprocess.DEVNULL,
                                    start_new_session=True, text=True, bufsize=1)
        node = NodeProcess(role, proc, log)
        threading.Thread(target=self._read_events, args=(node, proc.stdout), daemon=True).start()
        return node

    def _read_events(self, node: NodeProcess, stream: IO[str]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict) or "event" not in event:
                # anything else a node prints (a phase's table, a warning) is shown as it is
                event = {"event": "output", "role": node.role, "text": line.rstrip("\n")}
            node.events.append(event)
            if event.get("event") == "complete":
                node.complete = True
            self.events.put(event)

    # -- the run -------------------------------------------------------------------

    def run(self) -> int:
        from nodes.commands.node import text_event

        self._check_data()
        logs = self._prepare_out()
        sets = self.sets + self._addresses()
        self.con.print(f"[bold]vflchain {self.command}[/] {self._title()} from {self.config_path} -> {self.out}")
        if not self.cfg.chain.url:
            self.con.print(f"  chain: embedded ({self.cfg.chain.state})")
        # the chain and the nodes start side by side: each node imports, loads its data, then waits
        # for the chain this launcher announces in logs/chain.json (vflchain node --chain-info)
        url, starting, self.lease = start_chain(self.cfg, logs)
        self.chain_info = logs / "chain.json"
        self.chain_info.unlink(missing_ok=True)
        try:
            for role in self._start_order():
                self.nodes[role] = self._spawn(role, sets, logs)
            (logs / "processes.json").write_text(json.dumps(
                {"chain": starting.pid if starting else None,  # None: attached to a running server
                 **{r: n.proc.pid for r, n in self.nodes.items()}}) + "\n")
            try:
                self.url, self.contract, self.chain = ready_chain(self.cfg, url, starting, self._chain_parties())
            except BaseException as exc:
                starting = None  # stopped by ready_chain
                announce_chain(self.chain_info, {"error": _one_line(exc)})
                raise
            starting = None
            announce_chain(self.chain_info, {"url": self.url, "contract": self.contract})
            self.con.print(f"  chain: {self.url}, audit contract {self.contract}")
            try:
                self._supervise(text_event)
            except KeyboardInterrupt:
                self.con.print("[bold yellow]interrupted[/]: stopping the nodes (they abort the session)")
                self._stop_nodes(timeout=30.0)
                self._drain(text_event)
                raise
            self._drain(text_event)
            return self._report()
        finally:
            chain_stop = None
            lease = self.lease
            if lease is not None and self.nodes and all(n.complete for n in self.nodes.values()):
                # no node of this job needs the chain any more: release it (the last user stops it)
                # while the nodes' processes exit
                chain_stop = threading.Thread(target=lease.release, name="chain-release")
                chain_stop.start()
            self._stop_nodes(timeout=10.0)
            if starting is not None:  # interrupted before the chain answered
                starting.stop()
            if chain_stop is not None:
                chain_stop.join()
            elif lease is not None:
                lease.release()

    def _drain(self, render: Any) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            line = render(event)
            if line:
                self.con.print(line)

    def _supervise(self, render: Any) -> None:
        failed_at: float | None = None
        while True:
            try:
                event = self.events.get(timeout=0.05)
                line = render(event)
                if line:
                    self.con.print(line)
                if not self.events.empty():  # show a burst of events before looking at the processes
                    continue
            except queue.Empty:
                pass
            running = [n for n in self.nodes.values() if n.proc.poll() is None and not n.complete]
            for n in self.nodes.values():
                if n.exited_at is None and n.proc.poll() is not None:
                    n.exited_at = time.monotonic()
                    if n.proc.returncode != 0 and failed_at is None:
                        failed_at = n.exited_at
            if not running:
                return
            if failed_at is not None and time.monotonic() - failed_at > self.grace:
                for n in running:
                    self.con.print(f"[yellow]stopping the {n.role}[/] (its peer failed {self.grace:.0f}s ago)")
                self._stop_nodes(timeout=20.0)
                return

    def _stop_nodes(self, timeout: float) -> None:
        """SIGTERM the nodes still working (a complete one is only waited for); SIGKILL after `timeout` s."""
        live = [n for n in self.nodes.values() if n.proc.poll() is None]
        for n in live:
            if not n.complete:
                _stop_group(n.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in live:
            if not _wait(n.proc, max(0.1, deadline - time.monotonic())):
                _stop_group(n.proc, signal.SIGKILL)
                n.proc.wait(5)

    # -- the report ----------------------------------------------------------------

    def _job(self, role: str) -> dict[str, Any]:
        try:
            return json.loads((self.out / role / "job.json").read_text())
        except (OSError, ValueError):
            return {}

    def _root_error(self) -> str:
        """The failure that started it: prefer the party whose error is not about its peer."""
        errors: dict[str, str] = {}
        for role in self._roles():
            job, node = self._job(role), self.nodes.get(role)
            if job.get("status") == "failed":
                errors[role] = job.get("error") or "failed"
            elif job.get("status") != "complete" and node is not None and node.proc.returncode not in (0, None):
                code = node.proc.returncode
                how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                tail = node.log.read_text(errors="replace").strip().splitlines()[-1:] if node.log.exists() else []
                errors[role] = f"the {role} node {how}" + (f" ({tail[0]})" if tail else "")
        for role, err in errors.items():
            # an error about a peer failing or leaving is a consequence, not the cause
            peers = [p for p in self._roles() if p != role]
            if not err.startswith("interrupted") and not any(
                    f"{p} failed" in err or f"{p} disconnected" in err for p in peers):
                return f"{role}: {err}"
        role, err = next(iter(errors.items()), ("job", "did not complete"))
        return f"{role}: {err}"

    def _rounds(self, role: str) -> list[int]:
        """The rounds a party's rounds.jsonl lists."""
        lines = (self.out / role / "rounds.jsonl").read_text().splitlines()
        return [int(json.loads(x)["round"]) for x in lines if x.strip()]

    def _print_summary(self, rows: list[list[str]]) -> None:
        summary = Table(title="job complete", title_justify="left", show_header=False)
        summary.add_column(style="bold")
        summary.add_column()
        for r in rows:
            summary.add_row(*r)
        self.con.print(summary)

    def _attested(self, session_id: str, rounds: list[int]) -> int:
        from chain.backends import connect
        from chain.client import AuditClient

        client = AuditClient(connect(self.url), self.contract)
        states = client.round_states(bytes.fromhex(session_id[2:]), rounds)
        return sum(1 for s in states if s == "attested")

    def _headline(self) -> str:
        """A few headline numbers from the guest's metrics.json, whatever the algorithm."""
        try:
            m = json.loads((self.out / "guest" / "metrics.json").read_text())
        except (OSError, ValueError):
            return ""
        picks = []
        for section in ("validate", "validation", "train", "predict"):
            sub = m.get(section)
            if isinstance(sub, dict):
                picks += [f"{section} {k.upper()} {sub[k]:.4f}" for k in ("auc", "ks", "accuracy")
                          if isinstance(sub.get(k), int | float)]
                break
        for k in ("log_likelihood", "bic", "iterations", "ari"):
            if isinstance(m.get(k), int | float) and not isinstance(m.get(k), bool):
                picks.append(f"{k.replace('_', '-')} {m[k]:.6g}")
        return ", ".join(picks)

    def _report(self) -> int:
        """The job's summary (every party complete, every round attested), for 1 or N hosts."""
        jobs = {r: self._job(r) for r in self._roles()}
        if any(j.get("status") != "complete" for j in jobs.values()):
            raise NodeError(self._root_error())
        g = jobs["guest"]
        rounds = self._rounds("guest")
        attested = self._attested(g["session_id"], rounds)
        inter = json.loads((self.out / "guest" / "intersection.json").read_text())
        if self.cfg.job.hosts > 1:
            hosts = self.cfg.host_roles()
            session = f"{g['session_id']} (closed), guest + {len(hosts)} hosts"
            others = ", ".join(f"{h} {inter.get('other_sizes', {}).get(h, '?')}" for h in hosts)
        else:
            session, others = f"{g['session_id']} (closed)", f"host {inter['other_size']}"
        rows = [
            ["job", g["job_id"]],
            ["session", session],
            ["intersection", f"{inter['intersection_size']} IDs (guest {inter['own_size']}, {others})"],
            ["phases run", ", ".join(g["phases_run"]) or "-"],
        ]
        if g.get("phases_skipped"):
            rows.append(["phases skipped", ", ".join(g["phases_skipped"]) + " (not in this version)"])
        metrics = self._headline()
        if metrics:
            rows.append(["metrics (guest)", metrics])
        rows += [
            ["rounds attested on chain", f"{attested} of {len(rounds)}"],
            ["chain", f"{self.url} (chain id {g['chain_id']}), contract {g['contract']}"],
            *[[f"{r} files", str(self.out / r)] for r in self._roles()],
        ]
        self._print_summary(rows)
        if attested != len(rounds):
            raise NodeError(f"only {attested} of {len(rounds)} rounds are attested on chain")
        return 0
