"""Deploying the audit contract, and finding the one already deployed.

Deployments are recorded in `<state dir>/deployments.json`, keyed by chain id and
genesis block hash (so a restarted anvil, whose genesis differs, is a new chain),
and trusted only if the contract's code is really at the address.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import TimeExhausted

from chain.accounts import DEV_INDEX, dev_account, is_dev_chain
from chain.artifact import load_artifact
from chain.client import PRIORITY_FEE_WEI, AuditClient
from chain.errors import AccountError, ChainError
from chain.types import Deployment

DEPLOYMENTS_FILE = "deployments.json"
DEPLOY_GAS = 3_000_000
DEV_ORGANISATIONS = {"guest": "Dev guest", "host": "Dev host"}


def _code_sha(code: bytes | str) -> str:
    if isinstance(code, str):
        code = bytes.fromhex(code.removeprefix("0x"))
    return hashlib.sha256(bytes(code)).hexdigest()


def chain_key(w3: Web3) -> tuple[int, str]:
    """(chain id, genesis block hash): what identifies a chain across restarts."""
    return int(w3.eth.chain_id), w3.eth.get_block(0)["hash"].to_0x_hex()


def deploy(w3: Web3, admin: LocalAccount) -> Deployment:
    """Deploy VflAudit with `admin` as its first admin; wait for it to be mined."""
    artifact = load_artifact()
    chain_id, genesis = chain_key(w3)
    base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    tx = {"data": artifact["bytecode"], "gas": DEPLOY_GAS, "value": 0, "type": 2, "chainId": chain_id,
          "nonce": w3.eth.get_transaction_count(admin.address, "pending"),
          "maxFeePerGas": 2 * base + PRIORITY_FEE_WEI, "maxPriorityFeePerGas": PRIORITY_FEE_WEI}
    tx_hash = w3.eth.send_raw_transaction(admin.sign_transaction(tx).raw_transaction)
    try:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.05)
    except TimeExhausted:
        raise ChainError(f"deployment {tx_hash.to_0x_hex()} was not mined within 120 s") from None
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise ChainError(f"deployment {tx_hash.to_0x_hex()} failed (gas used {receipt['gasUsed']})")
    address = Web3.to_checksum_address(receipt["contractAddress"])
    return {"address": address, "chain_id": chain_id, "genesis_hash": genesis,
            "tx_hash": tx_hash.to_0x_hex(), "block_number": int(receipt["blockNumber"]),
            "admin": admin.address, "code_sha256": _code_sha(artifact["deployedBytecode"])}


def _path(state_dir: str | Path) -> Path:
    return Path(state_dir) / DEPLOYMENTS_FILE


def _load(state_dir: str | Path) -> dict[str, Deployment]:
    try:
        data = json.loads(_path(state_dir).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ChainError(f"{_path(state_dir)}: not valid JSON (line {exc.lineno})") from exc
    return data if isinstance(data, dict) else {}


def record(state_dir: str | Path, deployment: Deployment) -> None:
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    data = _load(state_dir)
    data[f"{deployment['chain_id']}:{deployment['genesis_hash']}"] = deployment
    tmp = _path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(_path(state_dir))


def is_audit_contract(w3: Web3, address: str) -> bool:
    """True if the code at `address` is this repository's compiled VflAudit."""
    code = w3.eth.get_code(Web3.to_checksum_address(address))
    return _code_sha(code) == _code_sha(load_artifact()["deployedBytecode"])


def recorded(state_dir: str | Path, w3: Web3) -> Deployment | None:
    """The deployment recorded for this chain in `state_dir`, if its code is really there."""
    chain_id, genesis = chain_key(w3)
    dep = _load(state_dir).get(f"{chain_id}:{genesis}")
    if dep is None or not is_audit_contract(w3, dep["address"]):
        return None
    return dep


def dev_contract(w3: Web3, state_dir: str | Path,
                 parties: Mapping[str, tuple[str, str]] | None = None) -> str:
    """A ready audit contract on a development chain; returns its address.

    Uses the recorded deployment, or deploys one with the dev admin key (index 0)
    and records it; then registers each of `parties` ({address: (role, organisation)};
    default: the dev guest and host) that is not registered yet. Serialized by a
    file lock, so several processes may call it at once.
    """
    chain_id = int(w3.eth.chain_id)
    if not is_dev_chain(chain_id):
        raise AccountError(f"chain {chain_id} is not a development chain: deploy with "
                           "`vflchain chain deploy --keystore FILE` and set [chain] contract")
    if parties is None:
        parties = {dev_account(DEV_INDEX[r]).address: (r, DEV_ORGANISATIONS[r]) for r in ("guest", "host")}
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    with (Path(state_dir) / "deploy.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        dep = recorded(state_dir, w3)
        admin = dev_account(DEV_INDEX["admin"])
        if dep is None:
            dep = deploy(w3, admin)
            record(state_dir, dep)
        ensure_registered(AuditClient(w3, dep["address"], admin), parties)
        return dep["address"]


def ensure_registered(admin_client: AuditClient, parties: Mapping[str, tuple[str, str]]) -> None:
    """Register each {address: (role, organisation)} not registered yet; refuse a role clash."""
    for address, (role, organisation) in parties.items():
        info = admin_client.participant(address)
        if info is None:
            admin_client.register_participant(address, role, organisation)
        elif info["role"] != role:
            raise ChainError(f"{address} is registered as {info['role']}, not {role}")
