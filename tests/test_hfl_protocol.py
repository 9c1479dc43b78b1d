"""Horizontal LR between a coordinator and three clients in one process (in-memory links), against the
real audit contract on an in-process chain: rounds attested by all four, and what the coordinator holds."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nodes.config import load_config
from nodes.datafiles import write_party_csv
from nodes.hfl_config import dev_index
from nodes.hfl_node import HflNode
from nodes.testing import shared_memory_chain
from nodes.transcript import Transcript
from nodes.transport.codec import decode_message, keyring
from nodes.transport.memory import memory_link
from nodes.transport.star import StarTransport
from vfl.hfl.options import HflOptions
from vfl.hfl.shards import breast_horizontal
from vfl.hfl.simulate import run_federation
from vfl.paillier import EncryptedArray

CLIENTS = ["client1", "client2", "client3"]


@pytest.fixture(scope="module")
def chain_env(tmp_path_factory):
    """An in-process chain with the contract; the coordinator (guest) and three clients (hosts) registered."""
    from chain.accounts import dev_account

    parties = {dev_account(dev_index("coordinator")).address: ("guest", "coordinator org")}
    parties |= {dev_account(dev_index(c)).address: ("host", f"{c} org") for c in CLIENTS}
    return shared_memory_chain(tmp_path_factory.mktemp("state"), parties)


def _link(chain_env, role: str):
    from chain.accounts import dev_account
    from chain.client import AuditClient
    from nodes.chainlink import ChainLink

    w3, contract = chain_env
    return ChainLink(AuditClient(w3, contract, dev_account(dev_index(role))), int(w3.eth.chain_id), "memory")


def _config(tmp: Path, **hfl: Any):
    shards = breast_horizontal(3, skew=0.3, seed=1)
    for k, shard in enumerate(shards, 1):
        write_party_csv(shard, tmp / "data" / f"client{k}.csv")
    values = {"clients": 3, "rounds": 2, "batch_size": 64} | hfl
    text = ('[job]\nalgorithm = "hfl-lr"\nseed = 5\n[paillier]\nkey_bits = 1024\ninsecure_test_keys = true\n[hfl]\n'
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
            + '[federation]\ndata = ["data/client1.csv", "data/client2.csv", "data/client3.csv"]\n')
    (tmp / "job.toml").write_text(text)
    return load_config(tmp / "job.toml"), [(s.X, s.y) for s in shards]


def run_federation_nodes(tmp: Path, chain_env, cfg, nodes: dict[str, HflNode], configs: dict[str, Any] | None = None,
                         star: type[StarTransport] = StarTransport) -> tuple[dict[str, Any], list]:
    """All four nodes in threads; returns ({role: job.json or exception}, (sender, bytes) the coordinator
    received); `nodes` gets the HflNode objects."""
    links, client_ends = {}, {}
    for c in CLIENTS:
        links[c], client_ends[c] = memory_link("coordinator", c)
    received: list[tuple[str, bytes]] = []
    for c in CLIENTS:  # the clients' sends are what reaches the coordinator
        client_ends[c].tap = lambda role, addr, data: received.append((role, data))

    def factory(cfg_, role, job_id, transcript):
        if role == "coordinator":
            for link in links.values():
                link.transcript = transcript
            return star(links)
        client_ends[role].transcript = transcript
        return client_ends[role]

    results: dict[str, Any] = {}

    def run(role: str) -> None:
        node = nodes[role] = HflNode((configs or {}).get(role, cfg), role, tmp / "out" / role, transport_factory=factory,
                       chain_factory=lambda c, r: _link(chain_env, r))
        try:
            results[role] = node.run()
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            results[role] = exc

    threads = [threading.Thread(target=run, args=(c,)) for c in CLIENTS]
    for t in threads:
        t.start()
    run("coordinator")
    for t in threads:
        t.join(120)
    return results, received


def test_three_clients_train_to_the_plaintext_reference_with_every_round_attested(tmp_path, chain_env) -> None:
    cfg, shards = _config(tmp_path)
    nodes: dict[str, HflNode] = {}
    res, received = run_federation_nodes(tmp_path, chain_env, cfg, nodes)
    assert all(isinstance(r, dict) and r["status"] == "complete" for r in res.values()), res
    out = tmp_path / "out"
    ref = run_federation(shards, HflOptions(rounds=2, batch_size=64), seed=5)
    model = json.loads((out / "client2" / "model.json").read_text())
    got = np.array(model["weights"] + [model["intercept"]])
    assert np.abs(got - ref.models[-1]).max() < 1e-6
    assert (out / "client1" / "model.json").read_bytes() == (out / "client3" / "model.json").read_bytes()
    metrics = json.loads((out / "coordinator" / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == pytest.approx(ref.accuracy[-1])
    assert (out / "coordinator" / "plots" / "accuracy_vs_round.png").is_file()
    # all four parties posted the same digest for every round: attested
    sid = bytes.fromhex(res["coordinator"]["session_id"][2:])
    link = _link(chain_env, "coordinator")
    assert link.session(sid)["status"] == "closed"
    rounds = [json.loads(x)["round"] for x in (out / "coordinator" / "rounds.jsonl").read_text().splitlines()]
    assert rounds == [1, 2, 3, 4, 5]
    assert all(link.round_state(sid, r) == "attested" for r in rounds)

    # transcript test: what the coordinator received never holds an individual update in plaintext
    key = nodes["client1"].ctx.private_key
    tags = set()
    for sender, data in received:
        addr, _, payload = decode_message(data, keyring(key.public_key))
        tags.add(addr.tag)
        if addr.tag == "update":
            assert isinstance(payload["update"], EncryptedArray) and payload["update"].public_key == key.public_key
        for value in payload.values():  # no plaintext vector of any kind reaches the coordinator
            assert not isinstance(value, np.ndarray), (sender, addr)
        for factor in (key.p, key.q):  # the private key never crossed in the clear
            assert hex(factor)[2:].encode() not in data and str(factor).encode() not in data
            assert factor.to_bytes((factor.bit_length() + 7) // 8, "big") not in data
    assert {"update", "key_bundle", "exchange_key", "key_ok", "done", "hello_reply"} <= tags
    # ... and these are exactly the messages the coordinator's transcript records as received
    recorded = {e["sha256"] for e in Transcript.load(out / "coordinator" / "transcript.jsonl")
                if e["direction"] == "received"}
    assert recorded == {hashlib.sha256(d).hexdigest() for _, d in received}
    assert len([1 for _, d in received if b'"update"' in d]) >= 3 * 2
    coordinator = nodes["coordinator"].ctx
    assert coordinator.private_key is None and coordinator.public_key == key.public_key


def test_a_client_with_a_different_job_definition_refuses_and_every_party_fails_naming_it(tmp_path, chain_env) -> None:
    cfg, _ = _config(tmp_path)
    other = load_config(tmp_path / "job.toml", ["hfl.rounds=3"])
    res, _ = run_federation_nodes(tmp_path, chain_env, cfg, {}, configs={"client2": other})
    assert all(isinstance(r, Exception) for r in res.values()), res
    assert "[hfl] rounds: client2 3, coordinator 2" in str(res["client2"])
    assert "client2 refused the job" in str(res["coordinator"])
    job = json.loads((tmp_path / "out" / "client1" / "job.json").read_text())
    assert job["status"] == "failed" and "client2 refused the job" in job["error"]


class SubstitutingStar(StarTransport):
    """A coordinator that swaps client2's X25519 key for its own, to catch the private key in transit."""

    def send(self, client, address, payload):
        if address.tag == "exchange_keys":
            from vfl.hfl.keyshare import new_exchange_key

            keys = [dict(k) for k in payload["keys"]]
            keys[0]["public"] = new_exchange_key()[1].hex()
            payload = {"keys": keys}
        super().send(client, address, payload)


def test_client1_refuses_to_seal_the_key_to_an_exchange_key_the_coordinator_substituted(tmp_path, chain_env) -> None:
    cfg, _ = _config(tmp_path)
    res, received = run_federation_nodes(tmp_path, chain_env, cfg, {}, star=SubstitutingStar)
    assert isinstance(res["client1"], Exception)
    assert "client2's exchange key is not signed by its account on chain" in str(res["client1"])
    assert not any(b"key_bundle" in data for _, data in received)  # nothing sealed was sent
    job = json.loads((tmp_path / "out" / "coordinator" / "job.json").read_text())
    assert job["status"] == "failed"
    sid = bytes.fromhex(job["session_id"][2:])
    assert _link(chain_env, "coordinator").session(sid)["status"] == "aborted"  # by whoever failed first


def test_adam_and_validation_weights_train_to_the_plaintext_simulation_and_weights_stay_encrypted(
        tmp_path, chain_env) -> None:
    cfg, shards = _config(tmp_path, adaptive="adam", weighting="validation", learning_rate=0.05)
    nodes: dict[str, HflNode] = {}
    res, received = run_federation_nodes(tmp_path, chain_env, cfg, nodes)
    assert all(isinstance(r, dict) and r["status"] == "complete" for r in res.values()), res
    out = tmp_path / "out"
    opts = HflOptions(rounds=2, batch_size=64, adaptive="adam", weighting="validation", learning_rate=0.05)
    ref = run_federation(shards, opts, seed=5)
    model = json.loads((out / "client3" / "model.json").read_text())
    assert np.abs(np.array(model["weights"] + [model["intercept"]]) - ref.models[-1]).max() < 1e-6
    plain_sgd = run_federation(shards, HflOptions(rounds=2, batch_size=64, learning_rate=0.05), seed=5)
    assert np.abs(ref.models[-1] - plain_sgd.models[-1]).max() > 1e-3  # the options changed the training
    metrics = json.loads((out / "coordinator" / "metrics.json").read_text())
    assert (metrics["adaptive"], metrics["weighting"]) == ("adam", "validation")
    key = nodes["client1"].ctx.private_key
    weights = 0
    for _, data in received:  # the coordinator gets each client's weight only as a ciphertext
        addr, _, payload = decode_message(data, keyring(key.public_key))
        if addr.tag == "update":
            assert isinstance(payload["weight"], EncryptedArray) and payload["weight"].public_key == key.public_key
            weights += 1
    assert weights == 3 * 2
    aggregates = json.loads((out / "coordinator" / "aggregates.json").read_text())["rounds"]
    assert len(aggregates) == 2 and all(len(r["weight_total_sha256"]) == 64 for r in aggregates)


def test_every_party_writes_its_communication_and_what_one_sent_the_other_received(tmp_path, chain_env) -> None:
    from nodes.communication import summarize

    cfg, _ = _config(tmp_path, rounds=1)
    res, _ = run_federation_nodes(tmp_path, chain_env, cfg, {})
    assert all(isinstance(r, dict) and r["status"] == "complete" for r in res.values()), res
    out = tmp_path / "out"
    comm = {role: json.loads((out / role / "communication.json").read_text()) for role in ["coordinator", *CLIENTS]}
    assert json.loads((out / "coordinator" / "metrics.json").read_text())["communication"] == "communication.json"
    for role, doc in comm.items():
        entries = Transcript.load(out / role / "transcript.jsonl")
        assert doc == {"role": role, **summarize(entries)}
        assert doc["totals"]["sent_bytes"] == sum(e["size"] for e in entries if e["direction"] == "sent")
        assert sum(p["sent_bytes"] for p in doc["phases"].values()) == doc["totals"]["sent_bytes"]
        assert list(doc["phases"]) == ["handshake", "keys", "train", "close"]
    for phase in ("handshake", "keys", "train", "close"):  # the star: the coordinator's traffic is the clients'
        coord = comm["coordinator"]["phases"][phase]
        assert coord["received_bytes"] == sum(comm[c]["phases"][phase]["sent_bytes"] for c in CLIENTS)
        assert coord["sent_messages"] == sum(comm[c]["phases"][phase]["received_messages"] for c in CLIENTS)
    assert {p: v["received_messages"] for p, v in comm["coordinator"]["peers"].items()} == {
        c: comm[c]["totals"]["sent_messages"] for c in CLIENTS}
