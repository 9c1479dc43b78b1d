"""The audit contract: gas per call, and round submissions per second on each chain.

Gas is measured on the embedded chain (the EVM charges the same gas everywhere).
Throughput is one party after the other posting rounds of a two-party session, each
transaction signed locally, sent raw and waited for, exactly as the runtime does:
on the embedded chain served over HTTP (with its journal fsync'd per block), the
same chain in-process, and a real anvil node.
"""

from __future__ import annotations

import tempfile
import time

from eth_utils import keccak

from benchmarks.harness import Bench
from chain.accounts import dev_account
from chain.anvil import available, start_anvil
from chain.backends import connect, memory_chain
from chain.client import AuditClient, session_label
from chain.deploy import deploy, ensure_registered
from chain.embedded import start_server

SECTION = "chain"


def _h(text: str) -> bytes:
    return keccak(text=text)


def _parties(w3):
    dep = deploy(w3, dev_account(0))
    admin = AuditClient(w3, dep["address"], dev_account(0))
    ensure_registered(admin, {dev_account(1).address: ("guest", "G"), dev_account(2).address: ("host", "H"),
                              dev_account(3).address: ("host", "H2")})
    return admin, *(AuditClient(w3, dep["address"], dev_account(i)) for i in (1, 2, 3))


def _gas(bench: Bench) -> None:
    w3 = memory_chain()
    dep = deploy(w3, dev_account(0))
    admin = AuditClient(w3, dep["address"], dev_account(0))
    rows: list[tuple[str, int]] = []
    receipt = w3.eth.get_transaction_receipt(dep["tx_hash"])
    rows.append(("deploy", int(receipt["gasUsed"])))
    rows.append(("registerParticipant", admin.register_participant(dev_account(1).address, "guest", "General Hospital")["gas_used"]))
    admin.register_participant(dev_account(2).address, "host", "City Lab")
    admin.register_participant(dev_account(3).address, "host", "County Clinic")
    guest, host, host2 = (AuditClient(w3, dep["address"], dev_account(i)) for i in (1, 2, 3))
    sid = guest.session_id(session_label("bench-gas"))
    rows.append(("openSession (1 host)", guest.open_session(session_label("bench-gas"), "lr", _h("cfg"),
                                                             [host.account.address])["gas_used"]))
    rows.append(("joinSession (activates)", host.join_session(sid)["gas_used"]))
    rows.append(("submitRound (first of round)", guest.submit_round(sid, 1, _h("c1"), _h("t1"))["gas_used"]))
    rows.append(("submitRound (last, attested)", host.submit_round(sid, 1, _h("c2"), _h("t1"))["gas_used"]))
    guest.submit_round(sid, 2, _h("c3"), _h("t2"))
    rows.append(("submitRound (last, disputed)", host.submit_round(sid, 2, _h("c4"), _h("t2x"))["gas_used"]))
    rows.append(("finalize (host)", host.finalize(sid, _h("m-host"))["gas_used"]))
    rows.append(("finalize (guest, closes)", guest.finalize(sid, _h("m-guest"), _h("metrics"))["gas_used"]))
    sid3 = guest.session_id(session_label("bench-gas-3"))
    rows.append(("openSession (2 hosts)", guest.open_session(session_label("bench-gas-3"), "gmm", _h("cfg"),
                                                             [host.account.address, host2.account.address])["gas_used"]))
    host.join_session(sid3)
    host2.join_session(sid3)
    guest.submit_round(sid3, 1, _h("a"), _h("t"))
    host.submit_round(sid3, 1, _h("b"), _h("t"))
    rows.append(("submitRound (3 parties, last)", host2.submit_round(sid3, 1, _h("c"), _h("t"))["gas_used"]))
    rows.append(("abortSession", host.abort_session(sid3, _h("stop"))["gas_used"]))
    sid4 = guest.session_id(session_label("bench-gas-4"))
    guest.open_session(session_label("bench-gas-4"), "lr", _h("cfg"), [host.account.address], timeout=1)
    host.join_session(sid4)
    guest.submit_round(sid4, 1, _h("a"), _h("t"))
    for i in range(2):  # blocks are >= 1 s apart: past the timeout
        guest.open_session(session_label(f"bench-gas-tick-{i}"), "lr", _h("cfg"), [host.account.address])
    rows.append(("expireSession (2 parties)", host.expire_session(sid4)["gas_used"]))
    rows.append(("proposeAdmin", admin.propose_admin(guest.account.address)["gas_used"]))
    rows.append(("acceptAdmin", guest.accept_admin()["gas_used"]))
    for item, gas in rows:
        bench.add(SECTION, f"gas: {item}", float(gas), unit="gas")


def _round_rate(w3, n: int) -> float:
    """Round submissions per second (guest and host alternating), after one warm-up round."""
    _, guest, host, _ = _parties(w3)
    label = session_label(f"bench-rate-{time.time_ns()}")
    sid = guest.session_id(label)
    guest.open_session(label, "lr", _h("cfg"), [host.account.address])
    host.join_session(sid)
    guest.submit_round(sid, 1, _h("g1"), _h("t1"))
    host.submit_round(sid, 1, _h("h1"), _h("t1"))
    rounds = max(1, n // 2)
    t0 = time.perf_counter()
    for r in range(2, rounds + 2):
        guest.submit_round(sid, r, _h(f"g{r}"), _h(f"t{r}"))
        host.submit_round(sid, r, _h(f"h{r}"), _h(f"t{r}"))
    return 2 * rounds / (time.perf_counter() - t0)


def run(bench: Bench) -> None:
    _gas(bench)
    n = 20 if bench.quick else 200
    with tempfile.TemporaryDirectory() as state, start_server(state) as server:
        served = _round_rate(connect(server.url), n)
    in_process = _round_rate(memory_chain(), n)
    anvil_rate = None
    if available():
        with start_anvil() as node:
            anvil_rate = _round_rate(connect(node.url), n)
    bench.add(SECTION, f"round submissions, embedded chain over HTTP ({n} tx)", served, anvil_rate,
              unit="tx/s", note="reference: anvil; journal fsync'd per block")
    bench.add(SECTION, f"round submissions, embedded chain in-process ({n} tx)", in_process, anvil_rate,
              unit="tx/s", note="reference: anvil; memory only")
    bench.add(SECTION, f"round submissions, anvil ({n} tx)", anvil_rate, unit="tx/s",
              note="" if anvil_rate else "anvil missing: run `make setup`")
