"""`vflchain run` for a horizontal job: the embedded chain, N client nodes and the coordinator node,
each a separate process over the real transport (gRPC), supervised like the two-party launcher.

Layout of `--out DIR`: `coordinator/`, `client1/` .. `clientN/` (run directories) and `logs/`.
"""

from __future__ import annotations

import json
from typing import Any

from nodes.config import JobConfig
from nodes.errors import NodeError
from nodes.hfl_config import COORDINATOR, chain_role, client_roles, dev_index, roles
from nodes.launch import Launcher, _check_bindable, _free_port
from nodes.transport.tls import split_host_port
from vfl.errors import DataError


def hfl_parties(cfg: JobConfig) -> dict[str, tuple[str, str]]:
    """Every party's development account: the coordinator registers as guest, the clients as hosts."""
    from chain.accounts import dev_account

    return {dev_account(dev_index(r)).address: (chain_role(r), f"{r} organisation") for r in roles(cfg)}


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


class HflLauncher(Launcher):
    """Runs a horizontal job as N + 2 processes (chain, coordinator, clients) and reports on it."""

    def _roles(self) -> list[str]:
        return roles(self.cfg)

    def _start_order(self) -> list[str]:
        return [*client_roles(self.cfg), COORDINATOR]  # the clients wait for the coordinator

    def _chain_parties(self) -> dict[str, tuple[str, str]]:
        return hfl_parties(self.cfg)

    def _title(self) -> str:
        return f"hfl-lr job ({self.cfg.hfl.clients} clients)"

    def _check_data(self) -> None:
        """Every client's shard loads (fail before the chain and the nodes start, with one line)."""
        from nodes.datafiles import load_party_csv

        for role, path in zip(client_roles(self.cfg), self.cfg.federation.data, strict=False):
            try:
                load_party_csv(path, "guest")
            except DataError as exc:
                raise DataError(f"{role}: {exc}") from None

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

    def _report(self) -> int:
        jobs: dict[str, dict[str, Any]] = {r: self._job(r) for r in roles(self.cfg)}
        if any(j.get("status") != "complete" for j in jobs.values()):
            raise NodeError(self._root_error())
        c = jobs[COORDINATOR]
        rounds = self._rounds(COORDINATOR)
        attested = self._attested(c["session_id"], rounds)
        metrics = json.loads((self.out / COORDINATOR / "metrics.json").read_text())
        privacy = json.loads((self.out / "client1" / "privacy.json").read_text())
        eps = privacy.get("epsilon_spent")
        h = self.cfg.hfl
        self._print_summary([
            ["job", c["job_id"]],
            ["session", f"{c['session_id']} (closed), {h.clients} clients + coordinator"],
            ["training", f"{h.aggregation}, {h.rounds} rounds, lr {h.learning_rate}, batch {h.batch_size}"],
            ["privacy", "DP off" if h.dp == "off" else
             f"{h.dp}, epsilon spent {eps:.4g} of {h.epsilon:g} per client (clip {h.clip:g})"],
            ["held-out accuracy", f"{metrics['validation']['accuracy']:.4f} on {metrics['validation']['n']} rows"],
            ["rounds attested on chain", f"{attested} of {len(rounds)}"],
            ["chain", f"{self.url} (chain id {c['chain_id']}), contract {c['contract']}"],
            ["files", str(self.out)],
        ])
        if attested != len(rounds):
            raise NodeError(f"only {attested} of {len(rounds)} rounds are attested on chain")
        return 0
