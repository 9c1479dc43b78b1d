"""Shared fixtures: small keys and the breast split, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def keys_1024():
    """(guest, host) key pairs of 1024 bits: tests whose property does not depend on key size."""
    from nodes.testing import party_keys

    return party_keys(1024)


@pytest.fixture(scope="session")
def breast():
    """The FATE-style (guest, host) breast split, all rows shared, in the same order."""
    from vfl.datasets import breast_split

    return breast_split()


@pytest.fixture(scope="module")
def chain_server(tmp_path_factory):
    """An embedded chain served over JSON-RPC for one test module: (state directory, URL)."""
    from chain.embedded import start_server

    state = tmp_path_factory.mktemp("chain")
    handle = start_server(state)
    yield state, handle.url
    handle.stop()


@pytest.fixture(scope="module")
def breast_dir(tmp_path_factory) -> Path:
    """`vflchain data breast --overlap 0.9` written once per test module."""
    from nodes.cli import main as cli

    d = tmp_path_factory.mktemp("breast")
    assert cli(["data", "breast", "--out", str(d), "--overlap", "0.9"]) == 0
    return d
