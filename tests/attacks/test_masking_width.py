"""Attack: the key owner tells two values apart from the masked slots it decrypts (1024-bit keys).

Whoever holds the key decrypts every packed array sent to it under its key: each slot
is v + r, v the other party's value (a gradient entry, a statistic), r its mask,
uniform in [0, 2^w). The header declares bound = B + 2^w, B the public bound on |v|.
Two candidate values v0, v1 (|v0 - v1| <= 2B) give distributions at statistical
distance <= 2B / 2^w, the attacker's best advantage. It must be <= 2^-79: every mask at
least 80 bits wider than the bound (40-bit masks leave an advantage of ~2^-39).
The attacker here reads the messages from the wire, decodes them with its keys and
decrypts with its private key, as the node does.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from nodes.config import load_config
from nodes.phases import gmm as gmm_phase
from nodes.phases import lr as lr_phase
from nodes.testing import make_contexts, run_pair
from nodes.transport.codec import decode_message, keyring
from vfl.datasets import synth_split
from vfl.lr import rowpack
from vfl.paillier import PackedEncryptedArray, decrypt_slots

MIN_MASK_BITS = 80


def _decrypted_packed(tmp: Path, settings: list[str], phase: Any) -> list[tuple[str, PackedEncryptedArray, list[int]]]:
    """(tag, array, decrypted slot values) of every packed array a party received under its own key."""
    g, h = make_contexts(tmp, *synth_split(160, 3, 4, seed=21), load_config(None, settings))
    sent: list[tuple[str, bytes]] = []
    g.transport.tap = h.transport.tap = lambda role, address, data: sent.append((role, data))
    run_pair(phase.run_guest, phase.run_host, g, h)
    owners = {"guest": h, "host": g}  # the receiver of what `role` sent
    keys = keyring(g.public_key, h.public_key)
    out = []
    for role, data in sent:
        receiver = owners[role]
        address, _, payload = decode_message(data, keys)
        for value in payload.values():
            if isinstance(value, PackedEncryptedArray) and value.public_key == receiver.public_key:
                slots = [int(v) for v in decrypt_slots(receiver.private_key, value).ravel().tolist()]
                out.append((address.tag, value, slots))
    return out


def _check_masks(arrays: list[tuple[str, PackedEncryptedArray, list[int]]]) -> None:
    assert arrays, "no masked packed arrays were exchanged"
    for tag, arr, slots in arrays:
        width = arr.bound.bit_length() - 1  # declared bound = B + 2^w, B < 2^w
        value_bound = arr.bound - (1 << width)
        advantage = Fraction(2 * max(value_bound, 1), 1 << width)
        assert advantage <= Fraction(1, 1 << (MIN_MASK_BITS - 1)), (
            f"{tag}: masks of {width} bits over a {value_bound.bit_length()}-bit bound: two values are told "
            f"apart with advantage 2^{math.log2(advantage):.1f}")
        # what was decrypted agrees with the declaration: within it, and masks that really are that wide
        # (a slot below 2^(w - 32) has probability 2^-32)
        assert all(-value_bound <= v <= arr.bound for v in slots), tag
        assert max(v.bit_length() for v in slots) >= width - 32, tag


LR = ["lr.epochs=1", "lr.batch_size=60", "lr.validation=0.25", "lr.tol=0.0", "job.seed=5"]


def test_lr_gradient_masks_are_80_bits_wider_than_the_declared_bound(tmp_path):
    _check_masks(_decrypted_packed(tmp_path, LR, lr_phase))


def test_row_packed_lr_product_masks_are_80_bits_wider_than_the_declared_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(rowpack, "RESULT_COST", 0.0)
    monkeypatch.setattr(rowpack, "PRODUCT_TERM_COST", 0.0)
    _check_masks(_decrypted_packed(tmp_path, LR, lr_phase))


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_gmm_statistic_masks_are_80_bits_wider_than_the_declared_bound(tmp_path, covariance):
    settings = ["gmm.k=2", f'gmm.covariance="{covariance}"', 'gmm.init="random"', "gmm.max_iter=1", "gmm.n_init=1"]
    _check_masks(_decrypted_packed(tmp_path, settings, gmm_phase))
