"""Message transport between the two parties.

`Channel` is the interface every protocol phase uses; `MemoryTransport` (unit
tests) and the gRPC transport (real runs) implement it. Every message goes
through `codec` (never pickle) and is recorded in the party's transcript.
"""

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
