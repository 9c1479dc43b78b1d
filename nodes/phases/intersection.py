"""Private set intersection of the two ID columns (ECDH-PSI; maths in vfl.psi, docs/protocols/psi.md).

One round, symmetric, both parties run the same steps:
    psi_blind    send own IDs hashed to Curve25519 and blinded with own secret scalar, shuffled
    psi_reblind  re-blind the peer's list with own scalar and send it back in the peer's order
    psi_match    own rows whose doubly blinded value is among the peer's doubly blinded values
    psi_align    those rows sorted by ID (both parties get the same order)
    psi_check    exchange a digest of the aligned doubly blinded values; they must be equal
Each party learns the intersection and the size of the other's set, nothing
else. With several hosts (docs/protocols/psi.md "N hosts") the guest runs these steps with
each host, keeps the rows every host holds (`psi_intersect_hosts`) and tells each host which
of its pair's rows remain (`psi_keep`, sorted values it already has), before `psi_check`. Afterwards `ctx.data` holds only the intersection's rows, in the common
order, and `intersection.json` is written. An empty intersection is an error.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import numpy as np

from nodes.context import PartyContext
from nodes.session import Round, Session, as_session
from vfl import psi
from vfl.errors import PsiError

PHASE = "intersection"


def _shuffle() -> np.random.Generator:
    """A permutation source the peer cannot predict (not the job's shared seed)."""
    return np.random.default_rng(secrets.randbits(128))


def _reporter(ctx: PartyContext, step: str) -> psi.Progress:
    """Progress of a long step as phase_step events, every ~100k IDs (none for shorter lists)."""
    def report(done: int, total: int) -> None:
        if total > psi.PROGRESS_EVERY:
            ctx.event("phase_step", phase=PHASE, step=step, done=f"{done:,}/{total:,}")
    return report


def _hash_and_blind(ctx: PartyContext) -> tuple[list[Any], psi.BlindingKey, list[bytes]]:
    """psi_hash_ids then psi_blind of this party's IDs under a fresh key: (ids, key, blinded)."""
    assert ctx.data is not None
    ids = ctx.data.ids.tolist()
    ctx.event("phase_step", phase=PHASE, step="psi_hash_ids", rows=len(ids))
    key = psi.BlindingKey()
    blinded = psi.psi_blind(key, psi.psi_hash_ids(ids, progress=_reporter(ctx, "psi_hash_ids")),
                            progress=_reporter(ctx, "psi_blind"))
    return ids, key, blinded


def _run(party: PartyContext | Session) -> dict[str, Any]:
    session = as_session(party)
    ctx = session.ctx
    if ctx.data is None:
        raise PsiError(f"{ctx.role} has no data to intersect")
    if session.multihost:
        return _run_guest_hosts(session) if session.role == "guest" else _run_host_of_many(session)
    (peer,) = session.peers
    with session.round(PHASE, "stopped the intersection") as r:
        ids, key, blinded = _hash_and_blind(ctx)
        perm = _shuffle().permutation(len(blinded))
        r.send(peer, "psi_blind", {"points": psi.elements_to_array([blinded[i] for i in perm])})
        peer_double, own_double = _pair(r, peer, key, perm, len(blinded), ctx.role)
        rows = psi.psi_align(ids, psi.psi_match(own_double, peer_double))
        sizes = {"intersection_size": int(len(rows)), "own_size": len(ids), "other_size": len(peer_double)}
        if len(rows) == 0:
            raise PsiError(f"empty intersection: {ctx.role} ({len(ids)} IDs) and {peer} "
                           f"({len(peer_double)} IDs) share no ID; nothing to train on")
        _check(r, peer, own_double, rows, ctx.role)
        _finish(session, r, rows, sizes)
    ctx.event("phase_step", phase=PHASE, step="psi_align", **sizes)
    return sizes


def _pair(r: Round, peer: str, key: psi.BlindingKey, perm: np.ndarray, n_own: int,
          role: str) -> tuple[list[bytes], list[bytes]]:
    """psi_reblind with one peer (after own psi_blind was sent): (peer's values, own values) doubly blinded."""
    peer_blinded = psi.elements_from_array(r.recv(peer, "psi_blind")["points"], f"{peer}'s blinded IDs")
    r.session.ctx.event("phase_step", phase=PHASE, step="psi_reblind", rows=len(peer_blinded))
    peer_double = psi.psi_reblind(key, peer_blinded, progress=_reporter(r.session.ctx, "psi_reblind"))
    r.send(peer, "psi_reblind", {"points": psi.elements_to_array(peer_double)})

    back = psi.elements_from_array(r.recv(peer, "psi_reblind")["points"], f"{peer}'s re-blinded IDs")
    if len(back) != n_own:
        raise PsiError(f"{peer} re-blinded {len(back)} IDs, {role} sent {n_own}")
    own_double: list[bytes] = [b""] * len(back)
    for pos, row in enumerate(perm):
        own_double[row] = back[pos]
    return peer_double, own_double


def _check(r: Round, peer: str, own_double: list[bytes], rows: np.ndarray, role: str) -> None:
    """psi_check with one peer: both aligned the same rows, in the same order."""
    check = psi.psi_check(own_double[i] for i in rows)
    r.send(peer, "psi_check", {"digest": check, "intersection_size": len(rows)})
    peer_check = r.recv(peer, "psi_check")
    if peer_check.get("digest") != check or peer_check.get("intersection_size") != len(rows):
        raise PsiError(f"intersection check failed: {role} and {peer} did not align the same rows")


def _finish(session: Session, r: Round, rows: np.ndarray, sizes: dict[str, Any]) -> None:
    """Keep the aligned rows, write intersection.json, commit the sizes and the IDs' digest."""
    ctx = session.ctx
    assert ctx.data is not None
    ctx.data = ctx.data.take(rows)
    ctx.rundir.write_json("intersection.json", sizes)
    ctx.state["intersection"] = sizes
    ids_digest = hashlib.sha256("\n".join(ctx.data.ids.tolist()).encode()).hexdigest()
    r.commit({**sizes, "ids_sha256": ids_digest})


def _run_guest_hosts(session: Session) -> dict[str, Any]:
    """The guest of several hosts: the two-party steps with each host, the rows every host holds
    (`psi_intersect_hosts`), each host told which of its pair's rows remain (`psi_keep`)."""
    ctx = session.ctx
    assert ctx.data is not None
    hosts = session.peers
    with session.round(PHASE, "stopped the intersection") as r:
        ids, key, blinded = _hash_and_blind(ctx)
        perms = {h: _shuffle().permutation(len(blinded)) for h in hosts}
        for h in hosts:
            r.send(h, "psi_blind", {"points": psi.elements_to_array([blinded[i] for i in perms[h]])})
            r.peer_waits(h, "psi_reblind")  # an error here goes to every host (a host's, to the others)
        doubles: dict[str, list[bytes]] = {}
        matched: dict[str, np.ndarray] = {}
        host_sizes: dict[str, int] = {}
        for h in hosts:
            peer_double, doubles[h] = _pair(r, h, key, perms[h], len(blinded), ctx.role)
            matched[h] = psi.psi_match(doubles[h], peer_double)
            host_sizes[h] = len(peer_double)
            r.peer_waits(h, "psi_keep")
        common = psi.psi_intersect_hosts([matched[h] for h in hosts])
        if len(common) == 0:
            raise PsiError(f"empty intersection: the guest ({len(ids)} IDs) and {len(hosts)} hosts "
                           "share no ID; nothing to train on")
        for h in hosts:
            r.send(h, "psi_keep", {"points": psi.elements_to_array(psi.psi_keep_elements(doubles[h], common))})
            r.peer_waits(h, "psi_check")
        rows = psi.psi_align(ids, common)
        for h in hosts:
            _check(r, h, doubles[h], rows, ctx.role)
        sizes = {"intersection_size": int(len(rows)), "own_size": len(ids), "other_sizes": host_sizes,
                 "pair_sizes": {h: int(len(matched[h])) for h in hosts}}
        _finish(session, r, rows, sizes)
    ctx.event("phase_step", phase=PHASE, step="psi_align", intersection_size=sizes["intersection_size"])
    return sizes


def _run_host_of_many(session: Session) -> dict[str, Any]:
    """A host of several: the two-party steps with the guest, then only the pair's rows the guest
    kept (`psi_keep_rows`: every host holds them); learns nothing about the other hosts but that."""
    ctx = session.ctx
    assert ctx.data is not None
    with session.round(PHASE, "stopped the intersection") as r:
        ids, key, blinded = _hash_and_blind(ctx)
        perm = _shuffle().permutation(len(blinded))
        r.send("guest", "psi_blind", {"points": psi.elements_to_array([blinded[i] for i in perm])})
        peer_double, own_double = _pair(r, "guest", key, perm, len(blinded), ctx.role)
        matched = psi.psi_match(own_double, peer_double)
        r.peer_waits("guest", "psi_check")  # what the guest waits for from this host after psi_keep
        keep = psi.elements_from_array(r.recv("guest", "psi_keep")["points"], "the guest's kept IDs")
        rows = psi.psi_align(ids, psi.psi_keep_rows(own_double, matched, keep))
        if len(rows) == 0:
            raise PsiError(f"empty intersection: {ctx.role} ({len(ids)} IDs) shares no ID with every party; "
                           "nothing to train on")
        _check(r, "guest", own_double, rows, ctx.role)
        sizes = {"intersection_size": int(len(rows)), "own_size": len(ids), "other_size": len(peer_double)}
        _finish(session, r, rows, sizes)
    ctx.event("phase_step", phase=PHASE, step="psi_align", **sizes)
    return sizes


def run_guest(party: PartyContext | Session) -> dict[str, Any]:
    return _run(party)


def run_host(party: PartyContext | Session) -> dict[str, Any]:
    return _run(party)
