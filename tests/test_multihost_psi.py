"""The intersection over a guest and 1..3 hosts equals the plain set intersection, aligned alike."""

from __future__ import annotations

import numpy as np
import pytest

from vfl import psi
from vfl.errors import PsiError


def _sets(hosts: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """Overlapping ID sets: each party holds a random 70 % of 60 IDs, in its own order."""
    rng = np.random.default_rng(seed)
    universe = [f"p{i:03d}" for i in range(60)]

    def draw() -> list[str]:
        return [universe[i] for i in rng.permutation(60)[:42]]

    return draw(), [draw() for _ in range(hosts)]


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_intersection_over_all_parties_is_the_plain_set_intersection(hosts):
    guest_ids, host_ids = _sets(hosts, seed=hosts)
    expect = set(guest_ids).intersection(*map(set, host_ids))
    assert expect  # the sets do share IDs
    guest, results = psi.intersect_in_process(guest_ids, host_ids)
    order = [guest_ids[r] for r in guest.rows]
    assert set(order) == expect and len(order) == len(expect)
    assert order == sorted(expect)  # the common order: by ID
    for k, (ids, res) in enumerate(zip(host_ids, results, strict=True), 1):
        assert [ids[r] for r in res.rows] == order  # every host aligned the same rows in the same order
        assert res.digests["guest"] == guest.digests[f"host{k}"]


def test_each_host_learns_only_the_guests_size_and_its_pair_intersection():
    guest_ids, host_ids = _sets(3, seed=7)
    guest, hosts = psi.intersect_in_process(guest_ids, host_ids)
    for ids, res in zip(host_ids, hosts, strict=True):
        assert res.peer_sizes == {"guest": len(guest_ids)}  # no other host's size
        assert res.pair_sizes == {"guest": len(set(ids) & set(guest_ids))}
    assert guest.peer_sizes == {f"host{k + 1}": len(h) for k, h in enumerate(host_ids)}
    assert guest.pair_sizes == {f"host{k + 1}": len(set(h) & set(guest_ids)) for k, h in enumerate(host_ids)}


def test_keep_elements_shrink_a_hosts_rows_to_the_common_ones():
    g_key, h_key = psi.BlindingKey(), psi.BlindingKey()
    g_ids, h_ids = ["a", "b", "c", "d"], ["d", "c", "b", "x"]
    g_double = psi.psi_reblind(h_key, psi.psi_blind(g_key, psi.psi_hash_ids(g_ids)))
    h_double = psi.psi_reblind(g_key, psi.psi_blind(h_key, psi.psi_hash_ids(h_ids)))
    h_matched = psi.psi_match(h_double, g_double)
    assert [h_ids[r] for r in h_matched] == ["d", "c", "b"]
    common = psi.psi_intersect_hosts([psi.psi_match(g_double, h_double), np.array([1, 3])])  # b, d
    keep = psi.psi_keep_elements(g_double, common)
    assert keep == sorted(keep)
    rows = psi.psi_keep_rows(h_double, h_matched, keep)
    assert [h_ids[r] for r in rows] == ["d", "b"]


def test_a_kept_element_outside_the_pairs_intersection_is_refused():
    g_key, h_key = psi.BlindingKey(), psi.BlindingKey()
    h_double = psi.psi_reblind(g_key, psi.psi_blind(h_key, psi.psi_hash_ids(["a", "b", "c"])))
    with pytest.raises(PsiError, match="not in this pair's intersection"):
        psi.psi_keep_rows(h_double, np.array([0, 1]), [h_double[2]])  # row 2 was not matched
    with pytest.raises(PsiError, match="appears twice"):
        psi.psi_keep_rows(h_double, np.array([0, 1]), [h_double[0], h_double[0]])


def test_no_id_common_to_all_parties_is_an_empty_intersection_error():
    with pytest.raises(PsiError, match="empty intersection"):
        psi.intersect_in_process(["1", "2", "3"], [["1", "2"], ["3", "4"]])  # pairwise overlaps, none common
