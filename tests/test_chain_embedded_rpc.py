"""The embedded chain answers JSON-RPC like a node: signed raw transactions only, logs by filter."""

from __future__ import annotations

import pytest
from chain_scenario import full_session, setup_contract
from web3 import Web3

from chain.backends import EmbeddedProvider
from chain.embedded import EmbeddedChain


@pytest.fixture(scope="module")
def chain():
    return EmbeddedChain(None)


@pytest.fixture(scope="module")
def scenario(chain):
    p = setup_contract(Web3(EmbeddedProvider(chain)))
    return p, full_session(p, "rpc-1", rounds=2)


def call(chain, method, *params):
    return chain.handle({"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)})


def test_no_node_side_accounts(chain):
    assert call(chain, "eth_accounts")["result"] == []
    answer = call(chain, "eth_sendTransaction", {"from": "0x" + "11" * 20, "to": "0x" + "22" * 20})
    assert "no unlocked accounts" in answer["error"]["message"]


def test_unknown_methods_and_bad_requests_get_json_rpc_errors(chain):
    assert call(chain, "eth_mining")["error"]["code"] == -32601
    assert chain.handle({"id": 1})["error"]["code"] == -32600
    assert call(chain, "eth_sendRawTransaction", "0xzz")["error"]["code"] == -32602
    assert "invalid transaction" in call(chain, "eth_sendRawTransaction", "0x02c0")["error"]["message"]


def test_batch_requests_answer_in_order(chain):
    answers = chain.handle([{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []} for i in range(3)])
    assert [a["id"] for a in answers] == [0, 1, 2]


def test_logs_filter_by_address_topic_and_range(chain, scenario):
    p, sid = scenario
    topic = "0x" + sid.hex()
    logs = call(chain, "eth_getLogs", {"address": p.address, "fromBlock": "0x0", "toBlock": "latest",
                                       "topics": [None, topic]})["result"]
    assert logs and all(lg["topics"][1] == topic for lg in logs)
    assert logs == [lg for lg in call(chain, "eth_getLogs", {"fromBlock": "earliest", "toBlock": "latest"})["result"]
                    if len(lg["topics"]) > 1 and lg["topics"][1] == topic]
    first = int(logs[0]["blockNumber"], 16)
    only_first = call(chain, "eth_getLogs", {"fromBlock": hex(first), "toBlock": hex(first),
                                             "topics": [None, topic]})["result"]
    assert only_first == [lg for lg in logs if lg["blockNumber"] == hex(first)]
    assert call(chain, "eth_getLogs", {"address": "0x" + "00" * 20, "fromBlock": "0x0"})["result"] == []


def test_receipts_and_blocks_agree(chain, scenario):
    p, sid = scenario
    ev = p.auditor.events(sid)[-1]
    receipt = call(chain, "eth_getTransactionReceipt", ev["tx_hash"])["result"]
    block = call(chain, "eth_getBlockByHash", receipt["blockHash"], False)["result"]
    assert block["number"] == receipt["blockNumber"] and ev["tx_hash"] in block["transactions"]
    assert receipt["status"] == "0x1" and len(receipt["logsBloom"]) == 2 + 512
    tx = call(chain, "eth_getTransactionByHash", ev["tx_hash"])["result"]
    assert tx["input"].startswith("0x") and tx["to"] == p.address.lower()
    assert call(chain, "eth_getTransactionReceipt", "0x" + "00" * 32)["result"] is None


def test_a_contract_creation_has_no_recipient(chain, scenario):
    p, _ = scenario
    creation = call(chain, "eth_getBlockByNumber", "0x1", True)["result"]["transactions"][0]
    assert creation["to"] is None
    receipt = call(chain, "eth_getTransactionReceipt", creation["hash"])["result"]
    assert receipt["to"] is None and receipt["contractAddress"].lower() == p.address.lower()
