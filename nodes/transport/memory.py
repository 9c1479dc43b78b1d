"""An in-process transport with the same interface and wire format as the gRPC one.

For unit tests: two `MemoryTransport`s share a mailbox; every message is
encoded to bytes, recorded in both transcripts and decoded on receipt, exactly
as over the network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from nodes.transcript import Transcript
from nodes.transport.base import Address, Payload, TransportError
from nodes.transport.codec import decode_message, encode_message, keyring
from vfl.paillier import PublicKey


class _Mailbox:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.boxes: dict[str, dict[Address, bytes]] = {"guest": {}, "host": {}}
        self.closed: dict[str, str | None] = {}  # role -> its error, if it failed
        self.job: str | None = None


class MemoryTransport:
    """One party's end of an in-memory link."""

    def __init__(self, role: str, peer: str, mailbox: _Mailbox, transcript: Transcript | None = None,
                 keys: Iterable[PublicKey] = (), default_timeout: float = 60.0) -> None:
        self.role, self.peer = role, peer
        self._mb = mailbox
        self.transcript = transcript or Transcript()
        self.keys = keyring(*keys)
        self.default_timeout = default_timeout
        self.tap: Callable[[str, Address, bytes], None] | None = None  # sees every sent message's bytes

    def trust(self, key: PublicKey) -> None:
        """Accept ciphertexts under `key` in received messages."""
        self.keys[key.fingerprint.hex()] = key

    def peer_failure(self) -> str | None:
        """What the peer said when it left ("host failed: ..."), or None while it is still here."""
        with self._mb.cond:
            return self._gone() if self.peer in self._mb.closed else None

    def _gone(self) -> str:
        err = self._mb.closed.get(self.peer)
        return f"{self.peer} failed: {err}" if err else f"{self.peer} disconnected"

    def send(self, address: Address, payload: Payload) -> None:
        data = encode_message(address, self.role, payload)
        with self._mb.cond:
            if self.peer in self._mb.closed:
                raise TransportError(f"{self._gone()} while {self.role} was sending {address}")
            if self._mb.job is None:
                self._mb.job = address.job
            box = self._mb.boxes[self.peer]
            if address in box:
                if box[address] == data:
                    return  # idempotent resend
                raise TransportError(f"message {address} sent twice with different content")
            box[address] = data
            self._mb.cond.notify_all()
        self.transcript.record("sent", address, self.role, data)
        if self.tap is not None:
            self.tap(self.role, address, data)

    def recv(self, address: Address, timeout: float | None = None) -> Payload:
        timeout = self.default_timeout if timeout is None else timeout
        with self._mb.cond:
            box = self._mb.boxes[self.role]
            ok = self._mb.cond.wait_for(
                lambda: address in box or self.peer in self._mb.closed, timeout=timeout)
            if address not in box:
                if self.peer in self._mb.closed:
                    raise TransportError(f"{self._gone()} while {self.role} was waiting for {address}")
                if not ok:
                    raise TransportError(f"timed out after {timeout:g}s waiting for {address} from {self.peer}")
            data = box.pop(address)
        self.transcript.record("received", address, self.peer, data)
        got, sender, payload = decode_message(data, self.keys)
        if got != address or sender != self.peer:
            raise TransportError(f"message out of order: expected {address}, got {got} from {sender}")
        return payload

    def accept_job(self, timeout: float | None = None) -> str:
        """Wait for the peer's first message and return its job id (as the gRPC transport does)."""
        timeout = self.default_timeout if timeout is None else timeout
        with self._mb.cond:
            if not self._mb.cond.wait_for(lambda: self._mb.job is not None, timeout=timeout):
                raise TransportError(f"no {self.peer} contacted this {self.role} within {timeout:g}s")
            return self._mb.job  # type: ignore[return-value]

    def close(self, error: str | None = None) -> None:
        """Leave the link; the peer's pending and later calls fail, naming `error` if given."""
        with self._mb.cond:
            self._mb.closed.setdefault(self.role, error)
            self._mb.cond.notify_all()


def memory_pair(guest_transcript: Transcript | None = None, host_transcript: Transcript | None = None,
                keys: Iterable[PublicKey] = ()) -> tuple[MemoryTransport, MemoryTransport]:
    """A connected (guest, host) pair of in-memory transports."""
    mb = _Mailbox()
    keys = list(keys)
    return (MemoryTransport("guest", "host", mb, guest_transcript, keys),
            MemoryTransport("host", "guest", mb, host_transcript, keys))


def memory_link(role: str, peer: str, role_transcript: Transcript | None = None,
                peer_transcript: Transcript | None = None) -> tuple[MemoryTransport, MemoryTransport]:
    """A connected pair of in-memory transports between any two named roles (e.g. coordinator, client2)."""
    mb = _Mailbox()
    mb.boxes = {role: {}, peer: {}}
    return (MemoryTransport(role, peer, mb, role_transcript), MemoryTransport(peer, role, mb, peer_transcript))
