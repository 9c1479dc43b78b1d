"""One party's link to the audit contract for a job (a thin layer over `chain.client.AuditClient`).

The job runner needs: who am I on chain, open/join/abort/finalize a session,
post rounds (`anchor`), and read a session's status. Everything else
(deployment, registration, the embedded chain) is `chain`'s business; this
module only picks the chain, account and contract from the job config.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from chain.errors import ChainError, ContractRevert
from nodes.config import JobConfig
from nodes.context import ChainAnchor
from nodes.errors import NodeError

FINAL_STATES = ("closed", "aborted", "expired")
CHAIN_WAIT = 180.0  # s a node started with --chain-info waits for its launcher's chain (which allows 120 s)
L = TypeVar("L")


class ChainLinkLike(Protocol):
    """The one view of the audit contract a party works with (`ChainLink`; test doubles implement it too):
    its account and contract, sessions by id, rounds. `SessionLink` binds it to one job's session."""

    chain_id: int
    url: str

    @property
    def address(self) -> str: ...
    @property
    def contract(self) -> str: ...
    def open_session(self, label: bytes, algorithm: str, config_commitment: bytes,
                     others: list[str]) -> str: ...
    def join_session(self, session_id: bytes) -> str: ...
    def sign_text(self, text: str) -> str: ...
    def participant(self, address: str) -> dict[str, Any] | None: ...
    def anchor(self, session_id: bytes) -> Any: ...
    def finalize(self, session_id: bytes, model_commitment: bytes, metrics_hash: bytes = b"") -> str: ...
    def abort_session(self, session_id: bytes, reason_hash: bytes) -> str | None: ...
    def session(self, session_id: bytes) -> dict[str, Any]: ...
    def wait_status(self, session_id: bytes, wanted: str, timeout: float, poll: float = 0.05) -> dict[str, Any]: ...
    def round_state(self, session_id: bytes, round_no: int) -> str: ...


class ChainLink:
    """A party's signed client of the audit contract, plus the session it works in."""

    def __init__(self, client: Any, chain_id: int, url: str, session_timeout: int = 3600) -> None:
        self.client = client
        self.chain_id = int(chain_id)
        self.url = url
        self.session_timeout = int(session_timeout)

    @property
    def address(self) -> str:
        return str(self.client.account.address)

    @property
    def contract(self) -> str:
        return str(self.client.address)

    @classmethod
    def connect(cls, cfg: JobConfig, role: str) -> ChainLink:
        """Connect as `role` to the chain and contract the config names.

        `[chain] url` if set, else the embedded chain of `[chain] state` (it must be
        running: `vflchain run` starts it). The contract is `[chain] contract`, else the
        one recorded for this chain in the state directory.
        """
        from chain.accounts import party_account
        from chain.backends import open_chain
        from chain.client import AuditClient
        from chain.deploy import recorded

        state = Path(cfg.chain.state)
        w3 = open_chain(cfg.chain.url, state, retry_seconds=cfg.chain.retry_seconds)
        chain_id = int(w3.eth.chain_id)
        account = party_account(chain_id, role, cfg.party(role).keystore)
        address = cfg.chain.contract
        if not address:
            dep = recorded(state, w3)
            if dep is None:
                raise NodeError(f"no audit contract: set [chain] contract, or deploy one recorded in {state} "
                                "(vflchain chain deploy)")
            address = dep["address"]
        client = AuditClient(w3, address, account)
        return cls(client, chain_id, cfg.chain.url or str(state), cfg.chain.session_timeout)

    # -- identity ----------------------------------------------------------------

    def sign_text(self, text: str) -> str:
        """EIP-191 signature of `text` with this party's account key (nodes.identity)."""
        from nodes.identity import sign_statement

        return sign_statement(self.client.account, text)

    def participant(self, address: str) -> dict[str, Any] | None:
        """The contract's registration of `address` (role, revoked, organisation), or None."""
        info = self.client.participant(address)
        return None if info is None else dict(info)

    # -- session -----------------------------------------------------------------

    def open_session(self, label: bytes, algorithm: str, config_commitment: bytes,
                     others: list[str]) -> str:
        """Open the session with `label`; its id is `chain.sessions.session_id(chain id, contract, me, label)`.
        Idle for `[chain] session_timeout` s, any participant may expire it."""
        return self.client.open_session(label, algorithm, config_commitment, others,
                                        self.session_timeout)["tx_hash"]

    def join_session(self, session_id: bytes) -> str:
        return self.client.join_session(session_id)["tx_hash"]

    def anchor(self, session_id: bytes) -> ChainAnchor:
        from chain.client import SessionAnchor

        return SessionAnchor(self.client, session_id)

    def finalize(self, session_id: bytes, model_commitment: bytes, metrics_hash: bytes = b"") -> str:
        return self.client.finalize(session_id, model_commitment, metrics_hash)["tx_hash"]

    def abort_session(self, session_id: bytes, reason_hash: bytes) -> str | None:
        """Abort if still open or active; None if it is already closed or aborted."""
        try:
            if self.session(session_id)["status"] in FINAL_STATES:
                return None
            return self.client.abort_session(session_id, reason_hash)["tx_hash"]
        except ContractRevert as exc:
            if exc.name == "WrongSessionState":  # the peer aborted it a moment ago
                return None
            raise

    def session(self, session_id: bytes) -> dict[str, Any]:
        return dict(self.client.session(session_id))

    def round_state(self, session_id: bytes, round_no: int) -> str:
        return str(self.client.round_state(session_id, round_no))

    def wait_status(self, session_id: bytes, wanted: str, timeout: float, poll: float = 0.05) -> dict[str, Any]:
        """Poll until the session reaches `wanted`; NodeError if it ends otherwise or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.session(session_id)
            if info["status"] == wanted:
                return info
            if info["status"] in FINAL_STATES:
                raise NodeError(f"session 0x{session_id.hex()} was {info['status']} on chain "
                                f"while waiting for it to be {wanted}")
            if time.monotonic() >= deadline:
                raise NodeError(f"session 0x{session_id.hex()} still {info['status']} on chain after "
                                f"{timeout:g}s (expected {wanted})")
            time.sleep(poll)


def sign_with(link: Any, message: bytes) -> str:
    """Sign with the party's chain account (EIP-191 personal message); hex signature."""
    from eth_account.messages import encode_defunct

    return "0x" + bytes(link.client.account.sign_message(encode_defunct(primitive=message)).signature).hex()


def recover_signer(message: bytes, signature: str) -> str:
    """The account that signed `message` (EIP-191), or a placeholder that matches no account."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    try:
        return str(Account.recover_message(encode_defunct(primitive=message), signature=signature))
    except Exception:  # noqa: BLE001 - any malformed signature is "signed by nobody"
        return "(an invalid signature)"


class SessionLink:
    """A `ChainLinkLike` bound to one job's session: what a protocol needs on chain, without session ids.

    The session id derives from the opener's account and the job id (`bind`): the opener knows it at
    once, the others once the opener's hello names it. `on_bound(session_id)` is called then, and
    `on_participating(session_id)` once this party opened or joined the session (from then on a
    failure must abort it). `config_commitment` is set by the opener before it opens the session.
    """

    def __init__(self, link: ChainLinkLike, job_id: str, algorithm: str,
                 on_bound: Callable[[bytes], None] | None = None,
                 on_participating: Callable[[bytes], None] | None = None, wait_timeout: float = 120.0) -> None:
        self.link = link
        self.wait_timeout = wait_timeout  # s to wait for the session to become active
        self.job_id = job_id
        self.algorithm = algorithm
        self.on_bound = on_bound
        self.on_participating = on_participating
        self.session_id = b""  # b"" until bound
        self.config_commitment = b""
        self._anchor: Any = None

    @property
    def address(self) -> str:
        return self.link.address

    @property
    def chain_id(self) -> int:
        return self.link.chain_id

    @property
    def contract(self) -> str:
        return self.link.contract

    def bind(self, opener: str) -> bytes:
        """The opener's account -> this job's session id (kept in `session_id`)."""
        from chain.sessions import session_id, session_label

        self.session_id = session_id(self.link.chain_id, self.link.contract, opener, session_label(self.job_id))
        if self.on_bound is not None:
            self.on_bound(self.session_id)
        return self.session_id

    def _sid(self) -> bytes:
        if not self.session_id:
            raise NodeError("no session yet: the opener's account is not known")
        return self.session_id

    def sign(self, message: bytes) -> str:
        return sign_with(self.link, message)

    def recover(self, message: bytes, signature: str) -> str:
        return recover_signer(message, signature)

    def open_session(self, accounts: list[str]) -> str:
        """Open this job's session with the other participants' accounts; returns the tx hash."""
        from chain.sessions import session_label

        tx = self.link.open_session(session_label(self.job_id), self.algorithm, self.config_commitment, accounts)
        if self.on_participating is not None:
            self.on_participating(self._sid())
        return str(tx)

    def join_session(self) -> str:
        sid = self._sid()
        if self.on_participating is not None:
            self.on_participating(sid)
        return str(self.link.join_session(sid))

    def session(self) -> dict[str, Any]:
        return self.link.session(self._sid())

    def wait_active(self) -> None:
        self.link.wait_status(self._sid(), "active", timeout=self.wait_timeout)

    def submit_round(self, round_no: int, commitment: bytes, transcript_digest: bytes) -> str:
        self._anchor = self._anchor or self.link.anchor(self._sid())
        return str(self._anchor.submit_round(round_no, commitment, transcript_digest))

    def finalize(self, model_commitment: bytes, metrics_hash: bytes = b"") -> str:
        return str(self.link.finalize(self._sid(), model_commitment, metrics_hash))


def wait_chain_info(path: Path, timeout: float = CHAIN_WAIT, poll: float = 0.02) -> dict[str, str]:
    """The chain a launcher announces in `path` once it is ready: {"url", "contract"}.

    `vflchain run` starts the nodes while its chain starts, so that both start up side by
    side; it writes the file (atomically) when the chain answers and the contract is there,
    or {"error": ...} when it could not get one. NodeError if the launcher reports an error,
    exits, or writes nothing within `timeout` s."""
    parent = os.getppid()
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            info = None
        except (OSError, ValueError) as exc:
            raise NodeError(f"chain info {path}: cannot read it ({exc})") from None
        if info is not None:
            if not isinstance(info, dict) or not (info.get("error") or (info.get("url") and info.get("contract"))):
                raise NodeError(f"chain info {path}: expected {{\"url\", \"contract\"}}, got {info!r}")
            if info.get("error"):
                raise NodeError(f"no chain: {info['error']}")
            return {"url": str(info["url"]), "contract": str(info["contract"])}
        if os.getppid() != parent:
            raise NodeError(f"the launcher exited before announcing its chain in {path}")
        if time.monotonic() >= deadline:
            raise NodeError(f"no chain: nothing announced in {path} within {timeout:g} s")
        time.sleep(poll)


def when_announced(path: Path, timeout: float, connect: Callable[[JobConfig, str], L]) -> Callable[[JobConfig, str], L]:
    """A chain factory (`connect(cfg, role)`) that first waits for the chain announced in `path`
    (`wait_chain_info`) and takes its URL and contract as `[chain] url` and `[chain] contract`."""

    def factory(cfg: JobConfig, role: str) -> L:
        # import what connecting needs (web3, eth-account: ~1 s) before the wait, not after it
        for module in ("chain.accounts", "chain.backends", "chain.client", "chain.deploy"):
            importlib.import_module(module)
        info = wait_chain_info(path, timeout)
        cfg.chain.url, cfg.chain.contract = info["url"], info["contract"]
        return connect(cfg, role)

    return factory


__all__ = ["ChainError", "ChainLink", "ChainLinkLike", "SessionLink", "recover_signer", "sign_with", "wait_chain_info",
           "when_announced"]
