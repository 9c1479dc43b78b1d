"""docs/deployment.md, rehearsed on one machine: its OpenSSL commands make the certificates,
its two config files run as two `vflchain node` processes over mutual TLS on 127.0.0.1.

Only what is machine-specific is overridden (paths, ports, the chain, dev accounts
instead of keystores, and so the partners of each [policy]; a PSI-only job with 1024-bit
keys to stay fast).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodes.testing import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "deployment.md"


def _block(name: str) -> str:
    """The fenced code block after `<!-- tested: NAME -->` in docs/deployment.md."""
    m = re.search(rf"<!-- tested: {re.escape(name)} -->\s*```\w*\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"docs/deployment.md has no block marked {name!r}"
    return m.group(1)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_documented_two_node_tls_deployment_runs(tmp_path, breast) -> None:
    from chain.accounts import DEV_INDEX, dev_account
    from chain.backends import connect
    from chain.client import AuditClient
    from chain.deploy import dev_contract
    from chain.embedded import start_server
    from nodes.datafiles import write_party_csv

    tls = tmp_path / "tls"
    tls.mkdir()
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", _block("certs")], cwd=tls, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "GUEST_IP": "127.0.0.1", "HOST_IP": "127.0.0.1"})
    assert res.returncode == 0, res.stderr
    assert "guest.crt: OK" in res.stdout and "host.crt: OK" in res.stdout
    for role in ("guest", "host"):
        (tmp_path / f"{role}.toml").write_text(_block(f"{role}.toml"))
    g, h = breast
    write_party_csv(g, tmp_path / "guest.csv")
    write_party_csv(h, tmp_path / "host.csv")

    handle = start_server(tmp_path / "chain")
    try:
        contract = dev_contract(connect(handle.url), tmp_path / "chain")
        gport, hport = free_port(), free_port()
        common = [f"guest.address=127.0.0.1:{gport}", f"host.address=127.0.0.1:{hport}",
                  "guest.listen=", "host.listen=", "guest.keystore=", "host.keystore=",
                  f"chain.url={handle.url}", f"chain.contract={contract}", "job.algorithm=psi",
                  "paillier.key_bits=1024", "paillier.insecure_test_keys=true", "transport.connect_timeout=60"]
        procs = {}
        for role in ("host", "guest"):
            partner = dev_account(DEV_INDEX["guest" if role == "host" else "host"]).address
            sets = common + [f"{role}.data={tmp_path / f'{role}.csv'}", f"transport.ca={tls / 'ca.crt'}",
                             f"transport.cert={tls / f'{role}.crt'}", f"transport.key={tls / f'{role}.key'}",
                             f'policy.partners=["{partner}"]', "policy.min_key_bits=1024",
                             f"policy.state={tmp_path / 'policy' / role}"]
            cmd = [sys.executable, "-m", "nodes.cli", "node", "--config", str(tmp_path / f"{role}.toml"),
                   "--role", role, "--out", str(tmp_path / "runs" / role)]
            for s in sets:
                cmd += ["--set", s]
            procs[role] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        outputs = {role: p.communicate(timeout=180) for role, p in procs.items()}
        for role, p in procs.items():
            assert p.returncode == 0, outputs[role][1]
        jobs = {r: json.loads((tmp_path / "runs" / r / "job.json").read_text()) for r in ("guest", "host")}
        assert jobs["guest"]["status"] == jobs["host"]["status"] == "complete"
        assert jobs["guest"]["config"]["transport"]["cert"] == str(tls / "guest.crt")
        client = AuditClient(connect(handle.url), contract)
        assert client.session(bytes.fromhex(jobs["guest"]["session_id"][2:]))["status"] == "closed"
    finally:
        handle.stop()
