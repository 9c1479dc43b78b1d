"""The job runner (nodes.job.PartyNode): both parties in one process over the in-memory transport,
against the real audit contract on an in-process embedded chain."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chain.commitment import Binding
from nodes import algorithms
from nodes.config import JobConfig, load_config
from nodes.datafiles import write_party_csv
from nodes.errors import ConfigError, NodeError
from nodes.job import PartyNode, config_commitment, session_id_of
from nodes.testing import shared_memory_chain
from nodes.transcript import Transcript, round_digest
from nodes.transport.memory import memory_pair
from vfl.datasets import breast_split


@pytest.fixture(scope="module")
def chain_env(tmp_path_factory):
    """A fresh in-process chain with the contract deployed and the dev guest and host registered."""
    return shared_memory_chain(tmp_path_factory.mktemp("state"))


def _link(chain_env, role: str):
    from chain.accounts import DEV_INDEX, dev_account
    from chain.client import AuditClient
    from nodes.chainlink import ChainLink

    w3, contract = chain_env
    return ChainLink(AuditClient(w3, contract, dev_account(DEV_INDEX[role])), int(w3.eth.chain_id), "memory")


def _config(tmp: Path, overlap: float = 0.9, **sections: dict[str, Any]) -> Path:
    g, h = breast_split(overlap=overlap)
    write_party_csv(g, tmp / "data" / "guest.csv")
    write_party_csv(h, tmp / "data" / "host.csv")
    lines = ['[job]\nalgorithm = "psi"\n[guest]\ndata = "data/guest.csv"\n[host]\ndata = "data/host.csv"\n'
             "[paillier]\nkey_bits = 1024\ninsecure_test_keys = true\n"]
    for name, values in sections.items():
        lines.append(f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    (tmp / "job.toml").write_text("".join(lines))
    return tmp / "job.toml"


def run_both(tmp: Path, chain_env, guest_cfg: JobConfig, host_cfg: JobConfig | None = None,
             phases: dict[str, Any] | None = None, models: dict[str, Path] | None = None) -> dict[str, Any]:
    """Run guest and host PartyNodes in two threads; returns {role: job.json dict or the exception}."""
    gt, ht = memory_pair()
    transports = {"guest": gt, "host": ht}
    results: dict[str, Any] = {}

    def factory(cfg, role, job_id, transcript):
        t = transports[role]
        t.transcript = transcript
        return t

    def run(role: str, cfg: JobConfig) -> None:
        try:
            node = PartyNode(cfg, role, tmp / "out" / role, transport_factory=factory,
                             chain_factory=lambda c, r: _link(chain_env, r), model=(models or {}).get(role))
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            results[role] = exc
            return
        try:
            results[role] = node.run()
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            results[role] = exc

    th = threading.Thread(target=run, args=("host", host_cfg or guest_cfg))
    th.start()
    run("guest", guest_cfg)
    th.join(120)
    return results


def test_a_rival_guest_opening_the_job_id_first_cannot_take_the_jobs_session(tmp_path, chain_env) -> None:
    from chain.accounts import dev_account
    from chain.client import AuditClient, session_label

    w3, contract = chain_env
    AuditClient(w3, contract, dev_account(0)).register_participant(dev_account(7).address, "guest", "Rival")
    rival = AuditClient(w3, contract, dev_account(7))
    # another registered guest learns the job id and opens a session with it first, naming the host
    rival.open_session(session_label("squat-job"), "psi", b"\x01" * 32, [dev_account(2).address])
    cfg = load_config(_config(tmp_path))
    cfg.job.id = "squat-job"
    res = run_both(tmp_path, chain_env, cfg)
    g, h = res["guest"], res["host"]
    assert isinstance(g, dict) and isinstance(h, dict), res
    assert g["status"] == h["status"] == "complete"
    assert g["session_id"] == h["session_id"] != "0x" + rival.session_id(session_label("squat-job")).hex()
    assert _link(chain_env, "guest").session(bytes.fromhex(g["session_id"][2:]))["guest"] == dev_account(1).address


def test_psi_job_completes_with_every_round_attested_and_the_session_closed(tmp_path, chain_env) -> None:
    cfg = load_config(_config(tmp_path))
    res = run_both(tmp_path, chain_env, cfg)
    g, h = res["guest"], res["host"]
    assert isinstance(g, dict) and isinstance(h, dict), res
    assert g["status"] == h["status"] == "complete"
    assert g["phases_run"] == ["intersection"] and g["rounds"] == h["rounds"] == 3
    link = _link(chain_env, "guest")
    sid = session_id_of(g["job_id"], link.chain_id, link.contract, link.address)
    assert g["session_id"] == h["session_id"] == "0x" + sid.hex()
    binding = Binding.config(link.chain_id, link.contract, sid, g["account"], "guest")
    salt = bytes.fromhex(g["config_salt"][2:])
    assert g["config_commitment"] == h["config_commitment"] == "0x" + config_commitment(cfg, binding, salt).hex()
    assert g["config_salt"] == h["config_salt"]  # the guest's salt, sent in its hello
    info = link.session(sid)
    assert info["status"] == "closed" and info["config_commitment"] == g["config_commitment"]
    for r in (1, 2, 3):
        assert link.round_state(sid, r) == "attested"
    out = tmp_path / "out"
    for role in ("guest", "host"):
        files = {p.name for p in (out / role).iterdir()}
        assert {"job.json", "intersection.json", "rounds.jsonl", "transcript.jsonl", "checkpoints"} <= files
        lines = [json.loads(x) for x in (out / role / "rounds.jsonl").read_text().splitlines()]
        assert [x["round"] for x in lines] == [1, 2, 3]
        assert [x["phase"] for x in lines] == ["handshake", "intersection", "close"]
    ge = Transcript.load(out / "guest" / "transcript.jsonl")
    he = Transcript.load(out / "host" / "transcript.jsonl")
    assert all(round_digest(ge, r) == round_digest(he, r) for r in (1, 2, 3))
    assert {e["round"] for e in ge} == {1, 2, 3}  # every message belongs to a committed round


def test_host_refuses_a_different_job_definition_naming_the_keys(tmp_path, chain_env) -> None:
    path = _config(tmp_path)
    res = run_both(tmp_path, chain_env, load_config(path, ["lr.epochs=5"]), load_config(path, ["lr.epochs=7"]))
    assert isinstance(res["host"], NodeError) and isinstance(res["guest"], NodeError)
    assert str(res["host"]) == "job configurations differ between guest and host: [lr] epochs: host 7, guest 5"
    assert str(res["guest"]).startswith("the host refused the job: job configurations differ")
    for role in ("guest", "host"):
        job = json.loads((tmp_path / "out" / role / "job.json").read_text())
        assert job["status"] == "failed" and job["session_id"] is None


def test_local_settings_do_not_change_the_job_definition(tmp_path) -> None:
    path = _config(tmp_path)
    a = load_config(path, ["guest.address=10.0.0.1:1", "transport.timeout=5", "chain.url=http://x:1",
                           "job.id=abc", "lr.warm_start=m"])
    b, salt = Binding.config(1, "0x" + "ab" * 20, bytes(32), "0x" + "cd" * 20, "guest"), bytes(range(32))
    assert config_commitment(a, b, salt) == config_commitment(load_config(path), b, salt)
    assert config_commitment(load_config(path, ["gmm.k=3"]), b, salt) != config_commitment(load_config(path), b, salt)
    assert config_commitment(a, b, bytes(32)) != config_commitment(a, b, salt)  # salted


def test_failure_in_a_phase_aborts_the_session_and_both_run_dirs_say_failed(tmp_path, chain_env,
                                                                            monkeypatch) -> None:
    from nodes.phases import intersection

    def broken_host(ctx):
        raise ValueError("disk full")

    monkeypatch.setattr(intersection, "run_host", broken_host)
    res = run_both(tmp_path, chain_env, load_config(_config(tmp_path)))
    assert str(res["host"]) == "ValueError: disk full"
    assert str(res["guest"]).startswith("host failed: ValueError: disk full while guest was")
    jobs = {r: json.loads((tmp_path / "out" / r / "job.json").read_text()) for r in ("guest", "host")}
    assert jobs["guest"]["status"] == jobs["host"]["status"] == "failed"
    sid = bytes.fromhex(jobs["guest"]["session_id"][2:])
    info = _link(chain_env, "guest").session(sid)
    assert info["status"] == "aborted"
    aborted = [j["abort"] for j in jobs.values() if j["abort"].get("tx_hash")]
    assert len(aborted) == 1 and info["abort_reason"] == aborted[0]["reason_hash"]


def test_a_chain_write_refused_because_the_peer_just_aborted_names_the_peer_failure(tmp_path, chain_env,
                                                                                      monkeypatch) -> None:
    import time

    from nodes.context import PartyContext
    from nodes.phases import intersection

    def broken_host(ctx):
        raise ValueError("disk full")

    commit = PartyContext.commit_round

    def late_guest_commit(self, round_no, phase, params, loss=None):
        if self.role == "guest":  # the guest's next chain write comes after the host aborted
            link = _link(chain_env, "guest")
            sid = session_id_of(self.job_id, link.chain_id, link.contract, link.address)
            deadline = time.monotonic() + 30
            while link.session(sid)["status"] != "aborted" and time.monotonic() < deadline:
                time.sleep(0.05)
        return commit(self, round_no, phase, params, loss)

    monkeypatch.setattr(intersection, "run_host", broken_host)
    monkeypatch.setattr(PartyContext, "commit_round", late_guest_commit)
    res = run_both(tmp_path, chain_env, load_config(_config(tmp_path)))
    assert str(res["guest"]).startswith("host failed: ValueError: disk full while guest was writing to the chain")
    assert "WrongSessionState" in str(res["guest"])  # the refusal itself is kept, after the cause


def test_phases_not_written_yet_are_skipped_and_reported(tmp_path, chain_env, monkeypatch) -> None:
    monkeypatch.setitem(algorithms.REGISTRY, "psi", replace(algorithms.get("psi"), phases=("intersection", "no_such_phase")))
    res = run_both(tmp_path, chain_env, load_config(_config(tmp_path)))
    assert res["guest"]["status"] == "complete"
    assert res["guest"]["phases_run"] == ["intersection"]
    assert res["guest"]["phases_skipped"] == res["host"]["phases_skipped"] == ["no_such_phase"]


def test_a_used_run_directory_is_refused_without_force(tmp_path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job.json").write_text("{}")
    node = PartyNode(load_config(_config(tmp_path)), "guest", tmp_path / "out")
    with pytest.raises(ConfigError, match="is not empty; choose another --out or pass --force"):
        node.run()


def test_ciphertexts_under_either_partys_key_cross_in_a_job(tmp_path, chain_env, monkeypatch) -> None:
    """A phase sends Enc_guest(v) to the host and gets Enc_guest(v + 1) back: both keys are trusted."""
    import sys
    import types

    import numpy as np

    echo = types.ModuleType("nodes.phases.echo_check")

    def run_guest(ctx):
        r = ctx.next_round()
        ch = ctx.channel("echo_check")
        ch.send("enc", {"v": ctx.public_key.encrypt(np.array([1, 2, 3]))}, round=r)
        back = ctx.private_key.decrypt(ch.recv("enc_plus_one", round=r)["v"])
        ctx.state["echo"] = back.tolist()
        ctx.commit_round(r, "echo_check", {"ok": True})

    def run_host(ctx):
        r = ctx.next_round()
        ch = ctx.channel("echo_check")
        enc = ch.recv("enc", round=r)["v"]
        assert enc.public_key == ctx.peer_key
        ch.send("enc_plus_one", {"v": enc + np.array([1, 1, 1])}, round=r)
        ctx.commit_round(r, "echo_check", {"ok": True})

    echo.run_guest, echo.run_host = run_guest, run_host
    monkeypatch.setitem(sys.modules, "nodes.phases.echo_check", echo)
    monkeypatch.setitem(algorithms.REGISTRY, "psi", replace(algorithms.get("psi"), phases=("intersection", "echo_check")))
    res = run_both(tmp_path, chain_env, load_config(_config(tmp_path)))
    assert res["guest"]["status"] == "complete", res
    assert res["guest"]["phases_run"] == ["intersection", "echo_check"] and res["guest"]["rounds"] == 4


def test_a_host_started_for_training_refuses_a_guest_that_asks_for_predictions(tmp_path, chain_env) -> None:
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"algorithm": "gmm", "role": "guest", "features": ["x0"], "covariance": "diag",
                                 "weights": [0.5, 0.5], "means": [[0.0], [1.0]], "covariances": [[1.0], [1.0]]}))
    path = _config(tmp_path)
    res = run_both(tmp_path, chain_env, load_config(path), load_config(path), models={"guest": model})
    assert str(res["host"]) == ("the guest runs a predict job, this host was started for a train job "
                                "(vflchain node --model starts a prediction job)")
    assert str(res["guest"]).startswith("the host refused the job: the guest runs a predict job")
    for role in ("guest", "host"):
        job = json.loads((tmp_path / "out" / role / "job.json").read_text())
        assert job["status"] == "failed" and job["session_id"] is None
    assert json.loads((tmp_path / "out" / "guest" / "job.json").read_text())["algorithm"] == "gmm-predict"


def test_only_parties_that_encrypt_under_their_own_key_build_encryption_tables():
    def encrypts_own(algorithm: str, role: str) -> bool:
        return algorithms.get(algorithm).role_encrypts_own(role)

    assert encrypts_own("lr", "guest") and encrypts_own("lr", "host") and encrypts_own("lr", "host2")
    assert encrypts_own("gmm", "guest") and not encrypts_own("gmm", "host")
    assert not encrypts_own("psi", "guest") and not encrypts_own("lr-predict", "host")
