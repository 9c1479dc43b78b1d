"""Run a guest and its hosts against each other in one process.

For unit tests of protocol phases only: the parties' contexts share in-memory
transports (same wire format and transcripts as the network one).
`vflchain run` never uses this.

- `make_contexts` / `run_pair`: a guest and one host, phase functions of a `PartyContext`.
- `make_sessions` / `run_parties`: a guest and 1..N hosts ("host", or "host1".."hostN"),
  phase functions of a `nodes.session.Session` (the guest has one link per host: a star).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nodes.algorithms import vertical_roles
from nodes.config import JobConfig
from nodes.context import PartyContext
from nodes.rundir import RunDir
from nodes.session import PeerAborted, PeerLink, Session
from nodes.transcript import Transcript
from nodes.transport.memory import memory_link, memory_pair
from nodes.transport.star import StarTransport
from vfl.data import PartyData
from vfl.paillier import PrivateKey, PublicKey, generate_keypair

_KEY_CACHE: dict[int, list[tuple[PublicKey, PrivateKey]]] = {}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def party_keys(bits: int = 1024) -> tuple[tuple[PublicKey, PrivateKey], tuple[PublicKey, PrivateKey]]:
    """Two key pairs (guest, host), generated once per process and size."""
    keys = key_pairs(2, bits)
    return keys[0], keys[1]


def key_pairs(count: int, bits: int = 1024) -> list[tuple[PublicKey, PrivateKey]]:
    """`count` key pairs (guest first, then the hosts), generated once per process and size."""
    keys = _KEY_CACHE.setdefault(bits, [])
    while len(keys) < count:
        keys.append(generate_keypair(bits))
    return keys[:count]


def make_contexts(tmp: Path, guest: PartyData | None, host: PartyData | None,
                  config: JobConfig | None = None, bits: int = 1024, seed: int = 0,
                  job_id: str = "test-job") -> tuple[PartyContext, PartyContext]:
    config = config or JobConfig()
    (gpk, gsk), (hpk, hsk) = party_keys(bits)
    gt, ht = Transcript(tmp / "guest" / "transcript.jsonl"), Transcript(tmp / "host" / "transcript.jsonl")
    gch, hch = memory_pair(gt, ht, keys=[gpk, hpk])
    g = PartyContext("guest", job_id, config, gch, gt, RunDir(tmp / "guest"), gpk, gsk, hpk, guest,
                     rng=np.random.default_rng(seed))
    h = PartyContext("host", job_id, config, hch, ht, RunDir(tmp / "host"), hpk, hsk, gpk, host,
                     rng=np.random.default_rng(seed + 1))
    return g, h


def run_pair(guest_fn: Callable[[PartyContext], Any], host_fn: Callable[[PartyContext], Any],
             guest_ctx: PartyContext, host_ctx: PartyContext, timeout: float = 600) -> tuple[Any, Any]:
    """Run both parties concurrently; re-raise the first error of either side."""
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def target(name: str, fn: Callable[[PartyContext], Any], ctx: PartyContext) -> None:
        try:
            results[name] = fn(ctx)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors[name] = exc
            ctx.transport.close()

    th = threading.Thread(target=target, args=("host", host_fn, host_ctx), daemon=True)
    th.start()
    target("guest", guest_fn, guest_ctx)
    th.join(timeout)
    if th.is_alive():
        raise TimeoutError("host side did not finish")
    from nodes import plots

    plots.wait()  # the phases draw their pictures in the background
    for name in ("guest", "host"):
        if name in errors:
            raise errors[name]
    return results["guest"], results["host"]


def make_sessions(tmp: Path, guest: PartyData, hosts: list[PartyData], config: JobConfig | None = None,
                  bits: int = 1024, seed: int = 0, job_id: str = "test-job") -> dict[str, Session]:
    """A guest and `len(hosts)` hosts connected in a star over in-memory links, by role name.

    One host: exactly `make_contexts` (roles "guest", "host"). Several: roles "host1".."hostN",
    the guest's session has one link per host (its `ctx.transport` closes them all), each host's
    one link to the guest. Every link trusts every party's key (the guest relays ciphertexts under
    host keys). Every context gets `host_keys` (every host's public key) and `host_columns`
    (every host's number of feature columns), as the runtime's handshake sets them. Each party's
    run directory and transcript are under `tmp/<role>/`; rng seeds are `seed`, `seed + 1`, ...
    """
    if not hosts:
        raise ValueError("make_sessions needs at least one host")
    config = config or JobConfig()
    roles = vertical_roles(len(hosts))
    if len(hosts) == 1:
        g, h = make_contexts(tmp, guest, hosts[0], config, bits, seed, job_id)
        contexts = {"guest": g, "host": h}
        sessions = {role: Session(ctx) for role, ctx in contexts.items()}
    else:
        pairs = dict(zip(roles, key_pairs(len(roles), bits), strict=True))
        transcripts = {role: Transcript(tmp / role / "transcript.jsonl") for role in roles}
        guest_links, host_links = {}, {}
        for role in roles[1:]:
            g_end, h_end = memory_link("guest", role, transcripts["guest"], transcripts[role])
            for end in (g_end, h_end):
                for pk, _ in pairs.values():
                    end.trust(pk)
            guest_links[role], host_links[role] = g_end, h_end
        gpk, gsk = pairs["guest"]
        contexts = {"guest": PartyContext(
            "guest", job_id, config, StarTransport(guest_links), transcripts["guest"],  # type: ignore[arg-type]
            RunDir(tmp / "guest"), gpk, gsk, None, guest, rng=np.random.default_rng(seed))}
        sessions = {"guest": Session(contexts["guest"], {
            role: PeerLink(link, pairs[role][0]) for role, link in guest_links.items()})}
        for i, (role, data) in enumerate(zip(roles[1:], hosts, strict=True), start=1):
            pk, sk = pairs[role]
            ctx = PartyContext(role, job_id, config, host_links[role], transcripts[role],  # type: ignore[arg-type]
                               RunDir(tmp / role), pk, sk, gpk, data, rng=np.random.default_rng(seed + i))
            contexts[role] = ctx
            sessions[role] = Session(ctx, {"guest": PeerLink(host_links[role], gpk)})
    host_keys = {role: contexts[role].public_key for role in roles[1:]}
    host_columns = {role: int(data.X.shape[1]) for role, data in zip(roles[1:], hosts, strict=True)}
    for ctx in contexts.values():
        ctx.host_keys, ctx.host_columns = dict(host_keys), dict(host_columns)
    return sessions


def run_parties(fns: dict[str, Callable[[Session], Any]], sessions: dict[str, Session],
                timeout: float = 600) -> dict[str, Any]:
    """Run every party's function on its session concurrently; results by role. Re-raises the
    first error that is not a `PeerAborted` (the cause; the others relay it), else the first."""
    if set(fns) != set(sessions):
        raise ValueError(f"functions for {sorted(fns)}, sessions for {sorted(sessions)}")
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def target(role: str) -> None:
        session = sessions[role]
        try:
            results[role] = fns[role](session)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            with lock:
                errors.append(exc)
            for link in session.links.values():
                link.transport.close()

    threads = [threading.Thread(target=target, args=(role,), name=f"party-{role}", daemon=True) for role in sessions]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout)
        if th.is_alive():
            raise TimeoutError(f"{th.name.removeprefix('party-')} did not finish within {timeout:g}s")
    from nodes import plots

    plots.wait()  # the phases draw their pictures in the background
    causes = [e for e in errors if not isinstance(e, PeerAborted)]  # the others only relay it
    if errors:
        raise (causes or errors)[0]
    return results


def shared_memory_chain(state: Path, parties: dict[str, tuple[str, str]] | None = None) -> tuple[Any, Any]:
    """An in-process chain with the contract deployed (the dev guest and host registered, or `parties`),
    whose requests are serialized so that several parties' threads can share it: (web3, contract)."""
    from chain.backends import memory_chain
    from chain.deploy import dev_contract

    w3 = memory_chain()
    lock = threading.Lock()
    request = w3.provider.make_request

    def serialized(method: Any, params: Any) -> Any:
        with lock:
            return request(method, params)

    w3.provider.make_request = serialized
    return w3, dev_contract(w3, state, parties)
