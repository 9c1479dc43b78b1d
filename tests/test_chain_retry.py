"""Transient chain failures: a refused connection is retried for `retry_seconds`, then one clear error."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from chain.backends import RetryingHTTPProvider, connect
from chain.errors import ChainUnavailable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_without_retries_a_dead_chain_is_one_clear_error_at_once():
    url = f"http://127.0.0.1:{_free_port()}"
    provider = RetryingHTTPProvider(url, timeout=5, retry_seconds=0)
    t0 = time.monotonic()
    with pytest.raises(ChainUnavailable, match=r"did not answer eth_chainId \(ConnectionError\)"):
        provider.make_request("eth_chainId", [])  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 2


def test_a_refused_connection_is_retried_until_the_chain_is_back(tmp_path):
    from chain.processes import start_server

    port = _free_port()
    handles = []
    starter = threading.Timer(0.5, lambda: handles.append(start_server(tmp_path / "chain", port=port)))
    starter.start()
    try:
        w3 = connect(f"http://127.0.0.1:{port}", retry_seconds=60)  # refused until the server listens
        assert int(w3.eth.chain_id) > 0
    finally:
        starter.join()
        for h in handles:
            h.stop()


def test_retrying_gives_up_after_retry_seconds():
    url = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ChainUnavailable, match=r"did not answer eth_chainId for 0.5 s"):
        RetryingHTTPProvider(url, retry_seconds=0.5).make_request("eth_chainId", [])  # type: ignore[arg-type]
    assert 0.4 < time.monotonic() - t0 < 5


def test_a_transaction_resent_after_a_lost_answer_gives_its_hash(tmp_path):
    from eth_utils import keccak

    from chain.accounts import dev_account
    from chain.processes import start_server

    with start_server(tmp_path / "chain") as handle:
        w3 = connect(handle.url, retry_seconds=5)
        account = dev_account(1)
        tx = {"to": dev_account(2).address, "value": 1, "gas": 21_000, "type": 2, "chainId": int(w3.eth.chain_id),
              "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
              "nonce": w3.eth.get_transaction_count(account.address)}
        raw = account.sign_transaction(tx).raw_transaction
        first = w3.eth.send_raw_transaction(raw)
        again = w3.eth.send_raw_transaction(raw)  # as after a connection reset: "already known"
        assert bytes(first) == bytes(again) == keccak(raw)
        assert w3.eth.wait_for_transaction_receipt(again, timeout=10)["status"] == 1
