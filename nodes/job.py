"""A job from one party's side: handshake, session on chain, PSI, the pipeline's phases, close.

Both parties run `PartyNode.run()` in their own process; the guest drives.

    round 1  handshake  guest -> host  hello (job id, job definition and its commitment,
                                       Paillier public key, chain account, chain id, contract)
                        host -> guest  hello_reply (agrees or refuses; its key and account)
                        guest opens the session on chain  -> host  session (id, tx)
                        host checks it on chain and joins -> guest joined (tx)
                        both commit round 1 (session now active)
    round 2  intersection (nodes.phases.intersection)
    ...      the phases of the algorithm's registry entry (nodes.algorithms) that exist
    last     close: both exchange their final model commitment (+ the guest's metrics
             hash), commit the round, finalize on chain and wait until the session is closed.

With `model=` (`vflchain node --model`, `vflchain predict`) the job scores new rows with
the party's saved model instead of training: algorithm "<lr|gmm>-predict", pipeline
intersection -> predict (nodes/phases/predict.py); the hello carries the mode, so a
training host refuses a predicting guest and the reverse.

`job.json` says "running" from the start and "complete" only after the session
is closed on chain. Any failure closes the link with the error (the peer fails
at once, naming it), aborts the session on chain with keccak256(error) as the
reason (unless it is already closed or aborted), and marks `job.json` "failed".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import secrets
import shutil
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from eth_utils import keccak

from chain.commitment import (
    TAG_CONFIG,
    TAG_METRICS,
    TAG_MODEL,
    Binding,
    SessionBinding,
    bound_commitment,
    canonical_bytes,
    new_salt,
    open_file_commitment,
    parse_salt,
)
from chain.errors import ChainError
from nodes import algorithms
from nodes.chainlink import ChainLinkLike
from nodes.communication import write_communication
from nodes.config import JobConfig
from nodes.context import PartyContext
from nodes.datafiles import load_party_csv
from nodes.errors import ConfigError, NodeError
from nodes.identity import IdentityError, check_identity, new_challenge, statement
from nodes.policy import PolicyRefusal, PredictionQuota, check_job, state_dir
from nodes.rundir import RunDir
from nodes.transcript import Transcript
from nodes.transport.base import Channel, PhaseChannel, TransportError
from vfl.errors import VflError
from vfl.paillier import PublicKey, configure, generate_keypair, start_workers
from vfl.paillier import shutdown as paillier_shutdown

HANDSHAKE = "handshake"
# what a checkpoint's "resume" entry holds besides one phase's own state (nodes.context.mark_resume_point)
BASE_KEYS = frozenset({"phases_done", "intersection", "intersection_round", "binning", "aligned_ids"})
CLOSE = "close"
Events = Callable[[dict[str, Any]], None]


TransportFactory = Callable[[JobConfig, str, "str | None", Transcript], Channel]
ChainFactory = Callable[[JobConfig, str], ChainLinkLike]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def config_commitment(cfg: JobConfig, binding: Binding, salt: bytes) -> bytes:
    """The salted commitment to the job definition, bound to the session and its opener
    (chain.commitment, TAG_CONFIG): the opener sends the salt in its hello, so each peer checks
    the commitment against its own configuration, and an auditor recomputes it from job.json."""
    return bound_commitment(TAG_CONFIG, binding, salt, canonical_bytes(cfg.job_definition()))


def session_label_of(job_id: str) -> bytes:
    """The label a job's session is opened with: keccak256 of its id (chain.sessions.session_label)."""
    from chain.sessions import session_label

    return session_label(job_id)


def session_id_of(job_id: str, chain_id: int, contract: str, opener: str) -> bytes:
    """The on-chain session id of a job opened by `opener` (the guest or coordinator): the contract
    derives it from the opener's account and the job's label, so no other account can take it."""
    from chain.sessions import session_id

    return session_id(chain_id, contract, opener, session_label_of(job_id))


def new_job_id(algorithm: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{algorithm}-{stamp}-{secrets.token_hex(4)}"


def package_version() -> str:
    from nodes.cli import package_version as v

    return v()


def config_differences(mine: dict[str, Any], theirs: dict[str, Any], me: str, other: str,
                       limit: int = 3) -> str:
    """'[lr] epochs: host 10, guest 20; ...' for the first differing keys."""
    diffs: list[str] = []
    for section in sorted(set(mine) | set(theirs)):
        a, b = mine.get(section) or {}, theirs.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                diffs.append(f"[{section}] {key}: {me} {a.get(key)!r}, {other} {b.get(key)!r}")
    more = f" (and {len(diffs) - limit} more)" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, NodeError | VflError | ChainError):
        return text
    return f"{type(exc).__name__}: {text}"


def prepare_rundir(out: Path, force: bool) -> RunDir:
    """A fresh run directory; refuses one that already holds a job unless `force`."""
    if (out / "job.json").exists() or (out.exists() and any(out.iterdir())):
        if not force:
            raise ConfigError(f"run directory {out} is not empty; choose another --out or pass --force")
        shutil.rmtree(out)
    return RunDir(out)


def grpc_transport(cfg: JobConfig, role: str, job_id: str | None, transcript: Transcript) -> Channel:
    """The network transport this party's config describes, started (and, for the guest, connected)."""
    from nodes.transport.grpc import GrpcTransport
    from nodes.transport.tls import load_tls

    if cfg.job.hosts > 1:
        return grpc_star(cfg, role, job_id, transcript)
    me, other = cfg.party(role), cfg.party("host" if role == "guest" else "guest")
    tc = cfg.transport
    tls = load_tls(me.cert or tc.cert, me.key or tc.key, me.ca or tc.ca)
    t = GrpcTransport(role, "host" if role == "guest" else "guest", me.listen or me.address, other.address,
                      transcript=transcript, tls=tls, job=job_id, timeout=tc.timeout, retries=tc.retries,
                      liveness_grace=tc.liveness_grace, capture=tc.capture or None,
                      max_message_bytes=tc.max_message_bytes, max_pending=tc.max_pending,
                      max_pending_bytes=tc.max_pending_bytes)
    return t.start()


def grpc_star(cfg: JobConfig, role: str, job_id: str | None, transcript: Transcript) -> Channel:
    """The links of a job with N >= 2 hosts (a star): the guest listens on its one address for every
    host (`LinkServer`) and has one link per host (`HostLinks`); host k links to the guest only."""
    from nodes.transport.grpc import GrpcTransport, LinkServer
    from nodes.transport.star import HostLinks
    from nodes.transport.tls import load_tls

    tc = cfg.transport
    me = cfg.party(role)
    tls = load_tls(me.cert or tc.cert, me.key or tc.key, me.ca or tc.ca)
    common: dict[str, Any] = {
        "transcript": transcript, "tls": tls, "job": job_id, "timeout": tc.timeout, "retries": tc.retries,
        "liveness_grace": tc.liveness_grace, "capture": tc.capture or None, "max_message_bytes": tc.max_message_bytes,
        "max_pending": tc.max_pending, "max_pending_bytes": tc.max_pending_bytes}
    if role != "guest":
        return GrpcTransport(role, "guest", me.listen or me.address, cfg.guest.address, **common).start()
    server = LinkServer("guest", me.listen or me.address, tls, tc.max_message_bytes)
    links: dict[str, Any] = {}
    try:
        for host in cfg.host_roles():
            links[host] = GrpcTransport("guest", host, me.listen or me.address, cfg.party(host).address,
                                        **common).start(server)
    except BaseException:
        for link in links.values():
            link.close("the guest could not start")
        server.stop()
        raise
    return HostLinks(links, server)  # type: ignore[return-value]


def chain_link(cfg: JobConfig, role: str) -> ChainLinkLike:
    from nodes.chainlink import ChainLink

    return ChainLink.connect(cfg, role)


def _import_phases(algorithm: str, role: str) -> None:
    """Import the pipeline's phase modules (and, at the guest, their plots), ahead of their first use."""
    phases = algorithms.get(algorithm).phases
    names = [f"nodes.phases.{name}" for name in phases]
    if role == "guest":  # the guest draws the pictures (nodes.plots.<phase>, where there is one)
        names += [f"nodes.plots.{name}" for name in phases]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:  # a phase missing from this version: the runner reports it when it gets there
            pass


class PartyNode:
    """Runs one party's side of a job and keeps its run directory honest."""

    def __init__(self, cfg: JobConfig, role: str, out: str | Path, *, force: bool = False,
                 events: Events | None = None, transport_factory: TransportFactory = grpc_transport,
                 chain_factory: ChainFactory = chain_link, model: str | Path | None = None,
                 serve: bool = False, resume: bool = False) -> None:
        self.spec = algorithms.get(cfg.job.algorithm)  # ConfigError if it has no pipeline
        self._check_role(cfg, role)
        # model: score new rows with this party's saved model (a "<algorithm>-predict" job,
        # nodes.phases.predict) instead of training; read now so a bad model fails at once
        self.model: Any = None
        if model is not None:
            from nodes.phases.predict import load_party_model

            self.model = load_party_model(model, role)
            cfg.job.algorithm = self.model.algorithm
        self.mode = "train" if self.model is None else "predict"
        self.algorithm = cfg.job.algorithm if self.model is None else f"{cfg.job.algorithm}-predict"
        self.spec = algorithms.get(self.algorithm)
        self.cfg, self.role = cfg, role
        self.peer = self._peer_name(role)
        self.out = Path(out)
        self.force = force
        self.events = events
        self.transport_factory = transport_factory
        self.chain_factory = chain_factory
        self.transport: Channel | None = None
        self.chain: ChainLinkLike | None = None
        self.session_id: bytes | None = None
        self.ctx: PartyContext | None = None
        self.job: dict[str, Any] = {}
        self.rundir: RunDir | None = None
        # serve: a host that refuses a guest in the handshake (before anything is on chain) waits
        # for the next guest instead of failing (vflchain node --role host)
        self.serve = serve and algorithms.generic_role(role) == "host"
        # resume: continue the killed job in `out` (same session, from the last round both parties
        # attested on chain; docs/runtime.md "Resuming a killed job")
        self.resume = resume
        self.restore_round = 0
        # the session resumed: becomes `session_id` (which a failure aborts) only after the new
        # handshake, so a resume that fails before (peer not resuming, refused) leaves it resumable
        self.resume_session: bytes | None = None
        self.restored: dict[str, Any] = {}  # the restored phase's own state (kept at the new handshake round)
        if resume and (model is not None or force):
            raise ConfigError("--resume continues a training job; it goes with neither --model nor --force")
        self.hosts = cfg.host_roles() if self.spec.topology == "vertical" else []  # host or host1..hostN
        self.multi = self.spec.topology == "vertical" and cfg.job.hosts > 1  # a guest with N >= 2 hosts
        if resume and self.multi:
            raise ConfigError(f"--resume continues a two-party job; a job with {cfg.job.hosts} hosts is run again")

    def _connect_chain(self) -> None:
        """This party's chain link (`chain_factory`), recorded in job.json."""
        self.emit("status", text="connecting to the chain")
        self.chain = self.chain_factory(self.cfg, self.role)
        self.job.update(chain_id=self.chain.chain_id, contract=self.chain.contract, account=self.chain.address,
                        config=self.cfg.to_dict())  # with the chain announced to it (--chain-info)
        self._save()

    def _check_role(self, cfg: JobConfig, role: str) -> None:
        """ConfigError unless `role` is one of the job's roles (a vertical job: guest, host)."""
        n = cfg.job.hosts
        if role not in self.spec.roles(n):
            hosts = "host" if n == 1 else f"host1..host{n}"
            raise ConfigError(f"unknown role {role!r} (the job's roles: guest, {hosts})")

    def _peer_name(self, role: str) -> str:
        """Who this party talks to, as messages name it: the other party of a two-party job (the
        guest of N >= 2 hosts: "hosts", each named by its role where it matters)."""
        if role == "guest" and self.spec.topology == "vertical" and self.cfg.job.hosts > 1:
            return "hosts"
        return "host" if role == "guest" else "guest"

    # -- bookkeeping ---------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            self.events({"event": kind, "role": self.role, **fields})

    def _save(self) -> None:
        assert self.rundir is not None
        self.rundir.write_json("job.json", self.job)

    # -- the job -------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run the job to its end; returns job.json. Raises NodeError (one line) on failure."""
        if self.resume:
            self._reopen()
            return self._run_recorded()
        try:
            self.rundir = prepare_rundir(self.out, self.force)
        except OSError as exc:
            raise ConfigError(f"cannot use run directory {self.out}: {exc.strerror or exc}") from None
        cfg = self.cfg
        self.job = {
            "status": "running", "role": self.role, "job_id": cfg.job.id or None, "session_id": None,
            "chain_id": None, "contract": None, "account": None, "peer_account": None,
            "algorithm": self.algorithm, "config_commitment": None, "config_salt": None,  # at the handshake
            "config": cfg.to_dict(), "config_file": str(cfg.path) if cfg.path else None,
            "version": package_version(), "started": now_iso(), "ended": None,
            "phases_run": [], "phases_skipped": [], "rounds": 0, "transactions": {}, "error": None,
        }
        if self.model is not None:
            self.job["model"] = self.model.describe()
        try:
            self._save()
        except OSError as exc:
            raise ConfigError(f"cannot write {self.rundir.file('job.json')}: {exc.strerror or exc}") from None
        return self._run_recorded()

    def _run_recorded(self) -> dict[str, Any]:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - every failure must be recorded, then re-raised
            err = self._fail(exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise NodeError(err) from exc
        return self.job

    def _run(self) -> None:
        cfg, role = self.cfg, self.role
        transcript = Transcript(self.rundir.file("transcript.jsonl"))
        # the data first: a missing or invalid file fails here, before the chain, keys and peer
        data = load_party_csv(cfg.party(role).data, role, require_labels=self.spec.needs_labels)
        if self.model is not None:
            from nodes.phases.predict import check_columns

            check_columns(self.model, data)
        self.emit("status", text=f"loaded {data.n_rows} rows, {len(data.features)} features")
        self._connect_chain()
        if self.resume:  # an aborted (or closed) session cannot go on: say so before anything else
            self._resume_session()
        # Paillier work on every core of this machine (or the [compute] Ray cluster)
        configure(backend=cfg.compute.backend, workers=cfg.compute.workers, address=cfg.compute.address)
        self.emit("status", text=f"generating a {cfg.paillier.key_bits}-bit Paillier key pair")
        pk, sk = generate_keypair(cfg.paillier.key_bits)
        # start the Paillier workers and build the key's fixed-base tables while the chain,
        # handshake and PSI run (saves their ~1 s at the first encryption), if this party
        # encrypts under its own key at all (a GMM host never does: its CPU is for the guest)
        warm = pk.warm_up if self.spec.role_encrypts_own(role) else start_workers
        threading.Thread(target=warm, name="paillier-warm-up", daemon=True).start()
        self.job["paillier"] = {"key_bits": cfg.paillier.key_bits, "fingerprint": pk.fingerprint.hex()}
        job_id = (cfg.job.id or new_job_id(self.algorithm)) if role == "guest" else None
        if self.resume and role == "guest":
            job_id = self.job["job_id"]
        while True:
            self.emit("status", text=f"listening on {cfg.party(role).listen or cfg.party(role).address}")
            self.transport = self.transport_factory(cfg, role, job_id, transcript)
            if self.job.get("refused"):  # late messages of a refused guest must not bind this node again
                getattr(self.transport, "refused_jobs", set()).update(r["job_id"] for r in self.job["refused"])
            if role != "guest":
                self.emit("status", text="waiting for the guest")
                job_id = self.transport.accept_job(cfg.transport.connect_timeout)
                if cfg.job.id and job_id != cfg.job.id:
                    raise ConfigError(f"the guest started job {job_id}, this host is configured for job {cfg.job.id}")
                if self.resume and job_id != self.job["job_id"]:
                    raise ConfigError(f"the guest resumes job {job_id}, this host resumes job {self.job['job_id']}")
            assert job_id is not None
            self.job["job_id"] = job_id
            self._save()
            seed = np.random.SeedSequence([cfg.job.seed, 0 if role == "guest" else 1 if role == "host"
                                           else int(role.removeprefix("host"))])
            ctx = PartyContext(role, job_id, cfg, self.transport, transcript, self.rundir, pk, sk, None, data,
                               rng=np.random.default_rng(seed), events=self.events)
            if self.model is not None:
                ctx.state["predict_model"] = self.model
            self.ctx = ctx

            if self.resume:  # agree on the restore point and a fresh round for the new handshake
                ctx.continue_rounds(self._resume_preamble(ctx))
            hs_round = ctx.next_round()
            try:
                if self.multi and role == "guest":
                    host_keys = self._handshake_hosts(ctx, hs_round)
                    peer_key = None
                else:
                    peer_key = self._handshake(ctx, hs_round)
                break
            except NodeError as exc:
                if not self.serve or isinstance(exc, ConfigError):
                    raise
                transcript = self._refused(exc, transcript)
                job_id = None
        if self.multi:
            self._star_session(ctx, hs_round, pk, peer_key, host_keys if role == "guest" else {})
        else:
            ctx.peer_key = peer_key
            trust = getattr(self.transport, "trust", None)
            if trust is not None:  # ciphertexts are accepted under the own and the peer's key only
                trust(pk)
                trust(peer_key)
            self.job["paillier"]["peer_fingerprint"] = peer_key.fingerprint.hex()
        if self.resume:
            self.session_id = self.resume_session
        elif not self.multi:
            self._session(ctx, hs_round)
        ctx.anchor = self.chain.anchor(self.session_id)
        ctx.round_manifests = self.multi  # N >= 2 hosts: every round's digest is the guest's manifest
        ctx.binding = self.binding()
        ctx.background_commits = True  # rounds go on chain without stalling the protocol (flushed per phase)
        if self.multi and role == "guest":  # every host's account and key, by role
            hs_params = {
                "config_commitment": self.job["config_commitment"], "account": self.chain.address,
                "host_accounts": self.job["host_accounts"], "public_key_fingerprint": pk.fingerprint.hex(),
                "host_public_key_fingerprints": {h: k.fingerprint.hex() for h, k in host_keys.items()}}
        else:
            hs_params = {
                "config_commitment": self.job["config_commitment"], "account": self.chain.address,
                "peer_account": self.job["peer_account"], "public_key_fingerprint": pk.fingerprint.hex(),
                "peer_public_key_fingerprint": ctx.peer_key.fingerprint.hex()}
        if self.resume:
            hs_params["resumed_from"] = self.restore_round
            self._restore(ctx)
            self.job["resumed"][-1]["handshake_round"] = hs_round  # the audit explains the gap by it
            self._save()
        ctx.commit_round(hs_round, HANDSHAKE, hs_params)
        ctx.flush_rounds()  # the first write of the session: its refusal is reported before any phase starts
        ctx.resume_base.setdefault("phases_done", [])
        ctx.mark_resume_point(self.restored)  # killed during the next phase: resume from here
        self._count_round()

        # import the phases (scipy, matplotlib: ~1 s) while PSI runs (not earlier: the handshake and the
        # session's first transactions are latency-bound and would wait for the interpreter lock)
        threading.Thread(target=_import_phases, args=(self.algorithm, role), name="import-phases",
                         daemon=True).start()
        for name in self.spec.phases:
            if name in ctx.resume_base["phases_done"]:  # restored from a checkpoint (resume)
                continue
            try:
                module = importlib.import_module(f"nodes.phases.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"nodes.phases.{name}":
                    raise
                self.job["phases_skipped"].append(name)
                self.emit("phase_skipped", phase=name, reason="not available in this version")
                self._save()
                continue
            self.emit("phase_start", phase=name)
            fn = module.run_guest if role == "guest" else module.run_host
            fn(ctx)
            ctx.flush_rounds()
            self.job["phases_run"].append(name)
            self._resume_point(ctx, name)
            self._count_round()
            self.emit("phase_done", phase=name)
            self._save()

        self._close(ctx)

    # -- resume --------------------------------------------------------------------

    def _reopen(self) -> None:
        """Take up the killed job's run directory (`--resume`): its job.json says which job and session."""
        path = self.out / "job.json"
        try:
            job = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot resume from {self.out}: no readable job.json ({exc})") from None
        if not isinstance(job, dict) or job.get("role") != self.role or job.get("algorithm") != self.algorithm:
            raise ConfigError(f"cannot resume from {self.out}: its job.json is not a {self.algorithm} job of "
                              f"the {self.role}")
        if job.get("status") == "complete":
            raise ConfigError(f"cannot resume from {self.out}: job {job.get('job_id')} is complete")
        if not job.get("session_id") or not job.get("config_salt"):
            raise ConfigError(f"cannot resume from {self.out}: job {job.get('job_id')} stopped before its session "
                              "was opened on chain; run it again without --resume")
        self.rundir = RunDir(self.out)
        job.setdefault("resumed", []).append({"time": now_iso(), "after": {
            "status": job.get("status"), "error": job.get("error"), "abort": job.pop("abort", None)}})
        job.pop("resumable", None)  # resumable again only if this run is interrupted too
        job.update(status="running", error=None, ended=None, version=package_version())
        self.job = job
        self._save()

    def _resume_session(self) -> None:
        """The session of the resumed job must still be active on chain (a clean failure aborts it)."""
        assert self.chain is not None
        sid = bytes.fromhex(str(self.job["session_id"])[2:])
        status = self.chain.session(sid).get("status")
        if status != "active":
            raise NodeError(f"cannot resume job {self.job['job_id']}: its session {self.job['session_id']} is "
                            f"{status} on chain (only a session still active can go on); run the job again "
                            "without --resume")
        self.resume_session = sid

    def _resume_points(self) -> tuple[int, list[int]]:
        """(the last round this party used (a checkpoint or a message), its up to 3 latest resume points
        attested on chain)."""
        assert self.chain is not None and self.resume_session is not None
        rounds: list[int] = []
        used = 0
        if self.rundir.file("transcript.jsonl").exists():  # a message of a round never committed counts too
            for line in self.rundir.file("transcript.jsonl").read_text(encoding="utf-8").splitlines():
                try:
                    used = max(used, int(json.loads(line)["round"]))
                except (ValueError, KeyError, TypeError):  # a line cut short by the kill
                    continue
        for p in self.rundir.file("checkpoints").glob("round-*.json"):
            try:
                rounds.append(int(p.stem.split("-")[1]))
            except (IndexError, ValueError):
                continue
        points: list[int] = []
        for r in sorted(rounds, reverse=True):
            try:
                has = "resume" in self.rundir.read_json(f"checkpoints/round-{r:04d}.json")
            except (OSError, ValueError):
                continue
            if has and self.chain.round_state(self.resume_session, r) == "attested":
                points.append(r)
                if len(points) == 3:
                    break
        return max(max(rounds, default=0), used), points

    def _resume_preamble(self, ctx: PartyContext) -> int:
        """Before the new handshake (round 0): exchange the last round each used and the resume points
        each has that both attested on chain; the job continues from the latest common one
        (`restore_round`), and the handshake takes the first round neither party used. Returns the
        last used round."""
        ch = PhaseChannel(ctx.transport, ctx.job_id, HANDSHAKE)
        last, points = self._resume_points()
        mine = {"resume": True, "last_round": last, "resume_points": points}
        if self.role == "guest":
            connect = getattr(ctx.transport, "connect", None)
            if connect is not None:
                connect(self.cfg.transport.connect_timeout)
            ch.send("resume", mine, round=0)
            theirs = ch.recv("resume_reply", round=0)
        else:
            theirs = ch.recv("resume", round=0, timeout=self.cfg.transport.connect_timeout)
            ch.send("resume_reply", mine, round=0)
        peer_last, peer_points = theirs.get("last_round"), theirs.get("resume_points")
        if not isinstance(peer_last, int) or not isinstance(peer_points, list) or \
                not all(isinstance(r, int) for r in peer_points):
            raise TransportError(f"the {self.peer}'s resume message is malformed")
        common = set(points) & set(peer_points)
        if not common:
            raise NodeError(f"cannot resume job {ctx.job_id}: no round with a checkpoint to continue from is "
                            "attested by both parties on chain")
        self.restore_round = max(common)
        return max(last, peer_last)

    def _restore(self, ctx: PartyContext) -> None:
        """Restore the state of the restore round's checkpoint: aligned rows, binning selection, the
        phases done, and the running phase's own state (ctx.state["<phase>_resume"])."""
        from vfl.binning import preprocessing_from_json

        entry = dict(self.rundir.read_json(f"checkpoints/round-{self.restore_round:04d}.json")["resume"])
        assert ctx.data is not None
        if "aligned_ids" in entry:  # the intersection's own round
            entry["intersection_round"] = self.restore_round
            ids = entry.pop("aligned_ids")
        elif "intersection_round" in entry:
            cp = self.rundir.read_json(f"checkpoints/round-{int(entry['intersection_round']):04d}.json")
            ids = cp["resume"]["aligned_ids"]
        else:
            ids = None
        if ids is not None:
            pos = {rid: i for i, rid in enumerate(ctx.data.ids.tolist())}
            missing = [rid for rid in ids if rid not in pos]
            if missing:
                raise NodeError(f"cannot resume: {ctx.data.source} no longer has the aligned row {missing[0]!r}")
            ctx.data = ctx.data.take([pos[rid] for rid in ids])
            ctx.state["intersection"] = entry.get("intersection")
        if entry.get("binning") is not None:
            from nodes.phases.binning import _set_data

            b = entry["binning"]
            _set_data(ctx, list(b["kept"]), preprocessing_from_json(b["preprocess"]) if b["preprocess"] else None)
        for key in [k for k in entry if k not in BASE_KEYS]:  # a phase's own state: "lr" -> ctx.state["lr_resume"]
            self.restored[key] = ctx.state[f"{key}_resume"] = entry.pop(key)
        ctx.resume_base = entry
        self.job["phases_run"] = list(entry.get("phases_done", []))
        self.job["resumed"][-1]["from_round"] = self.restore_round
        self.emit("status", text=f"resuming job {ctx.job_id} from round {self.restore_round} "
                                 f"(phases done: {', '.join(self.job['phases_run']) or 'none'})")
        self._save()

    def _resume_point(self, ctx: PartyContext, phase: str) -> None:
        """After a phase: what a resumed job needs of it, kept in its last round's checkpoint."""
        base = ctx.resume_base
        base["phases_done"] = list(self.job["phases_run"])
        extra: dict[str, Any] = {}
        if phase == "intersection" and ctx.data is not None:
            extra["aligned_ids"] = ctx.data.ids.tolist()  # here only; later points name this round
            base["intersection"] = ctx.state.get("intersection")
        if phase == "binning":
            outcome, pre = ctx.state.get("binning"), ctx.state.get("preprocess")
            base["binning"] = {"kept": list(getattr(outcome, "kept", [])),
                               "preprocess": pre.to_json() if pre is not None else None}
        ctx.mark_resume_point(extra)
        if phase == "intersection":
            base["intersection_round"] = ctx.last_committed

    def _refused(self, exc: NodeError, transcript: Transcript) -> Transcript:
        """A serving host refused a guest in the handshake: note it, drop its link, wait for the next one.

        Nothing is on chain for the refused job (the session opens only after the handshake);
        its messages leave the transcript, which starts afresh for the next guest."""
        err = one_line(exc)
        self.job.setdefault("refused", []).append({
            "job_id": self.job.get("job_id"), "peer_account": self.job.get("peer_account"), "error": err,
            "time": now_iso()})
        self.job.update(job_id=None, peer_account=None)
        self.job["paillier"].pop("peer_fingerprint", None)
        self._save()
        self.emit("status", text=f"refused job {self.job['refused'][-1]['job_id']}: {err}; waiting for the next guest")
        if self.transport is not None:
            self.transport.close(err)
        if transcript.path is not None:
            transcript.path.unlink(missing_ok=True)
        return Transcript(transcript.path)

    def binding(self) -> SessionBinding:
        """Where this party's commitments belong: the chain, contract, session, own account and role."""
        assert self.chain is not None and self.session_id is not None
        return SessionBinding(int(self.chain.chain_id), str(self.chain.contract), "0x" + self.session_id.hex(),
                              str(self.chain.address), self.role)

    def _count_round(self) -> None:
        self.job["rounds"] = sum(1 for _ in self.rundir.file("rounds.jsonl").open()) \
            if self.rundir.file("rounds.jsonl").exists() else 0
        self._save()

    # -- steps ---------------------------------------------------------------------

    def _handshake(self, ctx: PartyContext, rnd: int) -> PublicKey:
        """Agree on the job and prove both chain accounts to each other (nothing goes on chain here).

        guest -> host  hello       job, config and commitment, Paillier key, account, chain, contract,
                                   a fresh challenge for the host
        host -> guest  hello_reply agrees or refuses; its key, account, a challenge for the guest and
                                   its identity proof (nodes.identity) answering the guest's challenge
        guest -> host  identity    the guest checked the host's proof and its own policy
                                   (nodes.policy): its proof answering the host's challenge, or a refusal
        host -> guest  accepted    the host checked the guest's proof and its policy: ok or a refusal
        """
        ch = PhaseChannel(ctx.transport, ctx.job_id, HANDSHAKE)
        mine = self.cfg.job_definition()
        self.emit("status", text=f"handshake for job {ctx.job_id}")
        if self.role == "guest":
            connect = getattr(ctx.transport, "connect", None)
            if connect is not None:
                connect(self.cfg.transport.connect_timeout)
            challenge = new_challenge()
            # a resumed job keeps its session, so its configuration commitment (and salt)
            salt = parse_salt(self.job["config_salt"]) if self.resume else new_salt()
            commitment = self._config_commitment(ctx.job_id, self.chain.address, salt)
            self.job.update(config_commitment=commitment, config_salt="0x" + salt.hex())
            self._save()
            ch.send("hello", {
                "job_id": ctx.job_id, "version": self.job["version"], "config": mine,
                "config_commitment": commitment, "config_salt": "0x" + salt.hex(),
                "public_key": ctx.public_key.to_json(), "mode": self.mode,
                "account": self.chain.address, "chain_id": self.chain.chain_id, "contract": self.chain.contract,
                "challenge": challenge,
                **({"resume": {"session_id": self.job["session_id"], "restore_round": self.restore_round}}
                   if self.resume else {}),
            }, round=rnd)
            reply = ch.recv("hello_reply", round=rnd)
            if not reply.get("ok"):
                raise NodeError(f"the host refused the job: {reply.get('error') or 'no reason given'}")
            peer_key, peer_account = self._peer_of(reply)
            problem = self._check_peer(ctx, reply, peer_key, peer_account, challenge)
            if problem is not None:
                ch.send("identity", {"ok": False, "error": problem}, round=rnd)
                raise NodeError(problem)
            ch.send("identity", {"ok": True, **self._prove(ctx, peer_account, str(reply.get("challenge")))},
                    round=rnd)
            accepted = ch.recv("accepted", round=rnd)
            if not accepted.get("ok"):
                raise NodeError(f"the host refused the job: {accepted.get('error') or 'no reason given'}")
        else:
            hello = ch.recv("hello", round=rnd, timeout=self.cfg.transport.connect_timeout)
            self.job["peer_account"] = str(hello.get("account"))  # claimed: kept with a refusal
            problem = self._check_hello(hello, mine, ctx.job_id)
            challenge = new_challenge()
            reply: dict[str, Any] = {"ok": problem is None, "error": problem, "public_key": ctx.public_key.to_json(),
                                     "account": self.chain.address, "challenge": challenge}
            if self.multi:  # the guest tells every host how many columns each has (ctx.host_columns)
                reply["columns"] = len(ctx.data.features) if ctx.data is not None else 0
            if problem is None:
                self.job.update(config_commitment=hello["config_commitment"], config_salt=hello["config_salt"])
                reply.update(self._prove(ctx, str(hello["account"]), str(hello["challenge"])))
            ch.send("hello_reply", reply, round=rnd)
            if problem is not None:
                raise NodeError(problem)
            peer_key, peer_account = self._peer_of(hello)
            ident = ch.recv("identity", round=rnd)
            if not ident.get("ok"):
                raise NodeError(f"the guest refused the job: {ident.get('error') or 'no reason given'}")
            problem = self._check_peer(ctx, ident, peer_key, peer_account, challenge)
            ch.send("accepted", {"ok": problem is None, "error": problem}, round=rnd)
            if problem is not None:
                raise NodeError(problem)
        self.job["peer_account"] = peer_account
        self._save()
        return peer_key

    # -- a guest with N >= 2 hosts (a star: one link per host, hosts never talk to each other) ---------

    def _host_channel(self, ctx: PartyContext, host: str, phase: str) -> PhaseChannel:
        """The guest's channel to one of its hosts."""
        return PhaseChannel(ctx.transport.links[host], ctx.job_id, phase)  # type: ignore[attr-defined]

    def _handshake_hosts(self, ctx: PartyContext, rnd: int) -> dict[str, PublicKey]:
        """The guest's handshake with every host: the two-party steps (hello, hello_reply, identity,
        accepted; see `_handshake`) with each, side by side; returns each host's Paillier key.

        Each host gets its own challenge and the guest's proof for it alone (the verifier's role
        and account are in the signed statement); the first refusal or failed check ends the job."""
        links = ctx.transport.links  # type: ignore[attr-defined]
        mine = self.cfg.job_definition()
        self.emit("status", text=f"handshake for job {ctx.job_id} with {len(links)} hosts")
        ctx.transport.connect(self.cfg.transport.connect_timeout)  # type: ignore[attr-defined]
        salt = new_salt()
        commitment = self._config_commitment(ctx.job_id, self.chain.address, salt)
        self.job.update(config_commitment=commitment, config_salt="0x" + salt.hex())
        self._save()
        challenges = {host: new_challenge() for host in self.hosts}
        for host in self.hosts:
            self._host_channel(ctx, host, HANDSHAKE).send("hello", {
                "job_id": ctx.job_id, "version": self.job["version"], "config": mine,
                "config_commitment": commitment, "config_salt": "0x" + salt.hex(),
                "public_key": ctx.public_key.to_json(), "mode": self.mode,
                "account": self.chain.address, "chain_id": self.chain.chain_id, "contract": self.chain.contract,
                "challenge": challenges[host]}, round=rnd)
        keys: dict[str, PublicKey] = {}
        accounts: dict[str, str] = {}
        columns: dict[str, int] = {}
        replies: dict[str, dict[str, Any]] = {}
        for host in self.hosts:
            ch = self._host_channel(ctx, host, HANDSHAKE)
            reply = ch.recv("hello_reply", round=rnd)
            if not reply.get("ok"):
                raise NodeError(f"the {host} refused the job: {reply.get('error') or 'no reason given'}")
            keys[host], accounts[host] = self._peer_of(reply, host)
            cols = reply.get("columns")
            if not isinstance(cols, int) or isinstance(cols, bool) or cols < 0:
                raise TransportError(f"{host}'s handshake is malformed: no column count")
            columns[host] = cols
            replies[host] = reply
        if len({a.lower() for a in accounts.values()} | {self.chain.address.lower()}) != len(accounts) + 1:
            raise NodeError(f"the hosts' accounts are not distinct from each other and the guest's ({accounts})")
        for host in self.hosts:
            ch = self._host_channel(ctx, host, HANDSHAKE)
            problem = self._check_peer(ctx, replies[host], keys[host], accounts[host], challenges[host],
                                       links[host], host)
            if problem is not None:
                ch.send("identity", {"ok": False, "error": problem}, round=rnd)
                raise NodeError(problem)
            ch.send("identity", {"ok": True, **self._prove(ctx, accounts[host], str(replies[host].get("challenge")),
                                                           links[host], host)}, round=rnd)
        for host in self.hosts:
            accepted = self._host_channel(ctx, host, HANDSHAKE).recv("accepted", round=rnd)
            if not accepted.get("ok"):
                raise NodeError(f"the {host} refused the job: {accepted.get('error') or 'no reason given'}")
        self.job["host_accounts"] = accounts
        self.host_columns = columns
        self._save()
        return keys

    def _star_session(self, ctx: PartyContext, rnd: int, pk: PublicKey, guest_key: PublicKey | None,
                      host_keys: dict[str, PublicKey]) -> None:
        """The rest of the handshake round with N >= 2 hosts: the guest opens the session for every
        host's account, each host checks it on chain and joins; then the guest tells every host all
        hosts' public keys and column counts (`ctx.host_keys`, `ctx.host_columns`), and each party
        accepts ciphertexts under the keys of the job's parties (the guest relays between hosts)."""
        from nodes.session import PeerLink

        if self.role == "guest":
            sid = session_id_of(ctx.job_id, self.chain.chain_id, self.chain.contract, self.chain.address)
            self.emit("status", text="opening the session on chain")
            tx = self.chain.open_session(session_label_of(ctx.job_id), self.algorithm,
                                         bytes.fromhex(self.job["config_commitment"][2:]),
                                         [self.job["host_accounts"][h] for h in self.hosts])
            self.session_id = sid
            self.job["session_id"] = "0x" + sid.hex()
            self.job["transactions"]["open"] = tx
            self._save()
            self.emit("session", action="opened", session_id=self.job["session_id"], tx_hash=tx)
            for host in self.hosts:
                self._host_channel(ctx, host, HANDSHAKE).send("session", {"session_id": "0x" + sid.hex(),
                                                                          "tx_hash": tx}, round=rnd)
            joined = {h: self._host_channel(ctx, h, HANDSHAKE).recv("joined", round=rnd) for h in self.hosts}
            self.chain.wait_status(sid, "active", timeout=self.cfg.transport.timeout)
            self.job["transactions"]["joins"] = {h: m.get("tx_hash") for h, m in joined.items()}
            self.emit("session", action="joined", session_id=self.job["session_id"],
                      tx_hash=", ".join(str(m.get("tx_hash")) for m in joined.values()))
            info = {"public_keys": {h: k.to_json() for h, k in host_keys.items()}, "columns": self.host_columns}
            for host in self.hosts:
                self._host_channel(ctx, host, HANDSHAKE).send("hosts", info, round=rnd)
            keys, columns = dict(host_keys), dict(self.host_columns)
            ctx.peer_links = {h: PeerLink(ctx.transport.links[h], host_keys[h]) for h in self.hosts}  # type: ignore[attr-defined]
        else:
            assert guest_key is not None
            ctx.peer_key = guest_key
            self._session(ctx, rnd)
            msg = PhaseChannel(ctx.transport, ctx.job_id, HANDSHAKE).recv("hosts", round=rnd)
            keys, columns = self._hosts_of(msg, pk)
        ctx.host_keys, ctx.host_columns = keys, columns
        trust = getattr(ctx.transport, "trust", None)
        if trust is not None:  # own key, the guest's, every host's: nobody else's
            for key in [pk, *([guest_key] if guest_key is not None else []), *keys.values()]:
                trust(key)
        self.job["paillier"]["host_fingerprints"] = {h: k.fingerprint.hex() for h, k in keys.items()}
        if guest_key is not None:
            self.job["paillier"]["peer_fingerprint"] = guest_key.fingerprint.hex()

    def _hosts_of(self, msg: dict[str, Any], pk: PublicKey) -> tuple[dict[str, PublicKey], dict[str, int]]:
        """A host's check of the guest's "hosts" message: every host's key and column count, its own
        key among them under its own role."""
        try:
            keys = {str(h): PublicKey.from_json(k) for h, k in dict(msg["public_keys"]).items()}
            columns = {str(h): int(c) for h, c in dict(msg["columns"]).items()}
        except (KeyError, TypeError, ValueError, VflError) as exc:
            raise TransportError(f"the guest's list of hosts is malformed: {exc}") from None
        if sorted(keys) != sorted(self.hosts) or sorted(columns) != sorted(self.hosts):
            raise NodeError(f"the guest named hosts {', '.join(sorted(keys))}, the job has {', '.join(self.hosts)}")
        if keys[self.role].fingerprint != pk.fingerprint:
            raise NodeError(f"the guest gave the {self.role} a public key that is not its own")
        if any(k.bits < self.cfg.paillier.key_bits - 8 for k in keys.values()):
            raise NodeError(f"a host's Paillier key is shorter than [paillier] key_bits = {self.cfg.paillier.key_bits}")
        return keys, columns

    def _peer_of(self, msg: dict[str, Any], peer: str | None = None) -> tuple[PublicKey, str]:
        """The peer's Paillier key and claimed account from its hello (reply)."""
        peer = peer or self.peer
        try:
            peer_key = PublicKey.from_json(msg["public_key"])
            peer_account = str(msg["account"])
        except (KeyError, TypeError, VflError) as exc:
            raise TransportError(f"{peer}'s handshake is malformed: {exc}") from None
        if peer_key.bits < self.cfg.paillier.key_bits - 8:
            raise NodeError(f"{peer}'s Paillier key has {peer_key.bits} bits, "
                            f"[paillier] key_bits is {self.cfg.paillier.key_bits}")
        return peer_key, peer_account

    def _statement(self, ctx: PartyContext, prover: str, prover_account: str, verifier_account: str,
                   challenge: str, prover_tls: str, verifier: str | None = None) -> str:
        """The identity statement of this job (nodes.identity.statement) for `prover`'s proof to
        `verifier` (default: the other party of a two-party job)."""
        guest_account = prover_account if prover == "guest" else verifier_account
        if verifier is None:
            verifier = "host" if prover == "guest" else "guest"
        return statement(
            prover_role=prover, prover_account=prover_account, prover_tls=prover_tls,
            verifier_role=verifier, verifier_account=verifier_account,
            challenge=challenge, job_id=ctx.job_id,
            session_id="0x" + session_id_of(ctx.job_id, self.chain.chain_id, self.chain.contract,
                                            guest_account).hex(),
            opener=guest_account, config_commitment=self.job["config_commitment"],
            chain_id=self.chain.chain_id, contract=self.chain.contract)

    def _prove(self, ctx: PartyContext, peer_account: str, challenge: str, link: Any = None,
               verifier: str | None = None) -> dict[str, str]:
        """This party's proof answering the peer's challenge: {"proof": signature, "tls": own certificate's
        SHA-256 (signed with it; "" without TLS)}. `link`/`verifier`: the guest's link to one of its hosts."""
        own_tls = str(getattr(link or ctx.transport, "own_tls_fingerprint", ""))
        if verifier is None and self.multi:
            verifier = "guest" if self.role != "guest" else None
        text = self._statement(ctx, self.role, self.chain.address, peer_account, challenge, own_tls, verifier)
        return {"proof": self.chain.sign_text(text), "tls": own_tls}

    def _check_peer(self, ctx: PartyContext, msg: dict[str, Any], peer_key: PublicKey, peer_account: str,
                    challenge: str, link: Any = None, peer: str | None = None) -> str | None:
        """The peer's identity proof and this party's policy; a one-line reason to refuse, or None.
        `link`/`peer`: the guest's link to one of its hosts, and that host's role."""
        peer = peer or self.peer
        seen = getattr(link or ctx.transport, "peer_tls_fingerprint", None)  # None: a transport without channels
        verifier = self.role if self.multi else None
        text = self._statement(ctx, peer, peer_account, self.chain.address, challenge, str(msg.get("tls") or ""),
                               verifier)
        try:
            check_identity(self.chain, role=peer, claimed=peer_account, text=text,
                           signature=msg.get("proof"), seen_tls=seen() if callable(seen) else None)
            policy = self.cfg.policy
            own_columns = self.model.features if self.model is not None else ctx.data.features
            if self.cfg.paillier.key_bits < policy.min_key_bits:
                raise PolicyRefusal(f"the job's Paillier keys are {self.cfg.paillier.key_bits} bits, this party's "
                                    f"[policy] min_key_bits is {policy.min_key_bits}")
            check_job(policy, chain_id=self.chain.chain_id, peer_role=peer, peer_account=peer_account,
                      # + 8: a generated n may have a few bits less than asked for (as in _peer_of)
                      algorithm=self.algorithm, peer_key_bits=peer_key.bits + 8, own_columns=own_columns)
            if self.mode == "predict":
                used = PredictionQuota(state_dir(self.cfg), self.role, policy.predictions_per_day).take(peer_account)
                self.job["predictions_today"] = used
        except (IdentityError, PolicyRefusal) as exc:
            return one_line(exc)
        return None

    def _config_commitment(self, job_id: str, opener: str, salt: bytes) -> str:
        """This party's configuration, committed with `salt` for the session of `job_id` opened by `opener`."""
        assert self.chain is not None
        sid = session_id_of(job_id, self.chain.chain_id, self.chain.contract, opener)
        binding = Binding.config(self.chain.chain_id, self.chain.contract, sid, opener, "guest")
        return "0x" + config_commitment(self.cfg, binding, salt).hex()

    def _check_hello(self, hello: dict[str, Any], mine: dict[str, Any], job_id: str) -> str | None:
        """The host's checks of the guest's hello; a one-line reason to refuse, or None."""
        if hello.get("mode", "train") != self.mode:
            return (f"the guest runs a {hello.get('mode', 'train')} job, this host was started for a "
                    f"{self.mode} job (vflchain node --model starts a prediction job)")
        if hello.get("chain_id") != self.chain.chain_id or \
                str(hello.get("contract", "")).lower() != self.chain.contract.lower():
            return (f"guest uses contract {hello.get('contract')} on chain {hello.get('chain_id')}, host uses "
                    f"{self.chain.contract} on chain {self.chain.chain_id}")
        resume = hello.get("resume")
        if self.resume != isinstance(resume, dict):
            return ("the guest " + ("resumes" if resume else "starts") + " a job, this host was started to "
                    + ("resume one (--resume)" if self.resume else "start one"))
        if self.resume and (resume.get("session_id") != self.job["session_id"]
                            or resume.get("restore_round") != self.restore_round
                            or str(hello.get("config_commitment", "")).lower() != str(self.job["config_commitment"]).lower()):
            return (f"the guest resumes session {resume.get('session_id')} from round {resume.get('restore_round')}, "
                    f"this host session {self.job['session_id']} from round {self.restore_round} (or the "
                    "configuration commitment differs)")
        challenge = hello.get("challenge")
        if not isinstance(challenge, str) or len(challenge) != 66 or not isinstance(hello.get("account"), str):
            return "the guest's hello has no identity challenge and account (an older vflchain?)"
        try:
            expected = self._config_commitment(job_id, str(hello.get("account")), parse_salt(hello.get("config_salt")))
        except ChainError as exc:
            return f"the guest's hello has no valid configuration salt or account ({exc})"
        if str(hello.get("config_commitment", "")).lower() != expected:
            theirs = hello.get("config") if isinstance(hello.get("config"), dict) else {}
            diff = config_differences(mine, theirs, "host", "guest")
            return f"job configurations differ between guest and host: {diff or 'commitment mismatch'}"
        return None

    def _session(self, ctx: PartyContext, rnd: int) -> None:
        ch = PhaseChannel(ctx.transport, ctx.job_id, HANDSHAKE)
        guest = self.chain.address if self.role == "guest" else self.job["peer_account"]
        sid = session_id_of(ctx.job_id, self.chain.chain_id, self.chain.contract, guest)
        commitment = bytes.fromhex(self.job["config_commitment"][2:])
        if self.role == "guest":
            self.emit("status", text="opening the session on chain")
            tx = self.chain.open_session(session_label_of(ctx.job_id), self.algorithm, commitment,
                                         [self.job["peer_account"]])
            self.session_id = sid
            self.job["session_id"] = "0x" + sid.hex()
            self.job["transactions"]["open"] = tx
            self._save()
            self.emit("session", action="opened", session_id=self.job["session_id"], tx_hash=tx)
            ch.send("session", {"session_id": "0x" + sid.hex(), "tx_hash": tx}, round=rnd)
            joined = ch.recv("joined", round=rnd)
            self.chain.wait_status(sid, "active", timeout=self.cfg.transport.timeout)
            self.emit("session", action="joined", session_id=self.job["session_id"], tx_hash=joined.get("tx_hash"))
        else:
            msg = ch.recv("session", round=rnd)
            if msg.get("session_id") != "0x" + sid.hex():  # the id the guest's account and the job id derive
                raise NodeError(f"the guest opened session {msg.get('session_id')}, expected 0x{sid.hex()} "
                                f"(job {ctx.job_id} opened by {guest})")
            self.session_id = sid
            self.job["session_id"] = "0x" + sid.hex()
            info = self.chain.session(sid)
            problems = []
            if str(info.get("guest", "")).lower() != self.job["peer_account"].lower():
                problems.append(f"opened by {info.get('guest')}, not the guest {self.job['peer_account']}")
            if info.get("status") != "opened":
                problems.append(f"status {info.get('status')}")
            if str(info.get("config_commitment", "")).lower() != self.job["config_commitment"].lower():
                problems.append("a different config commitment")
            parts = sorted(str(a).lower() for a in info.get("participants", []))
            if self.chain.address.lower() not in parts:
                problems.append("this host is not a participant")
            elif self.multi and (len(parts) != self.cfg.job.hosts + 1 or self.job["peer_account"].lower() not in parts):
                problems.append(f"{len(parts)} participants, not the guest and the job's {self.cfg.job.hosts} hosts")
            elif not self.multi and parts != sorted([self.chain.address.lower(), self.job["peer_account"].lower()]):
                problems.append(f"other participants ({', '.join(parts)})")
            if problems:
                raise NodeError(f"session 0x{sid.hex()} on chain does not match the job: {'; '.join(problems)}")
            self.emit("status", text="joining the session on chain")
            tx = self.chain.join_session(sid)
            self.job["transactions"]["join"] = tx
            self._save()
            self.emit("session", action="joined", session_id=self.job["session_id"], tx_hash=tx)
            ch.send("joined", {"tx_hash": tx}, round=rnd)

    def _close(self, ctx: PartyContext) -> None:
        # the Paillier work is over: let the worker processes exit while the session closes
        threading.Thread(target=paillier_shutdown, name="paillier-shutdown", daemon=True).start()
        rnd = ctx.next_round()
        ch = PhaseChannel(ctx.transport, ctx.job_id, CLOSE)
        rd = self.rundir
        result = rd.file("model.json") if rd.file("model.json").exists() else rd.file("intersection.json")
        # salted and bound to this session, round, party and phase (chain.commitment): a small result
        # (a PSI job's three counts) cannot be guessed from the chain; the openings stay in job.json
        at = (ctx.binding or self.binding()).at(rnd, CLOSE)
        openings = {"model": open_file_commitment(TAG_MODEL, at, result.name, result.read_bytes())}
        if self.role == "guest":
            metrics = next(rd.file(n) for n in ("metrics.json", "predictions.csv", "intersection.json")
                           if rd.file(n).exists())
            openings["metrics"] = open_file_commitment(TAG_METRICS, at, metrics.name, metrics.read_bytes())
        model_commitment = bytes.fromhex(openings["model"].commitment[2:])
        metrics_hash = bytes.fromhex(openings["metrics"].commitment[2:]) if "metrics" in openings else b""
        self.job["openings"] = {k: o.to_json() for k, o in openings.items()}
        self._save()
        mine = {"model_commitment": "0x" + model_commitment.hex(),
                "metrics_hash": "0x" + metrics_hash.hex() if metrics_hash else None,
                "model_file": result.name}
        if self.multi and self.role == "guest":
            for host in self.hosts:
                self._host_channel(ctx, host, CLOSE).send("done", mine, round=rnd)
            done = {host: self._host_channel(ctx, host, CLOSE).recv("done", round=rnd) for host in self.hosts}
            extra = {"host_model_commitments": {h: m.get("model_commitment") for h, m in done.items()}}
        else:
            if self.role == "guest":
                ch.send("done", mine, round=rnd)
                theirs = ch.recv("done", round=rnd)
            else:
                theirs = ch.recv("done", round=rnd)
                ch.send("done", mine, round=rnd)
            extra = {"peer_model_commitment": theirs.get("model_commitment")}
        ctx.commit_round(rnd, CLOSE, mine)
        ctx.flush_rounds()
        self._count_round()
        self._finalize(model_commitment, metrics_hash, extra)

    def _finalize(self, model_commitment: bytes, metrics_hash: bytes, extra: dict[str, Any] | None = None) -> None:
        """Finalize the session on chain with this party's final commitments (the opener's metrics hash too),
        wait until it is closed, close the links; then job.json says "complete"."""
        assert self.chain is not None and self.session_id is not None and self.transport is not None
        self.emit("status", text="finalizing the session on chain")
        tx = self.chain.finalize(self.session_id, model_commitment, metrics_hash)
        self.job["transactions"]["finalize"] = tx
        self.job["model_commitment"] = "0x" + model_commitment.hex()
        self.job["metrics_hash"] = "0x" + metrics_hash.hex() if metrics_hash else None
        self.job.update(extra or {})
        self._save()
        self.chain.wait_status(self.session_id, "closed", timeout=self.cfg.transport.timeout)
        self.emit("session", action="closed", session_id=self.job["session_id"], tx_hash=tx)
        self.transport.close()
        write_communication(self.rundir, self.role)  # communication.json: bytes, messages, seconds from the transcript
        plots = sys.modules.get("nodes.plots")  # not loaded: no picture was asked for (the host draws none)
        if plots is not None:
            plots.wait()  # the pictures drew in the background (nodes.plots.later); done before "complete"
        self.job.update(status="complete", ended=now_iso())
        self._save()
        self.emit("complete", job_id=self.job["job_id"])  # job.json is final: a launcher need not wait for the exit

    def _fail(self, exc: BaseException) -> str:
        """Record the failure everywhere it matters; returns the one-line error."""
        err = one_line(exc)
        peer_failure = getattr(self.transport, "peer_failure", None)
        if isinstance(exc, ChainError) and peer_failure is not None and peer_failure():
            # the peer failed and aborted the session just before this party's chain write:
            # the peer's failure is the cause, the refused transaction only its consequence
            err = f"{peer_failure()} while {self.role} was writing to the chain ({err})"
        if not isinstance(exc, NodeError | VflError | ChainError | KeyboardInterrupt):
            traceback.print_exception(exc, file=sys.stderr)
        self.job.update(status="failed", error=err, ended=now_iso())
        self.emit("failed", error=err)
        if self.transport is not None:
            try:
                self.transport.close(err)
            except Exception:  # noqa: BLE001 - best effort while failing
                pass
        lost = getattr(self.transport, "peer_lost", None)
        if self.session_id is not None and isinstance(exc, TransportError) and callable(lost) and lost() \
                and not (peer_failure is not None and peer_failure()) and not self.multi:
            # the peer vanished without a word (killed, machine lost): the session stays active so
            # that both parties can continue the job with --resume (docs/runtime.md)
            self.job["abort"] = {"reason": err, "note": "not aborted: the peer was lost; the session stays "
                                 "active and `--resume` continues the job"}
            self.job["resumable"] = True
        elif self.session_id is not None and self.chain is not None:
            reason = keccak(err.encode("utf-8"))
            abort: dict[str, Any] = {"reason": err, "reason_hash": "0x" + reason.hex()}
            try:
                tx = self.chain.abort_session(self.session_id, reason)
                abort["tx_hash"] = tx
                if tx is None:
                    abort["note"] = "the session was already closed or aborted"
                else:
                    self.emit("session", action="aborted", session_id=self.job["session_id"], tx_hash=tx)
            except Exception as abort_exc:  # noqa: BLE001 - the chain may be what failed
                abort["error"] = one_line(abort_exc)
            self.job["abort"] = abort
        settle = getattr(self.ctx, "settle_rounds", None)  # horizontal jobs post their rounds in line
        if settle is not None:  # the rounds that reached the chain before the failure, not the last phase's count
            settle(timeout=10.0)
        with contextlib.suppress(OSError):
            path = self.rundir.file("rounds.jsonl")
            self.job["rounds"] = sum(1 for line in path.open() if line.strip()) if path.exists() else 0
        try:
            self._save()
        except OSError:
            pass
        return err

