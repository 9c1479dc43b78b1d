"""Accounts: every party signs its own transactions locally with its own key.

- On development chains (the embedded chain, anvil) the parties use the well-known
  funded keys of the standard development mnemonic (the one anvil and hardhat
  print at start-up): index 0 is the consortium admin, 1 the guest, 2 the host,
  3.. further parties (a job with N hosts: host k signs with index 1 + k, so host1 is the host). They are public, so they are refused on any other chain.
- Everywhere else a party loads an eth-account keystore file (a JSON V3 keystore)
  whose passphrase comes from an environment variable, never from a config file.

Nodes never hold unlocked accounts: the chain only ever sees signed raw transactions.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from chain.errors import AccountError

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_PATH = "m/44'/60'/0'/0/{index}"
DEV_ACCOUNTS = 10
DEV_BALANCE_WEI = 10_000 * 10**18
DEV_INDEX = {"admin": 0, "guest": 1, "host": 2, **{f"host{k}": 1 + k for k in range(1, DEV_ACCOUNTS - 1)}}
PASSPHRASE_ENV = "VFLCHAIN_PASSPHRASE"

ANVIL_CHAIN_ID = 31337
EMBEDDED_CHAIN_ID = 131277322940537  # eth-tester's chain id
DEV_CHAIN_IDS = frozenset({ANVIL_CHAIN_ID, 1337, EMBEDDED_CHAIN_ID})


@cache
def dev_account(index: int) -> LocalAccount:
    """The development key at `index` of the standard mnemonic (0 admin, 1 guest, 2 host)."""
    if not 0 <= index < 100:
        raise AccountError(f"dev account index must be in 0..99, got {index}")
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=DEV_PATH.format(index=index))


def dev_addresses(count: int = DEV_ACCOUNTS) -> list[str]:
    return [dev_account(i).address for i in range(count)]


def is_dev_chain(chain_id: int) -> bool:
    return chain_id in DEV_CHAIN_IDS


def load_keystore(path: str | Path, passphrase_env: str = PASSPHRASE_ENV) -> LocalAccount:
    """Decrypt an eth-account keystore with the passphrase in `passphrase_env`."""
    path = Path(path)
    passphrase = os.environ.get(passphrase_env)
    if passphrase is None:
        raise AccountError(f"{path}: set the keystore passphrase in the environment variable {passphrase_env}")
    try:
        keyfile = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise AccountError(f"{path}: keystore file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AccountError(f"{path}: not a JSON keystore file") from exc
    try:
        key = Account.decrypt(keyfile, passphrase)
    except ValueError as exc:
        raise AccountError(f"{path}: cannot decrypt the keystore (wrong passphrase in {passphrase_env}?)") from exc
    except (KeyError, TypeError) as exc:
        raise AccountError(f"{path}: not an eth-account keystore ({exc})") from exc
    return Account.from_key(key)


def new_keystore(path: str | Path, passphrase_env: str = PASSPHRASE_ENV, scrypt_n: int = 2**18) -> str:
    """Create a fresh key, save it encrypted at `path` (mode 0600); return its address.

    `scrypt_n` is the scrypt work factor (geth's standard 2**18; 2**12 is geth's "light").
    """
    path = Path(path)
    passphrase = os.environ.get(passphrase_env)
    if not passphrase:
        raise AccountError(f"set a non-empty keystore passphrase in the environment variable {passphrase_env}")
    if path.exists():
        raise AccountError(f"{path}: already exists; not overwriting a key")
    acct = Account.create()
    data = Account.encrypt(acct.key, passphrase, kdf="scrypt", iterations=scrypt_n)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return acct.address


def party_account(chain_id: int, role: str, keystore: str | Path = "",
                  passphrase_env: str = PASSPHRASE_ENV) -> LocalAccount:
    """The account a party signs with: its keystore if given, else its dev key on a dev chain."""
    if keystore:
        return load_keystore(keystore, passphrase_env)
    if role not in DEV_INDEX:
        raise AccountError(f"no dev key for role {role!r}; give a keystore")
    if not is_dev_chain(chain_id):
        raise AccountError(f"chain {chain_id} is not a development chain: configure a keystore for the {role}")
    return dev_account(DEV_INDEX[role])
