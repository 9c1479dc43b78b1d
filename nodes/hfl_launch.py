"""`vflchain run` for a horizontal job: the embedded chain, N client nodes and the coordinator node,
each a separate process over the real transport (gRPC), supervised like the two-party launcher.

Layout of `--out DIR`: `coordinator/`, `client1/` .. `clientN/` (run directories) and `logs/`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rich.table import Table

from nodes.config import JobConfig
from nodes.errors import ConfigError, NodeError
from nodes.hfl_config import COORDINATOR, chain_role, client_roles, dev_index, roles
from nodes.launch import EmbeddedChainProcess, Launcher, _check_bindable, _free_port
from nodes.transport.tls import split_host_port


def prepare_hfl_chain(cfg: JobConfig, logs: Path) -> tuple[str, str, EmbeddedChainProcess | None]:
    """(url, contract, the chain process if started here): the contract deployed and every party's
    development account registered (coordinator as guest, clients as hosts)."""
    from chain.accounts import dev_account
    from chain.backends import connect
    from chain.deploy import dev_contract
    from chain.embedded import running_server

    started: EmbeddedChainProcess | None = None
    state = Path(cfg.chain.state)
    if cfg.chain.url:
        url = cfg.chain.url
    else:
        info = running_server(state)
        if info is not None:
            url = info["url"]
        else:
            started = EmbeddedChainProcess(state, logs / "chain.log")
            url = started.start()
    try:
        contract = cfg.chain.contract
        if not contract:
            parties = {dev_account(dev_index(r)).address: (chain_role(r), f"{r} organisation") for r in roles(cfg)}
            contract = dev_contract(connect(url), state, parties)
    except BaseException:
        if started is not None:
            started.stop()
        raise
    return url, contract, started


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


class HflLauncher(Launcher):
    """Runs a horizontal job as N + 2 processes (chain, coordinator, clients) and reports on it."""

    def _prepare_out(self) -> Path:
        parts = [self.out / n for n in (*roles(self.cfg), "logs")]
        if any(p.exists() and any(p.iterdir()) for p in parts):
            if not self.force:
                raise ConfigError(f"{self.out} already holds a run; choose another --out or pass --force")
            for p in parts:
                shutil.rmtree(p, ignore_errors=True)
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs

    def _addresses(self) -> list[str]:
        """[federation] clients / coordinator endpoints, free loopback ports for port 0 (or none given)."""
        n = self.cfg.hfl.clients
        out = []
        for key in ("clients", "coordinator"):
            given = list(getattr(self.cfg.federation, key)) or ["127.0.0.1:0"] * n
            filled = []
            for k, address in enumerate(given):
                host, port = split_host_port(address)
                if port == 0:
                    address = f"{host}:{_free_port()}"
                _check_bindable(f"federation {key} {k + 1}", address)
                filled.append(address)
            setattr(self.cfg.federation, key, filled)
            out.append(f"federation.{key}={_toml_list(filled)}")
        return out

    def run(self) -> int:
        from nodes.commands.node import text_event

        logs = self._prepare_out()
        sets = self.sets + self._addresses()
        self.con.print(f"[bold]vflchain run[/] hfl-lr job ({self.cfg.hfl.clients} clients) from "
                       f"{self.config_path} -> {self.out}")
        self.url, self.contract, self.chain = prepare_hfl_chain(self.cfg, logs)
        sets += [f"chain.url={self.url}", f"chain.contract={self.contract}"]
        self.con.print(f"  chain: {self.url}, audit contract {self.contract}")
        try:
            for role in [*client_roles(self.cfg), COORDINATOR]:  # the clients wait for the coordinator
                self.nodes[role] = self._spawn(role, sets, logs)
            (logs / "processes.json").write_text(json.dumps(
                {"chain": self.chain.proc.pid if self.chain and self.chain.proc else None,
                 **{r: n.proc.pid for r, n in self.nodes.items()}}) + "\n")
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
            self._stop_nodes(timeout=10.0)
            if self.chain is not None:
                self.chain.stop()

    def _root_error(self) -> str:
        """The first failure that is not about a peer having failed."""
        errors: dict[str, str] = {}
        for role in roles(self.cfg):
            job, node = self._job(role), self.nodes.get(role)
            if job.get("status") == "failed":
                errors[role] = job.get("error") or "failed"
            elif job.get("status") != "complete" and node is not None and node.proc.returncode not in (0, None):
                tail = node.log.read_text(errors="replace").strip().splitlines()[-1:] if node.log.exists() else []
                errors[role] = f"the {role} node exited with code {node.proc.returncode}" + \
                    (f" ({tail[0]})" if tail else "")
        for role, err in errors.items():
            if not (" failed: " in err or "disconnected" in err or err.startswith("interrupted")):
                return f"{role}: {err}"
        role, err = next(iter(errors.items()), ("job", "did not complete"))
        return f"{role}: {err}"

    def _report(self) -> int:
        jobs: dict[str, dict[str, Any]] = {r: self._job(r) for r in roles(self.cfg)}
        if any(j.get("status") != "complete" for j in jobs.values()):
            raise NodeError(self._root_error())
        c = jobs[COORDINATOR]
        rounds = [int(json.loads(x)["round"]) for x in
                  (self.out / COORDINATOR / "rounds.jsonl").read_text().splitlines() if x.strip()]
        attested = self._attested(c["session_id"], rounds)
        metrics = json.loads((self.out / COORDINATOR / "metrics.json").read_text())
        privacy = json.loads((self.out / "client1" / "privacy.json").read_text())
        eps = privacy.get("epsilon_spent")
        h = self.cfg.hfl
        rows = [
            ["job", c["job_id"]],
            ["session", f"{c['session_id']} (closed), {h.clients} clients + coordinator"],
            ["training", f"{h.aggregation}, {h.rounds} rounds, lr {h.learning_rate}, batch {h.batch_size}"],
            ["privacy", "DP off" if h.dp == "off" else
             f"{h.dp}, epsilon spent {eps:.4g} of {h.epsilon:g} per client (clip {h.clip:g})"],
            ["held-out accuracy", f"{metrics['validation']['accuracy']:.4f} on {metrics['validation']['n']} rows"],
            ["rounds attested on chain", f"{attested} of {len(rounds)}"],
            ["chain", f"{self.url} (chain id {c['chain_id']}), contract {c['contract']}"],
            ["files", str(self.out)],
        ]
        summary = Table(title="job complete", title_justify="left", show_header=False)
        summary.add_column(style="bold")
        summary.add_column()
        for r in rows:
            summary.add_row(*r)
        self.con.print(summary)
        if attested != len(rounds):
            raise NodeError(f"only {attested} of {len(rounds)} rounds are attested on chain")
        return 0
