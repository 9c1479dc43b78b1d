"""The horizontal job's configuration: roles, their addresses, data files and chain accounts.

Roles: `coordinator` and `client1`..`clientN` (N = `[hfl] clients`). On chain
the coordinator is the session's opener (registered with the guest role) and
the clients are its other participants (host role). On development chains the
coordinator signs with dev key 1 and client k with dev key 1 + k.
"""

from __future__ import annotations

from nodes.config import JobConfig, options_of
from nodes.errors import ConfigError
from vfl.hfl.options import HflOptions

COORDINATOR = "coordinator"


def options(cfg: JobConfig) -> HflOptions:
    """The training options of `[hfl]`."""
    return options_of(cfg, HflOptions)  # type: ignore[no-any-return]


def client_roles(cfg: JobConfig) -> list[str]:
    return [f"client{k}" for k in range(1, cfg.hfl.clients + 1)]


def roles(cfg: JobConfig) -> list[str]:
    return [COORDINATOR, *client_roles(cfg)]


def client_index(role: str) -> int:
    """client3 -> 3; 0 for the coordinator."""
    return 0 if role == COORDINATOR else int(role.removeprefix("client"))


def dev_index(role: str) -> int:
    """The development chain key of a role (coordinator 1, client k: 1 + k)."""
    return 1 + client_index(role)


def chain_role(role: str) -> str:
    """The contract role a party registers with."""
    return "guest" if role == COORDINATOR else "host"


def require(cfg: JobConfig, key: str) -> list[str]:
    """A [federation] list that a running node needs."""
    value = getattr(cfg.federation, key)
    if len(value) != cfg.hfl.clients:
        raise ConfigError(f"[federation] {key} must list one entry per client ({cfg.hfl.clients})")
    return list(value)
