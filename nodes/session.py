"""What a phase works against: a `Session` (peers by name, own keys) and its rounds.

    session = Session(ctx)
    with session.round("intersection") as r:      # takes the next job-wide round number
        r.send("host", "psi_blind", {...})         # peers by name: "guest", "host" (host1..hostN
        msg = r.recv("host", "psi_blind")          #   with several hosts), "coordinator", "client1"..
        r.commit({"intersection_size": n})         # what this party commits to for the round

On a normal exit the round is committed (`PartyContext.commit_round`: checkpoint, salted
commitment, transcript digest, on chain). If the block raises, nothing is committed and every
peer that `r.peer_waits(name, tag)` declared as waiting on this party gets `{"abort": reason}`
under that tag, so it fails at once naming this party's error; the job runner then closes the
links and aborts the session on chain. A party that receives `{"abort": reason}` raises
`PeerAborted`, the one error type for "a peer stopped the job and said why".

The two-party jobs have one peer; the names are those of `nodes.algorithms` roles, so a phase
addresses several hosts by name once the runtime connects them (`Session.peers`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodes.errors import NodeError
from nodes.transport.base import PhaseChannel

if TYPE_CHECKING:
    from nodes.context import PartyContext
    from nodes.transport.base import Channel, Payload
    from vfl.paillier import PrivateKey, PublicKey

ABORT = "abort"  # the field of a message that says the sender stopped, and why


class PeerAborted(NodeError):
    """A peer stopped the job and said why (it sent `{"abort": reason}` where this party waited)."""

    def __init__(self, message: str, peer: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.peer = peer
        self.reason = reason


def raise_if_aborted(msg: dict[str, Any], peer: str, doing: str) -> None:
    """PeerAborted("the <peer> <doing>: <reason>") if `msg` is a peer's abort."""
    if ABORT in msg:
        reason = str(msg[ABORT])
        raise PeerAborted(f"the {peer} {doing}: {reason}", peer, reason)


def abort_reason(exc: BaseException) -> str:
    """An error as the one line sent to the peers."""
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass
class Round:
    """One round of a phase: messages to and from peers by name, what this party commits."""

    session: Session
    phase: str
    number: int
    doing: str  # how a peer's abort reads: "the host <doing>: <reason>"
    params: dict[str, Any] | None = None
    loss: float | None = None
    resume: dict[str, Any] | None = None
    waiting: dict[str, tuple[str, int]] = field(default_factory=dict)  # peer -> (tag, round) it waits on

    def send(self, peer: str, tag: str, payload: Payload) -> None:
        self.session.channel(peer, self.phase).send(tag, payload, round=self.number)
        if self.waiting.get(peer, ("", 0))[0] == tag:
            del self.waiting[peer]  # answered: an abort now would go unread

    def recv(self, peer: str, tag: str, timeout: float | None = None) -> Payload:
        """The peer's message `tag` of this round; PeerAborted if it stopped instead."""
        msg = self.session.channel(peer, self.phase).recv(tag, round=self.number, timeout=timeout)
        raise_if_aborted(msg, peer, self.doing)
        return msg

    def peer_waits(self, peer: str, tag: str, round_no: int | None = None) -> None:
        """`peer` waits for this party's `tag` (in this round, or `round_no`): an error goes there."""
        self.waiting[peer] = (tag, self.number if round_no is None else round_no)

    def commit(self, params: dict[str, Any], loss: float | None = None,
               resume: dict[str, Any] | None = None) -> None:
        """What this party commits to for the round (committed when the `with` block ends)."""
        self.params, self.loss, self.resume = params, loss, resume


@dataclass(frozen=True)
class PeerLink:
    """How this party reaches one peer: the link to it and the peer's public key (from the handshake)."""

    transport: Channel
    public_key: PublicKey | None


def as_session(party: PartyContext | Session) -> Session:
    """A phase's entry takes either: a `Session`, or (two-party callers) a context wrapped as `Session(ctx)`."""
    return party if isinstance(party, Session) else Session(party)


class Session:
    """One party's view of a job for its phases: who it is, its peers by name, its keys, rounds.

    `links` maps each peer's name to its `PeerLink`; by default the context's one peer (`ctx.peer`
    over `ctx.transport`, key `ctx.peer_key`). A guest of several hosts gets one link per host
    ("host1".."hostN") and addresses each by name; rounds stay job-wide (`ctx.next_round`).
    """

    def __init__(self, ctx: PartyContext, links: dict[str, PeerLink] | None = None) -> None:
        self.ctx = ctx
        if links is None:  # the runtime's links to several hosts, else the context's one peer
            links = ctx.peer_links or {str(ctx.peer): PeerLink(ctx.transport, ctx.peer_key)}
        self.links = links

    @property
    def role(self) -> str:
        return str(self.ctx.role)

    @property
    def peers(self) -> tuple[str, ...]:
        """The parties this one exchanges messages with, by name (two-party jobs: the other role)."""
        return tuple(self.links)

    @property
    def hosts(self) -> tuple[str, ...]:
        """A vertical job's hosts: the guest's peers (host, or host1..hostN); a host sees only itself."""
        return self.peers if self.role == "guest" else (self.role,)

    @property
    def multihost(self) -> bool:
        """A vertical job with several hosts (`host1`..`hostN`): the N-host steps of each protocol run."""
        return len(self.ctx.host_keys) > 1 or (self.role == "guest" and len(self.peers) > 1) or (
            self.role.startswith("host") and self.role != "host")

    @property
    def public_key(self) -> PublicKey:
        return self.ctx.public_key

    @property
    def private_key(self) -> PrivateKey:
        return self.ctx.private_key

    def peer_key(self, peer: str) -> PublicKey:
        """A peer's Paillier public key (from the handshake)."""
        key = self._link(peer).public_key
        if key is None:
            raise NodeError(f"the {self.role} does not have the {peer}'s public key")
        return key

    def channel(self, peer: str, phase: str) -> PhaseChannel:
        return PhaseChannel(self._link(peer).transport, self.ctx.job_id, phase)

    def _link(self, peer: str) -> PeerLink:
        if peer not in self.links:
            raise NodeError(f"the {self.role} has no peer {peer!r} in this job (peers: {', '.join(self.peers)})")
        return self.links[peer]

    @contextmanager
    def round(self, phase: str, doing: str = "stopped the job") -> Iterator[Round]:
        """The next round of `phase`: committed on exit; on an error the waiting peers are told."""
        r = Round(self, phase, self.ctx.next_round(), doing)
        try:
            yield r
        except BaseException as exc:
            if not isinstance(exc, PeerAborted):
                self.abort(r, abort_reason(exc))
            else:  # a guest of several hosts tells the others which host stopped
                r.waiting.pop(exc.peer, None)
                self.abort(r, abort_reason(exc))
            raise
        if r.params is None:
            raise NodeError(f"{phase}: round {r.number} ended without r.commit(...)")
        self.ctx.commit_round(r.number, phase, r.params, r.loss, r.resume)

    def abort(self, r: Round, reason: str) -> None:
        """Send `{"abort": reason}` to every peer waiting on this party (best effort: it may be gone)."""
        for peer, (tag, round_no) in list(r.waiting.items()):
            try:
                self.channel(peer, r.phase).send(tag, {ABORT: reason}, round=round_no)
            except Exception:  # noqa: BLE001 - the peer may have gone; this party's own error is what matters
                pass
        r.waiting.clear()
