"""What a protocol phase gets to work with: `PartyContext`.

A phase (nodes/phases/<name>.py) is a pair of functions
`run_guest(ctx, ...)` / `run_host(ctx, ...)` that exchange messages through
`ctx.channel(phase)`, compute with `vfl`, write files into `ctx.rundir` and
commit rounds through `ctx.commit_round(...)`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from chain.commitment import SessionBinding, new_salt, round_commitment
from chain.transcript import MANIFEST_TAG, manifest_digest, manifest_lines
from nodes.config import JobConfig
from nodes.errors import NodeError
from nodes.rundir import RunDir
from nodes.transcript import Transcript
from nodes.transport.base import Channel, PhaseChannel, TransportError
from vfl.data import PartyData, Role
from vfl.paillier import PrivateKey, PublicKey


class ChainAnchor(Protocol):
    """Posts a round's commitment and transcript digest on chain; returns the tx hash."""

    def submit_round(self, round_no: int, commitment: bytes, transcript_digest: bytes) -> str: ...


class NoChain:
    """An anchor that posts nothing (unit tests of a single phase)."""

    def submit_round(self, round_no: int, commitment: bytes, transcript_digest: bytes) -> str:
        return ""


@dataclass
class PartyContext:
    role: Role
    job_id: str
    config: JobConfig
    transport: Channel
    transcript: Transcript
    rundir: RunDir
    public_key: PublicKey
    private_key: PrivateKey
    peer_key: PublicKey | None = None
    data: PartyData | None = None  # this party's rows; aligned after the intersection phase
    anchor: ChainAnchor = field(default_factory=NoChain)
    # where this party's commitments belong (chain, contract, session, account, role): set with the anchor
    binding: SessionBinding | None = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng())
    state: dict[str, Any] = field(default_factory=dict)  # results handed from phase to phase
    events: Callable[[dict[str, Any]], None] | None = None  # progress sink (the node's console)
    _round: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # post round commitments from one background thread, in order (the job runner turns it on):
    # the protocol's next step does not wait for the transaction and its receipt
    background_commits: bool = False
    _poster: ThreadPoolExecutor | None = field(default=None, repr=False)
    _posts: list[Future[None]] = field(default_factory=list, repr=False)
    # resume (docs/runtime.md "Resuming a killed job"): what a restarted party needs besides the
    # committed params, kept in the checkpoints next to them (not committed): the phases done and
    # their outcomes (`resume_base`: aligned row IDs, binning selection), set by the job runner
    resume_base: dict[str, Any] = field(default_factory=dict)
    last_committed: int = 0
    # vertical jobs (set at the handshake): every host's Paillier public key by role, own included
    # (a guest relays ciphertexts under host keys), and how many feature columns each host has
    host_keys: dict[str, PublicKey] = field(default_factory=dict)
    host_columns: dict[str, int] = field(default_factory=dict)
    # a guest with N >= 2 hosts: one nodes.session.PeerLink per host (what `Session(ctx)` addresses)
    peer_links: dict[str, Any] | None = None
    # a job with N >= 2 hosts (the runtime turns it on): every round ends with the guest's manifest
    # of the round's messages, and every party posts its digest (`agree_manifest`)
    round_manifests: bool = False

    @property
    def peer(self) -> Role:
        return "host" if self.role == "guest" else "guest"

    def channel(self, phase: str) -> PhaseChannel:
        return PhaseChannel(self.transport, self.job_id, phase)

    def event(self, kind: str, **fields: Any) -> None:
        """Report progress (`vflchain run` shows it); a no-op in unit tests."""
        if self.events is not None:
            self.events({"event": kind, "role": self.role, **fields})

    def next_round(self) -> int:
        """Round numbers are job-wide, start at 1 and only go forward (same on both sides)."""
        with self._lock:
            return next(self._round)

    def continue_rounds(self, after: int) -> None:
        """A resumed job: the next round is `after` + 1 (rounds on chain only go forward)."""
        with self._lock:
            self._round = itertools.count(after + 1)

    def mark_resume_point(self, extra: Mapping[str, Any] | None = None) -> None:
        """Add `resume_base` (+ `extra`) to the last committed round's checkpoint: a restarted party
        continues from there once both parties' commitments of that round are attested on chain."""
        if not self.last_committed:
            return
        name = f"checkpoints/round-{self.last_committed:04d}.json"
        cp = self.rundir.read_json(name)
        cp["resume"] = jsonable({**self.resume_base, **(extra or {})})
        self.rundir.write_json(name, cp)

    def commit_round(self, round_no: int, phase: str, params: Mapping[str, Any],
                     loss: float | None = None, resume: Mapping[str, Any] | None = None) -> None:
        """Checkpoint own parameters, commit to them and to the round's transcript on chain.

        The commitment is bound to the session, this round, this party and `phase`
        (chain.commitment.round_commitment). Writes checkpoints/round-NNNN.json (with the
        salt) now, and a line of rounds.jsonl once the transaction is mined. Call after the round's last message was sent or
        received. With `background_commits` the transaction is posted by a background
        thread (in round order) and this returns at once; a failed post is raised by the
        next `commit_round` or by `flush_rounds` (the job runner calls it after every phase).
        `resume`: the phase's state to continue from this round after a kill (kept in the
        checkpoint with `resume_base`, not committed).
        """
        com = checkpoint_round(self.rundir, (self.binding or SessionBinding.unanchored(self.role)),
                               round_no, phase, params,
                               None if resume is None else {**self.resume_base, **resume})
        self.last_committed = round_no
        digest = self.agree_manifest(round_no, phase) if self.round_manifests else self.transcript.digest(round_no)
        if not self.background_commits:
            self._post_round(round_no, phase, com, digest, loss)
            return
        self._raise_failed_post()
        with self._lock:
            if self._poster is None:
                self._poster = ThreadPoolExecutor(max_workers=1, thread_name_prefix="round-commits")
            self._posts.append(self._poster.submit(self._post_round, round_no, phase, com, digest, loss))

    def agree_manifest(self, round_no: int, phase: str) -> str:
        """A round of a job with N >= 2 hosts, whose hosts each see only their own messages: the guest
        sends every host the round's manifest (chain.transcript.manifest_lines of all its links), each
        host checks that its own messages are all in it, and every party posts the manifest's digest,
        so the round is attested only if the guest showed every host the same round. Each party keeps
        the manifest in manifests.jsonl (the audit recomputes the digest from it). Returns the digest."""
        own = manifest_lines(list(self.transcript.entries), round_no)
        if self.role == "guest":
            lines = own
            for link in (self.peer_links or {}).values():
                PhaseChannel(link.transport, self.job_id, phase).send(MANIFEST_TAG, {"lines": lines}, round=round_no)
        else:
            msg = self.channel(phase).recv(MANIFEST_TAG, round=round_no, timeout=float(self.config.lr.step_timeout))
            lines = msg.get("lines")
            if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
                raise TransportError(f"the guest's manifest of round {round_no} ({phase}) is malformed")
            missing = set(own) - set(lines)
            if missing:
                raise NodeError(f"the guest's record of round {round_no} ({phase}) leaves out {len(missing)} of "
                                f"the {self.role}'s messages")
        self.rundir.append_jsonl("manifests.jsonl", {"round": round_no, "phase": phase, "lines": sorted(lines)})
        return manifest_digest(lines)

    def flush_rounds(self) -> None:
        """Wait until every round commitment asked for is on chain; raises the first failed post."""
        with self._lock:
            posts, self._posts = self._posts, []
        for f in posts:
            f.result()

    def settle_rounds(self, timeout: float) -> None:
        """Wait (at most `timeout` s) for the round commitments still being posted, ignoring their failures:
        after a failure, so that rounds.jsonl lists every round that did reach the chain."""
        with self._lock:
            posts, self._posts = self._posts, []
        if posts:
            wait(posts, timeout=timeout)

    def _raise_failed_post(self) -> None:
        with self._lock:
            done = [f for f in self._posts if f.done()]
            self._posts = [f for f in self._posts if not f.done()]
        for f in done:
            f.result()

    def _post_round(self, round_no: int, phase: str, com: bytes, digest: str, loss: float | None) -> None:
        post_round(self.anchor, self.rundir, round_no, phase, com, digest, loss if self.role == "guest" else None,
                   self.event)


def checkpoint_round(rundir: RunDir, binding: SessionBinding, round_no: int, phase: str,
                     params: Mapping[str, Any], resume: Mapping[str, Any] | None = None) -> bytes:
    """Write checkpoints/round-NNNN.json (params and a fresh salt; `resume`: what a restarted party
    continues from, not committed); returns the round's commitment, bound to the session, this
    round, the party and `phase` (chain.commitment.round_commitment)."""
    salt = new_salt()
    com = round_commitment(binding.at(round_no, phase), salt, params)
    doc: dict[str, Any] = {"round": round_no, "phase": phase, "salt": "0x" + salt.hex(), "params": jsonable(params)}
    if resume is not None:
        doc["resume"] = jsonable(resume)
    rundir.write_json(f"checkpoints/round-{round_no:04d}.json", doc)
    return com


def post_round(anchor: ChainAnchor, rundir: RunDir, round_no: int, phase: str, com: bytes, digest: str,
               loss: float | None, event: Callable[..., None]) -> dict[str, Any]:
    """Post a checkpointed round on chain (its commitment and transcript digest), then record it in
    rounds.jsonl and report it; returns the rounds.jsonl line. Every job's rounds end here."""
    tx = anchor.submit_round(round_no, com, bytes.fromhex(digest[2:]))
    line = record_round(rundir, round_no, phase, loss, com, digest, tx)
    event("round", round=round_no, phase=phase, loss=line["loss"], tx_hash=tx)
    return line


def record_round(rundir: RunDir, round_no: int, phase: str, loss: float | None, com: bytes, digest: str,
                 tx: str) -> dict[str, Any]:
    """Append the round's rounds.jsonl line once its transaction is mined; returns the line."""
    line = {"round": round_no, "phase": phase, "loss": loss, "commitment": "0x" + com.hex(),
            "transcript_digest": digest, "tx_hash": tx}
    rundir.append_jsonl("rounds.jsonl", line)
    return line


def jsonable(value: Any) -> Any:
    """Arrays and mappings of them as plain JSON values (what a checkpoint file holds)."""
    if hasattr(value, "tolist") and not isinstance(value, list | str | bytes):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
