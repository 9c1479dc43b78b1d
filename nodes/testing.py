"""Run a guest function and a host function against each other in one process.

For unit tests of protocol phases only: both parties' contexts share an
in-memory transport (same wire format and transcripts as the network one).
`vflchain run` never uses this.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nodes.config import JobConfig
from nodes.context import PartyContext
from nodes.rundir import RunDir
from nodes.transcript import Transcript
from nodes.transport.memory import memory_pair
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
    keys = _KEY_CACHE.setdefault(bits, [])
    while len(keys) < 2:
        keys.append(generate_keypair(bits))
    return keys[0], keys[1]


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
