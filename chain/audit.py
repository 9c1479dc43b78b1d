"""Audit: check a party's run directory against the chain's history of its session.

Pure logic over two inputs, so the same checks run on any chain:
- `PartyFiles`: what a party shows (job.json, rounds.jsonl, checkpoints, transcript,
  model and metrics files), read by `load_party_files` as raw bytes and parsed JSON;
- `SessionHistory`: the session rebuilt from the contract's events alone
  (`chain.history.replay_session`) plus each event's transaction and block.
`audit_party` and `audit_group` return typed `Check` results, one per thing proved,
each failure naming file, round, field, expected and found. `session_checks` is what
an auditor with no files can check. Nothing here talks to a node: `load_history`
reads the events through an `AuditClient`, the caller decides which chain.

Three kinds of run directory (`PartyFiles.kind`): "vertical" (guest + host training; with N >= 2
hosts, host1..hostN, and each round's digest is SHA-256 of the guest's manifest in manifests.jsonl),
"predict" (`vflchain predict`: the same two parties scoring with saved models; linked
to its training session by `training_link`) and "hfl" (a coordinator and N clients;
each round's digest is SHA-256 of the coordinator's manifest in manifests.jsonl).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak

from chain.commitment import (
    SALT_BYTES,
    TAG_METRICS,
    TAG_MODEL,
    Binding,
    bound_commitment,
    round_commitment,
)
from chain.errors import ChainError
from chain.history import (
    ZERO_HASH,
    HistoryError,
    Registry,
    SessionRecord,
    replay_registry,
    replay_session,
)
from chain.sessions import session_id, session_label
from chain.transcript import manifest_digest, manifest_lines, round_digest
from chain.types import AuditEvent

CHECKPOINT = re.compile(r"^round-(\d{4,})\.json$")
HFL_ALGORITHMS = ("hfl-lr",)
PREDICT_SUFFIX = "-predict"
COORDINATOR = "coordinator"
OPENERS = ("guest", COORDINATOR)  # the role that opens the session (the contract's "guest")
# the result files a party may show; the metrics hash is over the first present (nodes.job's order)
RESULT_FILES = ("model.json", "aggregates.json", "metrics.json", "predictions.csv", "intersection.json")
METRICS_FILES = ("metrics.json", "predictions.csv", "intersection.json")


class AuditUnavailable(ChainError):
    """The audit cannot be carried out (no chain, no contract, no such session, unreadable files)."""


@dataclass
class Check:
    """One verified statement; a failure says where (file, round, field) and what differs."""

    check: str  # short name of the property, e.g. "round commitment"
    ok: bool
    party: str = ""  # "guest" | "host" | "" (the session)
    file: str = ""  # the file it is about, relative to the run directory
    round: int | None = None
    field: str = ""
    expected: str = ""
    found: str = ""
    detail: str = ""  # one human sentence

    def line(self) -> str:
        """One line naming the mismatch (or the pass)."""
        where = " ".join(x for x in (self.party and f"[{self.party}]", self.file,
                                     f"round {self.round}" if self.round is not None else "",
                                     self.field) if x)
        if self.ok:
            return f"ok    {self.check}: {self.detail or where}"
        diff = f": expected {self.expected}, found {self.found}" if self.expected or self.found else ""
        return f"FAIL  {self.check}: {where}{diff}" + (f" ({self.detail})" if self.detail else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PartyFiles:
    """A party's run directory as read from disk (nothing interpreted yet)."""

    path: Path
    job: dict[str, Any]
    rounds: list[dict[str, Any]]  # rounds.jsonl lines in file order
    checkpoints: dict[int, dict[str, Any]]  # by round number in the file name
    transcript: list[dict[str, Any]]
    files: dict[str, bytes]  # RESULT_FILES' bytes, when present
    problems: list[Check] = field(default_factory=list)  # unreadable lines and files
    manifests: list[dict[str, Any]] = field(default_factory=list)  # manifests.jsonl lines (hfl)

    @property
    def role(self) -> str:
        return str(self.job.get("role") or "?")

    @property
    def kind(self) -> str:
        """"hfl" (coordinator + clients), "predict" (`vflchain predict`) or "vertical" (training)."""
        algorithm = str(self.job.get("algorithm") or "")
        if algorithm in HFL_ALGORITHMS:
            return "hfl"
        return "predict" if algorithm.endswith(PREDICT_SUFFIX) else "vertical"

    @property
    def is_opener(self) -> bool:
        return self.role in OPENERS

    @property
    def star(self) -> bool:
        """A party of a star whose rounds are agreed by manifest: horizontal, or vertical with N >= 2 hosts."""
        return self.kind == "hfl" or bool(self.job.get("host_accounts")) or bool(
            re.fullmatch(r"host[0-9]+", self.role))


@dataclass
class SessionHistory:
    """One session as its events tell it."""

    contract: str
    chain_id: int
    session_id: str
    record: SessionRecord
    events: list[AuditEvent]
    registry: Registry
    timestamps: dict[int, int] = field(default_factory=dict)  # block -> unix time

    def submission_event(self, round_no: int, party: str) -> AuditEvent | None:
        for ev in self.events:
            a = ev["args"]
            if ev["event"] == "RoundSubmitted" and int(a["round"]) == round_no and a["party"] == party:
                return ev
        return None

    def submissions_by(self, party: str) -> list[AuditEvent]:
        return [ev for ev in self.events if ev["event"] == "RoundSubmitted" and ev["args"]["party"] == party]

    def event(self, name: str, party: str | None = None) -> AuditEvent | None:
        for ev in self.events:
            if ev["event"] == name and (party is None or ev["args"].get("party") == party):
                return ev
        return None


# -- reading ------------------------------------------------------------------------

def _read_jsonl(path: Path, label: str, problems: list[Check], role: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not path.exists():
        problems.append(Check("file present", False, role, label, detail=f"{label} is missing",
                              expected="present", found="missing"))
        return out
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            problems.append(Check("file readable", False, role, label, field=f"line {no}",
                                  detail=f"not a JSON object ({exc})"))
            continue
        out.append(obj)
    return out


def load_party_files(path: str | Path) -> PartyFiles:
    """Read a party's run directory; AuditUnavailable if it has no readable job.json."""
    path = Path(path)
    try:
        job = json.loads((path / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AuditUnavailable(f"{path}: not a run directory (job.json: {exc})") from None
    if not isinstance(job, dict):
        raise AuditUnavailable(f"{path}/job.json is not a JSON object")
    role = str(job.get("role") or "?")
    problems: list[Check] = []
    rounds = _read_jsonl(path / "rounds.jsonl", "rounds.jsonl", problems, role)
    transcript = _read_jsonl(path / "transcript.jsonl", "transcript.jsonl", problems, role)
    checkpoints: dict[int, dict[str, Any]] = {}
    cp_dir = path / "checkpoints"
    for p in sorted(cp_dir.iterdir()) if cp_dir.is_dir() else []:
        m = CHECKPOINT.match(p.name)
        label = f"checkpoints/{p.name}"
        if m is None:
            problems.append(Check("file expected", False, role, label, detail="not a round checkpoint name"))
            continue
        try:
            cp = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(cp, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            problems.append(Check("file readable", False, role, label, round=int(m.group(1)),
                                  detail=f"not a JSON object ({exc})"))
            cp = {}
        checkpoints[int(m.group(1))] = cp
    files = {name: (path / name).read_bytes() for name in RESULT_FILES if (path / name).is_file()}
    manifests: list[dict[str, Any]] = []
    if str(job.get("algorithm")) in HFL_ALGORITHMS or (path / "manifests.jsonl").is_file():
        manifests = _read_jsonl(path / "manifests.jsonl", "manifests.jsonl", problems, role)
    return PartyFiles(path, job, rounds, checkpoints, transcript, files, problems, manifests)


def load_history(client: Any, session_id: str | bytes, timestamps: bool = True) -> SessionHistory:
    """The session's events through `client` (a `chain.client.AuditClient`), replayed.

    AuditUnavailable if the session has no events (unknown on this contract)."""
    sid = session_id if isinstance(session_id, bytes) else bytes.fromhex(str(session_id).removeprefix("0x"))
    if len(sid) != 32:
        raise AuditUnavailable(f"session id must be 32 bytes of hex, got {session_id!r}")
    try:
        events = client.events(sid)
    except Exception as exc:  # noqa: BLE001 - whatever the node or state directory does: cannot check
        raise AuditUnavailable(f"cannot read the chain: {exception_line(exc)}") from None
    if not events:
        raise AuditUnavailable(f"session 0x{sid.hex()} is not on contract {client.address} "
                               f"(chain {client.chain_id}): no events")
    try:
        record = replay_session(events, int(client.chain_id), str(client.address))
    except HistoryError as exc:
        raise AuditUnavailable(f"the events of session 0x{sid.hex()} do not replay: {exc}") from None
    stamps: dict[int, int] = {}
    try:
        registry = replay_registry(client.events(from_block=0, to_block=int(events[-1]["block_number"])))
        if timestamps:
            for n in sorted({int(ev["block_number"]) for ev in events}):
                stamps[n] = int(client.w3.eth.get_block(n)["timestamp"])
    except HistoryError as exc:
        raise AuditUnavailable(f"the registry's events do not replay: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise AuditUnavailable(f"cannot read the chain: {exception_line(exc)}") from None
    return SessionHistory(str(client.address), int(client.chain_id), "0x" + sid.hex(), record, events,
                          registry, stamps)


def exception_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- checks -------------------------------------------------------------------------

def _int(x: Any) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return -1


def _low(x: Any) -> str:
    return str(x or "").lower()


class _Checks:
    def __init__(self, party: str) -> None:
        self.party = party
        self.out: list[Check] = []

    def eq(self, check: str, expected: Any, found: Any, *, file: str = "", round: int | None = None,
           field: str = "", ok_detail: str = "", detail: str = "") -> bool:
        ok = _low(expected) == _low(found)
        self.out.append(Check(check, ok, self.party, file, round, field,
                              "" if ok else str(expected), "" if ok else str(found),
                              ok_detail if ok else detail))
        return ok

    def fail(self, check: str, *, file: str = "", round: int | None = None, field: str = "",
             expected: str = "", found: str = "", detail: str = "") -> None:
        self.out.append(Check(check, False, self.party, file, round, field, expected, found, detail))


def session_roles(record: SessionRecord) -> dict[str, str]:
    """Each participant's role in the session, from SessionOpened alone.

    The opener is the guest (vertical) or the coordinator (horizontal); a horizontal
    session names its clients in order (client1, client2, ...), a vertical one its host (its
    hosts in order, host1, host2, ..., when there are several)."""
    info = record["session"]
    hfl = info["algorithm"] in HFL_ALGORITHMS
    roles = {info["guest"]: COORDINATOR if hfl else "guest"}
    others = [a for a in info["participants"] if a != info["guest"]]
    roles.update({a: f"client{k}" if hfl else "host" if len(others) == 1 else f"host{k}"
                  for k, a in enumerate(others, 1)})
    return roles


def registered_role(role: str) -> str:
    """The role an account of this session role is registered with (the contract knows guest and host)."""
    return "guest" if role in OPENERS else "host"


def _named_participants(job: dict[str, Any]) -> list[str]:
    """The accounts a party's job.json names as the session's participants (itself first)."""
    named = [job.get("account"), job.get("peer_account"), *(job.get("client_accounts") or []),
             *dict(job.get("host_accounts") or {}).values()]
    return [str(a) for a in named if a]


def _salt(value: Any) -> bytes:
    salt = bytes.fromhex(str(value).removeprefix("0x"))
    if len(salt) != SALT_BYTES:
        raise ValueError(f"a salt is {SALT_BYTES} bytes, got {len(salt)}")
    return salt


def binding_of(history: SessionHistory, party: str, role: str, round_no: int, phase: str) -> Binding:
    """The binding a commitment of `party` in `round_no` must have: chain, contract and session are the
    audited ones (never the files'), the round is the slot it is checked in."""
    return Binding(history.chain_id, history.contract, history.session_id, round_no, party, role, phase)


def _checkpoint_commitment(cp: dict[str, Any], binding: Binding) -> str:
    return "0x" + round_commitment(binding, _salt(cp["salt"]), cp["params"]).hex()


def _final_commitment(files: PartyFiles, kind: str, tag: bytes, name: str, binding: Binding) -> str:
    """A final commitment recomputed from the file's bytes and the salt of job.json's opening."""
    opening = (files.job.get("openings") or {}).get(kind)
    if not isinstance(opening, dict) or "salt" not in opening:
        return f"(no {kind} salt in job.json openings)"
    try:
        return "0x" + bound_commitment(tag, binding, _salt(opening["salt"]), files.files[name]).hex()
    except ValueError as exc:
        return f"(cannot recompute: {exc})"


def audit_party(files: PartyFiles, history: SessionHistory,
                config_commitment: Callable[[dict[str, Any], Binding, bytes], str] | None = None) -> list[Check]:
    """Every check of one party's run directory against the session's history.

    `config_commitment(config, binding, salt)` recomputes the commitment from job.json's
    "config" (the runtime's definition of it) and "config_salt", bound to the audited
    session and its opener; without it the recorded value is compared only.
    """
    job, role = files.job, files.role
    c = _Checks(role)
    c.out.extend(files.problems)
    info, members = history.record["session"], history.record["members"]
    account = str(job.get("account") or "")
    peer = str(job.get("peer_account") or "")
    by_low = {_low(a): a for a in members}
    me = by_low.get(_low(account), account)

    # -- the session: who, what configuration ------------------------------------
    c.eq("session id", history.session_id, job.get("session_id"), file="job.json", field="session_id",
         ok_detail=f"session {history.session_id}")
    opened = history.event("SessionOpened")
    c.eq("session label", opened["args"].get("label") if opened else "(no SessionOpened)",
         "0x" + session_label(str(job["job_id"])).hex() if job.get("job_id") else "(no job id)",
         file="job.json", field="job_id", ok_detail="the session was opened for this job id")
    c.eq("chain", history.chain_id, job.get("chain_id"), file="job.json", field="chain_id")
    c.eq("contract", history.contract, job.get("contract"), file="job.json", field="contract")
    c.eq("algorithm", info["algorithm"], job.get("algorithm"), file="job.json", field="algorithm")
    c.eq("config commitment", info["config_commitment"], job.get("config_commitment"), file="job.json",
         field="config_commitment", ok_detail="the job's configuration is the one committed on chain")
    if config_commitment is not None:
        try:
            binding = Binding.config(history.chain_id, history.contract, history.session_id, info["guest"],
                                     COORDINATOR if files.kind == "hfl" else "guest")
            again = config_commitment(job.get("config") or {}, binding, _salt(job.get("config_salt")))
        except Exception as exc:  # noqa: BLE001 - a config that cannot be read is a finding
            again = f"(cannot recompute: {exc})"
        c.eq("config recomputed", info["config_commitment"], again, file="job.json", field="config",
             ok_detail="recomputed from job.json's config")
    _check_participants(c, files, history)
    opener_role = "guest" if files.kind != "hfl" else COORDINATOR
    opener = account if files.is_opener else peer
    c.eq(f"{opener_role} account", info["guest"], opener, file="job.json",
         field="account" if files.is_opener else "peer_account",
         ok_detail=f"opened by the {opener_role} {info['guest']}")
    chain_role = session_roles(history.record).get(me, "not a participant")
    c.eq("session role", role, chain_role, file="job.json", field="role", ok_detail=f"{me} took part as {role}")
    reg = history.registry["participants"].get(me) or {}
    c.eq("registered role", registered_role(role), reg.get("role", "not registered"), field="account",
         ok_detail=f"{me} is registered as {reg.get('role')} ({reg.get('organisation', '')})")
    # a session the parties never ended (the chain failed too, so their aborts did): one finding, and
    # the rest is checked like an aborted session's, for what was committed
    interrupted = is_interrupted(files, history)
    unfinished = info["status"] in ("opened", "active") and job.get("status") in ("failed", "running") \
        and not interrupted
    aborted = info["status"] == "aborted" or unfinished or interrupted
    if info["status"] == "aborted":
        _check_abort(c, files, history, me)
    elif interrupted:
        c.out.append(Check("session interrupted", True, role, "job.json", None, "status", detail=(
            "INTERRUPTED, resumable: the session is still active on chain and the run stopped ("
            + ("job.json resumable" if job.get("resumable") else "the process was killed")
            + "); `vflchain run --resume` continues it. Only the committed rounds are checked")))
    elif unfinished:
        why = (job.get("abort") or {}).get("error") or job.get("error") or "the party was killed"
        c.fail("session closed", field="status", expected="closed or aborted", found=info["status"],
               detail=f"the run failed but the session was never ended on chain ({why}); "
                      "only the committed rounds are checked")
        c.out.append(Check("run status", True, role, "job.json", None, "status",
                           detail=f"the run {'failed' if job.get('status') == 'failed' else 'never recorded its end'}"))
    else:
        c.eq("session closed", "closed", info["status"],
             ok_detail=f"closed after all {len(info['participants'])} participants finalized")
        c.eq("run status", "complete", job.get("status"), file="job.json", field="status")

    # -- rounds: files -> chain ----------------------------------------------------
    checked = _check_resumes(c, files, history, me)
    handshakes = {x["handshake_round"]: x for x in checked if x.get("handshake_round") is not None}
    # (after, before): rounds strictly between were cut off by a kill; and the unlisted rounds a kill of this
    # party (not its peer: a survivor lists every mined round) may have left without a rounds.jsonl line
    gaps: list[tuple[int, int]] = []
    unlisted: list[tuple[int, int]] = []
    listed: list[int] = []
    prev = 0
    for line in files.rounds:
        try:
            r = int(line["round"])
        except (KeyError, TypeError, ValueError):
            c.fail("round line", file="rounds.jsonl", field="round", detail=f"no round number in {line}")
            continue
        listed.append(r)
        x = handshakes.get(r)
        if x is not None and r > prev and _int(x.get("from_round")) < r:
            # a resume's new handshake: the rounds since its restore point were cut off by a kill
            gaps.append((min(prev, _int(x["from_round"])), r))
            if x.get("killed"):
                unlisted.append((prev, r))
            c.out.append(Check("rounds in order", True, role, "rounds.jsonl", r, "round", detail=(
                f"round {r} is the handshake of the run resumed from round {x['from_round']} "
                f"({x.get('time', '?')}); rounds {prev + 1}..{r - 1} were never listed (cut off by the kill)"
                if r > prev + 1 else f"round {r} is the handshake of the run resumed from round {x['from_round']}")))
        elif r != prev + 1:
            c.fail("rounds in order", file="rounds.jsonl", round=r, field="round", expected=str(prev + 1),
                   found=str(r), detail="a gap that no resume in job.json explains" if r > prev + 1 else "")
        prev = r
        cut = any(a < r < b for a, b in gaps) or r in _cut_off_rounds(checked)
        _check_round(c, files, history, me, chain_role, r, line, pending_ok=aborted or cut)

    def in_gap(r: int) -> bool:
        return any(a < r < b for a, b in gaps)
    # -- chain -> files: nothing on chain missing from the files ------------------------
    order = [int(ev["args"]["round"]) for ev in history.submissions_by(me)]
    # an aborted session: what came after the last round in the files is what the abort interrupted
    last_listed = max(listed, default=0)
    last = max([last_listed, *order])
    recovered = {r for r in order if aborted and r not in listed and r > last_listed}  # checked without a line
    known = set(listed) | recovered
    for r in order:
        if r not in listed and any(a < r < b for a, b in unlisted):
            recovered.add(r)
            known.add(r)
            c.out.append(Check("round in files", True, role, "rounds.jsonl", r, "round",
                               detail=f"round {r} is on chain but not in rounds.jsonl: the party was killed "
                                      "before recording its mined transaction (job.json: resumed after); checked "
                                      "from its checkpoint and transcript"))
            _check_round(c, files, history, me, chain_role, r, None, pending_ok=True)
        elif r not in listed and aborted and r > last_listed:
            c.out.append(Check("round in files", True, role, "rounds.jsonl", r, "round",
                               detail=f"round {r} is on chain but not in rounds.jsonl: the party stopped before "
                                      "recording its mined transaction; checked from its checkpoint and transcript"))
            _check_round(c, files, history, me, chain_role, r, None, pending_ok=True)
        elif r not in listed:
            ev = history.submission_event(r, me)
            c.fail("round in files", file="rounds.jsonl", round=r, field="round", expected="a line for it",
                   found="none", detail=f"submitted on chain by {me} in tx {ev['tx_hash'] if ev else '?'}")
    if [r for r in listed if r in order] != [r for r in order if r in listed]:
        c.fail("rounds in order", file="rounds.jsonl", field="round", expected=str(order), found=str(listed),
               detail="the files list the rounds in another order than the chain")
    for r in files.checkpoints:
        if aborted and r > last:
            c.out.append(_in_flight(role, f"checkpoints/round-{r:04d}.json", r))
        elif r not in known and in_gap(r) and r not in order:
            c.out.append(_cut_off(role, f"checkpoints/round-{r:04d}.json", r))
        elif r not in known:
            c.fail("checkpoint listed", file=f"checkpoints/round-{r:04d}.json", round=r, field="round",
                   expected="a rounds.jsonl line", found="none")
    for r in sorted({_int(e.get("round")) for e in files.transcript} - known):
        if aborted and r > last:
            c.out.append(_in_flight(role, "transcript.jsonl", r))
            continue
        if in_gap(r) and r not in order:
            c.out.append(_cut_off(role, "transcript.jsonl", r))
            continue
        if r == 0 and job.get("resumed"):
            tags = sorted({str(e.get("tag")) for e in files.transcript if _int(e.get("round")) == 0})
            c.out.append(Check("resume messages", set(tags) <= RESUME_TAGS, role, "transcript.jsonl", 0, "tag",
                               "" if set(tags) <= RESUME_TAGS else ", ".join(sorted(RESUME_TAGS)),
                               "" if set(tags) <= RESUME_TAGS else ", ".join(tags),
                               "round 0 holds only the resume messages exchanged before each new handshake "
                               "(never committed)" if set(tags) <= RESUME_TAGS else
                               "round 0 is only for resume messages"))
            continue
        c.fail("transcript round listed", file="transcript.jsonl", round=r, field="round",
               expected="a rounds.jsonl line", found="none", detail="messages of a round never committed")
    for r in sorted({_int(m.get("round")) for m in files.manifests} - known):
        if in_gap(r) and r not in order:
            c.out.append(_cut_off(role, "manifests.jsonl", r))
            continue
        if aborted and r > last:
            c.out.append(_in_flight(role, "manifests.jsonl", r))
            continue
        c.fail("manifest round listed", file="manifests.jsonl", round=r, field="round",
               expected="a rounds.jsonl line", found="none", detail="a manifest of a round never committed")
    c.out.append(Check("rounds", bool(listed), role, "rounds.jsonl",
                       detail=f"{len(listed)} rounds listed, {len(order)} submitted on chain by {me}"))

    # -- the final model and metrics -------------------------------------------------
    close = files.checkpoints.get(max(listed)) if listed else None
    model_file = "aggregates.json" if role == COORDINATOR else "model.json"  # the coordinator's result
    if close and isinstance(close.get("params"), dict) and close["params"].get("model_file"):
        model_file = str(close["params"]["model_file"])
    member = members.get(me)
    if aborted and member is not None and not member["finalized"]:
        c.out.append(Check("model commitment", True, role, detail="not compared: the session was aborted "
                           "before this party finalized (no model was committed)"))
        if files.kind == "predict":
            _check_prediction(c, files)
        return c.out
    # the final commitments are bound to the close round (this party's last round on chain), this party
    # and its session role
    at = binding_of(history, me, chain_role, max(order) if order else 0, "close")
    if member is None:
        c.fail("model commitment", field="account", expected="a participant", found=me)
    elif model_file not in files.files:
        c.fail("model commitment", file=model_file, expected=member["model_commitment"], found="missing file")
    else:
        c.eq("model commitment", member["model_commitment"], _final_commitment(files, "model", TAG_MODEL,
                                                                               model_file, at),
             file=model_file, field="keccak256(binding || salt || file)",
             ok_detail=f"{model_file} is the model finalized on chain (salt: job.json openings)")
    if files.is_opener and not (aborted and info["metrics_hash"] == ZERO_HASH):
        metrics_file = next((n for n in METRICS_FILES if n in files.files), None)
        if metrics_file is None:
            c.fail("metrics hash", file="metrics.json", expected=info["metrics_hash"], found="missing file")
        else:
            c.eq("metrics hash", info["metrics_hash"], _final_commitment(files, "metrics", TAG_METRICS,
                                                                         metrics_file, at),
                 file=metrics_file, field="keccak256(binding || salt || file)",
                 ok_detail=f"{metrics_file} is the metrics commitment posted at close")
    if files.kind == "predict":
        _check_prediction(c, files)
    return c.out


_PENDING_AT_ABORT = "not attested: the session was aborted before every participant posted this round"


_PENDING_AT_KILL = "not attested: the run was killed before every participant posted this round"
RESUME_TAGS = {"resume", "resume_reply"}  # round 0 of a resumed run (nodes.job: before the new handshake)


def is_interrupted(files: PartyFiles, history: SessionHistory) -> bool:
    """The run stopped without ending its session (a node killed, its peer lost), which is still active on
    chain: `--resume` can continue it (job.json `resumable`, or the killed party's `running`)."""
    return history.record["session"]["status"] == "active" and files.kind != "hfl" and (
        bool(files.job.get("resumable")) or files.job.get("status") == "running")


def resumes(files: PartyFiles) -> list[dict[str, Any]]:
    """job.json's resume records, in order: time, from_round (the attested round continued from),
    handshake_round (the new handshake's round; a resume that failed before restoring has neither) and
    killed (this party's process had died: its job.json was still "running", not "failed")."""
    out = []
    for x in files.job.get("resumed") or []:
        if isinstance(x, dict):
            out.append({"time": x.get("time"), "from_round": x.get("from_round"),
                        "killed": (x.get("after") or {}).get("status") == "running",
                        "handshake_round": x.get("handshake_round", _handshake_of(files, x.get("from_round")))})
    return out


def _handshake_of(files: PartyFiles, from_round: Any) -> int | None:
    """The handshake round of a resume from `from_round` when job.json does not name it (older runs): the
    first later checkpoint whose params say resumed_from that round."""
    if from_round is None:
        return None
    for r, cp in sorted(files.checkpoints.items()):
        params = cp.get("params")
        if r > _int(from_round) and isinstance(params, dict) and params.get("resumed_from") == from_round:
            return r
    return None


def _check_resumes(c: _Checks, files: PartyFiles, history: SessionHistory, me: str) -> list[dict[str, Any]]:
    """Each resume job.json claims must match the chain: it continued from a round this party submitted
    and both attested, and its handshake (a round this party submitted) committed `resumed_from` that
    round. Returns the resumes whose claims hold (only these explain gaps in rounds.jsonl)."""
    good = []
    mine = {int(ev["args"]["round"]) for ev in history.submissions_by(me)}
    for k, x in enumerate(resumes(files), 1):
        r, h = x["from_round"], x["handshake_round"]
        label = f"resume {k}"
        if r is None:
            c.out.append(Check("resume", True, files.role, "job.json", None, f"resumed[{k - 1}]",
                               detail=f"{label} ({x['time']}) stopped before it restored a round: it explains "
                                      "no gap"))
            continue
        state = history.record["round_states"].get(_int(r), "none")
        ok = _int(r) in mine and state == "attested"
        c.out.append(Check("resume point", ok, files.role, "job.json", _int(r), f"resumed[{k - 1}].from_round",
                           "" if ok else "a round this party submitted and both attested",
                           "" if ok else f"round {r}: {state}" + ("" if _int(r) in mine else ", not submitted by it"),
                           f"{label} ({x['time']}) continued from round {r}, attested on chain" if ok else
                           "the resume claims a restore point the chain does not attest"))
        if h is None or _int(h) not in mine:  # killed again before it was committed (a listed round is checked)
            c.out.append(Check("resume handshake", True, files.role, "job.json", None,
                               f"resumed[{k - 1}].handshake_round", detail=f"{label} stopped before its new "
                               "handshake was committed: it explains no gap"))
            continue
        cp = files.checkpoints.get(_int(h)) or {}
        claimed = (cp.get("params") or {}).get("resumed_from") if isinstance(cp.get("params"), dict) else None
        hs_ok = _int(h) > _int(r) and claimed == r
        c.out.append(Check("resume handshake", hs_ok, files.role, f"checkpoints/round-{_int(h):04d}.json", _int(h),
                           "params.resumed_from", "" if hs_ok else str(r), "" if hs_ok else str(claimed),
                           f"{label}: its new handshake, round {h}, committed resumed_from {r}" if hs_ok else
                           "the handshake round of the resume does not commit to its restore point"))
        if ok and hs_ok:
            good.append({**x, "from_round": _int(r), "handshake_round": _int(h)})
    return good


def _cut_off_rounds(good: list[dict[str, Any]]) -> set[int]:
    """Rounds after a resume's restore point and before its handshake: the kill may have cut them off before
    every participant posted them."""
    return {r for x in good for r in range(x["from_round"] + 1, x["handshake_round"])}


def _cut_off(role: str, file: str, r: int) -> Check:
    """A file's round that a kill cut off before it was committed, explained by a resume in job.json."""
    return Check("round cut off", True, role, file, r, "round",
                 detail=f"round {r} was under way when the run was killed: never committed, not compared "
                        "(the run was resumed after it)")


def _in_flight(role: str, file: str, r: int) -> Check:
    """A file's round after the last committed one, in a session that was aborted: nothing to compare."""
    return Check("round in flight", True, role, file, r, "round",
                 detail=f"round {r} was under way when the session was aborted: never committed, not compared")


def abort_info(history: SessionHistory) -> dict[str, Any] | None:
    """Who aborted the session, when, with which reason hash (None unless it was aborted)."""
    ev = history.event("SessionAborted")
    if ev is None:
        return None
    party = str(ev["args"]["party"])
    return {"party": party, "role": session_roles(history.record).get(party, "?"),
            "block": ev["block_number"], "time": history.timestamps.get(ev["block_number"]),
            "reason_hash": ev["args"]["reasonHash"], "tx_hash": ev["tx_hash"]}


def _check_abort(c: _Checks, files: PartyFiles, history: SessionHistory, me: str) -> None:
    """An aborted session: say who aborted it and when; the aborting party's job.json error must be the
    reason posted (keccak256), and no party may claim a complete run."""
    job, info = files.job, abort_info(history)
    assert info is not None
    c.out.append(Check("session aborted", True, files.role, detail=(
        f"aborted by the {info['role']} {info['party']} in block {info['block']}"
        f" (tx {info['tx_hash']}): only what was committed before is checked")))
    status = str(job.get("status"))
    c.out.append(Check("run status", status in ("failed", "running"), files.role, "job.json", None, "status",
                       "" if status in ("failed", "running") else "failed (the session was aborted)",
                       "" if status in ("failed", "running") else status,
                       "the run failed" if status == "failed" else
                       "the run never recorded its end (the process was killed)" if status == "running" else
                       "a run whose session was aborted cannot be complete"))
    if _low(info["party"]) != _low(me):
        return
    error = job.get("error")
    found = "0x" + keccak(str(error).encode("utf-8")).hex() if error else "(no error in job.json)"
    c.eq("abort reason", info["reason_hash"], found, file="job.json", field="error",
         ok_detail=f"keccak256 of job.json's error is the reason hash on chain: {str(error)[:120]}")
    c.eq("abort transaction", info["tx_hash"], (job.get("abort") or {}).get("tx_hash"), file="job.json",
         field="abort.tx_hash", ok_detail="job.json names the abort transaction the chain holds")


def _check_participants(c: _Checks, files: PartyFiles, history: SessionHistory) -> None:
    """The session's participants are the ones the files name: the pair, or the coordinator's N clients.

    A horizontal client knows only itself and the coordinator: both must be participants."""
    on_chain = sorted(_low(a) for a in history.record["session"]["participants"])
    named = sorted({_low(a) for a in _named_participants(files.job)})
    fields = "account, peer_account" + (", client_accounts" if files.role == COORDINATOR else "")
    if files.star and files.role == "guest":
        fields = "account, host_accounts"
    if files.star and not files.is_opener:
        missing = [a for a in named if a not in on_chain]
        c.out.append(Check("participants", not missing, files.role, "job.json", None, fields,
                           "" if not missing else f"participants including {', '.join(named)}",
                           "" if not missing else f"{', '.join(on_chain)}",
                           f"this {files.role} and its {'coordinator' if files.kind == 'hfl' else 'guest'} are 2 of "
                           f"the session's {len(on_chain)} participants"
                           if not missing else f"{', '.join(missing)} not a participant"))
        return
    c.eq("participants", on_chain, named, file="job.json", field=fields,
         ok_detail=f"the session's {len(on_chain)} participants are the ones job.json names")


def _params_with(files: PartyFiles, step: str) -> tuple[int, dict[str, Any]] | None:
    """The first checkpoint whose params are the given step (prediction jobs: "models", "predict")."""
    for r, cp in sorted(files.checkpoints.items()):
        params = cp.get("params")
        if isinstance(params, dict) and params.get("step") == step:
            return r, params
    return None


def _check_prediction(c: _Checks, files: PartyFiles) -> None:
    """A prediction job's own evidence: model.json (the file finalized at close) reopens the training
    model commitment named in round "models" (with the training opening that round committed to), and
    (guest) predictions.csv is the file whose SHA-256 was committed in the "predict" round."""
    models = _params_with(files, "models")
    if models is None:
        c.fail("model used", file="checkpoints", field="params.step", expected='a "models" round', found="none")
    else:
        r, params = models
        opening = params.get("model_opening")
        if opening is None and params.get("model_commitment") is None:  # a bare model file: nothing to link
            c.out.append(Check("model used", True, files.role, f"checkpoints/round-{r:04d}.json", r,
                               "params.model_opening", detail="not compared: the model came without its "
                               "training job.json (no training commitment to reopen)"))
        else:
            try:
                binding = Binding.from_json(opening.get("binding") or {}) if isinstance(opening, dict) else None
                again = "(the models round names no training opening)" if binding is None else \
                    "0x" + bound_commitment(TAG_MODEL, binding, _salt(opening.get("salt")),
                                            files.files.get("model.json", b"")).hex()
            except (ValueError, ChainError) as exc:
                again = f"(cannot recompute: {exc})"
            c.eq("model used", params.get("model_commitment"), again, file="model.json", round=r,
                 field="params.model_opening",
                 ok_detail=f"model.json reopens the training model commitment committed in round {r}")
    if files.role != "guest":
        return
    step = _params_with(files, "predict")
    committed = step[1].get("predictions_sha256") if step else None
    if committed is None:
        c.fail("predictions hash", file="checkpoints", field="params.predictions_sha256",
               expected='a "predict" round committing predictions.csv', found="none")
    elif "predictions.csv" not in files.files:
        c.fail("predictions hash", file="predictions.csv", round=step[0] if step else None,
               expected=str(committed), found="missing file")
    else:
        c.eq("predictions hash", committed, hashlib.sha256(files.files["predictions.csv"]).hexdigest(),
             file="predictions.csv", round=step[0] if step else None, field="sha256(file)",
             ok_detail=f"predictions.csv is the file committed in round {step[0] if step else '?'}")


def _check_round(c: _Checks, files: PartyFiles, history: SessionHistory, me: str, role: str, r: int,
                 line: dict[str, Any] | None, pending_ok: bool = False) -> None:
    """One committed round: its rounds.jsonl line (if any), checkpoint and transcript against the chain.

    `pending_ok`: the run stopped (abort, kill) before every participant posted it: not attested is no finding."""
    sub = history.record["rounds"].get(r, {}).get(me)
    ev = history.submission_event(r, me)
    cp_name = f"checkpoints/round-{r:04d}.json"
    if sub is None or ev is None:
        others = sorted(history.record["rounds"].get(r, {}))
        c.fail("round on chain", file="rounds.jsonl", round=r, field="tx_hash",
               expected=f"a submission by {me}", found=f"submissions by {others}" if others else "none",
               detail="the files claim a round the chain does not have")
        return
    if line is not None:
        c.eq("round transaction", ev["tx_hash"], line.get("tx_hash"), file="rounds.jsonl", round=r,
             field="tx_hash")
        c.eq("round commitment", sub["commitment"], line.get("commitment"), file="rounds.jsonl", round=r,
             field="commitment")
        c.eq("round digest", sub["transcript_digest"], line.get("transcript_digest"), file="rounds.jsonl",
             round=r, field="transcript_digest")
    cp = files.checkpoints.get(r)
    if cp is None:
        c.fail("checkpoint present", file=cp_name, round=r, expected="present", found="missing",
               detail="a committed round without its checkpoint")
    else:
        try:
            again = _checkpoint_commitment(cp, binding_of(history, me, role, r, str(cp.get("phase", ""))))
        except (KeyError, TypeError, ValueError, ChainError) as exc:
            again = f"(cannot recompute: {type(exc).__name__} {exc})"
        c.eq("checkpoint commitment", sub["commitment"], again, file=cp_name, round=r,
             field="keccak256(binding || salt || params)",
             ok_detail="recomputed from the checkpoint and its salt, bound to this session, round and party")
        if cp.get("round") is not None and int(cp["round"]) != r:
            c.fail("checkpoint round", file=cp_name, round=r, field="round", expected=str(r), found=str(cp["round"]))
    if files.star:
        _check_manifest(c, files, r, sub["transcript_digest"])
    else:
        try:
            digest = round_digest(files.transcript, r)
        except (KeyError, TypeError) as exc:
            digest = f"(cannot recompute: missing {exc})"
        c.eq("transcript digest", sub["transcript_digest"], digest, file="transcript.jsonl", round=r,
             field="transcript_digest", ok_detail="recomputed from transcript.jsonl")
    state = history.record["round_states"].get(r, "pending")
    if state == "pending" and (pending_ok or history.record["session"]["status"] == "aborted"):
        c.out.append(Check("round attested", True, c.party, "", r, "state", detail=_PENDING_AT_ABORT
                           if history.record["session"]["status"] == "aborted" else _PENDING_AT_KILL))
        return
    c.eq("round attested", "attested", state, round=r, field="state",
         ok_detail=f"all {len(history.record['session']['participants'])} participants posted the same digest")


def _check_manifest(c: _Checks, files: PartyFiles, r: int, on_chain: str) -> None:
    """A round of a star (horizontal, or vertical with N >= 2 hosts): the digest is SHA-256 of the manifest
    kept in manifests.jsonl, the party's own messages are all in it, and the opener's (coordinator's or
    guest's) manifest is exactly its own transcript of the round."""
    found = [m for m in files.manifests if _int(m.get("round")) == r]
    lines = found[0].get("lines") if len(found) == 1 else None
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        c.fail("manifest present", file="manifests.jsonl", round=r, field="lines", expected="one manifest",
               found=f"{len(found)} lines" if len(found) != 1 else "malformed lines")
        return
    c.eq("manifest digest", on_chain, manifest_digest(lines), file="manifests.jsonl", round=r, field="lines",
         ok_detail=f"SHA-256 of the round's manifest ({len(lines)} messages)")
    try:
        own = manifest_lines(files.transcript, r)
    except (KeyError, TypeError) as exc:
        c.fail("transcript in manifest", file="transcript.jsonl", round=r, detail=f"unreadable entry: missing {exc}")
        return
    if files.is_opener:
        c.eq("transcript digest", on_chain, manifest_digest(own), file="transcript.jsonl", round=r,
             field="transcript_digest", ok_detail=f"recomputed from the {files.role}'s transcript.jsonl")
        return
    missing = sorted(set(own) - set(lines))
    c.out.append(Check("transcript in manifest", not missing, files.role, "transcript.jsonl", r, "lines",
                       "" if not missing else "every own message in the manifest",
                       "" if not missing else f"{len(missing)} missing, e.g. {missing[0]}",
                       f"all {len(own)} of the {files.role}'s messages are in the manifest" if not missing else ""))


def audit_pair(guest: PartyFiles, host: PartyFiles) -> list[Check]:
    """What the two directories must agree on: same job and session, each other's accounts."""
    c = _Checks("")
    g, h = guest.job, host.job
    c.eq("same session", g.get("session_id"), h.get("session_id"), file="host/job.json", field="session_id",
         ok_detail="both directories are from one session")
    c.eq("same job", g.get("job_id"), h.get("job_id"), file="host/job.json", field="job_id")
    c.eq("accounts", g.get("account"), h.get("peer_account"), file="host/job.json", field="peer_account")
    c.eq("accounts", h.get("account"), g.get("peer_account"), file="guest/job.json", field="peer_account")
    c.eq("roles", "guest,host", f"{guest.role},{host.role}", file="job.json", field="role")
    return c.out


def audit_hosts(guest: PartyFiles, hosts: list[PartyFiles]) -> list[Check]:
    """A guest and (some of) its N >= 2 hosts: one job and session; the guest names each host's account,
    each host names the guest's."""
    c = _Checks("")
    named = {str(k): str(v) for k, v in dict(guest.job.get("host_accounts") or {}).items()}
    for h in hosts:
        c.eq("same session", guest.job.get("session_id"), h.job.get("session_id"), file=f"{h.role}/job.json",
             field="session_id", ok_detail=f"{h.role} and the guest are from one session")
        c.eq("same job", guest.job.get("job_id"), h.job.get("job_id"), file=f"{h.role}/job.json", field="job_id")
        c.eq("accounts", guest.job.get("account"), h.job.get("peer_account"), file=f"{h.role}/job.json",
             field="peer_account", ok_detail=f"{h.role}'s guest is the guest shown")
        c.eq("accounts", named.get(h.role, "(not listed)"), h.job.get("account"), file="guest/job.json",
             field=f"host_accounts.{h.role}", ok_detail=f"the guest names {h.role}'s account")
    return c.out


def audit_group(files: list[PartyFiles]) -> list[Check]:
    """What several directories of one job must agree on: the pair (vertical, predict) or the
    coordinator and its clients (hfl): one session and job, each naming the others' accounts."""
    if len(files) < 2:
        return []
    roles = {f.role: f for f in files}
    if len(roles) < len(files):
        return [Check("roles", False, file="job.json", field="role", expected="each role once",
                      found=", ".join(f.role for f in files))]
    if files[0].kind != "hfl":
        if set(roles) == {"guest", "host"}:
            return audit_pair(roles["guest"], roles["host"])
        if "guest" in roles and all(re.fullmatch(r"host[0-9]+", r) for r in roles if r != "guest"):
            return audit_hosts(roles["guest"], [f for f in files if f.role != "guest"])
        return [Check("roles", False, file="job.json", field="role", expected="one guest and one host",
                      found=", ".join(f.role for f in files))]
    c = _Checks("")
    coord = roles.get(COORDINATOR)
    first = coord or files[0]
    for f in files:
        if f is first:
            continue
        c.eq("same session", first.job.get("session_id"), f.job.get("session_id"), file=f"{f.role}/job.json",
             field="session_id", ok_detail=f"{f.role} and {first.role} are from one session")
        c.eq("same job", first.job.get("job_id"), f.job.get("job_id"), file=f"{f.role}/job.json", field="job_id")
        if coord is None:
            continue
        c.eq("accounts", coord.job.get("account"), f.job.get("peer_account"), file=f"{f.role}/job.json",
             field="peer_account", ok_detail=f"{f.role}'s coordinator is the coordinator shown")
        clients = [str(a) for a in coord.job.get("client_accounts") or []]
        k = _int(f.role.removeprefix("client"))
        c.eq("accounts", clients[k - 1] if 0 < k <= len(clients) else "(not listed)", f.job.get("account"),
             file="coordinator/job.json", field=f"client_accounts[{k - 1}]",
             ok_detail=f"the coordinator names {f.role}'s account")
    return c.out


def training_session_id(files: PartyFiles) -> str | None:
    """A prediction job's training session: the one its model's training job id labels, opened
    by this job's guest on this job's chain and contract (the session id's derivation)."""
    models = _params_with(files, "models")
    job = (models[1].get("training_job") if models else None) or (files.job.get("model") or {}).get("training_job")
    opener = files.job.get("account") if files.is_opener else files.job.get("peer_account")
    where = (files.job.get("chain_id"), files.job.get("contract"), opener)
    if not job or not all(where):
        return None
    try:
        return "0x" + session_id(int(where[0]), str(where[1]), str(where[2]), session_label(str(job))).hex()
    except (ChainError, TypeError, ValueError):
        return None


def training_link(files: PartyFiles, history: SessionHistory, training: SessionHistory | None,
                  why: str = "") -> list[Check]:
    """The prediction session against its training session: the training model commitment this party
    committed to in its "models" round (which model.json reopens: "model used") is the one its role
    finalized when training closed. Without the training session (another chain),
    an informational pass saying what could not be compared (`why`)."""
    c = _Checks(files.role)
    models = _params_with(files, "models")
    used = str(models[1].get("model_commitment") or "none") if models else "none"
    if training is None:
        c.out.append(Check("training session", True, files.role, detail=f"not compared: {why}" if why else
                           "not compared: the model names no training job"))
        return c.out
    info = training.record["session"]
    c.eq("training algorithm", info["algorithm"], history.record["session"]["algorithm"].removesuffix(PREDICT_SUFFIX),
         field="algorithm", ok_detail=f"trained by {info['algorithm']} session {training.session_id}")
    c.eq("training session closed", "closed", info["status"], field="status",
         ok_detail=f"the training session {training.session_id} closed")
    by_role = {r: a for a, r in session_roles(training.record).items()}
    trained = training.record["members"].get(by_role.get(files.role, ""), {}).get("model_commitment", "none")
    c.eq("training model", trained, used, field="model_commitment",
         ok_detail=f"the {files.role}'s model is the one its training session closed with ({_short(trained)})")
    return c.out


def _short(h: str) -> str:
    return h if len(h) < 20 else f"{h[:10]}…{h[-6:]}"


def session_checks(history: SessionHistory) -> list[Check]:
    """What an auditor with no files can check: the history replays, every round attested, closed."""
    c = _Checks("")
    info = history.record["session"]
    c.out.append(Check("history replays", True, detail=f"{len(history.events)} events form a valid history"))
    n = len(info["participants"])
    aborted = abort_info(history)
    for r, state in sorted(history.record["round_states"].items()):
        if aborted and state == "pending":
            c.out.append(Check("round attested", True, "", "", r, "state", detail=_PENDING_AT_ABORT))
            continue
        c.eq("round attested", "attested", state, round=r, field="state",
             ok_detail=f"all {n} participants posted the same transcript digest")
    if aborted:
        c.out.append(Check("session aborted", True, detail=f"aborted by the {aborted['role']} {aborted['party']} "
                           f"in block {aborted['block']}, reason hash {aborted['reason_hash']}"))
    else:
        c.eq("session closed", "closed", info["status"], ok_detail="every participant finalized")
    return c.out


def describe(ev: AuditEvent) -> str:
    """What an event says, in a few words."""
    a, name = ev["args"], ev["event"]

    def short(key: str) -> str:
        return str(a.get(key, ""))[:18] + "…"

    if name == "SessionOpened":
        return f"opened ({a['algorithm']}), config {short('configCommitment')}"
    if name == "RoundSubmitted":
        return f"commitment {short('commitment')}, digest {short('transcriptDigest')}"
    if name == "RoundAttested":
        return f"attested, digest {short('transcriptDigest')}"
    if name == "PartyFinalized":
        metrics = a.get("metricsHash", ZERO_HASH)
        return f"finalized, model {short('modelCommitment')}" + (
            f", metrics {short('metricsHash')}" if metrics != ZERO_HASH else "")
    if name == "SessionAborted":
        return f"ABORTED, reason hash {short('reasonHash')}"
    return {"SessionJoined": "joined", "SessionActivated": "all participants joined: active",
            "RoundDisputed": "DISPUTED: the parties' transcript digests differ",
            "SessionClosed": "closed"}.get(name, "")


def timeline(history: SessionHistory) -> list[dict[str, Any]]:
    """The session's events as rows: block, time, event, party, round, what, tx."""
    orgs = {a: p for a, p in history.registry["participants"].items()}
    roles = session_roles(history.record)
    rows = []
    for ev in history.events:
        a = ev["args"]
        party = a.get("party") or (a.get("guest") if ev["event"] == "SessionOpened" else "")
        what = describe(ev)
        reg = orgs.get(party or "", {})
        rows.append({"block": ev["block_number"], "time": history.timestamps.get(ev["block_number"]),
                     "event": ev["event"], "party": party or "", "role": roles.get(party or "", ""),
                     "organisation": reg.get("organisation", ""),
                     "round": int(a["round"]) if "round" in a else None, "what": what, "tx_hash": ev["tx_hash"]})
    return rows


def summary(history: SessionHistory) -> dict[str, Any]:
    """Participants, rounds attested/disputed/pending and closure, JSON-ready."""
    info = history.record["session"]
    states = history.record["round_states"]
    people = []
    roles = session_roles(history.record)
    for a in info["participants"]:
        reg = history.registry["participants"].get(a, {})
        m = history.record["members"][a]
        people.append({"address": a, "role": roles.get(a, "?"), "registered_role": reg.get("role", "unregistered"),
                       "organisation": reg.get("organisation", ""), "joined": m["joined"],
                       "finalized": m["finalized"], "last_round": m["last_round"],
                       "model_commitment": m["model_commitment"]})
    count = {s: sum(1 for v in states.values() if v == s) for s in ("attested", "disputed", "pending")}
    closing = history.event("SessionClosed") or history.event("SessionAborted")
    return {"session_id": history.session_id, "chain_id": history.chain_id, "contract": history.contract,
            "algorithm": info["algorithm"], "config_commitment": info["config_commitment"],
            "status": info["status"], "metrics_hash": info["metrics_hash"], "participants": people,
            "rounds": len(states), "rounds_by_state": count, "events": len(history.events),
            "opened_block": info["opened_block"],
            "closed_block": closing["block_number"] if closing else None,
            "closed_tx": closing["tx_hash"] if closing else None, "aborted": abort_info(history)}


def failures(checks: Iterable[Check]) -> list[Check]:
    return [ch for ch in checks if not ch.ok]
