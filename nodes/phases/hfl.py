"""Horizontal logistic regression (`algorithm = "hfl-lr"`): the coordinator's and the clients' protocol.

A star: every message goes between the coordinator and one client.

    round 1  handshake  coord -> each client  hello (job, definition + commitment, chain, contract)
                        client -> coord       hello_reply (agrees or refuses; its chain account)
                        coordinator opens the session naming all clients -> each  session
                        each client checks it on chain, joins -> coord  joined
    round 2  keys       client k>=2 -> coord  exchange_key (X25519 public key, signed by its chain account)
                        coord -> client1      exchange_keys (all of them)
                        client1 -> coord      key_bundle (Paillier public key + the private key sealed to
                                              each client's X25519 key, signed by client1's chain account)
                        coord -> client k>=2  key_share (public key, its sealed share, signature)
                        client -> coord       key_ok (fingerprint of the key it now holds)
    round 2+t train     client -> coord       update (Enc(a_i w_i), n_i, counts of the current global
                                              model on its held-out rows; with validation weighting
                                              also Enc(a_i)); a_i = n_i or n_i x its held-out score
                        coord -> each client  aggregate (sum of the ciphertexts, sum n_i [, sum Enc(a_i)])
                                              each client decrypts: w = sum(a_i w_i) / sum(a_i)
    last     close      client -> coord       done (model agreement HMAC, final held-out counts)
                        coord -> each client  done (metrics hash)

Every round ends with the coordinator sending each client the `manifest`: the
canonical transcript lines (phase|round|tag|sender|size|sha256, duplicates of
broadcasts merged) of every message of the round. A client checks that all its
own messages of the round are in it; every party then posts SHA-256 of the
manifest as the round's transcript digest, so the round is attested on chain
only if the coordinator showed every client the same round.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chain.commitment import (
    TAG_METRICS,
    TAG_MODEL,
    Binding,
    Opening,
    SessionBinding,
    open_file_commitment,
    parse_salt,
)
from chain.errors import ChainError
from chain.transcript import MANIFEST_TAG, manifest_digest, manifest_lines
from nodes.chainlink import SessionLink
from nodes.communication import COMMUNICATION_FILE
from nodes.config import JobConfig
from nodes.context import checkpoint_round, post_round
from nodes.errors import NodeError
from nodes.hfl_config import COORDINATOR, client_index, options
from nodes.rundir import RunDir
from nodes.transcript import Transcript
from nodes.transport.base import Address, Channel, TransportError
from nodes.transport.star import StarTransport
from vfl.data import PartyData
from vfl.errors import VflError
from vfl.hfl import keyshare
from vfl.hfl.aggregate import (
    decrypt_aggregate,
    decrypt_weighted,
    encrypt_update,
    encrypt_weight,
    sum_ciphertexts,
)
from vfl.hfl.local import evaluate
from vfl.hfl.options import HflOptions
from vfl.hfl.randomness import SEEDED_LABEL
from vfl.hfl.simulate import ClientState, initial_model
from vfl.paillier import EncryptedArray, PrivateKey, PublicKey, generate_keypair

HANDSHAKE, KEYS, TRAIN, CLOSE = "handshake", "keys", "train", "close"
MANIFEST = MANIFEST_TAG


@dataclass
class HflContext:
    """One party's state in a horizontal job."""

    role: str
    job_id: str
    cfg: JobConfig
    transport: Channel | StarTransport
    transcript: Transcript
    rundir: RunDir
    chain: SessionLink  # this party's chain link bound to the job's session
    data: PartyData | None = None
    events: Callable[[dict[str, Any]], None] | None = None
    public_key: PublicKey | None = None
    private_key: PrivateKey | None = None
    job: dict[str, Any] = field(default_factory=dict)  # job.json fields this module fills in
    _round: int = 0

    @property
    def opts(self) -> HflOptions:
        return options(self.cfg)

    def next_round(self) -> int:
        self._round += 1
        return self._round

    def event(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            self.events({"event": kind, "role": self.role, **fields})

    # -- messages ------------------------------------------------------------------

    def send(self, phase: str, tag: str, payload: dict[str, Any], rnd: int, to: str | None = None) -> None:
        addr = Address(self.job_id, phase, rnd, tag)
        if isinstance(self.transport, StarTransport):
            self.transport.send(to or "", addr, payload)
        else:
            self.transport.send(addr, payload)

    def recv(self, phase: str, tag: str, rnd: int, frm: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        addr = Address(self.job_id, phase, rnd, tag)
        if isinstance(self.transport, StarTransport):
            return self.transport.recv(frm or "", addr, timeout=timeout)
        return self.transport.recv(addr, timeout=timeout)

    # -- rounds --------------------------------------------------------------------

    def round_lines(self, rnd: int) -> list[str]:
        return manifest_lines(list(self.transcript.entries), rnd)

    def end_round(self, rnd: int, phase: str, params: Mapping[str, Any], loss: float | None = None) -> None:
        """Agree on the round's manifest, then checkpoint, commit and post the round on chain."""
        if self.role == COORDINATOR:
            lines = self.round_lines(rnd)
            for client in self.transport.clients:  # type: ignore[union-attr]
                self.send(phase, MANIFEST, {"lines": lines}, rnd, to=client)
        else:
            lines = self.recv(phase, MANIFEST, rnd).get("lines")
            if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
                raise TransportError("the coordinator's round manifest is malformed")
            missing = set(self.round_lines(rnd)) - set(lines)
            if missing:
                raise NodeError(f"the coordinator's record of round {rnd} ({phase}) leaves out "
                                f"{len(missing)} of this client's messages")
        digest = manifest_digest(lines)
        self.rundir.append_jsonl("manifests.jsonl", {"round": rnd, "phase": phase, "lines": sorted(lines)})
        com = checkpoint_round(self.rundir, self.binding, rnd, phase, params)
        post_round(self.chain, self.rundir, rnd, phase, com, digest, loss, self.event)

    @property
    def binding(self) -> SessionBinding:
        """Where this party's commitments belong (chain.commitment): chain, contract, session, account, role."""
        c = self.chain
        return SessionBinding(int(c.chain_id), str(c.contract), "0x" + c.session_id.hex(), str(c.address),
                              self.role)

    def open_final(self, tag: bytes, rnd: int, name: str) -> Opening:
        """A salted commitment to a result file, bound to the close round; its opening goes to job.json."""
        opening = open_file_commitment(tag, self.binding.at(rnd, CLOSE), name, self.rundir.file(name).read_bytes())
        self.job.setdefault("openings", {})["model" if tag == TAG_MODEL else "metrics"] = opening.to_json()
        return opening


def _hello_problem(ctx: HflContext, hello: dict[str, Any]) -> str | None:
    """A client's checks of the coordinator's hello: chain, contract, its own name and the salted
    configuration commitment recomputed from its own configuration."""
    from nodes.job import config_commitment, config_differences

    if hello.get("chain_id") != ctx.chain.chain_id or \
            str(hello.get("contract", "")).lower() != ctx.chain.contract.lower():
        return (f"coordinator uses contract {hello.get('contract')} on chain {hello.get('chain_id')}, "
                f"{ctx.role} uses {ctx.chain.contract} on chain {ctx.chain.chain_id}")
    if hello.get("client") != ctx.role:
        return f"the coordinator addressed this node as {hello.get('client')}, it is {ctx.role}"
    try:
        sid = ctx.chain.bind(str(hello.get("account")))  # the id the coordinator's account derives
        binding = Binding.config(ctx.chain.chain_id, ctx.chain.contract, sid, str(hello.get("account")), COORDINATOR)
        expected = "0x" + config_commitment(ctx.cfg, binding, parse_salt(hello.get("config_salt"))).hex()
    except (ChainError, ValueError) as exc:
        return f"the coordinator's hello has no valid configuration salt or account ({exc})"
    if str(hello.get("config_commitment", "")).lower() != expected:
        theirs = hello.get("config") if isinstance(hello.get("config"), dict) else {}
        diff = config_differences(ctx.cfg.job_definition(), theirs, ctx.role, "coordinator")
        return f"job configurations differ between coordinator and {ctx.role}: {diff or 'commitment mismatch'}"
    return None


# -- round 1: handshake and session ------------------------------------------------

def handshake_coordinator(ctx: HflContext) -> list[str]:
    """Agree on the job with every client, open the session naming them; returns their accounts.

    The configuration commitment and its salt are ctx.job's (the node made them)."""
    commitment_hex, salt_hex = ctx.job["config_commitment"], ctx.job["config_salt"]
    rnd = ctx.next_round()
    star: StarTransport = ctx.transport  # type: ignore[assignment]
    ctx.event("status", text=f"connecting to {len(star.clients)} clients")
    star.connect(ctx.cfg.transport.connect_timeout)
    for client in star.clients:
        ctx.send(HANDSHAKE, "hello", {
            "job_id": ctx.job_id, "version": ctx.job.get("version"), "config": ctx.cfg.job_definition(),
            "config_commitment": commitment_hex, "config_salt": salt_hex, "account": ctx.chain.address,
            "chain_id": ctx.chain.chain_id,
            "contract": ctx.chain.contract, "client": client}, rnd, to=client)
    accounts = []
    for client in star.clients:
        reply = ctx.recv(HANDSHAKE, "hello_reply", rnd, frm=client)
        if not reply.get("ok"):
            raise NodeError(f"{client} refused the job: {reply.get('error') or 'no reason given'}")
        accounts.append(str(reply.get("account")))
    ctx.event("status", text="opening the session on chain")
    tx = ctx.chain.open_session(accounts)
    ctx.job["transactions"]["open"] = tx
    ctx.event("session", action="opened", session_id="0x" + ctx.chain.session_id.hex(), tx_hash=tx)
    for client in star.clients:
        ctx.send(HANDSHAKE, "session", {"session_id": "0x" + ctx.chain.session_id.hex(), "tx_hash": tx},
                 rnd, to=client)
    for client in star.clients:
        ctx.recv(HANDSHAKE, "joined", rnd, frm=client)
    ctx.chain.wait_active()
    ctx.event("session", action="active", session_id="0x" + ctx.chain.session_id.hex())
    ctx.end_round(rnd, HANDSHAKE, {"config_commitment": commitment_hex, "account": ctx.chain.address,
                                   "client_accounts": accounts})
    return accounts


def handshake_client(ctx: HflContext) -> str:
    """Check the coordinator's job and its session on chain, join; returns the coordinator's account."""
    rnd = ctx.next_round()
    hello = ctx.recv(HANDSHAKE, "hello", rnd, timeout=ctx.cfg.transport.connect_timeout)
    problem = _hello_problem(ctx, hello)
    ctx.send(HANDSHAKE, "hello_reply", {"ok": problem is None, "error": problem, "account": ctx.chain.address},
             rnd)
    if problem is not None:
        raise NodeError(problem)
    commitment_hex = str(hello["config_commitment"]).lower()
    ctx.job.update(config_commitment=commitment_hex, config_salt=hello["config_salt"])
    coordinator = str(hello.get("account"))
    sid = "0x" + ctx.chain.bind(coordinator).hex()  # the id the coordinator's account and the job id derive
    msg = ctx.recv(HANDSHAKE, "session", rnd)
    if msg.get("session_id") != sid:
        raise NodeError(f"the coordinator opened session {msg.get('session_id')}, expected {sid} "
                        f"(job {ctx.job_id} opened by {coordinator})")
    info = ctx.chain.session()
    parts = [str(a).lower() for a in info.get("participants", [])]
    problems = []
    if str(info.get("guest", "")).lower() != coordinator.lower():
        problems.append(f"opened by {info.get('guest')}, not the coordinator {coordinator}")
    if str(info.get("config_commitment", "")).lower() != commitment_hex.lower():
        problems.append("a different config commitment")
    k = client_index(ctx.role)
    if len(parts) != ctx.cfg.hfl.clients + 1 or parts[k] != ctx.chain.address.lower():
        problems.append(f"this node is not its participant {k + 1} ({ctx.role})")
    if problems:
        raise NodeError(f"session {sid} on chain does not match the job: {'; '.join(problems)}")
    ctx.event("status", text="joining the session on chain")
    tx = ctx.chain.join_session()
    ctx.job["transactions"]["join"] = tx
    ctx.event("session", action="joined", session_id=sid, tx_hash=tx)
    ctx.send(HANDSHAKE, "joined", {"tx_hash": tx}, rnd)
    ctx.end_round(rnd, HANDSHAKE, {"config_commitment": commitment_hex, "account": ctx.chain.address,
                                   "coordinator_account": coordinator})
    return coordinator


# -- round 2: the clients' shared Paillier key, without the coordinator -------------

def _exchange_message(job_id: str, role: str, public: bytes) -> bytes:
    return f"vflchain-hfl-exchange-key|{job_id}|{role}|{public.hex()}".encode()


def _bundle_message(job_id: str, fingerprint: str, share_hashes: Mapping[str, str]) -> bytes:
    body = json.dumps({"job_id": job_id, "fingerprint": fingerprint, "shares": dict(share_hashes)},
                      sort_keys=True)
    return ("vflchain-hfl-key|" + body).encode()


def _share_context(job_id: str, role: str, fingerprint: str) -> bytes:
    return f"{job_id}|{role}|{fingerprint}".encode()


def keys_coordinator(ctx: HflContext) -> PublicKey:
    """Relay X25519 keys to client1 and sealed shares back; learns only the public key."""
    rnd = ctx.next_round()
    star: StarTransport = ctx.transport  # type: ignore[assignment]
    others = star.clients[1:]
    keys = []
    for client in others:
        m = ctx.recv(KEYS, "exchange_key", rnd, frm=client)
        public = m.get("public")
        keys.append({"role": client, "public": public.hex() if isinstance(public, bytes) else None,
                     "signature": m.get("signature")})
    ctx.send(KEYS, "exchange_keys", {"keys": keys}, rnd, to=star.clients[0])
    bundle = ctx.recv(KEYS, "key_bundle", rnd, frm=star.clients[0], timeout=ctx.cfg.transport.timeout + 600)
    try:
        pk = PublicKey.from_json(bundle["public_key"])
        shares = dict(bundle["shares"])
        share_bytes = {client: bytes.fromhex(str(shares[client])) for client in others}
    except (KeyError, TypeError, ValueError, VflError) as exc:
        raise TransportError(f"client1's key bundle is malformed: {exc}") from None
    for client in others:
        ctx.send(KEYS, "key_share", {"public_key": bundle["public_key"], "share": share_bytes[client],
                                     "share_hashes": bundle.get("share_hashes"),
                                     "signature": bundle.get("signature")}, rnd, to=client)
    for client in star.clients:
        ok = ctx.recv(KEYS, "key_ok", rnd, frm=client)
        if ok.get("fingerprint") != pk.fingerprint.hex():
            raise NodeError(f"{client} holds a different Paillier key ({ok.get('fingerprint')})")
    star.trust(pk)
    ctx.public_key = pk
    ctx.end_round(rnd, KEYS, {"public_key_fingerprint": pk.fingerprint.hex()})
    return pk


def _participant(ctx: HflContext, role: str) -> str:
    return str(ctx.chain.session()["participants"][client_index(role)])


def keys_client(ctx: HflContext) -> None:
    """Client1 makes the key pair and seals it to each other client; the others open their share."""
    rnd = ctx.next_round()
    bits = ctx.cfg.paillier.key_bits
    if ctx.role == "client1":
        m = ctx.recv(KEYS, "exchange_keys", rnd)
        ctx.event("status", text=f"generating the clients' {bits}-bit Paillier key pair")
        pk, sk = generate_keypair(bits)
        fp = pk.fingerprint.hex()
        secret = keyshare.private_key_bytes(sk)
        shares: dict[str, bytes] = {}
        for entry in m.get("keys") or []:
            role = str(entry.get("role"))
            try:
                public = bytes.fromhex(str(entry.get("public")))
            except ValueError:
                public = b""
            if len(public) != 32:
                raise NodeError(f"{role}'s exchange key is malformed")
            signer = ctx.chain.recover(_exchange_message(ctx.job_id, role, public), str(entry.get("signature")))
            if signer.lower() != _participant(ctx, role).lower():
                raise NodeError(f"{role}'s exchange key is not signed by its account on chain "
                                f"(signed by {signer}): refusing to share the private key")
            shares[role] = keyshare.seal(public, secret, _share_context(ctx.job_id, role, fp))
        expected = {f"client{k}" for k in range(2, ctx.cfg.hfl.clients + 1)}
        if set(shares) != expected:
            raise NodeError(f"exchange keys received for {sorted(shares)}, expected {sorted(expected)}")
        hashes = {r: hashlib.sha256(s).hexdigest() for r, s in sorted(shares.items())}
        sig = ctx.chain.sign(_bundle_message(ctx.job_id, fp, hashes))
        ctx.send(KEYS, "key_bundle", {"public_key": pk.to_json(), "shares": {r: s.hex() for r, s in shares.items()},
                                      "share_hashes": hashes,
                                      "signature": sig}, rnd)
    else:
        own, public = keyshare.new_exchange_key()
        ctx.send(KEYS, "exchange_key", {"public": public, "signature": ctx.chain.sign(
            _exchange_message(ctx.job_id, ctx.role, public))}, rnd)
        m = ctx.recv(KEYS, "key_share", rnd, timeout=ctx.cfg.transport.timeout + 600)
        try:
            pk = PublicKey.from_json(m["public_key"])
            share, hashes, sig = m["share"], dict(m["share_hashes"]), str(m["signature"])
        except (KeyError, TypeError, ValueError, VflError) as exc:
            raise TransportError(f"the key share is malformed: {exc}") from None
        fp = pk.fingerprint.hex()
        signer = ctx.chain.recover(_bundle_message(ctx.job_id, fp, hashes), sig)
        if signer.lower() != _participant(ctx, "client1").lower():
            raise NodeError(f"the Paillier key is not signed by client1's account on chain (signed by {signer})")
        if not isinstance(share, bytes) or hashlib.sha256(share).hexdigest() != hashes.get(ctx.role):
            raise NodeError("the key share relayed by the coordinator is not the one client1 sealed")
        sk = keyshare.private_key_from_bytes(pk, keyshare.open_sealed(own, share, _share_context(
            ctx.job_id, ctx.role, fp)))
    if pk.bits < bits - 8:
        raise NodeError(f"the clients' Paillier key has {pk.bits} bits, [paillier] key_bits is {bits}")
    ctx.public_key, ctx.private_key = pk, sk
    trust = getattr(ctx.transport, "trust", None)
    if trust is not None:
        trust(pk)
    ctx.send(KEYS, "key_ok", {"fingerprint": fp}, rnd)
    ctx.end_round(rnd, KEYS, {"public_key_fingerprint": fp})


# -- training rounds ---------------------------------------------------------------

def train_coordinator(ctx: HflContext) -> list[dict[str, Any]]:
    """Add the clients' encrypted updates each round; returns the per-round history."""
    star: StarTransport = ctx.transport  # type: ignore[assignment]
    opts, pk = ctx.opts, ctx.public_key
    assert pk is not None
    width: int | None = None
    history: list[dict[str, Any]] = []
    aggregates: list[dict[str, Any]] = []
    for t in range(1, opts.rounds + 1):
        rnd = ctx.next_round()
        updates, counts, evals, weights = [], [], {}, []
        for client in star.clients:
            m = ctx.recv(TRAIN, "update", rnd, frm=client, timeout=ctx.cfg.transport.timeout + 3600)
            enc, n = m.get("update"), m.get("n")
            if not isinstance(enc, EncryptedArray) or enc.public_key != pk or enc.ndim != 1:
                raise NodeError(f"{client}'s update is not a vector of ciphertexts under the clients' key")
            if width is None:
                width = enc.size
            if enc.size != width or not isinstance(n, int) or n < 1:
                raise NodeError(f"{client}'s update has {enc.size} values and n={n!r}")
            if opts.weighting == "validation":
                a = m.get("weight")
                if not isinstance(a, EncryptedArray) or a.public_key != pk or a.shape != (1,):
                    raise NodeError(f"{client}'s update has no encrypted aggregation weight under the clients' key")
                weights.append(a)
            updates.append(enc)
            counts.append(n)
            evals[client] = m.get("eval") or {}
        agg = sum_ciphertexts(updates)
        n_total = int(sum(counts))
        reply: dict[str, Any] = {"aggregate": agg, "n_total": n_total}
        if weights:
            reply["weight_total"] = sum_ciphertexts(weights)  # the coordinator never sees a weight
        for client in star.clients:
            ctx.send(TRAIN, "aggregate", reply, rnd, to=client)
        history.append(_pooled(t - 1, evals))
        digest = hashlib.sha256(agg.to_bytes()).hexdigest()
        aggregates.append({"round": rnd, "global_round": t, "n": dict(zip(star.clients, counts, strict=True)),
                           "n_total": n_total, "aggregate_sha256": digest})
        if "weight_total" in reply:  # validation weights: the sum of the encrypted weights is committed too
            aggregates[-1]["weight_total_sha256"] = hashlib.sha256(reply["weight_total"].to_bytes()).hexdigest()
        ctx.end_round(rnd, TRAIN, {"aggregate_sha256": digest, "n_total": n_total},
                      loss=history[-1]["loss"])
        ctx.event("phase_step", phase="hfl", step=f"round {t}/{opts.rounds}",
                  accuracy=_fmt(history[-1]["accuracy"]))
    ctx.rundir.write_json("aggregates.json", {"rounds": aggregates})
    return history


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _pooled(t: int, evals: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Held-out accuracy and mean log loss of the global model after round t, over all clients' rows."""
    n = sum(int(e.get("n", 0)) for e in evals.values())
    correct = sum(int(e.get("correct", 0)) for e in evals.values())
    loss = sum(float(e.get("loss_sum", 0.0)) for e in evals.values())
    return {"round": t, "n": n, "accuracy": correct / n if n else None, "loss": loss / n if n else None}


def train_client(ctx: HflContext) -> tuple[ClientState, np.ndarray]:
    """Local rounds: train, encrypt, send; decrypt the aggregate. Returns the state and the global model."""
    opts, pk, sk, data = ctx.opts, ctx.public_key, ctx.private_key, ctx.data
    assert pk is not None and sk is not None and data is not None and data.y is not None
    state = ClientState.make(data.X, data.y, opts, ctx.cfg.job.seed, client_index(ctx.role))
    if state.n == 0:
        raise NodeError(f"{ctx.role} has no training rows left after holding out [hfl] validation")
    w = initial_model(data.X.shape[1], opts)
    precision = ctx.cfg.paillier.precision
    for t in range(1, opts.rounds + 1):
        rnd = ctx.next_round()
        before = evaluate(w, state.X_val, state.y_val)
        local = state.train(w, opts)
        a = state.weight(local, opts)  # n_i, or n_i x its local model's held-out score (never sent in the clear)
        update: dict[str, Any] = {"update": encrypt_update(pk, local, a, precision), "n": state.n, "eval": before}
        if opts.weighting == "validation":
            update["weight"] = encrypt_weight(pk, a, precision)
        ctx.send(TRAIN, "update", update, rnd)
        m = ctx.recv(TRAIN, "aggregate", rnd, timeout=ctx.cfg.transport.timeout + 3600)
        agg, n_total, a_total = m.get("aggregate"), m.get("n_total"), m.get("weight_total")
        if not isinstance(agg, EncryptedArray) or agg.public_key != pk or agg.shape != local.shape \
                or not isinstance(n_total, int) or n_total < state.n:
            raise NodeError("the coordinator's aggregate is malformed")
        if opts.weighting == "validation":
            if not isinstance(a_total, EncryptedArray) or a_total.public_key != pk or a_total.shape != (1,):
                raise NodeError("the coordinator's aggregate has no encrypted sum of the weights")
            w = decrypt_weighted(sk, agg, a_total)
        else:
            w = decrypt_aggregate(sk, agg, n_total)
        record = state.accountant.record(rnd) | {"global_round": t}
        ctx.rundir.append_jsonl("privacy.jsonl", record)
        ctx.end_round(rnd, TRAIN, {"global_model": w, "n": state.n,
                                   "epsilon_spent": record["epsilon_spent"]})
        ctx.event("phase_step", phase="hfl", step=f"round {t}/{opts.rounds}",
                  epsilon=_fmt(record["epsilon_spent"]))
    return state, w


# -- close ---------------------------------------------------------------------------

def close_coordinator(ctx: HflContext, history: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """Collect the final counts and model commitments; write metrics. Returns (model commitment, metrics hash)."""
    star: StarTransport = ctx.transport  # type: ignore[assignment]
    rnd = ctx.next_round()
    evals, models = {}, {}
    for client in star.clients:
        m = ctx.recv(CLOSE, "done", rnd, frm=client)
        evals[client], models[client] = m.get("eval") or {}, m.get("model_agreement")
    if len(set(models.values())) != 1:
        raise NodeError(f"the clients ended with different models: {models}")
    final = _pooled(ctx.opts.rounds, evals)
    history.append(final)
    opts = ctx.opts
    metrics = {
        "algorithm": "hfl-lr", "clients": len(star.clients), "rounds": opts.rounds,
        "aggregation": opts.aggregation, "dp": opts.dp, "adaptive": opts.adaptive, "weighting": opts.weighting,
        "epsilon": opts.epsilon if opts.dp != "off" else None,
        "delta": opts.delta if opts.dp == "gaussian" else None,
        "validation": {"accuracy": final["accuracy"], "log_loss": final["loss"], "n": final["n"]},
        "per_client": {c: {"n": e.get("n"), "accuracy": (e.get("correct", 0) / e["n"]) if e.get("n") else None}
                       for c, e in evals.items()},
        "communication": COMMUNICATION_FILE,  # every party's own, written at the job's end (nodes.communication)
    }
    ctx.rundir.write_json("metrics.json", metrics)
    write_history(ctx.rundir, history)
    model_commitment = bytes.fromhex(ctx.open_final(TAG_MODEL, rnd, "aggregates.json").commitment[2:])
    metrics_hash = bytes.fromhex(ctx.open_final(TAG_METRICS, rnd, "metrics.json").commitment[2:])
    for client in star.clients:
        ctx.send(CLOSE, "done", {"metrics_hash": "0x" + metrics_hash.hex(),
                                 "clients_model_agreement": next(iter(models.values()))}, rnd, to=client)
    ctx.end_round(rnd, CLOSE, {"model_commitment": "0x" + model_commitment.hex(),
                               "metrics_hash": "0x" + metrics_hash.hex()})
    return model_commitment, metrics_hash


def close_client(ctx: HflContext, state: ClientState, w: np.ndarray) -> bytes:
    """Write model.json and privacy.json; report final counts. Returns the model commitment."""
    rnd = ctx.next_round()
    data, opts = ctx.data, ctx.opts
    assert data is not None
    weights = w[:-1] if opts.fit_intercept else w
    ctx.rundir.write_json("model.json", {"algorithm": "hfl-lr", "features": list(data.features),
                                         "weights": [float(x) for x in weights],
                                         "intercept": float(w[-1]) if opts.fit_intercept else 0.0})
    eps, delta = state.accountant.spent()
    plan = state.accountant.plan
    ctx.rundir.write_json("privacy.json", {
        "mechanism": opts.dp, "clip": opts.clip, "clip_norm": "L1" if opts.dp == "laplace" else "L2",
        "epsilon_budget": opts.epsilon if plan else None, "delta_budget": opts.delta if plan else None,
        "epsilon_spent": None if math.isinf(eps) else eps, "delta_spent": delta if plan else None,
        "accountant": state.accountant.record(0)["accountant"],
        "sampling": f"Poisson, rate {plan.q:.6g} per row and step" if plan else None,
        "noise_multiplier": plan.multiplier if plan else None,
        "randomness": ("secret (AES-256-CTR, key from secrets)" if state.private else SEEDED_LABEL) if plan else None,
        "steps": state.accountant.steps, "training_rows": state.n, "held_out_rows": len(state.y_val),
        "adjacency": "add or remove one training row"})
    model_commitment = bytes.fromhex(ctx.open_final(TAG_MODEL, rnd, "model.json").commitment[2:])
    ctx.send(CLOSE, "done", {"model_agreement": model_agreement(ctx, ctx.rundir.file("model.json").read_bytes()),
                             "eval": evaluate(w, state.X_val, state.y_val)}, rnd)
    ctx.recv(CLOSE, "done", rnd)
    ctx.end_round(rnd, CLOSE, {"model_commitment": "0x" + model_commitment.hex()})
    return model_commitment


def model_agreement(ctx: HflContext, model: bytes) -> str:
    """What the coordinator compares to see that every client ended with the same model.json: an HMAC
    keyed by the clients' shared Paillier private key (which the coordinator never holds), so equal
    models give equal values but the coordinator cannot test a guess of the model against it (each
    client's on-chain model commitment is salted by that client and differs from the others')."""
    assert ctx.private_key is not None
    key = hashlib.sha256(b"vflchain/hfl-model-agreement/v1" + keyshare.private_key_bytes(ctx.private_key)).digest()
    return "0x" + hmac.new(key, ctx.chain.session_id + model, hashlib.sha256).hexdigest()


def write_history(rundir: RunDir, history: list[dict[str, Any]]) -> None:
    """history.csv (round, accuracy, loss) and plots/accuracy_vs_round.png."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["round", "accuracy", "log_loss", "n"])
    for h in history:
        w.writerow([h["round"], h["accuracy"], h["loss"], h["n"]])
    rundir.write_text("history.csv", buf.getvalue())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([h["round"] for h in history], [h["accuracy"] for h in history], marker="o", ms=3)
    ax.set_xlabel("global round")
    ax.set_ylabel("held-out accuracy (all clients)")
    ax.set_title("hfl-lr: accuracy vs round")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(rundir.plot_path("accuracy_vs_round.png"), dpi=100)
    plt.close(fig)
