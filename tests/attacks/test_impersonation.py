"""Impersonating the guest: a node with a valid certificate from the consortium CA claims the guest role.

The honest host runs as a real `vflchain node --role host` process over mutual TLS. Three
attackers come to the guest's address in turn, each with its own certificate from the same CA:

- Mallory, a *registered guest* of the consortium that the host never agreed to work with,
  running an unmodified `vflchain node --role guest` with her own account;
- a consortium member whose account is registered as a *host*, claiming the guest role;
- a forger (attacker code, in this process) that claims the honest guest's account in the
  hello and signs the identity proof with its own key.

Each must be refused in the handshake with a one-line error: no session is opened or joined
on chain for it, no PSI message is exchanged, and the host keeps serving, so the honest guest
that comes next completes its job. On the code before identity proofs, Mallory ran PSI against
the host (learning the intersection) and the other two left the host failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nodes.testing import free_port

pytestmark = pytest.mark.slow
PASS = "impersonation-test-passphrase"


def _keystore(path: Path, index: int) -> Path:
    from eth_account import Account

    from chain.accounts import dev_account

    path.write_text(json.dumps(Account.encrypt(dev_account(index).key, PASS, kdf="pbkdf2", iterations=2)))
    return path


def _node(cfg: Path, role: str, out: Path, tls: Path, cert: str, sets: list[str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "nodes.cli", "node", "--config", str(cfg), "--role", role, "--out", str(out),
           "--set", f"transport.cert={tls / f'{cert}.crt'}", "--set", f"transport.key={tls / f'{cert}.key'}",
           "--set", f"transport.ca={tls / 'ca.crt'}"]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "VFLCHAIN_PASSPHRASE": PASS})


def _refused(proc: subprocess.Popen[str], out: Path) -> str:
    """The attacker's one-line error; asserts it got nothing on chain and no intersection."""
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0, f"the impersonator was served: {err}"
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vflchain: error: "), err
    job = json.loads((out / "job.json").read_text())
    assert job["status"] == "failed" and job["session_id"] is None
    assert not (out / "intersection.json").exists()
    return lines[0]


def test_a_certified_node_that_cannot_prove_the_guest_account_is_refused_before_psi(tmp_path, breast) -> None:
    from chain.accounts import dev_account
    from chain.backends import connect
    from chain.client import AuditClient
    from chain.deploy import dev_contract
    from chain.embedded import start_server
    from chain.sessions import session_label
    from nodes.chainlink import ChainLink
    from nodes.config import load_config
    from nodes.datafiles import write_party_csv
    from nodes.errors import NodeError
    from nodes.job import PartyNode
    from nodes.transport.tls import write_dev_pki

    tls = tmp_path / "tls"
    write_dev_pki(tls, parties=("guest", "host", "mallory", "member", "forger"))
    g, h = breast
    write_party_csv(g, tmp_path / "guest.csv")
    write_party_csv(h, tmp_path / "host.csv")
    handle = start_server(tmp_path / "chain")
    try:
        w3 = connect(handle.url)
        contract = dev_contract(w3, tmp_path / "chain")
        admin = AuditClient(w3, contract, dev_account(0))
        admin.register_participant(dev_account(3).address, "guest", "Mallory lab")
        admin.register_participant(dev_account(4).address, "host", "Another member")
        gport, hport = free_port(), free_port()
        (tmp_path / "job.toml").write_text(
            f'[job]\nalgorithm = "psi"\n[guest]\ndata = "guest.csv"\naddress = "127.0.0.1:{gport}"\n'
            f'[host]\ndata = "host.csv"\naddress = "127.0.0.1:{hport}"\n'
            f'[chain]\nurl = "{handle.url}"\ncontract = "{contract}"\n'
            "[paillier]\nkey_bits = 1024\ninsecure_test_keys = true\n[transport]\nconnect_timeout = 120.0\ntimeout = 60.0\n")
        cfg = tmp_path / "job.toml"
        host = _node(cfg, "host", tmp_path / "runs" / "host", tls, "host", [])
        try:
            # 1. Mallory: a registered guest with her own key and certificate, not the host's partner
            mallory = _node(cfg, "guest", tmp_path / "runs" / "mallory", tls, "mallory",
                            [f"guest.keystore={_keystore(tmp_path / 'mallory.json', 3)}"])
            line = _refused(mallory, tmp_path / "runs" / "mallory")
            assert "the host refused the job" in line and dev_account(3).address in line and "partners" in line

            # 2. an account registered as a host claims the guest role
            member = _node(cfg, "guest", tmp_path / "runs" / "member", tls, "member",
                           [f"guest.keystore={_keystore(tmp_path / 'member.json', 4)}"])
            line = _refused(member, tmp_path / "runs" / "member")
            assert "registered as host, not guest" in line

            # 3. a forger claims the honest guest's account, signing with its own key
            class Forged(ChainLink):
                @property
                def address(self) -> str:
                    return str(dev_account(1).address)

            def forged_link(c: Any, role: str) -> ChainLink:
                return Forged(AuditClient(connect(handle.url), contract, dev_account(3)), int(w3.eth.chain_id),
                              handle.url)

            fcfg = load_config(cfg, [f"transport.cert={tls / 'forger.crt'}", f"transport.key={tls / 'forger.key'}",
                                     f"transport.ca={tls / 'ca.crt'}"])
            with pytest.raises(NodeError, match=r"the host refused the job: the guest's identity proof is signed by "
                               + dev_account(3).address):
                PartyNode(fcfg, "guest", tmp_path / "runs" / "forger", chain_factory=forged_link).run()
            forged = json.loads((tmp_path / "runs" / "forger" / "job.json").read_text())
            assert forged["session_id"] is None

            # nothing is on chain for any of them
            assert admin.sessions() == []

            # 4. the host is still serving: the honest guest's job runs to its end
            guest = _node(cfg, "guest", tmp_path / "runs" / "guest", tls, "guest", [])
            _, gerr = guest.communicate(timeout=180)
            assert guest.returncode == 0, gerr
            _, herr = host.communicate(timeout=60)
            assert host.returncode == 0, herr
        finally:
            if host.poll() is None:
                host.kill()
                host.communicate()
        jobs = {r: json.loads((tmp_path / "runs" / r / "job.json").read_text()) for r in ("guest", "host")}
        assert jobs["guest"]["status"] == jobs["host"]["status"] == "complete"
        assert [r["peer_account"] for r in jobs["host"]["refused"]] == [
            dev_account(3).address, dev_account(4).address, dev_account(1).address]
        sid = bytes.fromhex(jobs["guest"]["session_id"].removeprefix("0x"))
        assert admin.sessions() == ["0x" + sid.hex()]
        assert sid == admin.session_id(session_label(jobs["guest"]["job_id"]), dev_account(1).address)
        assert admin.session(sid)["status"] == "closed"
        # the host's transcript holds the honest job only
        tags = [json.loads(ln)["tag"] for ln in (tmp_path / "runs" / "host" / "transcript.jsonl").open()]
        assert tags.count("hello") == 1
    finally:
        handle.stop()
