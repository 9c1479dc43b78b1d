"""Errors raised by the chain layer."""

from __future__ import annotations

from typing import Any


class ChainError(Exception):
    """Base class of every error `chain` raises on purpose."""


class ContractRevert(ChainError):
    """The contract refused a call; `name` and `args` are its decoded custom error.

    The message reads like the Solidity error: `DuplicateRound(sessionId=0x.., round=3,
    party=0x..)`. `name` is "" when the revert carried no data (e.g. out of gas).
    """

    def __init__(self, message: str, name: str = "", args: dict[str, Any] | None = None,
                 tx_hash: str = "") -> None:
        super().__init__(message)
        self.name = name
        self.args_dict: dict[str, Any] = dict(args or {})
        self.tx_hash = tx_hash

    @property
    def error_args(self) -> dict[str, Any]:
        return self.args_dict


class ChainUnavailable(ChainError):
    """No chain answers where one was expected (URL down, no server, no state)."""


class CompileError(ChainError):
    """The Solidity compiler refused the source, or could not be run."""


class AccountError(ChainError):
    """A key could not be loaded: missing keystore, wrong passphrase, dev key on a real chain."""


class StateError(ChainError):
    """An embedded chain's state directory is unusable (corrupt journal, locked by another server)."""
