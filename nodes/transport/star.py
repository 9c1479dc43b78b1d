"""The hub of a star: the coordinator's links to its clients (horizontal jobs) or the guest's to its
hosts (a vertical job with N >= 2 hosts), one two-party link per spoke, one transcript.

Each link is an ordinary `Channel` (gRPC, or in-memory in tests) between the
hub and one spoke; messages are addressed exactly as in two-party jobs, plus
which spoke they go to or come from. The guest's gRPC links share one listening
address (`nodes.transport.grpc.LinkServer`, passed as `server`: stopped on close).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodes.transport.base import Address, Channel, Payload
from vfl.paillier import PublicKey


class StarTransport:
    """The hub's links, keyed by spoke role (client1..clientN, or host1..hostN)."""

    def __init__(self, links: Mapping[str, Channel], role: str = "coordinator", server: Any = None) -> None:
        self.links = dict(links)
        self.role = role
        self.server = server  # a shared listener (LinkServer) to stop after the links, or None

    @property
    def clients(self) -> list[str]:
        return list(self.links)

    def send(self, client: str, address: Address, payload: Payload) -> None:
        self.links[client].send(address, payload)

    def recv(self, client: str, address: Address, timeout: float | None = None) -> Payload:
        return self.links[client].recv(address, timeout=timeout)

    def connect(self, timeout: float) -> None:
        for link in self.links.values():
            connect = getattr(link, "connect", None)
            if connect is not None:
                connect(timeout)

    def trust(self, key: PublicKey) -> None:
        for link in self.links.values():
            trust: Any = getattr(link, "trust", None)
            if trust is not None:
                trust(key)

    def close(self, error: str | None = None) -> None:
        for link in self.links.values():
            link.close(error)
        if self.server is not None:
            self.server.stop()
            self.server = None


class HostLinks(StarTransport):
    """The guest's links to the hosts of a job with N >= 2 hosts. A lost host is not resumable: the
    guest's failure aborts the session for every party (no `peer_lost`, unlike a two-party link)."""

    def __init__(self, links: Mapping[str, Channel], server: Any = None) -> None:
        super().__init__(links, role="guest", server=server)

    def peer_failure(self) -> str | None:
        """The first host that left saying why ("host2 failed: ..."), or None."""
        for link in self.links.values():
            failure: Any = getattr(link, "peer_failure", None)
            said = failure() if callable(failure) else None
            if said:
                return str(said)
        return None
