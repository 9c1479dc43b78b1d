"""Binning and selection over 1..3 hosts: every host's encrypted bin sums under the guest's key give
exactly the WoE/IV of the plaintext reference on the joined columns."""

from __future__ import annotations

import numpy as np
import pytest

from vfl.binning import (
    guest_decrypt_event_counts,
    guest_encrypt_labels,
    guest_woe_iv_from_counts,
    host_bin_features,
    host_encrypted_bin_sums,
    host_pack_bin_sums,
    plaintext_binning,
)
from vfl.datasets import breast_split_hosts
from vfl.errors import DataError
from vfl.selection import (
    SelectionRule,
    hosts_without_features,
    own_columns,
    public_names,
    select_by_iv,
    selection_for_hosts,
)

BINS = 6


def _federated_tables(guest, hosts, keys):
    """The guest's view of every feature after the binning round: {public name: WoeTable}."""
    (gpk, gsk), _ = keys
    enc_y = guest_encrypt_labels(guest.y, gpk)  # encrypted once, the same ciphertexts go to every host
    n = guest.n_rows
    tables = {f.name: f.table for f in plaintext_binning(guest.X, guest.y, guest.features, BINS)}
    for k, host in enumerate(hosts, 1):
        own = host_bin_features(host.X, host.features, BINS)
        packed = host_pack_bin_sums(host_encrypted_bin_sums(enc_y, own.index, own.width), n)
        counts = guest_decrypt_event_counts(gsk, packed, n)  # the guest sees only this host's counts
        names = public_names(f"host{k}", host.features, anonymous=False)
        tables_k = guest_woe_iv_from_counts(counts, own.bin_sizes, own.n_bins, n, host=f"host{k}")
        for f, t in zip(own.features, tables_k, strict=True):
            tables[names[f]] = t
    return tables


@pytest.mark.parametrize("n_hosts", [1, 2, 3])
def test_woe_and_iv_of_every_hosts_features_equal_the_joined_reference_exactly(n_hosts, keys_1024):
    guest, hosts = breast_split_hosts(n_hosts)
    tables = _federated_tables(guest, hosts, keys_1024)
    X = np.hstack([guest.X] + [h.X for h in hosts])
    names = list(guest.features) + [n for k, h in enumerate(hosts, 1)
                                     for n in public_names(f"host{k}", h.features, False).values()]
    reference = plaintext_binning(X, guest.y, names, BINS)
    assert list(tables) == names and len(names) == 30
    for ref in reference:
        got = tables[ref.name]
        np.testing.assert_array_equal(got.event_count, ref.table.event_count)
        np.testing.assert_array_equal(got.non_event_count, ref.table.non_event_count)
        np.testing.assert_array_equal(got.woe, ref.table.woe)  # exact: the same integers in the same formula
        assert got.iv == ref.table.iv


def test_each_host_is_told_only_its_own_kept_and_dropped_columns(keys_1024):
    guest, hosts = breast_split_hosts(3)
    tables = _federated_tables(guest, hosts, keys_1024)
    selection = select_by_iv({n: t.iv for n, t in tables.items()}, SelectionRule(top_k=12))
    per_host = {f"host{k}": list(public_names(f"host{k}", h.features, False).values())
                for k, h in enumerate(hosts, 1)}
    told = selection_for_hosts(selection, per_host)
    for host, names in per_host.items():
        kept, dropped = told[host]
        assert sorted(kept + dropped) == sorted(names)  # all of its own columns, nothing else
        assert set(kept) <= set(selection.kept) and set(dropped) <= set(selection.dropped)
    for k, h in enumerate(hosts, 1):
        mine = own_columns(told[f"host{k}"][0], public_names(f"host{k}", h.features, False))
        assert [f"host{k}.{c}" for c in mine] == [n for n in per_host[f"host{k}"] if n in told[f"host{k}"][0]]
    assert hosts_without_features(select_by_iv({n: t.iv for n, t in tables.items()}, SelectionRule(top_k=1)),
                                  per_host) != []


def test_inconsistent_counts_name_the_host_they_came_from():
    with pytest.raises(DataError, match="host2 feature 0: bin sizes and event counts are inconsistent"):
        guest_woe_iv_from_counts(np.array([[3, 1]]), np.array([[2, 2]]), np.array([2]), 4, host="host2")


def test_two_host_names_never_clash_and_anonymous_names_are_per_host():
    a = public_names("host1", ["x0", "x1"], anonymous=True)
    b = public_names("host2", ["x0", "x1"], anonymous=True)
    assert a == {"x0": "host1.f0", "x1": "host1.f1"} and not set(a.values()) & set(b.values())
    assert public_names("host", ["x3"], anonymous=False) == {"x3": "host.x3"}  # the two-party name
