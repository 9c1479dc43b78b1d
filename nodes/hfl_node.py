"""A horizontal job (`algorithm = "hfl-lr"`) from one party's side: the coordinator or client k.

Same run-directory contract, failure handling and chain link as the vertical
`PartyNode` (it is one: its `__init__`, `run()`, `_fail()` and `_finalize()`, with its own roles and `_run`): `job.json` is "complete" only
after the session is closed on chain; any failure closes the links naming the
error, aborts the session and marks `job.json` "failed". The protocol itself is
nodes.phases.hfl. Each role has its own run directory (`<out>/coordinator`,
`<out>/client1`, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chain.commitment import Binding, new_salt
from nodes.algorithms import get
from nodes.chainlink import ChainLinkLike, SessionLink
from nodes.config import JobConfig
from nodes.datafiles import load_party_csv
from nodes.errors import ConfigError, NodeError
from nodes.hfl_config import COORDINATOR, client_roles, dev_index, require, roles
from nodes.job import (
    Events,
    PartyNode,
    config_commitment,
    new_job_id,
)
from nodes.phases import hfl
from nodes.transcript import Transcript
from nodes.transport.base import Channel
from nodes.transport.star import StarTransport
from vfl.errors import DataError

HflTransportFactory = Any  # (cfg, role, job_id | None, transcript) -> Channel | StarTransport
HflChainFactory = Any  # (cfg, role) -> ChainLink


def grpc_links(cfg: JobConfig, role: str, job_id: str | None, transcript: Transcript) -> Channel | StarTransport:
    """The gRPC links of `role`: the coordinator listens on one endpoint per client."""
    from nodes.transport.grpc import GrpcTransport
    from nodes.transport.tls import load_tls

    tc = cfg.transport
    tls = load_tls(tc.cert, tc.key, tc.ca)
    clients, coord = require(cfg, "clients"), require(cfg, "coordinator")
    common = {"transcript": transcript, "tls": tls, "timeout": tc.timeout, "retries": tc.retries,
              "liveness_grace": tc.liveness_grace, "max_message_bytes": tc.max_message_bytes,
              "max_pending": tc.max_pending, "max_pending_bytes": tc.max_pending_bytes}
    if role == COORDINATOR:
        links = {}
        try:
            for k, client in enumerate(client_roles(cfg)):
                links[client] = GrpcTransport(COORDINATOR, client, coord[k], clients[k], job=job_id,
                                              **common).start()
        except BaseException:
            for link in links.values():
                link.close("the coordinator could not start")
            raise
        return StarTransport(links)
    k = int(role.removeprefix("client")) - 1
    return GrpcTransport(role, COORDINATOR, clients[k], coord[k], job=job_id, **common).start()


def chain_link(cfg: JobConfig, role: str) -> ChainLinkLike:
    """The role's chain link: its keystore if set ([guest] keystore for the coordinator is not used
    here), else its development key (coordinator 1, client k 1 + k)."""
    from chain.accounts import dev_account, is_dev_chain
    from chain.backends import open_chain
    from chain.client import AuditClient
    from chain.deploy import recorded
    from nodes.chainlink import ChainLink

    state = Path(cfg.chain.state)
    w3 = open_chain(cfg.chain.url, state, retry_seconds=cfg.chain.retry_seconds)
    chain_id = int(w3.eth.chain_id)
    if not is_dev_chain(chain_id):
        raise ConfigError(f"chain {chain_id} is not a development chain: horizontal jobs sign with "
                          "development keys only in this version")
    address = cfg.chain.contract
    if not address:
        dep = recorded(state, w3)
        if dep is None:
            raise NodeError(f"no audit contract: set [chain] contract, or deploy one recorded in {state}")
        address = dep["address"]
    return ChainLink(AuditClient(w3, address, dev_account(dev_index(role))), chain_id, cfg.chain.url or str(state),
                     cfg.chain.session_timeout)


class HflNode(PartyNode):
    """Runs the coordinator's or one client's side of a horizontal job."""

    def __init__(self, cfg: JobConfig, role: str, out: str | Path, *, force: bool = False,
                 events: Events | None = None, transport_factory: HflTransportFactory = grpc_links,
                 chain_factory: HflChainFactory = chain_link) -> None:
        if get(cfg.job.algorithm).topology != "horizontal":
            raise ConfigError(f"[job] algorithm {cfg.job.algorithm!r} is not a horizontal job")
        # no prediction mode, no serving one guest after another, no --resume (docs/horizontal.md)
        super().__init__(cfg, role, out, force=force, events=events, transport_factory=transport_factory,
                         chain_factory=chain_factory)

    def _check_role(self, cfg: JobConfig, role: str) -> None:
        if role not in roles(cfg):
            raise ConfigError(f"unknown role {role!r} for a horizontal job with {cfg.hfl.clients} clients "
                              f"(coordinator, client1..client{cfg.hfl.clients})")

    def _peer_name(self, role: str) -> str:
        return "clients" if role == COORDINATOR else COORDINATOR

    def _session_known(self, session_id: bytes) -> None:
        """The session id is known (the coordinator's at once, a client's from the hello)."""
        self.job["session_id"] = "0x" + session_id.hex()

    def _participating(self, session_id: bytes) -> None:
        """This party opened or joined the session: from now on a failure aborts it."""
        self.session_id = session_id

    def _run(self) -> None:
        cfg, role = self.cfg, self.role
        assert self.rundir is not None
        transcript = Transcript(self.rundir.file("transcript.jsonl"))
        self._connect_chain()
        data = None
        if role != COORDINATOR:
            path = require(cfg, "data")[int(role.removeprefix("client")) - 1]
            try:
                data = load_party_csv(path, "guest")
            except DataError as exc:
                raise DataError(f"{role}: {exc}") from None
            self.emit("status", text=f"loaded {data.n_rows} rows, {len(data.features)} features")
        job_id = (cfg.job.id or new_job_id(cfg.job.algorithm)) if role == COORDINATOR else None
        self.transport = self.transport_factory(cfg, role, job_id, transcript)
        if role != COORDINATOR:
            self.emit("status", text="waiting for the coordinator")
            job_id = self.transport.accept_job(cfg.transport.connect_timeout)
            if cfg.job.id and job_id != cfg.job.id:
                raise ConfigError(f"the coordinator started job {job_id}, this client is configured for {cfg.job.id}")
        assert job_id is not None
        self.job.update(job_id=job_id)
        view = SessionLink(self.chain, job_id, cfg.job.algorithm, on_bound=self._session_known,
                           on_participating=self._participating, wait_timeout=cfg.transport.timeout)
        if role == COORDINATOR:
            view.bind(self.chain.address)  # the coordinator's session id; a client's after the hello
        self._save()
        ctx = hfl.HflContext(role, job_id, cfg, self.transport, transcript, self.rundir, view,
                             data=data, events=self.events, job=self.job)
        self.ctx = ctx
        if role == COORDINATOR:
            salt = new_salt()
            binding = Binding.config(self.chain.chain_id, self.chain.contract, view.session_id, self.chain.address,
                                     COORDINATOR)
            view.config_commitment = config_commitment(cfg, binding, salt)
            self.job.update(config_commitment="0x" + view.config_commitment.hex(), config_salt="0x" + salt.hex())
            self._save()
            self.job["client_accounts"] = hfl.handshake_coordinator(ctx)
            self._count_round()
            self.emit("phase_start", phase="keys")
            pk = hfl.keys_coordinator(ctx)
            self.job["paillier"] = {"key_bits": pk.bits, "fingerprint": pk.fingerprint.hex(), "holder": "clients"}
            self._phase_done("keys")
            self.emit("phase_start", phase="hfl")
            history = hfl.train_coordinator(ctx)
            self._phase_done("hfl")
            model_commitment, metrics_hash = hfl.close_coordinator(ctx, history)
        else:
            self.job["peer_account"] = hfl.handshake_client(ctx)
            self._count_round()
            self.emit("phase_start", phase="keys")
            hfl.keys_client(ctx)
            self.job["paillier"] = {"key_bits": ctx.public_key.bits, "fingerprint": ctx.public_key.fingerprint.hex(),
                                    "holder": "clients"}
            self._phase_done("keys")
            self.emit("phase_start", phase="hfl")
            state, w = hfl.train_client(ctx)
            self._phase_done("hfl")
            model_commitment, metrics_hash = hfl.close_client(ctx, state, w), b""
        self._count_round()
        self._finalize(model_commitment, metrics_hash)

    def _phase_done(self, name: str) -> None:
        self.job["phases_run"].append(name)
        self._count_round()
        self.emit("phase_done", phase=name)

