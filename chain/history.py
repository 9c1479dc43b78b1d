"""Rebuild the contract's state from its events alone.

An auditor needs nothing but the logs: `replay_session(client.events(sid))`
gives the same session, member and round records the view functions return
(the tests check exactly that), and `replay_registry(client.events())` the
participant registry and the admin. Events that contradict the contract's rules
(a round before the session is active, an attestation that does not match the
submissions, a session id not derived from its opener and label, an admin
handover nobody proposed) raise `HistoryError`: a log that cannot have come
from VflAudit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypedDict

from chain.errors import ChainError
from chain.sessions import session_id
from chain.types import AuditEvent, MemberInfo, ParticipantInfo, RoundInfo, RoundState, SessionInfo

ZERO_HASH = "0x" + "00" * 32
ZERO_ADDRESS = "0x" + "00" * 20


class HistoryError(ChainError):
    """The events do not form a history the contract could have produced."""


class SessionRecord(TypedDict):
    session: SessionInfo
    members: dict[str, MemberInfo]  # by participant address
    rounds: dict[int, dict[str, RoundInfo]]  # round -> party -> submission
    round_states: dict[int, RoundState]  # every round with a submission
    events: int  # how many events were replayed


class Registry(TypedDict):
    admin: str
    pending_admin: str | None  # proposed, not yet accepted
    participants: dict[str, ParticipantInfo]


ACTIVITY = ("SessionOpened", "SessionJoined", "RoundSubmitted", "PartyFinalized")  # what resets the idle clock


def replay_session(events: Iterable[AuditEvent], chain_id: int | None = None,
                   contract: str | None = None, timestamps: Mapping[int, int] | None = None) -> SessionRecord:
    """The state of one session after its events (in chain order). With the chain id and
    contract address, also check that the session id is the one its guest's label derives.
    `last_activity` is a block timestamp: taken from `timestamps` (block -> timestamp), 0 without."""
    info: SessionInfo | None = None
    members: dict[str, MemberInfo] = {}
    rounds: dict[int, dict[str, RoundInfo]] = {}
    states: dict[int, RoundState] = {}
    count = 0
    for ev in events:
        count += 1
        name, a = ev["event"], ev["args"]
        where = f"{name} in block {ev['block_number']}"
        if name == "SessionOpened":
            if info is not None:
                raise HistoryError(f"{where}: the session was already opened")
            if chain_id is not None and contract is not None:
                derived = "0x" + session_id(chain_id, contract, a["guest"], a["label"]).hex()
                if derived != a["sessionId"]:
                    raise HistoryError(f"{where}: session id {a['sessionId']} is not the id {derived} that "
                                       f"guest {a['guest']} and label {a['label']} give")
            info = {"session_id": a["sessionId"], "guest": a["guest"], "status": "opened",
                    "algorithm": a["algorithm"], "config_commitment": a["configCommitment"],
                    "participants": list(a["participants"]), "joined": 0, "finalized": 0,
                    "opened_block": ev["block_number"], "metrics_hash": ZERO_HASH,
                    "abort_reason": ZERO_HASH, "aborted_by": ZERO_ADDRESS,
                    "last_activity": _stamp(timestamps, ev), "timeout": int(a["timeout"])}
            members = {p: {"is_participant": True, "joined": False, "finalized": False, "last_round": 0,
                           "model_commitment": ZERO_HASH} for p in a["participants"]}
            continue
        if info is None:
            raise HistoryError(f"{where}: event before SessionOpened")
        if a.get("sessionId") != info["session_id"]:
            raise HistoryError(f"{where}: belongs to session {a.get('sessionId')}, not {info['session_id']}")
        party = a.get("party")
        if party is not None and party not in members:
            raise HistoryError(f"{where}: {party} is not a participant")
        if name in ACTIVITY:
            info["last_activity"] = _stamp(timestamps, ev)
        if name == "SessionJoined":
            _need(info, "opened", where)
            if members[party]["joined"]:
                raise HistoryError(f"{where}: {party} joined twice")
            members[party]["joined"] = True
            info["joined"] += 1
        elif name == "SessionActivated":
            _need(info, "opened", where)
            if info["joined"] != len(members):
                raise HistoryError(f"{where}: activated with {info['joined']} of {len(members)} joined")
            info["status"] = "active"
        elif name == "RoundSubmitted":
            _need(info, "active", where)
            r = int(a["round"])
            if r <= members[party]["last_round"]:
                raise HistoryError(f"{where}: round {r} after round {members[party]['last_round']}")
            members[party]["last_round"] = r
            rounds.setdefault(r, {})[party] = {"round": r, "party": party, "commitment": a["commitment"],
                                               "transcript_digest": a["transcriptDigest"]}
            states[r] = _state(rounds[r], len(members))
        elif name in ("RoundAttested", "RoundDisputed"):
            r = int(a["round"])
            expected = "attested" if name == "RoundAttested" else "disputed"
            if states.get(r) != expected:
                raise HistoryError(f"{where}: round {r} is {states.get(r, 'without submissions')}")
            if name == "RoundAttested" and any(s["transcript_digest"] != a["transcriptDigest"]
                                               for s in rounds[r].values()):
                raise HistoryError(f"{where}: attested digest differs from the submissions")
        elif name == "PartyFinalized":
            _need(info, "active", where)
            if members[party]["finalized"]:
                raise HistoryError(f"{where}: {party} finalized twice")
            members[party]["finalized"] = True
            members[party]["model_commitment"] = a["modelCommitment"]
            info["finalized"] += 1
            if party == info["guest"]:
                info["metrics_hash"] = a["metricsHash"]
        elif name == "SessionClosed":
            _need(info, "active", where)
            if info["finalized"] != len(members):
                raise HistoryError(f"{where}: closed with {info['finalized']} of {len(members)} finalized")
            info["status"] = "closed"
        elif name == "SessionAborted":
            if info["status"] not in ("opened", "active"):
                raise HistoryError(f"{where}: session already {info['status']}")
            info["status"] = "aborted"
            info["abort_reason"] = a["reasonHash"]
            info["aborted_by"] = party
        elif name == "SessionExpired":
            if info["status"] not in ("opened", "active"):
                raise HistoryError(f"{where}: session already {info['status']}")
            if timestamps is not None and int(a["lastActivity"]) != info["last_activity"]:
                raise HistoryError(f"{where}: last activity {a['lastActivity']}, but the events give "
                                   f"{info['last_activity']}")
            if timestamps is not None and timestamps[ev["block_number"]] <= int(a["lastActivity"]) + info["timeout"]:
                raise HistoryError(f"{where}: expired before its timeout of {info['timeout']} s")
            info["status"] = "expired"
            info["aborted_by"] = party
        else:
            raise HistoryError(f"{where}: not a session event")
    if info is None:
        raise HistoryError("no SessionOpened event: unknown session")
    return {"session": info, "members": members, "rounds": rounds, "round_states": states, "events": count}


def replay_registry(events: Iterable[AuditEvent]) -> Registry:
    """The admin and every registered participant, from the contract's events."""
    admin = ZERO_ADDRESS
    pending: str | None = None
    people: dict[str, ParticipantInfo] = {}
    for ev in events:
        a = ev["args"]
        where = f"{ev['event']} in block {ev['block_number']}"
        if ev["event"] == "AdminProposed":
            if a["admin"] != admin:
                raise HistoryError(f"{where}: proposed by {a['admin']}, but the admin was {admin}")
            pending = None if a["proposedAdmin"] == ZERO_ADDRESS else a["proposedAdmin"]
        elif ev["event"] == "AdminTransferred":
            if a["previousAdmin"] != admin:
                raise HistoryError(f"{where}: from {a['previousAdmin']}, but the admin was {admin}")
            if admin != ZERO_ADDRESS and a["newAdmin"] != pending:  # after the constructor: accepted proposals only
                raise HistoryError(f"{where}: to {a['newAdmin']}, but the proposed admin was {pending}")
            admin, pending = a["newAdmin"], None
        elif ev["event"] == "ParticipantRegistered":
            people[a["account"]] = {"address": a["account"], "role": a["role"], "organisation": a["organisation"],
                                    "revoked": False, "registered_block": ev["block_number"]}
        elif ev["event"] == "ParticipantRevoked":
            people[a["account"]]["revoked"] = True
    return {"admin": admin, "pending_admin": pending, "participants": people}


def _stamp(timestamps: Mapping[int, int] | None, ev: AuditEvent) -> int:
    return 0 if timestamps is None else int(timestamps[ev["block_number"]])


def _need(info: SessionInfo, status: str, where: str) -> None:
    if info["status"] != status:
        raise HistoryError(f"{where}: session is {info['status']}, not {status}")


def _state(subs: dict[str, RoundInfo], size: int) -> RoundState:
    if len(subs) < size:
        return "pending"
    return "attested" if len({s["transcript_digest"] for s in subs.values()}) == 1 else "disputed"
