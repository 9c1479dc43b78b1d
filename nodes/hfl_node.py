"""A horizontal job (`algorithm = "hfl-lr"`) from one party's side: the coordinator or client k.

Same run-directory contract, failure handling and chain link as the vertical
`PartyNode` (it reuses its `run()`/`_fail()`): `job.json` is "complete" only
after the session is closed on chain; any failure closes the links naming the
error, aborts the session and marks `job.json` "failed". The protocol itself is
nodes.phases.hfl. Each role has its own run directory (`<out>/coordinator`,
`<out>/client1`, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

from chain.commitment import Binding, new_salt
from nodes.communication import write_communication
from nodes.config import JobConfig
from nodes.datafiles import load_party_csv
from nodes.errors import ConfigError, NodeError
from nodes.hfl_config import COORDINATOR, client_roles, dev_index, require, roles
from nodes.job import (
    ChainLinkLike,
    Events,
    PartyNode,
    config_commitment,
    new_job_id,
    now_iso,
    session_id_of,
    session_label_of,
)
from nodes.phases import hfl
from nodes.rundir import RunDir
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


def sign_with(link: Any, message: bytes) -> str:
    """Sign with the party's chain account (EIP-191 personal message); hex signature."""
    return "0x" + bytes(link.client.account.sign_message(encode_defunct(primitive=message)).signature).hex()


def recover_signer(message: bytes, signature: str) -> str:
    try:
        return str(Account.recover_message(encode_defunct(primitive=message), signature=signature))
    except Exception:  # noqa: BLE001 - any malformed signature is "signed by nobody"
        return "(an invalid signature)"


class HflNode(PartyNode):
    """Runs the coordinator's or one client's side of a horizontal job."""

    def __init__(self, cfg: JobConfig, role: str, out: str | Path, *, force: bool = False,
                 events: Events | None = None, transport_factory: HflTransportFactory = grpc_links,
                 chain_factory: HflChainFactory = chain_link) -> None:
        if cfg.job.algorithm != "hfl-lr":
            raise ConfigError(f"[job] algorithm {cfg.job.algorithm!r} is not a horizontal job")
        if role not in roles(cfg):
            raise ConfigError(f"unknown role {role!r} for a horizontal job with {cfg.hfl.clients} clients "
                              f"(coordinator, client1..client{cfg.hfl.clients})")
        self.cfg, self.role, self.peer = cfg, role, "clients" if role == COORDINATOR else COORDINATOR
        self.model: Any = None  # PartyNode's prediction mode: not for horizontal jobs
        self.mode = "train"
        self.serve = False  # nor serving one guest after another, nor --resume (docs/horizontal.md)
        self.resume, self.restore_round, self.resume_session, self.restored = False, 0, None, {}
        self.algorithm = cfg.job.algorithm
        self.out = Path(out)
        self.force = force
        self.events = events
        self.transport_factory = transport_factory
        self.chain_factory = chain_factory
        self.transport: Any = None
        self.chain: Any = None
        self.session_id: bytes | None = None
        self.ctx: Any = None
        self.job: dict[str, Any] = {}
        self.rundir: RunDir | None = None

    def _view(self, link: Any, job_id: str) -> hfl.ChainView:
        """The protocol's chain view. The session id derives from the coordinator's account: the
        coordinator knows it at once, a client once the coordinator's hello names it (`bind`)."""
        timeout = self.cfg.transport.timeout
        anchor: Any = None

        def sid() -> bytes:
            if not view.session_id:
                raise NodeError("no session yet: the coordinator's account is not known")
            return view.session_id

        def bind(coordinator: str) -> bytes:
            view.session_id = session_id_of(job_id, link.chain_id, link.contract, coordinator)
            self.job["session_id"] = "0x" + view.session_id.hex()
            return view.session_id

        def submit(rnd: int, com: bytes, digest: bytes) -> str:
            nonlocal anchor
            anchor = anchor or link.anchor(sid())
            return str(anchor.submit_round(rnd, com, digest))

        def open_session(accounts: list[str]) -> str:
            tx = link.open_session(session_label_of(job_id), self.cfg.job.algorithm,
                                   bytes.fromhex(self.job["config_commitment"][2:]), accounts)
            self.session_id = sid()
            return str(tx)

        def join() -> str:
            self.session_id = sid()
            return str(link.join_session(sid()))

        view = hfl.ChainView(
            address=link.address, chain_id=link.chain_id, contract=link.contract,
            sign=lambda m: sign_with(link, m), recover=recover_signer, open_session=open_session,
            join_session=join, session=lambda: link.session(sid()),
            wait_active=lambda: link.wait_status(sid(), "active", timeout=timeout),
            submit_round=submit, finalize=lambda mc, mh: str(link.finalize(sid(), mc, mh)), bind=bind)
        if self.role == COORDINATOR:
            bind(link.address)
        return view

    def _run(self) -> None:
        cfg, role = self.cfg, self.role
        assert self.rundir is not None
        transcript = Transcript(self.rundir.file("transcript.jsonl"))
        self.emit("status", text="connecting to the chain")
        self.chain = self.chain_factory(cfg, role)
        self.job.update(chain_id=self.chain.chain_id, contract=self.chain.contract, account=self.chain.address,
                        config=self.cfg.to_dict())  # with the chain announced to it (--chain-info)
        self._save()
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
        view = self._view(self.chain, job_id)  # the coordinator's session id; a client's after the hello
        self._save()
        ctx = hfl.HflContext(role, job_id, cfg, self.transport, transcript, self.rundir, view,
                             data=data, events=self.events, job=self.job)
        self.ctx = ctx
        if role == COORDINATOR:
            salt = new_salt()
            binding = Binding.config(self.chain.chain_id, self.chain.contract, view.session_id, self.chain.address,
                                     COORDINATOR)
            self.job.update(config_commitment="0x" + config_commitment(cfg, binding, salt).hex(),
                            config_salt="0x" + salt.hex())
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
        self.emit("status", text="finalizing the session on chain")
        tx = ctx.chain.finalize(model_commitment, metrics_hash)
        self.job["transactions"]["finalize"] = tx
        self.job["model_commitment"] = "0x" + model_commitment.hex()
        self.job["metrics_hash"] = "0x" + metrics_hash.hex() if metrics_hash else None
        self._save()
        self.chain.wait_status(view.session_id, "closed", timeout=cfg.transport.timeout)
        self.emit("session", action="closed", session_id=self.job["session_id"], tx_hash=tx)
        self.transport.close()
        write_communication(self.rundir, role)  # communication.json: bytes, messages, seconds from the transcript
        self.job.update(status="complete", ended=now_iso())
        self._save()
        self.emit("complete", job_id=self.job["job_id"])  # job.json is final: a launcher need not wait for the exit

    def _phase_done(self, name: str) -> None:
        self.job["phases_run"].append(name)
        self._count_round()
        self.emit("phase_done", phase=name)

