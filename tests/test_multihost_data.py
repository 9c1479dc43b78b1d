"""`vflchain data --hosts N`: the guest's columns as before, the host columns split between the hosts."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nodes.cli import main
from vfl.datasets import breast_split, breast_split_hosts, split_columns, synth_split_hosts
from vfl.errors import DataError


def _same(a, b) -> bool:
    """Two PartyData with the same IDs, columns, values and labels."""
    return (a.features == b.features and np.array_equal(a.ids, b.ids) and np.array_equal(a.X, b.X)
            and (a.y is None) == (b.y is None) and (a.y is None or np.array_equal(a.y, b.y)))


def _header(path) -> list[str]:
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


def test_breast_with_two_hosts_writes_three_files_with_the_host_columns_split(tmp_path):
    assert main(["data", "breast", "--hosts", "2", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guest.csv", "host1.csv", "host2.csv"]
    assert _header(tmp_path / "guest.csv") == ["id", "y"] + [f"x{i}" for i in range(10)]
    assert _header(tmp_path / "host1.csv") == ["id"] + [f"x{i}" for i in range(10)]
    assert _header(tmp_path / "host2.csv") == ["id"] + [f"x{i}" for i in range(10, 20)]


def test_one_host_is_exactly_the_two_party_split(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["data", "breast", "--out", str(a), "--overlap", "0.9"]) == 0
    assert main(["data", "breast", "--hosts", "1", "--out", str(b), "--overlap", "0.9"]) == 0
    for name in ("guest.csv", "host.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    guest, hosts = breast_split_hosts(1, 0.9)
    g2, h2 = breast_split(0.9)
    assert _same(guest, g2) and len(hosts) == 1 and _same(hosts[0], h2)


@pytest.mark.parametrize("n_hosts", [2, 3])
def test_hosts_together_hold_the_two_party_hosts_columns_row_by_row(n_hosts):
    guest, hosts = breast_split_hosts(n_hosts)
    g2, h2 = breast_split()
    assert _same(guest, g2)
    np.testing.assert_array_equal(np.hstack([h.X for h in hosts]), h2.X)
    assert sum((h.features for h in hosts), []) == h2.features
    assert [len(h.features) for h in hosts] == [len(c) for c in split_columns(20, n_hosts)]


def test_overlap_below_one_gives_every_party_ids_the_others_lack():
    guest, hosts = breast_split_hosts(3, overlap=0.8, seed=2)
    sets = [set(guest.ids.tolist())] + [set(h.ids.tolist()) for h in hosts]
    common = set.intersection(*sets)
    assert len(common) == round(0.8 * 569)
    assert all(s - common for s in sets)
    assert len(set.union(*sets)) == 569


def test_synth_with_three_hosts_splits_the_requested_host_columns(tmp_path):
    assert main(["data", "synth", "--rows", "60", "--guest-features", "2", "--host-features", "7",
                 "--hosts", "3", "--out", str(tmp_path)]) == 0
    assert [len(_header(tmp_path / f"host{k}.csv")) - 1 for k in (1, 2, 3)] == [3, 2, 2]
    guest, hosts = synth_split_hosts(60, 2, 7, 3)
    assert guest.X.shape == (60, 2) and sum(h.X.shape[1] for h in hosts) == 7


def test_more_hosts_than_host_columns_is_refused_in_one_line(tmp_path, capsys):
    assert main(["data", "synth", "--rows", "20", "--host-features", "2", "--hosts", "3",
                 "--out", str(tmp_path)]) == 1
    assert "2 host columns cannot be split between 3 hosts" in capsys.readouterr().err
    with pytest.raises(DataError, match="integer >= 1"):
        split_columns(20, 0)
