"""Message transport between the two parties.

`Channel` is the interface every protocol phase uses; `MemoryTransport` (unit
tests) and the gRPC transport (real runs) implement it. Every message goes
through `codec` (never pickle) and is recorded in the party's transcript.
"""

import os

# gRPC's C core logs INFO lines (e.g. every failed TLS handshake) to stderr unless told otherwise.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from nodes.transport.base import Address, Channel, Payload, PhaseChannel, TransportError
from nodes.transport.codec import decode_message, encode_message
from nodes.transport.memory import MemoryTransport, memory_pair

__all__ = [
    "Address",
    "Channel",
    "MemoryTransport",
    "Payload",
    "PhaseChannel",
    "TransportError",
    "decode_message",
    "encode_message",
    "memory_pair",
]
