"""The message transcript: what was sent and received, by hash, never by content.

Each entry is one JSON line in `transcript.jsonl`:
    {"round", "phase", "tag", "direction": "sent"|"received", "sender", "size", "sha256", "time"}
(`time`: Unix seconds when it was sent or received, to the millisecond; not part of any digest).
The per-round digest posted on chain is `chain.transcript.round_digest` (SHA-256
over the round's entries in a canonical, direction-free form), so the guest, the
host and an auditor compute the same digest from their own records.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

from chain.transcript import canonical_line, round_digest

if TYPE_CHECKING:  # nodes.transport imports this module
    from nodes.transport.base import Address

Direction = Literal["sent", "received"]
__all__ = ["Direction", "Transcript", "TranscriptEntry", "canonical_line", "round_digest"]


class TranscriptEntry(TypedDict):
    round: int
    phase: str
    tag: str
    direction: Direction
    sender: str
    size: int
    sha256: str
    time: NotRequired[float]  # absent in transcripts written before it was recorded


class Transcript:
    """Append-only record of one party's messages, mirrored to a JSONL file if given."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.entries: list[TranscriptEntry] = []
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def record(self, direction: Direction, address: Address, sender: str, data: bytes) -> TranscriptEntry:
        entry: TranscriptEntry = {
            "round": address.round,
            "phase": address.phase,
            "tag": address.tag,
            "direction": direction,
            "sender": sender,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "time": round(time.time(), 3),
        }
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry, sort_keys=True) + "\n")
        return entry

    def digest(self, round_no: int) -> str:
        with self._lock:
            return round_digest(list(self.entries), round_no)

    @staticmethod
    def load(path: Path) -> list[TranscriptEntry]:
        """Read a transcript file back (for audits)."""
        out: list[TranscriptEntry] = []
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    out.append(json.loads(line))
        return out
