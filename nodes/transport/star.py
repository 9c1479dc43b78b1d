"""The coordinator's side of a horizontal job: one two-party link per client, one transcript.

Each link is an ordinary `Channel` (gRPC, or in-memory in tests) between the
coordinator and one client; messages are addressed exactly as in two-party
jobs, plus which client they go to or come from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodes.transport.base import Address, Channel, Payload
from vfl.paillier import PublicKey


class StarTransport:
    """The coordinator's links, keyed by client role (client1..clientN)."""

    role = "coordinator"

    def __init__(self, links: Mapping[str, Channel]) -> None:
        self.links = dict(links)

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
