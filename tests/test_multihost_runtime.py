"""The runtime of a vertical job with N >= 2 hosts, in one process: its config, the guest's shared
listening address, and whole jobs through the Python API (every party a PartyNode over in-memory links)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nodes.config import load_config
from nodes.errors import ConfigError
from nodes.transport.base import Address, TransportError
from nodes.transport.grpc import GrpcTransport, LinkServer
from vfl.datasets import breast_split_hosts

TEST_KEYS = ["paillier.key_bits=1024", "paillier.insecure_test_keys=true"]


def test_hosts_configure_host1_to_hostN_and_a_two_party_config_is_unchanged() -> None:
    cfg = load_config(None, ["job.hosts=3", "host2.data=b.csv", "host3.address=10.0.0.3:7000"])
    assert cfg.host_roles() == ["host1", "host2", "host3"]
    assert cfg.party("host3").address == "10.0.0.3:7000" and cfg.party("host1").address == "127.0.0.1:50052"
    assert cfg.party("host2").data.endswith("b.csv")
    assert cfg.job_definition()["job"]["hosts"] == 3 and "host2" not in cfg.job_definition()
    two = load_config(None, [])
    assert two.host_roles() == ["host"] and "hosts" not in two.to_dict()["job"]
    assert "hosts" not in two.job_definition()["job"]


@pytest.mark.parametrize("sets, message", [
    (["job.hosts=2", "host.data=h.csv"], "[host] is the host of a two-party job; with [job] hosts = 2 configure "
                                         "[host1]..[host2]"),
    (["job.hosts=2", "host3.data=h.csv"], "[host3]: the job has 2 hosts (host1..host2) or set [job] hosts"),
    (["host1.data=h.csv"], "[host1]: the job has one host: use [host] or set [job] hosts"),
    (["job.hosts=0"], "[job] hosts must be between 1 and 31, got 0"),
    (["job.hosts=2", "job.algorithm=hfl-lr"], "[job] hosts = 2: only a vertical job has hosts"),
])
def test_a_host_entry_that_does_not_fit_is_refused_in_one_line_naming_the_key(sets, message) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, sets)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_a_host_without_data_is_named_by_its_section() -> None:
    from nodes.datafiles import load_party_csv
    from vfl.errors import DataError

    cfg = load_config(None, ["job.hosts=2"])
    with pytest.raises(DataError, match=r"no data file: set \[host2\] data in the config"):
        load_party_csv(cfg.party("host2").data, "host2")


def test_the_guests_one_address_routes_each_hosts_messages_to_its_link_and_refuses_strangers() -> None:
    from nodes.testing import free_port

    guest_port, ports = free_port(), {h: free_port() for h in ("host1", "host2")}
    server = LinkServer("guest", f"127.0.0.1:{guest_port}", None)
    links = {h: GrpcTransport("guest", h, f"127.0.0.1:{guest_port}", f"127.0.0.1:{p}", job="j").start(server)
             for h, p in ports.items()}
    hosts = {h: GrpcTransport(h, "guest", f"127.0.0.1:{p}", f"127.0.0.1:{guest_port}", job="j").start()
             for h, p in ports.items()}
    stranger = GrpcTransport("host3", "guest", f"127.0.0.1:{free_port()}", f"127.0.0.1:{guest_port}", job="j",
                             retries=0).start()
    try:
        for h, t in hosts.items():
            t.send(Address("j", "handshake", 1, "hello"), {"from": h})
        assert {h: links[h].recv(Address("j", "handshake", 1, "hello"), timeout=5)["from"] for h in links} == \
            {"host1": "host1", "host2": "host2"}
        assert links["host1"].connect(5)["role"] == "host1"
        with pytest.raises(TransportError, match="accepts messages from the host1, host2 only, not from 'host3'"):
            stranger.send(Address("j", "handshake", 1, "hello"), {})
    finally:
        for t in [*hosts.values(), *links.values(), stranger]:
            t.close()
        server.stop()


def test_a_psi_job_with_two_hosts_runs_from_python_and_every_party_attests_every_round(tmp_path) -> None:
    import vflchain

    guest, hosts = breast_split_hosts(2)
    keep = np.arange(0, guest.n_rows, 3)
    data = {"guest": guest.take(keep), "host1": hosts[0], "host2": hosts[1].take(np.arange(0, hosts[1].n_rows, 2))}
    result = vflchain.run_job({"job": {"algorithm": "psi", "hosts": 2}}, data, overrides=TEST_KEYS,
                              out=tmp_path / "api")
    truth = set(data["guest"].ids) & set(data["host1"].ids) & set(data["host2"].ids)
    for party in ("guest", "host1", "host2"):
        inter = json.loads((tmp_path / "api" / party / "intersection.json").read_text())
        assert inter["intersection_size"] == len(truth)
    digests = {p: [line["transcript_digest"] for line in r.rounds] for p, r in result.parties.items()}
    assert digests["host1"] == digests["host2"] == digests["guest"] and len(digests["guest"]) == 3
    assert result.parties["guest"].job["host_accounts"].keys() == {"host1", "host2"}
