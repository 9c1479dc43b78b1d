"""Each party signs with its own key: keystores with an environment passphrase, dev keys on dev chains only."""

from __future__ import annotations

import json

import pytest

from chain.accounts import (
    ANVIL_CHAIN_ID,
    EMBEDDED_CHAIN_ID,
    dev_account,
    load_keystore,
    new_keystore,
    party_account,
)
from chain.errors import AccountError


def test_dev_accounts_are_the_well_known_development_keys():
    # the addresses anvil prints for its default mnemonic
    assert dev_account(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert dev_account(1).address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert dev_account(2).address == "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def test_dev_keys_are_only_for_dev_chains():
    assert party_account(EMBEDDED_CHAIN_ID, "guest").address == dev_account(1).address
    assert party_account(ANVIL_CHAIN_ID, "host").address == dev_account(2).address
    with pytest.raises(AccountError, match="not a development chain: configure a keystore for the host"):
        party_account(1, "host")


def test_keystore_round_trip_with_passphrase_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VFL_TEST_PASS", "correct horse")
    path = tmp_path / "keys" / "guest.json"
    address = new_keystore(path, "VFL_TEST_PASS", scrypt_n=2**12)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "correct horse" not in path.read_text()
    assert json.loads(path.read_text())["crypto"]
    assert load_keystore(path, "VFL_TEST_PASS").address == address
    assert party_account(1, "guest", path, "VFL_TEST_PASS").address == address
    with pytest.raises(AccountError, match="already exists"):
        new_keystore(path, "VFL_TEST_PASS", scrypt_n=2**12)


def test_keystore_errors_are_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("VFL_TEST_PASS", "right")
    path = tmp_path / "k.json"
    new_keystore(path, "VFL_TEST_PASS", scrypt_n=2**12)
    monkeypatch.setenv("VFL_TEST_PASS", "wrong")
    with pytest.raises(AccountError, match="wrong passphrase in VFL_TEST_PASS"):
        load_keystore(path, "VFL_TEST_PASS")
    monkeypatch.delenv("VFL_TEST_PASS")
    with pytest.raises(AccountError, match="set the keystore passphrase in the environment variable VFL_TEST_PASS"):
        load_keystore(path, "VFL_TEST_PASS")
    monkeypatch.setenv("VFL_TEST_PASS", "right")
    with pytest.raises(AccountError, match="keystore file not found"):
        load_keystore(tmp_path / "missing.json", "VFL_TEST_PASS")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AccountError, match="not a JSON keystore"):
        load_keystore(tmp_path / "bad.json", "VFL_TEST_PASS")
