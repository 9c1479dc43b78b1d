"""Communication cost of a job, derived from one party's transcript (never from counters in the phases).

Every message a party sends or receives is already a `transcript.jsonl` line (`nodes.transcript`:
round, phase, tag, direction, sender, size in bytes of its encoded form, time). `summarize` adds
them up; `write_communication` writes the result as `communication.json` in the party's run
directory at the end of every job (vertical guest and hosts, horizontal coordinator and clients).
The guest's (coordinator's) `metrics.json` names that file under `"communication"`.

    {"role", "source": "transcript.jsonl",
     "totals": {sent_bytes, received_bytes, sent_messages, received_messages, seconds},
     "phases": {phase: {the same counts, "rounds": [first, last], "seconds"}},   # in order of first use
     "rounds": [{"round", "phase", the same counts}],
     "peers": {sender: {"received_bytes", "received_messages"}}}                 # who sent this party what

Sizes are the bytes of each message's encoded payload (`nodes.transport.codec`), which is what
the transcript hashes; TLS and gRPC framing are not counted.

Time per phase: messages are taken in the order of their `time`; the time from one message to
the next is attributed to the phase of the later one. A phase's `seconds` is therefore the wall
time from the previous phase's last message to its own last message: the local work a party
does after a phase's last message (writing its outputs, drawing nothing: pictures are drawn in
the background) counts in the next phase. The first message's phase starts at 0. Transcripts
written before messages carried a time give `seconds: null`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nodes.rundir import RunDir
from nodes.transcript import Transcript

COMMUNICATION_FILE = "communication.json"
COUNTS = ("sent_bytes", "received_bytes", "sent_messages", "received_messages")


def _zero() -> dict[str, Any]:
    return dict.fromkeys(COUNTS, 0)


def _add(acc: dict[str, Any], entry: Mapping[str, Any]) -> None:
    way = "sent" if entry["direction"] == "sent" else "received"
    acc[f"{way}_bytes"] += int(entry["size"])
    acc[f"{way}_messages"] += 1


def _readable(e: Any) -> bool:
    """An entry with the fields counted (an audit summarizes files it has not trusted yet)."""
    try:
        return (isinstance(e, Mapping) and e["direction"] in ("sent", "received") and int(e["size"]) >= 0
                and int(e["round"]) >= 0 and isinstance(e["phase"], str) and isinstance(e.get("sender", ""), str))
    except (KeyError, TypeError, ValueError):
        return False


def summarize(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Bytes and messages sent and received in total, per phase and per round, by sender, and the
    seconds per phase (module docstring), of one party's transcript entries (unreadable ones skipped)."""
    items = list(entries)
    totals = _zero()
    phases: dict[str, dict[str, Any]] = {}
    rounds: dict[int, dict[str, Any]] = {}
    peers: dict[str, dict[str, int]] = {}
    items = [e for e in items if _readable(e)]
    for e in items:
        _add(totals, e)
        ph = phases.setdefault(str(e["phase"]), {**_zero(), "rounds": [int(e["round"]), int(e["round"])],
                                                  "seconds": None})
        ph["rounds"] = [min(ph["rounds"][0], int(e["round"])), max(ph["rounds"][1], int(e["round"]))]
        _add(ph, e)
        rnd = rounds.setdefault(int(e["round"]), {"round": int(e["round"]), "phase": str(e["phase"]), **_zero()})
        _add(rnd, e)
        if e["direction"] != "sent":
            peer = peers.setdefault(str(e["sender"]), {"received_bytes": 0, "received_messages": 0})
            peer["received_bytes"] += int(e["size"])
            peer["received_messages"] += 1
    timed = [e for e in items if isinstance(e.get("time"), int | float)]
    totals["seconds"] = None
    if items and len(timed) == len(items):
        for ph in phases.values():
            ph["seconds"] = 0.0
        ordered = sorted(timed, key=lambda e: float(e["time"]))
        for prev, cur in zip(ordered, ordered[1:], strict=False):
            phases[str(cur["phase"])]["seconds"] += float(cur["time"]) - float(prev["time"])
        for ph in phases.values():
            ph["seconds"] = round(ph["seconds"], 3)
        totals["seconds"] = round(float(ordered[-1]["time"]) - float(ordered[0]["time"]), 3)
    return {"source": "transcript.jsonl", "totals": totals, "phases": phases,
            "rounds": [rounds[r] for r in sorted(rounds)], "peers": peers}


def write_communication(rundir: RunDir, role: str) -> dict[str, Any]:
    """communication.json from the party's transcript.jsonl (all of it, a resumed job's earlier runs too)."""
    path = rundir.file("transcript.jsonl")
    doc = {"role": role, **summarize(Transcript.load(path) if path.exists() else [])}
    rundir.write_json(COMMUNICATION_FILE, doc)
    return doc


def phase_rows(summary: Mapping[str, Any]) -> list[list[Any]]:
    """(phase, rounds, sent bytes, received bytes, messages sent, received, seconds) per phase, then the total."""
    rows = []
    for name, ph in summary.get("phases", {}).items():
        first, last = ph["rounds"]
        rows.append([name, str(first) if first == last else f"{first}-{last}", ph["sent_bytes"],
                     ph["received_bytes"], ph["sent_messages"], ph["received_messages"],
                     "" if ph["seconds"] is None else f"{ph['seconds']:.3f}"])
    t = summary.get("totals", {})
    if t:
        rows.append(["total", "", t["sent_bytes"], t["received_bytes"], t["sent_messages"],
                     t["received_messages"], "" if t.get("seconds") is None else f"{t['seconds']:.3f}"])
    return rows


PHASE_HEAD = ["phase", "rounds", "bytes sent", "bytes received", "messages sent", "messages received", "seconds"]
ROUND_HEAD = ["round", "phase", "bytes sent", "bytes received", "messages sent", "messages received"]


def round_rows(summary: Mapping[str, Any]) -> list[list[Any]]:
    return [[r["round"], r["phase"], r["sent_bytes"], r["received_bytes"], r["sent_messages"], r["received_messages"]]
            for r in summary.get("rounds", [])]
