"""The per-round transcript digest posted on chain (one implementation, shared).

A transcript entry records one message by hash, never by content:
    {"round", "phase", "tag", "direction": "sent"|"received", "sender", "size", "sha256"}
A round's digest is SHA-256 over the round's entries in a canonical, direction-free
form (sorted lines "phase|round|tag|sender|size|sha256"), so the guest and the host
compute the same digest from their own records, and an auditor recomputes it from
either party's `transcript.jsonl`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any


def canonical_line(e: Mapping[str, Any]) -> str:
    return f"{e['phase']}|{e['round']}|{e['tag']}|{e['sender']}|{e['size']}|{e['sha256']}"


def round_digest(entries: Iterable[Mapping[str, Any]], round_no: int) -> str:
    """0x-prefixed hex SHA-256 digest of one round's messages (same for both parties)."""
    lines = sorted(canonical_line(e) for e in entries if e["round"] == round_no)
    return "0x" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


# -- N-party rounds (horizontal jobs): the coordinator's manifest ---------------------
MANIFEST_TAG = "manifest"  # the message carrying the manifest is not part of it


def manifest_lines(entries: Iterable[Mapping[str, Any]], round_no: int) -> list[str]:
    """One round's canonical lines as a party saw them, broadcast duplicates merged, manifest excluded."""
    return sorted({canonical_line(e) for e in entries if e["round"] == round_no and e["tag"] != MANIFEST_TAG})


def manifest_digest(lines: Iterable[str]) -> str:
    """0x-prefixed hex SHA-256 of a round's manifest (the digest every party of a horizontal round posts)."""
    return "0x" + hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
