"""Where an in-process job anchors its session: nothing, an ephemeral embedded chain, or a state directory.

`open_chain_for(spec, roles, workdir)` turns run_job's `chain=` argument into a `JobChain`:
a factory of each party's chain link (what nodes.job.PartyNode's `chain_factory` takes),
the values to record in the config's [chain] section, a read-only `AuditClient` for
auditing while the chain is open, and `close()`.

- `None`: no chain (vflchain.ledger): nothing anchored, nothing to audit.
- `"embedded"`: a fresh embedded chain (eth-tester/py-evm, the real audit contract) in this
  process, gone when the job's result has been read (unless audited before).
- a path: the embedded chain of that state directory, in this process (or its server if one
  runs there), so that `vflchain audit DIR` can check the run later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodes.config import JobConfig
from nodes.errors import ConfigError

ChainSpec = str | Path | None
EMBEDDED = "embedded"
OPENERS = ("guest", "coordinator")


@dataclass
class JobChain:
    """The chain of one in-process job."""

    kind: str  # "none" | "embedded" | "state"
    factory: Callable[[JobConfig, str], Any]
    state: str = ""  # the state directory recorded in [chain] state ("" without one)
    w3: Any = None
    contract: str = ""
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def client(self) -> Any:
        """A read-only AuditClient of the job's contract (None without a chain)."""
        if self.w3 is None:
            return None
        from chain.client import AuditClient

        return AuditClient(self.w3, self.contract)

    def close(self) -> None:
        """Release the chain (an in-process state directory writes its snapshot and unlocks)."""
        while self._closers:
            self._closers.pop()()


def _serialized(w3: Any) -> Any:
    """Let several parties' threads share one in-process chain: one request at a time."""
    lock = threading.Lock()
    request = w3.provider.make_request

    def make_request(method: Any, params: Any) -> Any:
        with lock:
            return request(method, params)

    w3.provider.make_request = make_request
    return w3


def open_chain_for(spec: ChainSpec, roles: dict[str, int], workdir: Path) -> JobChain:
    """The chain `spec` names (see the module docstring), with the contract deployed and the parties
    `roles` ({role: development account index}) registered. ConfigError (one line) for a bad spec."""
    if spec is None or spec == "none":
        from chain.accounts import dev_account
        from vflchain.ledger import OfflineLedger

        ledger = OfflineLedger({r: dev_account(i) for r, i in roles.items()})
        return JobChain("none", lambda cfg, role: ledger.link(role))
    from chain.accounts import dev_account
    from chain.backends import close, memory_chain, open_chain
    from chain.client import AuditClient
    from chain.deploy import DEV_ORGANISATIONS, dev_contract
    from nodes.chainlink import ChainLink

    if isinstance(spec, str) and spec == EMBEDDED:
        kind, state, w3, url = "embedded", workdir / "chain", memory_chain(), "memory"
        closer: Callable[[], None] = lambda: None  # noqa: E731 - the memory chain goes with its last reference
    elif isinstance(spec, str | Path) and not str(spec).startswith(("http://", "https://")) and str(spec):
        kind, state = "state", Path(spec).resolve()
        try:
            state.mkdir(parents=True, exist_ok=True)
            w3 = open_chain("", state, write=True)
        except OSError as exc:
            raise ConfigError(f"chain state directory {spec}: {exc.strerror or exc}") from None
        url = str(state)

        def closer() -> None:
            close(w3)
    else:
        raise ConfigError(f"chain must be None, \"embedded\" or an embedded chain state directory, got {spec!r}")
    _serialized(w3)
    try:
        # the session's opener (guest, coordinator) is a "guest" on the contract, the others "host"s
        parties = {dev_account(i).address: ("guest" if r in OPENERS else "host", DEV_ORGANISATIONS.get(r, f"Dev {r}"))
                   for r, i in roles.items()}
        contract = dev_contract(w3, state, parties)
        chain_id = int(w3.eth.chain_id)
    except BaseException:
        closer()
        raise

    def factory(cfg: JobConfig, role: str) -> Any:
        return ChainLink(AuditClient(w3, contract, dev_account(roles[role])), chain_id, url,
                         cfg.chain.session_timeout)

    return JobChain(kind, factory, str(state), w3, contract, [closer])
