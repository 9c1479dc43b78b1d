"""Attacks on the commitments a job posts on chain (issue 16, leak 5).

1. Dictionary attack on a final commitment. A PSI-only job's "model" is intersection.json:
   three integers. Anyone who reads the contract's events (every consortium member) takes the
   PartyFinalized commitments and hashes every plausible intersection.json (the file layout is
   public: nodes.rundir) until one matches: the intersection size leaks. The attacker here knows
   both parties' set sizes (they are often published; PSI reveals them to the parties anyway) and
   enumerates only the intersection size. With salted commitments no candidate matches.
2. A replayed commitment. A party re-posts an earlier round's commitment as a later round's and
   shows the earlier checkpoint (salt and parameters) in the later round's slot, or re-posts a
   whole other session's commitments and shows that session's checkpoints. Unbound commitments
   reopen anywhere, so the audit accepts the moved checkpoint; bound ones reopen only in their
   own session, round and party.

Both jobs run in-process (memory transport, embedded chain), as tests/test_job_runner.py does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from test_job_runner import _config, _link, chain_env, run_both  # noqa: F401 - chain_env is a fixture

from chain.audit import audit_party, failures, load_history, load_party_files
from chain.client import AuditClient
from chain.commitment import canonical_bytes
from nodes.config import load_config
from nodes.rundir import dumps_json

pytestmark = pytest.mark.slow


def _hex(value: Any) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def finalized_commitments(client: AuditClient, session_id: str) -> list[str]:
    """What an outsider reads from the chain: every PartyFinalized model commitment and metrics hash."""
    out = []
    for ev in client.events(bytes.fromhex(session_id[2:])):
        if ev["event"] == "PartyFinalized":
            out += [_hex(ev["args"]["modelCommitment"]), _hex(ev["args"]["metricsHash"])]
    return [c.lower() for c in out if int(c, 16) != 0]


def dictionary_attack(commitments: list[str], sizes: tuple[int, int]) -> dict[str, int]:
    """Each commitment that is the hash of a plausible intersection.json -> the intersection size."""
    found: dict[str, int] = {}
    targets = set(commitments)
    for own, other in (sizes, sizes[::-1]):
        for n in range(1, min(own, other) + 1):
            guess = dumps_json({"intersection_size": n, "own_size": own, "other_size": other})
            h = "0x" + keccak(guess).hex()
            if h in targets:
                found[h] = n
    return found


@pytest.fixture(scope="module")
def psi_job(chain_env, tmp_path_factory) -> dict[str, Any]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("psi")
    res = run_both(tmp, chain_env, load_config(_config(tmp)))
    assert all(isinstance(r, dict) and r["status"] == "complete" for r in res.values()), res
    return {"out": tmp / "out", "guest": res["guest"], "host": res["host"]}


def test_the_intersection_size_cannot_be_guessed_from_the_final_commitments(psi_job, chain_env) -> None:  # noqa: F811
    w3, contract = chain_env
    client = AuditClient(w3, contract)
    commitments = finalized_commitments(client, psi_job["guest"]["session_id"])
    assert len(commitments) == 3  # the guest's model and metrics, the host's model
    truth = json.loads((psi_job["out"] / "guest" / "intersection.json").read_text())
    recovered = dictionary_attack(commitments, (truth["own_size"], truth["other_size"]))
    assert recovered == {}, f"the chain reveals the intersection size: {sorted(set(recovered.values()))}"


Choose = Callable[[int, bytes, dict[int, bytes]], bytes]  # (round, own commitment, posted so far) -> to post


def test_the_seed_cannot_be_guessed_from_the_configuration_commitment(psi_job, chain_env) -> None:  # noqa: F811
    """Issue 17's route to the seed: SessionOpened carries the configuration commitment; the job
    definition except the seed is guessable (an example configuration), the seed a small integer."""
    w3, contract = chain_env
    opened = [ev for ev in AuditClient(w3, contract).events(bytes.fromhex(psi_job["guest"]["session_id"][2:]))
              if ev["event"] == "SessionOpened"]
    target = _hex(opened[0]["args"]["configCommitment"]).lower()
    definition = load_config(psi_job["out"].parent / "job.toml").job_definition()
    found = []
    for seed in range(100_000):
        definition["job"]["seed"] = seed
        if "0x" + keccak(canonical_bytes(definition)).hex() == target:
            found.append(seed)
            break
    assert found == [], f"the chain reveals the seed: {found}"


def _replaying_link(chain_env, choose: Choose, posted: dict[int, bytes]):  # noqa: F811
    """The dishonest host's chain link: posts `choose(...)` instead of its own round commitment."""
    link = _link(chain_env, "host")
    anchor = link.anchor

    class Replaying:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def submit_round(self, round_no: int, commitment: bytes, digest: bytes) -> str:
            posted[round_no] = choose(round_no, commitment, posted)
            return self.inner.submit_round(round_no, posted[round_no], digest)

    link.anchor = lambda sid: Replaying(anchor(sid))  # type: ignore[method-assign]
    return link


def _run(tmp: Path, chain_env, monkeypatch, choose: Choose) -> tuple[dict[str, Any], dict[int, bytes]]:  # noqa: F811
    """A PSI job whose host posts what `choose` says; returns job.json of both and what the host posted."""
    import test_job_runner

    posted: dict[int, bytes] = {}
    honest = test_job_runner._link
    monkeypatch.setattr(test_job_runner, "_link", lambda env, role: _replaying_link(env, choose, posted)
                        if role == "host" else honest(env, role))
    res = run_both(tmp, chain_env, load_config(_config(tmp)))
    monkeypatch.setattr(test_job_runner, "_link", honest)
    assert all(isinstance(r, dict) and r["status"] == "complete" for r in res.values()), res
    return res, posted


def _fix_rounds(host: Path, commitments: dict[int, bytes]) -> None:
    """The host's rounds.jsonl names what it posted (the replayed values)."""
    rows = [json.loads(x) for x in (host / "rounds.jsonl").read_text().splitlines() if x.strip()]
    for row in rows:
        row["commitment"] = "0x" + commitments[row["round"]].hex()
    (host / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _audit(host: Path, chain_env, session_id: str) -> list:  # noqa: F811
    w3, contract = chain_env
    history = load_history(AuditClient(w3, contract), session_id, timestamps=False)
    return failures(audit_party(load_party_files(host), history))


def test_a_commitment_replayed_in_a_later_round_does_not_reopen_there(tmp_path, chain_env, monkeypatch) -> None:  # noqa: F811
    """The host posts its handshake round's commitment again as round 2 and shows the handshake
    checkpoint in round 2's slot (its "round" field rewritten)."""
    res, posted = _run(tmp_path, chain_env, monkeypatch, lambda r, com, done: done[1] if r == 2 else com)
    host = tmp_path / "out" / "host"
    cp = json.loads((host / "checkpoints" / "round-0001.json").read_text())
    (host / "checkpoints" / "round-0002.json").write_text(json.dumps(dict(cp, round=2)))
    _fix_rounds(host, posted)
    fails = _audit(host, chain_env, res["host"]["session_id"])
    assert [(f.check, f.round) for f in fails] == [("checkpoint commitment", 2)], [f.line() for f in fails]


def test_another_sessions_commitments_do_not_reopen_in_this_session(tmp_path, chain_env, monkeypatch) -> None:  # noqa: F811
    """The host re-posts session A's round commitments in session B and shows A's checkpoints."""
    a, posted_a = _run(tmp_path / "a", chain_env, monkeypatch, lambda r, com, done: com)
    b, posted_b = _run(tmp_path / "b", chain_env, monkeypatch, lambda r, com, done: posted_a[r])
    assert a["host"]["session_id"] != b["host"]["session_id"] and posted_b == posted_a
    host_b = tmp_path / "b" / "out" / "host"
    shutil.rmtree(host_b / "checkpoints")
    shutil.copytree(tmp_path / "a" / "out" / "host" / "checkpoints", host_b / "checkpoints")
    _fix_rounds(host_b, posted_b)
    fails = _audit(host_b, chain_env, b["host"]["session_id"])
    assert [(f.check, f.round) for f in fails] == [("checkpoint commitment", r) for r in (1, 2, 3)], \
        [f.line() for f in fails]
