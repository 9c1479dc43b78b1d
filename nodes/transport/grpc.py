"""The network transport: gRPC between the two nodes, raw message bytes, optional mutual TLS.

Each node serves one gRPC service on its own address and calls the same
service on the peer. No protobuf code generation: the methods carry raw bytes.

    /vflchain.transport.v1.Peer/Deliver   request: one message (nodes.transport.codec), response: b""
    /vflchain.transport.v1.Peer/Ping      request/response: small JSON (role, job, closing)
    /vflchain.transport.v1.Peer/Bye       request: JSON {"from", "job", "error"}: the peer is leaving

`Deliver` is idempotent: a message re-sent to the same address with the same
bytes is acknowledged again and stored once, so the sender retries on
UNAVAILABLE/DEADLINE_EXCEEDED. The receiver keeps arrived messages in a mailbox
keyed by address until a `recv` takes them. It refuses (and fails its own
pending `recv` with the reason): a malformed header, a sender that is not the
peer's role, another job, different content at an address already used, a
message for a round the receiver has already moved past (out of order), and a
flood: more than `max_pending` unread messages or `max_pending_bytes` of them.
A message over `max_message_bytes` is refused by gRPC before it is read (and by
the sender before it is sent), so an authenticated peer cannot exhaust memory.
While waiting in `recv` the receiver pings the peer; a peer that stays
unreachable for `liveness_grace` seconds is reported as disconnected. With
`capture` set, every accepted message's raw bytes are also written to
`<capture>/<role>/<round:04d>-<phase>-<tag>.bin` (what this node received, for
audits and the attack tests; decode with `nodes.transport.codec`). See
docs/transport.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from nodes.errors import ConfigError
from nodes.transcript import Transcript
from nodes.transport.base import Address, Payload, TransportError
from nodes.transport.codec import (
    decode_header,
    decode_message,
    encode_message,
    keyring,
    message_address,
)
from nodes.transport.tls import (
    TlsMaterial,
    cert_fingerprint,
    check_plaintext_allowed,
    split_host_port,
)
from vfl.paillier import PublicKey

SERVICE = "vflchain.transport.v1.Peer"
HANDSHAKE_PHASE = "handshake"  # the phase whose first message binds a waiting node to a job
GRPC_MAX_BYTES = (1 << 31) - 1  # gRPC's own ceiling on a message
# Defaults of [transport] max_message_bytes / max_pending / max_pending_bytes (docs/transport.md):
# the largest legitimate message of a 100k-row job at 2048 bits (512-byte ciphertexts) is GMM's
# responsibilities, (K - 1) or K x 100k ciphertexts = 102-154 MB at K = 3; 512 MiB fits K <= 10,
# or an LR full batch of 1M rows. Binning's label chunks (2.1 MB each, N / 4096 of them) are the most
# messages that can wait unread: 25 at 100k rows, 245 at 1M.
MAX_MESSAGE_BYTES = 512 * 2**20
MAX_PENDING = 1024
MAX_PENDING_BYTES = 2 * 2**30
MIN_MESSAGE_BYTES = 64 * 2**10  # below this even a handshake would not fit

_CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 0),  # we retry ourselves (idempotent Deliver)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def _tls_problem(exc: grpc.RpcError) -> bool:
    """A connection failure caused by TLS (bad or untrusted certificate), not by a dead peer."""
    if not hasattr(exc, "code") or exc.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    d = (exc.details() or "").lower()
    return any(w in d for w in ("ssl", "handshake failed", "certificate", "tls", "x509"))


def _too_big(exc: grpc.RpcError) -> bool:
    """gRPC's refusal of a message over the receiver's max_receive_message_length."""
    return (hasattr(exc, "code") and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            and "larger than max" in (exc.details() or ""))


def check_limits(max_message_bytes: int, max_pending: int, max_pending_bytes: int) -> None:
    """ConfigError naming the [transport] key whose value is out of range."""
    if not MIN_MESSAGE_BYTES <= max_message_bytes <= GRPC_MAX_BYTES:
        raise ConfigError(f"[transport] max_message_bytes must be between {MIN_MESSAGE_BYTES} and "
                          f"{GRPC_MAX_BYTES} (gRPC's limit), got {max_message_bytes}")
    if max_pending < 1:
        raise ConfigError(f"[transport] max_pending must be >= 1, got {max_pending}")
    if max_pending_bytes < max_message_bytes:
        raise ConfigError(f"[transport] max_pending_bytes ({max_pending_bytes}) must be >= "
                          f"max_message_bytes ({max_message_bytes})")


def _json(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _serve(role: str, listen: str, tls: TlsMaterial | None, max_message_bytes: int,
           methods: dict[str, Callable[[bytes, grpc.ServicerContext], bytes]]) -> tuple[grpc.Server, int]:
    """A started gRPC server on `listen` with the service's `methods`; (server, port)."""
    # gRPC refuses a larger message before it reaches us (the sender sees RESOURCE_EXHAUSTED)
    limits = [("grpc.max_receive_message_length", max_message_bytes),
              ("grpc.max_send_message_length", GRPC_MAX_BYTES)]
    server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"{role}-rpc"),
                         options=[*_CHANNEL_OPTIONS, *limits, ("grpc.so_reuseport", 0)])  # a used port is an error
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in methods.items()})])
    host, port = split_host_port(listen)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is not None:
            creds = grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca,
                                                require_client_auth=True)
            bound = server.add_secure_port(bind, creds)
        else:
            bound = server.add_insecure_port(bind)
    except RuntimeError as exc:
        raise TransportError(f"{role} cannot listen on {listen}: {exc}") from None
    if not bound:
        raise TransportError(f"{role} cannot listen on {listen} (address in use?)")
    server.start()
    return server, bound


class LinkServer:
    """One listening address for several links of a node (the guest of N hosts): each call is handed
    to the link of the role that sent it (a message's header, a ping's or bye's "from"); a sender
    with no link here is refused. Each link keeps its own mailbox, job, TLS binding and checks."""

    def __init__(self, role: str, listen: str, tls: TlsMaterial | None, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.role, self.listen = role, listen
        self.links: dict[str, GrpcTransport] = {}
        self._server, self.port = _serve(role, listen, tls, max_message_bytes, {
            "Deliver": self._on_deliver, "Ping": self._on_ping, "Bye": self._on_bye})

    def add(self, link: GrpcTransport) -> None:
        self.links[link.peer] = link

    def _on_deliver(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            header, _ = decode_header(request)
        except TransportError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        link = self.links.get(str(header.get("sender")))
        if link is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{self.role} accepts messages from the "
                          f"{', '.join(self.links)} only, not from {header.get('sender')!r}")
        return link._on_deliver(request, context)

    def _on_ping(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        link = self.links.get(str(_json(request).get("from"))) or next(iter(self.links.values()), None)
        if link is None:
            return json.dumps({"role": self.role, "job": "", "closing": False}).encode()
        return link._on_ping(request, context)

    def _on_bye(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        link = self.links.get(str(_json(request).get("from")))
        return link._on_bye(request, context) if link is not None else b""

    def stop(self) -> None:
        self._server.stop(grace=0.5).wait(2.0)


class GrpcTransport:
    """One party's end of the network link (implements `Channel`)."""

    def __init__(self, role: str, peer: str, listen: str, peer_address: str, *,
                 transcript: Transcript | None = None, keys: Iterable[PublicKey] = (),
                 tls: TlsMaterial | None = None, job: str | None = None, timeout: float = 120.0,
                 retries: int = 5, liveness_interval: float = 1.0, liveness_grace: float = 5.0,
                 capture: str | Path | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 max_pending: int = MAX_PENDING, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        if not role or not peer or role == peer:  # guest/host; coordinator/clientK in horizontal jobs
            raise ValueError(f"bad roles {role!r}/{peer!r}")
        check_limits(max_message_bytes, max_pending, max_pending_bytes)
        if tls is None:
            check_plaintext_allowed(listen, peer_address)
        split_host_port(listen)
        split_host_port(peer_address)
        self.role, self.peer = role, peer
        self.listen_address, self.peer_address = listen, peer_address
        self.transcript = transcript or Transcript()
        self.keys = keyring(*keys)
        self.tls = tls
        self.job = job
        self.default_timeout = timeout
        self.retries = retries
        self.liveness_interval = liveness_interval
        self.liveness_grace = liveness_grace
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._cond = threading.Condition()
        self._mailbox: dict[Address, bytes] = {}
        self._pending_bytes = 0
        self._consumed: dict[Address, str] = {}
        self._low_round = 0
        self._lost = False
        self._fatal: str | None = None
        self._peer_gone: str | None = None
        self._closed = False
        self._server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None
        self.port = 0
        self.tap: Callable[[str, Address, bytes], None] | None = None  # sees every sent message's bytes
        self.capture = Path(capture) / role if capture else None  # received messages' bytes go here
        # the certificates of the mutual-TLS link ("" without TLS): the own one, and the one the peer's
        # messages of this job arrive with (fixed by its first message; nodes.identity binds proofs to both)
        self.own_tls_fingerprint = cert_fingerprint(tls.cert) if tls is not None else ""
        self._peer_tls: str | None = None
        self.refused_jobs: set[str] = set()  # jobs this node refused: their late messages bind it to nothing

    # -- lifecycle ---------------------------------------------------------------

    def start(self, server: LinkServer | None = None) -> GrpcTransport:
        """Listen on the own address (or on `server`, shared with this node's other links) and open
        the channel to the peer."""
        limits = [("grpc.max_receive_message_length", self.max_message_bytes),
                  ("grpc.max_send_message_length", GRPC_MAX_BYTES)]  # send() checks our own limit itself
        if server is not None:
            server.add(self)
            self.port = server.port
        else:
            self._server, self.port = _serve(self.role, self.listen_address, self.tls, self.max_message_bytes, {
                "Deliver": self._on_deliver, "Ping": self._on_ping, "Bye": self._on_bye})
        if self.tls is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=self.tls.ca, private_key=self.tls.key,
                                                 certificate_chain=self.tls.cert)
            self._channel = grpc.secure_channel(self.peer_address, creds, options=[*_CHANNEL_OPTIONS, *limits])
        else:
            self._channel = grpc.insecure_channel(self.peer_address, options=[*_CHANNEL_OPTIONS, *limits])
        self._deliver_rpc = self._channel.unary_unary(f"/{SERVICE}/Deliver")
        self._ping_rpc = self._channel.unary_unary(f"/{SERVICE}/Ping")
        self._bye_rpc = self._channel.unary_unary(f"/{SERVICE}/Bye")
        return self

    def connect(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the peer's node answers as the expected role; returns its ping answer."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if self._peer_gone is not None:
                raise TransportError(f"{self._peer_gone} before {self.role} could connect")
            try:
                ans = self._ping(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            except grpc.RpcError as exc:
                last = self._describe(exc)
                if _tls_problem(exc):
                    raise TransportError(f"TLS handshake with {self.peer} at {self.peer_address} failed: {last}") from None
                if time.monotonic() >= deadline:
                    hint = ""
                    if self.tls is not None and "socket closed" in last.lower():
                        hint = f" (the {self.peer} closed the TLS connection: does it trust this node's certificate?)"
                    raise TransportError(f"{self.peer} unreachable at {self.peer_address} after {timeout:g}s: "
                                         f"{last}{hint}") from None
                time.sleep(0.2)
                continue
            if ans.get("role") != self.peer:
                raise TransportError(f"the node at {self.peer_address} is a {ans.get('role') or 'stranger'}, "
                                     f"expected the {self.peer}")
            if self.job and ans.get("job") and ans["job"] != self.job:
                raise TransportError(f"{self.peer} at {self.peer_address} is busy with job {ans['job']}")
            return ans

    def close(self, error: str | None = None) -> None:
        """Tell the peer we are leaving (with our error if we failed), stop serving."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._channel is not None:
            try:
                body = json.dumps({"from": self.role, "job": self.job or "", "error": error}).encode()
                self._bye_rpc(body, timeout=2.0)
            except grpc.RpcError:
                pass
            self._channel.close()
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2.0)

    def __enter__(self) -> GrpcTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def peer_tls_fingerprint(self) -> str:
        """SHA-256 of the certificate the peer's messages of this job came with ("" without TLS or yet)."""
        with self._cond:
            return self._peer_tls or ""

    def trust(self, key: PublicKey) -> None:
        """Accept ciphertexts under `key` in received messages."""
        self.keys[key.fingerprint.hex()] = key

    # -- server side -------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        with self._cond:
            if self._fatal is None:
                self._fatal = reason
            self._cond.notify_all()

    def _on_deliver(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            header, _ = decode_header(request)
        except TransportError as exc:
            self._fail(f"{self.peer} sent a malformed message: {exc}")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        addr = message_address(header)
        sender = header["sender"]
        if sender != self.peer:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{self.role} accepts messages from the {self.peer} only, not from {sender!r}")
        digest = hashlib.sha256(request).hexdigest()
        peer_tls = ""
        if self.tls is not None:
            pems = context.auth_context().get("x509_pem_cert") or [b""]
            peer_tls = cert_fingerprint(pems[0]) if pems[0] else ""
        refuse: str | None = None
        flood: str | None = None
        with self._cond:
            if self._closed:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.role} is closing")
            if self.job is None:
                if addr.phase != HANDSHAKE_PHASE:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"{self.role} is not in a job yet; expected a {HANDSHAKE_PHASE} message")
                if addr.job in self.refused_jobs:
                    context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{self.role} refused job {addr.job}")
                self.job = addr.job
            if addr.job != self.job:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"{self.role} runs job {self.job}, not {addr.job}")
            if self._peer_tls is None:
                self._peer_tls = peer_tls
            elif peer_tls != self._peer_tls:
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              f"{self.role} got this job's messages from another TLS certificate")
            if addr in self._mailbox or addr in self._consumed:
                old = self._consumed.get(addr) or hashlib.sha256(self._mailbox[addr]).hexdigest()
                if old == digest:
                    return b""  # an idempotent resend
                refuse = f"message {addr} sent twice with different content"
            elif addr.round < self._low_round:
                refuse = (f"message out of order: {addr} arrived after {self.role} "
                          f"had moved on to round {self._low_round}")
            elif len(self._mailbox) >= self.max_pending:
                flood = (f"{self.role} holds {len(self._mailbox)} unread messages, the most "
                         f"[transport] max_pending = {self.max_pending} allows")
            elif self._pending_bytes + len(request) > self.max_pending_bytes:
                flood = (f"{self.role} holds {self._pending_bytes} bytes of unread messages; {len(request)} more "
                         f"would pass [transport] max_pending_bytes = {self.max_pending_bytes}")
            else:
                self._mailbox[addr] = request
                self._pending_bytes += len(request)
                self.transcript.record("received", addr, sender, request)
                self._cond.notify_all()
                if self.capture is not None:
                    self._capture(addr, request)
        if refuse is not None:
            self._fail(f"{self.peer} sent a bad message: {refuse}")
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, refuse)
        if flood is not None:
            self._fail(f"{self.peer} sent too much: {addr} refused: {flood}")
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{addr} refused: {flood}")
        return b""

    def _capture(self, addr: Address, data: bytes) -> None:
        """Write a received message's raw bytes to `<capture>/<role>/<round:04d>-<phase>-<tag>.bin`."""
        assert self.capture is not None
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{addr.round:04d}-{addr.phase}-{addr.tag}") + ".bin"
        self.capture.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.capture / f".{name}.part"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(data)
        os.replace(tmp, self.capture / name)

    def peer_lost(self) -> bool:
        """Whether the peer vanished without a word (unreachable past the liveness grace or the
        delivery retries): a killed node; the job runner then leaves the session active (--resume)."""
        return self._lost

    def peer_failure(self) -> str | None:
        """What the peer said when it left ("host failed: ..."), or None while it is still here."""
        with self._cond:
            return self._peer_gone

    def _on_ping(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return json.dumps({"role": self.role, "job": self.job or "", "closing": self._closed}).encode()

    def _on_bye(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        msg = _json(request)
        # a node not in a job yet ignores the Bye of a job it never joined (a refused guest's, say)
        ours = msg.get("job") in ("", self.job) if self.job else not msg.get("job")
        if msg.get("from") == self.peer and ours:
            err = msg.get("error")
            with self._cond:
                self._peer_gone = f"{self.peer} failed: {err}" if err else f"{self.peer} disconnected"
                self._cond.notify_all()
        return b""

    # -- client side -------------------------------------------------------------

    def _describe(self, exc: grpc.RpcError) -> str:
        code = exc.code() if hasattr(exc, "code") else None
        details = (exc.details() if hasattr(exc, "details") else "") or ""
        name = code.name if code is not None else "ERROR"
        return f"{name}: {details.splitlines()[0] if details else 'no details'}"

    def _ping(self, timeout: float) -> dict[str, Any]:
        body = json.dumps({"from": self.role, "job": self.job or ""}).encode()
        return _json(self._ping_rpc(body, timeout=timeout))

    def send(self, address: Address, payload: Payload) -> None:
        """Deliver a message, retrying on unavailability; TransportError when it cannot."""
        if self._channel is None:
            raise TransportError("transport not started")
        if self.job is not None and address.job != self.job:
            raise TransportError(f"{self.role} runs job {self.job}, cannot send for job {address.job}")
        data = encode_message(address, self.role, payload)
        if len(data) > self.max_message_bytes:
            raise TransportError(f"message {address} is {len(data)} bytes, more than [transport] "
                                 f"max_message_bytes = {self.max_message_bytes}")
        delay, started = 0.2, time.monotonic()
        for attempt in range(self.retries + 1):
            self._raise_if_dead(address, sending=True)
            try:
                self._deliver_rpc(data, timeout=self.default_timeout)
                break
            except grpc.RpcError as exc:
                desc = self._describe(exc)
                code = exc.code() if hasattr(exc, "code") else None
                if _tls_problem(exc):
                    raise TransportError(f"TLS handshake with {self.peer} at {self.peer_address} failed: {desc}") from None
                if _too_big(exc):
                    raise TransportError(f"{self.peer} refused message {address}: {len(data)} bytes is more than "
                                         f"its [transport] max_message_bytes ({desc})") from None
                if code not in _RETRYABLE:
                    raise TransportError(f"{self.peer} refused message {address}: {desc}") from None
                if attempt == self.retries:
                    self._lost = True
                    raise TransportError(
                        f"{self.peer} unreachable at {self.peer_address}: could not deliver {address} "
                        f"in {attempt + 1} attempts over {time.monotonic() - started:.1f}s ({desc})") from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.transcript.record("sent", address, self.role, data)
        if self.tap is not None:
            self.tap(self.role, address, data)

    def _raise_if_dead(self, address: Address, sending: bool = False) -> None:
        what = f"sending {address}" if sending else f"waiting for {address}"
        if self._fatal is not None:
            raise TransportError(self._fatal)
        if self._peer_gone is not None:
            raise TransportError(f"{self._peer_gone} while {self.role} was {what}")
        if self._closed:
            raise TransportError(f"{self.role}'s transport is closed")

    def recv(self, address: Address, timeout: float | None = None) -> Payload:
        """Wait for the peer's message at `address`; TransportError on timeout, disconnect or bad data."""
        timeout = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        next_probe = time.monotonic() + self.liveness_interval
        unreachable_since: float | None = None
        while True:
            with self._cond:
                if address in self._mailbox:
                    data = self._mailbox.pop(address)
                    self._pending_bytes -= len(data)
                    self._consumed[address] = hashlib.sha256(data).hexdigest()
                    self._low_round = max(self._low_round, address.round)
                    break
                self._raise_if_dead(address)
                now = time.monotonic()
                if now >= deadline:
                    raise TransportError(f"timed out after {timeout:g}s waiting for {address} from {self.peer}")
                self._cond.wait(max(0.0, min(deadline, next_probe) - now))
                if address in self._mailbox:
                    continue
            now = time.monotonic()
            if now >= next_probe:
                next_probe = now + self.liveness_interval
                try:
                    self._ping(timeout=max(1.0, self.liveness_interval * 2))
                    unreachable_since = None
                except grpc.RpcError as exc:
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since >= self.liveness_grace:
                        self._lost = True
                        raise TransportError(
                            f"{self.peer} disconnected: unreachable at {self.peer_address} for "
                            f"{now - unreachable_since:.0f}s while {self.role} waited for {address} "
                            f"({self._describe(exc)})") from None
        got, sender, payload = decode_message(data, self.keys)
        if got != address or sender != self.peer:  # pragma: no cover - the mailbox is keyed by header
            raise TransportError(f"message out of order: expected {address}, got {got} from {sender}")
        return payload

    def accept_job(self, timeout: float | None = None) -> str:
        """Wait until the peer's first handshake message binds this node to a job; returns its id."""
        timeout = self.default_timeout if timeout is None else timeout
        with self._cond:
            ok = self._cond.wait_for(lambda: self.job is not None or self._closed or self._fatal is not None,
                                     timeout=timeout)
            if self._fatal is not None:
                raise TransportError(self._fatal)
            if not ok or self.job is None:
                raise TransportError(f"no {self.peer} contacted this {self.role} node at "
                                     f"{self.listen_address} within {timeout:g}s")
            return self.job
