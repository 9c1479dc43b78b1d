"""The channel interface: messages addressed by (job, phase, round, tag)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from nodes.errors import NodeError

# A message payload: named fields, each a numpy array (numeric/bool), an
# EncryptedArray, bytes, or a JSON value (str, int, float, bool, None, list, dict).
Payload = dict[str, Any]


class TransportError(NodeError):
    """The peer is unreachable, disconnected, timed out, or sent something malformed."""


@dataclass(frozen=True, order=True)
class Address:
    """Where a message belongs in a job. Both sides must agree on it exactly."""

    job: str
    phase: str
    round: int
    tag: str

    def __str__(self) -> str:
        return f"{self.phase}/{self.round}/{self.tag}"


class Channel(Protocol):
    """One party's end of a two-party link."""

    role: str  # own role: "guest" | "host"
    peer: str  # the other party's role

    def send(self, address: Address, payload: Payload) -> None:
        """Deliver `payload` to the peer at `address` (idempotent for retries)."""

    def recv(self, address: Address, timeout: float | None = None) -> Payload:
        """Wait for the peer's message at `address` and return its decoded payload."""

    def accept_job(self, timeout: float | None = None) -> str:
        """(A node not yet in a job) wait for the peer's first handshake message; return its job id."""

    def close(self, error: str | None = None) -> None:
        """Release the link; the peer sees a disconnect (naming `error` if this party failed)."""


class PhaseChannel:
    """A channel bound to one job and phase: `send(tag, payload, round=r)`."""

    def __init__(self, channel: Channel, job: str, phase: str) -> None:
        self.channel = channel
        self.job = job
        self.phase = phase

    def address(self, tag: str, round: int) -> Address:
        return Address(self.job, self.phase, round, tag)

    def send(self, tag: str, payload: Payload, *, round: int = 0) -> None:
        self.channel.send(self.address(tag, round), payload)

    def recv(self, tag: str, *, round: int = 0, timeout: float | None = None) -> Payload:
        return self.channel.recv(self.address(tag, round), timeout=timeout)
