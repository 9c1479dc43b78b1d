"""ECDH private set intersection on Curve25519 (the maths; the protocol is nodes.phases.intersection).

Each party holds a secret X25519 scalar. An ID is hashed to a curve point with
RFC 9380 `hash_to_curve` (suite curve25519_XMD:SHA-512_ELL2_RO_, our own DST),
then *blinded* with the party's scalar; the peer *re-blinds* what it receives
with its own scalar. Scalar multiplication commutes, so an ID both parties hold
ends as the same doubly blinded value on both sides, while a singly blinded
value reveals nothing about the ID (decisional Diffie-Hellman on Curve25519).

Steps, named as in the protocol:
    psi_hash_ids   ID -> point (u-coordinate, 32 bytes little-endian)
    psi_blind      own points -> own scalar times them            (X25519)
    psi_reblind    the peer's blinded points -> own scalar times them
    psi_match      which own rows' doubly blinded values the peer also has
    psi_align      the intersection's rows in the order both parties use
    psi_check      a digest of the aligned doubly blinded values, to compare

With N hosts (docs/protocols/psi.md, "N hosts") the guest runs the two-party steps
with each host, then:
    psi_intersect_hosts  the guest's rows that every host also holds
    psi_keep_elements    per host, the pair's doubly blinded values of those rows (a sorted set)
    psi_keep_rows        the host's rows among them (only rows it already matched)
and every pair aligns (`psi_align`) and checks (`psi_check`) the final rows.
`intersect_in_process` runs all of it in one process (tests, the Python API).

Cofactor: `hash_to_curve` multiplies by the cofactor 8 (`clear_cofactor`). The
fast path `psi_hash_ids` stops before that step; X25519 clamps every scalar to a
multiple of 8, so its first multiplication clears the cofactor anyway and the
result is the same as blinding the RFC point with scalar clamp(k)/8 (tested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from vfl.errors import PsiError
from vfl.paillier import _parallel
from vfl.psi_curve import (  # noqa: F401 - the curve maths, re-exported as part of this module
    _SQRT_EXP,
    ELEMENT_BYTES,
    PSI_DST,
    A,
    P,
    Point,
    Z,
    _map_pairs,
    canonical_id,
    expand_message_xmd,
    hash_to_curve,
    hash_u_batch,
    k_hash,
    k_x25519,
    point_add,
    point_double,
    point_mul,
)

# IDs per chunk handed to one worker (psi_hash_ids, X25519): small enough for progress
# and bounded memory, large enough that the byte transfer is noise.
CHUNK_MIN, CHUNK_MAX = 1024, 8192
PROGRESS_EVERY = 100_000  # IDs between progress reports of a long step

Progress = Callable[[int, int], None]  # (done, total)
def psi_hash_ids(ids: Iterable[str | int], dst: bytes = PSI_DST,
                 progress: Progress | None = None) -> list[bytes]:
    """Each ID's curve point (hash_to_curve without clear_cofactor), as a 32-byte u-coordinate.

    Runs in chunks on every local core (the Paillier worker pool, `vfl.paillier._parallel`);
    messages cross to the workers as raw bytes. `progress(done, total)` is called
    every `PROGRESS_EVERY` IDs or so.
    """
    msgs = [canonical_id(i) for i in ids]
    chunks = _parallel.split(len(msgs), CHUNK_MIN, CHUNK_MAX)
    args = []
    for a, b in chunks:
        part = msgs[a:b]
        args.append((b"".join(part), np.fromiter(map(len, part), dtype=np.uint32, count=len(part)), dst))
    return _split_elements(b"".join(_run_reporting("psi_hash", args, chunks, progress)))


def _run_reporting(kernel: str, args: list[tuple], chunks: list[tuple[int, int]],
                   progress: Progress | None) -> list:
    """`_parallel.run` over the chunks, in groups of about PROGRESS_EVERY IDs when
    someone watches (each group ends with a report; the pool drains in between)."""
    if progress is None or not chunks:
        return _parallel.run(kernel, args)
    total = chunks[-1][1]
    out: list = []
    i = 0
    while i < len(args):
        j = i + 1
        while j < len(args) and chunks[j][1] - chunks[i][0] <= PROGRESS_EVERY:
            j += 1
        out.extend(_parallel.run(kernel, args[i:j]))
        progress(chunks[j - 1][1], total)
        i = j
    return out


def _split_elements(data: bytes) -> list[bytes]:
    return [data[i : i + ELEMENT_BYTES] for i in range(0, len(data), ELEMENT_BYTES)]


# -- blinding ----------------------------------------------------------------

class BlindingKey:
    """A party's secret PSI scalar for one job (never leaves the party)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._sk = (X25519PrivateKey.generate() if secret is None
                    else X25519PrivateKey.from_private_bytes(secret))

    def scalar(self) -> int:
        """The clamped scalar X25519 multiplies by (for tests)."""
        raw = bytearray(self._secret_bytes())
        raw[0] &= 248
        raw[31] &= 127
        raw[31] |= 64
        return int.from_bytes(raw, "little")

    def multiply(self, elements: Sequence[bytes], progress: Progress | None = None) -> list[bytes]:
        """This key's scalar times each point (X25519); refuses invalid or small-order points.

        Runs in chunks on every local core. The scalar goes only to this party's own
        worker processes (a secret kernel: never to a Ray cluster).
        """
        secret = self._secret_bytes()
        chunks = _parallel.split(len(elements), CHUNK_MIN, CHUNK_MAX)
        args = [(secret, b"".join(elements[a:b])) for a, b in chunks]
        out: list[bytes] = []
        results = _run_reporting("psi_x25519", args, chunks, progress)
        for (start, _), (data, bad) in zip(chunks, results, strict=True):
            if bad >= 0:
                raise PsiError(f"element {start + bad} is not a valid curve point")
            out.extend(_split_elements(data))
        return out

    def _secret_bytes(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._sk.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())


def psi_blind(key: BlindingKey, points: Sequence[bytes], progress: Progress | None = None) -> list[bytes]:
    """Blind own hashed IDs: k * H(id)."""
    return key.multiply(points, progress)


def psi_reblind(key: BlindingKey, peer_blinded: Sequence[bytes],
                progress: Progress | None = None) -> list[bytes]:
    """Re-blind the peer's blinded IDs, keeping their order: k * (k' * H(id))."""
    return key.multiply(peer_blinded, progress)


def psi_match(own_double: Sequence[bytes], peer_double: Iterable[bytes]) -> np.ndarray:
    """Positions (ascending) of own rows whose doubly blinded value the peer also holds."""
    peer = set(peer_double)
    return np.asarray([i for i, e in enumerate(own_double) if e in peer], dtype=np.int64)


def psi_align(ids: Sequence[str | int], rows: Sequence[int]) -> np.ndarray:
    """The intersection's rows in the order both parties use: by ID (numeric when all are integers).

    Both parties hold the same intersection IDs, so sorting them by a rule of the
    IDs alone gives both the same order without another message.
    """
    rows = [int(r) for r in rows]
    keys = [canonical_id(ids[r]).decode("utf-8") for r in rows]
    if all(_is_decimal(k) for k in keys):
        order = sorted(range(len(rows)), key=lambda i: (int(keys[i]), keys[i]))
    else:
        order = sorted(range(len(rows)), key=lambda i: keys[i].encode("utf-8"))
    return np.asarray([rows[i] for i in order], dtype=np.int64)


def _is_decimal(text: str) -> bool:
    body = text[1:] if text[:1] == "-" else text
    return body.isascii() and body.isdigit()


def psi_check(aligned_double: Iterable[bytes]) -> str:
    """Hex SHA-256 over the aligned doubly blinded values: equal on both sides iff aligned alike."""
    h = hashlib.sha256()
    for e in aligned_double:
        h.update(e)
    return h.hexdigest()


# -- N hosts -------------------------------------------------------------------

def psi_intersect_hosts(matches: Sequence[np.ndarray | Sequence[int]]) -> np.ndarray:
    """Guest: own rows (ascending) that every host holds, from the `psi_match` rows of each pair."""
    if not matches:
        raise PsiError("an intersection over hosts needs at least one host")
    common = set(int(r) for r in matches[0])
    for rows in matches[1:]:
        common &= set(int(r) for r in rows)
    return np.asarray(sorted(common), dtype=np.int64)


def psi_keep_elements(own_double: Sequence[bytes], rows: Sequence[int] | np.ndarray) -> list[bytes]:
    """Guest -> one host: that pair's doubly blinded values of the rows every party holds, sorted.

    The host already holds each of these values (the pair's intersection), so it learns which
    of its matched rows remain, nothing else; sorted, they carry no row order of the guest.
    """
    return sorted(own_double[int(r)] for r in rows)


def psi_keep_rows(own_double: Sequence[bytes], matched: Sequence[int] | np.ndarray,
                  keep: Sequence[bytes]) -> np.ndarray:
    """Host: its rows (ascending) whose doubly blinded value the guest kept.

    Refuses a kept value that is not one of the host's matched rows (the guest may only
    shrink the pair's intersection) or that appears twice.
    """
    pos = {own_double[int(r)]: int(r) for r in matched}
    rows: list[int] = []
    for i, e in enumerate(keep):
        if e not in pos:
            raise PsiError(f"kept element {i} is not in this pair's intersection")
        rows.append(pos[e])
    if len(set(rows)) != len(rows):
        raise PsiError("the same kept element appears twice")
    return np.asarray(sorted(rows), dtype=np.int64)


@dataclass
class PartyIntersection:
    """One party's result: its aligned rows and the sizes it learned."""

    rows: np.ndarray  # own row positions of the intersection, in the common (ID) order
    own_size: int
    peer_sizes: dict[str, int]  # the set size of each peer it ran a pair with
    pair_sizes: dict[str, int]  # the size of each pair's intersection it learned
    digests: dict[str, str]  # psi_check of each pair over the aligned rows

    @property
    def intersection_size(self) -> int:
        return int(len(self.rows))


def intersect_in_process(guest_ids: Sequence[str | int],
                         host_ids: Sequence[Sequence[str | int]]) -> tuple[PartyIntersection, list[PartyIntersection]]:
    """The N-host intersection run in one process, every step as in the protocol (fresh scalars).

    Returns the guest's result and each host's (hosts named host1..hostN). With one host
    it is the two-party protocol. An empty intersection is an error, as in a job.
    """
    names = [f"host{k}" for k in range(1, len(host_ids) + 1)]
    g_key = BlindingKey()
    g_points = psi_hash_ids(list(guest_ids))
    g_blinded = psi_blind(g_key, g_points)
    g_double: dict[str, list[bytes]] = {}
    h_double: list[list[bytes]] = []
    h_matched: list[np.ndarray] = []
    g_matched: list[np.ndarray] = []
    for ids in host_ids:
        h_key = BlindingKey()
        h_blinded = psi_blind(h_key, psi_hash_ids(list(ids)))
        # each side re-blinds the other's list (the shuffles of the phase do not change the sets)
        g_own_double = psi_reblind(h_key, g_blinded)
        h_own_double = psi_reblind(g_key, h_blinded)
        g_matched.append(psi_match(g_own_double, h_own_double))
        h_matched.append(psi_match(h_own_double, g_own_double))
        g_double[names[len(h_double)]] = g_own_double
        h_double.append(h_own_double)
    common = psi_intersect_hosts(g_matched)
    if len(common) == 0:
        raise PsiError(f"empty intersection: the guest ({len(guest_ids)} IDs) and {len(host_ids)} hosts "
                       "share no ID; nothing to train on")
    g_rows = psi_align(list(guest_ids), common)
    guest = PartyIntersection(g_rows, len(guest_ids), {n: len(ids) for n, ids in zip(names, host_ids, strict=True)},
                              {n: len(m) for n, m in zip(names, g_matched, strict=True)},
                              {n: psi_check(g_double[n][r] for r in g_rows) for n in names})
    hosts = []
    for k, ids in enumerate(host_ids):
        rows = (h_matched[k] if len(host_ids) == 1
                else psi_keep_rows(h_double[k], h_matched[k], psi_keep_elements(g_double[names[k]], common)))
        aligned = psi_align(list(ids), rows)
        digest = psi_check(h_double[k][r] for r in aligned)
        if digest != guest.digests[names[k]]:
            raise PsiError(f"intersection check failed: the guest and {names[k]} did not align the same rows")
        hosts.append(PartyIntersection(aligned, len(ids), {"guest": len(guest_ids)},
                                       {"guest": int(len(h_matched[k]))}, {"guest": digest}))
    return guest, hosts


# -- element arrays on the wire ----------------------------------------------

def elements_to_array(elements: Sequence[bytes]) -> np.ndarray:
    """(n, 32) uint8 array of points, for the message codec."""
    if not elements:
        return np.zeros((0, ELEMENT_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(elements), dtype=np.uint8).reshape(len(elements), ELEMENT_BYTES).copy()


def elements_from_array(arr: object, what: str = "points") -> list[bytes]:
    """Parse a received (n, 32) uint8 array of points; refuses anything else or duplicates."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 2 \
            or arr.shape[1] != ELEMENT_BYTES:
        shape = getattr(arr, "shape", None)
        raise PsiError(f"{what}: expected an (n, {ELEMENT_BYTES}) uint8 array, got {type(arr).__name__} "
                       f"{shape if shape is not None else ''}".rstrip())
    if arr.size and np.any(arr[:, -1] & 0x80):
        raise PsiError(f"{what}: an element is not a canonical curve25519 u-coordinate")
    data = arr.tobytes()
    out = [data[i : i + ELEMENT_BYTES] for i in range(0, len(data), ELEMENT_BYTES)]
    if len(set(out)) != len(out):
        raise PsiError(f"{what}: the same element appears twice")
    return out
