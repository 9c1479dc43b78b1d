"""vfl.psi: hashing IDs to Curve25519, blinding, matching and alignment."""

from __future__ import annotations

import numpy as np
import pytest

from vfl import psi
from vfl.errors import PsiError
from vfl.paillier._parallel import configure, split

RFC_DST = b"QUUX-V01-CS02-with-curve25519_XMD:SHA-512_ELL2_RO_"

# RFC 9380 appendix J.4.1 (curve25519_XMD:SHA-512_ELL2_RO_): msg -> (P.x, P.y)
RFC_VECTORS = [
    (b"", "2de3780abb67e861289f5749d16d3e217ffa722192d16bbd9d1bfb9d112b98c0",
     "3b5dc2a498941a1033d176567d457845637554a2fe7a3507d21abd1c1bd6e878"),
    (b"abc", "2b4419f1f2d48f5872de692b0aca72cc7b0a60915dd70bde432e826b6abc526d",
     "1b8235f255a268f0a6fa8763e97eb3d22d149343d495da1160eff9703f2d07dd"),
    (b"abcdef0123456789", "68ca1ea5a6acf4e9956daa101709b1eee6c1bb0df1de3b90d4602382a104c036",
     "2a375b656207123d10766e68b938b1812a4a6625ff83cb8d5e86f58a4be08353"),
]


@pytest.mark.parametrize("msg,x,y", RFC_VECTORS)
def test_hash_to_curve_matches_rfc9380_vectors(msg: bytes, x: str, y: str) -> None:
    u, v = psi.hash_to_curve(msg, RFC_DST)
    assert format(int(u), "064x") == x
    assert format(int(v), "064x") == y


def test_hashed_point_is_on_the_curve() -> None:
    u, v = psi.hash_to_curve(b"patient-17")
    assert (v * v - (u * u * u + psi.A * u * u + u)) % psi.P == 0


def test_x25519_blinding_of_fast_hash_equals_rfc_point_times_clamped_scalar_over_8() -> None:
    key = psi.BlindingKey()
    (fast,) = psi.psi_hash_ids(["patient-17"])
    (blinded,) = psi.psi_blind(key, [fast])
    full = psi.hash_to_curve(b"patient-17")
    k = key.scalar()
    assert k % 8 == 0
    expected = psi.point_mul(k // 8, full)
    assert int.from_bytes(blinded, "little") == int(expected[0])


def test_blinding_commutes_so_shared_ids_meet() -> None:
    a, b = psi.BlindingKey(), psi.BlindingKey()
    h = psi.psi_hash_ids(["x", "y", "z"])
    ab = psi.psi_reblind(b, psi.psi_blind(a, h))
    ba = psi.psi_reblind(a, psi.psi_blind(b, h))
    assert ab == ba
    assert len(set(ab)) == 3


def test_blinded_values_differ_from_hashes_and_between_keys() -> None:
    h = psi.psi_hash_ids(["x"])
    a = psi.psi_blind(psi.BlindingKey(), h)
    b = psi.psi_blind(psi.BlindingKey(), h)
    assert a != h and b != h and a != b


def test_integer_and_string_ids_hash_alike() -> None:
    assert psi.psi_hash_ids([7, np.int64(12)]) == psi.psi_hash_ids(["7", "12"])
    assert psi.canonical_id("é") == "é".encode()
    with pytest.raises(PsiError, match="not a string or integer"):
        psi.canonical_id(1.5)  # type: ignore[arg-type]


def _intersect(gids, hids):
    a, b = psi.BlindingKey(), psi.BlindingKey()
    ga = psi.psi_blind(a, psi.psi_hash_ids(gids))
    hb = psi.psi_blind(b, psi.psi_hash_ids(hids))
    g_double = psi.psi_reblind(b, ga)  # computed by the host, returned in the guest's order
    h_double = psi.psi_reblind(a, hb)
    g_rows = psi.psi_align(gids, psi.psi_match(g_double, h_double))
    h_rows = psi.psi_align(hids, psi.psi_match(h_double, g_double))
    return g_rows, h_rows, g_double, h_double


def test_match_and_align_give_the_true_intersection_in_the_same_order() -> None:
    rng = np.random.default_rng(0)
    gids = [f"id{i}" for i in rng.permutation(300)[:200]]
    hids = [f"id{i}" for i in rng.permutation(300)[:150]]
    g_rows, h_rows, gd, hd = _intersect(gids, hids)
    truth = set(gids) & set(hids)
    assert [gids[i] for i in g_rows] == [hids[i] for i in h_rows]
    assert set(gids[i] for i in g_rows) == truth
    assert psi.psi_check(gd[i] for i in g_rows) == psi.psi_check(hd[i] for i in h_rows)


def test_integer_ids_align_numerically() -> None:
    gids = ["10", "2", "33", "4"]
    hids = ["33", "4", "10", "2", "99"]
    g_rows, h_rows, _, _ = _intersect(gids, hids)
    assert [gids[i] for i in g_rows] == ["2", "4", "10", "33"]
    assert [hids[i] for i in h_rows] == ["2", "4", "10", "33"]


def test_no_overlap_gives_empty_match() -> None:
    g_rows, h_rows, _, _ = _intersect(["a", "b"], ["c", "d"])
    assert len(g_rows) == 0 and len(h_rows) == 0


def test_element_arrays_round_trip_and_reject_malformed() -> None:
    els = psi.psi_hash_ids(["a", "b"])
    arr = psi.elements_to_array(els)
    assert arr.shape == (2, 32) and psi.elements_from_array(arr) == els
    with pytest.raises(PsiError, match="uint8 array"):
        psi.elements_from_array(np.zeros((2, 31), dtype=np.uint8))
    with pytest.raises(PsiError, match="twice"):
        psi.elements_from_array(np.stack([arr[0], arr[0]]))
    bad = arr.copy()
    bad[0, 31] |= 0x80
    with pytest.raises(PsiError, match="canonical"):
        psi.elements_from_array(bad)


def test_small_order_point_is_refused() -> None:
    with pytest.raises(PsiError, match="not a valid curve point"):
        psi.psi_reblind(psi.BlindingKey(), [bytes(32)])


def test_batched_hash_equals_the_rfc_map_for_many_ids() -> None:
    msgs = [psi.canonical_id(f"id-{i}") for i in range(300)]  # both Elligator 2 branches occur
    expected = b"".join(int(q[0]).to_bytes(32, "little") for q in psi._map_pairs(msgs, psi.PSI_DST))
    assert psi.hash_u_batch(msgs) == expected


def test_chunks_on_worker_processes_give_the_same_points_as_one_thread(monkeypatch) -> None:
    ids = [f"MRN-{i}" for i in range(150)]
    key = psi.BlindingKey()
    try:
        configure(workers=1)
        single = psi.psi_blind(key, psi.psi_hash_ids(ids))
        configure(workers=2)
        monkeypatch.setattr(psi, "CHUNK_MIN", 16)
        monkeypatch.setattr(psi, "CHUNK_MAX", 32)
        assert len(split(len(ids), 16, 32)) > 2
        monkeypatch.setattr(psi, "PROGRESS_EVERY", 64)
        seen: list[tuple[int, int]] = []
        hashed = psi.psi_hash_ids(ids, progress=lambda done, total: seen.append((done, total)))
        assert psi.psi_blind(key, hashed) == single
        assert len(seen) >= 2 and seen[-1] == (150, 150) and seen == sorted(seen)  # a long step reports
        points = psi.psi_hash_ids(ids)
        points[100] = bytes(32)  # small order, in a later chunk: its index is named
        with pytest.raises(PsiError, match="element 100 is not a valid curve point"):
            psi.psi_reblind(key, points)
    finally:
        configure(workers=0)


def test_ids_and_the_blinding_scalar_never_go_to_a_ray_cluster() -> None:
    from vfl.paillier import _kernels

    assert {"psi_hash", "psi_x25519"} <= _kernels.SECRET_KERNELS
