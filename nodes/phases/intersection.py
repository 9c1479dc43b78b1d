"""Private set intersection of the two ID columns (ECDH-PSI; maths in vfl.psi, docs/protocols/psi.md).

One round, symmetric, both parties run the same steps:
    psi_blind    send own IDs hashed to Curve25519 and blinded with own secret scalar, shuffled
    psi_reblind  re-blind the peer's list with own scalar and send it back in the peer's order
    psi_match    own rows whose doubly blinded value is among the peer's doubly blinded values
    psi_align    those rows sorted by ID (both parties get the same order)
    psi_check    exchange a digest of the aligned doubly blinded values; they must be equal
Each party learns the intersection and the size of the other's set, nothing
else. Afterwards `ctx.data` holds only the intersection's rows, in the common
order, and `intersection.json` is written. An empty intersection is an error.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import numpy as np

from nodes.context import PartyContext
from nodes.session import Session
from vfl import psi
from vfl.errors import PsiError

PHASE = "intersection"


def _shuffle() -> np.random.Generator:
    """A permutation source the peer cannot predict (not the job's shared seed)."""
    return np.random.default_rng(secrets.randbits(128))


def _run(ctx: PartyContext) -> dict[str, Any]:
    if ctx.data is None:
        raise PsiError(f"{ctx.role} has no data to intersect")
    session = Session(ctx)
    (peer,) = session.peers
    with session.round(PHASE, "stopped the intersection") as r:
        ids = ctx.data.ids.tolist()
        ctx.event("phase_step", phase=PHASE, step="psi_hash_ids", rows=len(ids))
        key = psi.BlindingKey()
        blinded = psi.psi_blind(key, psi.psi_hash_ids(ids))
        perm = _shuffle().permutation(len(blinded))
        r.send(peer, "psi_blind", {"points": psi.elements_to_array([blinded[i] for i in perm])})

        peer_blinded = psi.elements_from_array(r.recv(peer, "psi_blind")["points"], f"{peer}'s blinded IDs")
        ctx.event("phase_step", phase=PHASE, step="psi_reblind", rows=len(peer_blinded))
        peer_double = psi.psi_reblind(key, peer_blinded)
        r.send(peer, "psi_reblind", {"points": psi.elements_to_array(peer_double)})

        back = psi.elements_from_array(r.recv(peer, "psi_reblind")["points"], f"{peer}'s re-blinded IDs")
        if len(back) != len(blinded):
            raise PsiError(f"{peer} re-blinded {len(back)} IDs, {ctx.role} sent {len(blinded)}")
        own_double: list[bytes] = [b""] * len(back)
        for pos, row in enumerate(perm):
            own_double[row] = back[pos]
        rows = psi.psi_align(ids, psi.psi_match(own_double, peer_double))
        sizes = {"intersection_size": int(len(rows)), "own_size": len(ids), "other_size": len(peer_double)}
        if len(rows) == 0:
            raise PsiError(f"empty intersection: {ctx.role} ({len(ids)} IDs) and {peer} "
                           f"({len(peer_double)} IDs) share no ID; nothing to train on")

        check = psi.psi_check(own_double[i] for i in rows)
        r.send(peer, "psi_check", {"digest": check, "intersection_size": len(rows)})
        peer_check = r.recv(peer, "psi_check")
        if peer_check.get("digest") != check or peer_check.get("intersection_size") != len(rows):
            raise PsiError(f"intersection check failed: {ctx.role} and {peer} did not align the same rows")

        ctx.data = ctx.data.take(rows)
        ctx.rundir.write_json("intersection.json", sizes)
        ctx.state["intersection"] = sizes
        ids_digest = hashlib.sha256("\n".join(ctx.data.ids.tolist()).encode()).hexdigest()
        r.commit({**sizes, "ids_sha256": ids_digest})
    ctx.event("phase_step", phase=PHASE, step="psi_align", **sizes)
    return sizes


def run_guest(ctx: PartyContext) -> dict[str, Any]:
    return _run(ctx)


def run_host(ctx: PartyContext) -> dict[str, Any]:
    return _run(ctx)
