"""Shared fixtures: small keys and the breast split, made once per session."""

from __future__ import annotations

import os

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
