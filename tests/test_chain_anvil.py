"""The same contract scenario on a real JSON-RPC node: anvil (npm @foundry-rs/anvil),
started by the test on 127.0.0.1 on a free port and stopped by its pid."""

from __future__ import annotations

import os

import pytest
from chain_scenario import (
    assert_history_matches_views,
    assert_registry_matches_views,
    full_session,
    h,
    setup_contract,
)

from chain.anvil import available, start_anvil
from chain.backends import connect
from chain.client import session_label
from chain.deploy import dev_contract, recorded
from chain.errors import ContractRevert

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not available(), reason="node_modules/.bin/anvil missing: run `make setup`")]


@pytest.fixture(scope="module")
def anvil():
    node = start_anvil()
    yield node
    node.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(node.pid, 0)  # stopped by its pid: gone


def test_the_scenario_runs_on_anvil(anvil):
    w3 = connect(anvil.url)
    assert w3.eth.chain_id == 31337
    p = setup_contract(w3)
    sid = full_session(p, "anvil-1", rounds=3, dispute=2)
    assert [p.auditor.round_state(sid, r) for r in (1, 2, 3)] == ["attested", "disputed", "attested"]
    assert_history_matches_views(p.auditor, sid)

    p.guest.open_session(session_label("anvil-2"), "gmm", h("cfg"), [p.host.account.address, p.host2.account.address])
    multi = p.guest.session_id(session_label("anvil-2"))
    assert multi == p.auditor.contract.functions.sessionIdOf(p.guest.account.address, session_label("anvil-2")).call()
    p.host.join_session(multi)
    p.host2.join_session(multi)
    for c in (p.guest, p.host, p.host2):
        c.submit_round(multi, 1, h("c"), h("t"))
    assert p.auditor.round_state(multi, 1) == "attested"
    with pytest.raises(ContractRevert) as err:
        p.host.submit_round(multi, 1, h("c"), h("t"))
    assert str(err.value) == (f"DuplicateRound(sessionId=0x{multi.hex()}, round=1, "
                              f"party={p.host.account.address})")
    p.admin.revoke(p.host2.account.address)
    with pytest.raises(ContractRevert, match="^Revoked"):
        p.host2.submit_round(multi, 2, h("c"), h("t"))
    assert_history_matches_views(p.auditor, multi)
    assert_registry_matches_views(p.auditor)


def test_dev_contract_deploys_once_per_chain(anvil, tmp_path):
    w3 = connect(anvil.url)
    address = dev_contract(w3, tmp_path)
    assert dev_contract(w3, tmp_path) == address
    assert recorded(tmp_path, w3)["address"] == address
