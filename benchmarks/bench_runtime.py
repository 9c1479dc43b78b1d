"""The runtime: private set intersection and message transport.

PSI: the whole intersection phase (both parties, gRPC on loopback, in one
process, so the two parties share this machine's cores) for N IDs per side with
90% overlap, against a plaintext hash join of the same IDs (what a non-private
alignment would cost); plus the per-ID cost of each step.
Transport: round trips of small messages and bytes/s of large ones over gRPC on
loopback, against the in-memory transport with the same wire format.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from benchmarks.harness import Bench, cpu_seconds, timed
from nodes.phases import intersection
from nodes.testing import free_port, make_contexts, run_pair
from nodes.transcript import Transcript
from nodes.transport import Address
from nodes.transport.grpc import GrpcTransport
from nodes.transport.memory import memory_pair
from vfl import psi
from vfl.data import PartyData
from vfl.paillier import _parallel


def _ids(n: int, overlap: float, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    shared = int(n * overlap)
    pool = [f"MRN-{i:09d}" for i in rng.permutation(3 * n)]
    return pool[:n], pool[:shared] + pool[n : 2 * n - shared]


def _party(role: str, ids: list[str]) -> PartyData:
    X = np.zeros((len(ids), 1))
    y = np.zeros(len(ids), dtype=np.int8) if role == "guest" else None
    return PartyData(role, np.asarray(ids, dtype=str), ["x0"], X, y)


def _grpc_pair(tmp: Path) -> tuple[GrpcTransport, GrpcTransport]:
    gp, hp = free_port(), free_port()
    g = GrpcTransport("guest", "host", f"127.0.0.1:{gp}", f"127.0.0.1:{hp}", job="bench",
                      transcript=Transcript(tmp / "g.jsonl")).start()
    h = GrpcTransport("host", "guest", f"127.0.0.1:{hp}", f"127.0.0.1:{gp}", job="bench",
                      transcript=Transcript(tmp / "h.jsonl")).start()
    g.connect(10)
    return g, h


def psi_over_grpc(n: int, overlap: float = 0.9) -> tuple[float, float]:
    """Wall and CPU seconds of the whole intersection phase, N IDs per side, over gRPC."""
    gids, hids = _ids(n, overlap, n)
    _parallel.start()  # the pool starts once per party process, not per phase
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        g, h = make_contexts(tmp, _party("guest", gids), _party("host", hids), job_id="bench")
        gt, ht = _grpc_pair(tmp)
        g.transport, h.transport = gt, ht
        gt.transcript, ht.transcript = g.transcript, h.transcript
        try:
            c0 = cpu_seconds()
            t0 = time.perf_counter()
            (gs, _) = run_pair(intersection.run_guest, intersection.run_host, g, h)
            dt = time.perf_counter() - t0
            cpu = cpu_seconds() - c0
        finally:
            gt.close()
            ht.close()
    assert gs["intersection_size"] == int(n * overlap)
    return dt, cpu


def _plain_join(n: int) -> float:
    gids, hids = _ids(n, 0.9, n)

    def join() -> int:
        g = {hashlib.sha256(i.encode()).digest(): k for k, i in enumerate(gids)}
        return sum(1 for i in hids if hashlib.sha256(i.encode()).digest() in g)

    t, _ = timed(join, repeat=3)
    return t


def _primitive_rates(n: int) -> tuple[float, float]:
    """Bare-primitive throughput on one core: X25519 multiplications/s (OpenSSL through
    `cryptography`, keys already loaded) and Elligator 2 square-root pairs/s (two 255-bit
    gmpy2 exponentiations: the floor of hashing one ID)."""
    sk = X25519PrivateKey.generate()
    pubs = [X25519PublicKey.from_public_bytes(p) for p in psi.psi_hash_ids([f"p{i}" for i in range(n)])]
    t0 = time.process_time()
    for p in pubs:
        sk.exchange(p)
    x_rate = n / (time.process_time() - t0)
    gs = [gmpy2.mpz(i) * 0x9E3779B97F4A7C15 % psi.P for i in range(1, 2 * n + 1)]
    t0 = time.process_time()
    gmpy2.powmod_base_list(gs, psi._SQRT_EXP, psi.P)
    h_rate = n / (time.process_time() - t0)
    return x_rate, h_rate


def _steps(bench: Bench, n: int) -> None:
    """Each step's IDs per CPU-second (this process and its workers) against the bare
    primitive's per CPU-second on one core: the share of the work that is the primitive,
    whatever else shares the machine. Wall rates on all workers in the notes."""
    ids, _ = _ids(n, 0.9, 7)
    key = psi.BlindingKey()
    _parallel.start()
    psi.psi_blind(key, psi.psi_hash_ids(ids[:4096]))  # workers warm
    c0, t0 = cpu_seconds(), time.perf_counter()
    points = psi.psi_hash_ids(ids)
    c1, t1 = cpu_seconds(), time.perf_counter()
    psi.psi_blind(key, points)
    c2, t2 = cpu_seconds(), time.perf_counter()
    x_rate, h_rate = _primitive_rates(min(n, 5_000))
    w = _parallel.workers()
    bench.add("runtime", f"PSI step psi_hash_ids (RFC 9380 hash to Curve25519), {n:,} IDs, {w} workers",
              n / (c1 - c0), reference=h_rate, unit="IDs/CPU-s",
              note=f"{(t1 - t0) / n * 1e6:.1f} µs/ID wall on {w} workers; reference: the bare primitive "
                   "(two 255-bit square-root exponentiations per ID, gmpy2), one core")
    bench.add("runtime", f"PSI step psi_blind / psi_reblind (X25519), {n:,} IDs, {w} workers",
              n / (c2 - c1), reference=x_rate, unit="IDs/CPU-s",
              note=f"{(t2 - t1) / n * 1e6:.1f} µs/ID wall on {w} workers; reference: bare X25519 "
                   "(OpenSSL via cryptography, keys preloaded), one core")


def add_psi_rows(bench: Bench, sizes: list[int]) -> None:
    for n in sizes:
        ours, cpu = psi_over_grpc(n)
        ref = _plain_join(n)
        bench.add("runtime", f"PSI, {n:,} IDs per side (90% shared), both parties in one process, gRPC loopback",
                  ours, reference=ref,
                  note=f"CPU {cpu:.1f} s (parent + workers; {cpu / (_parallel.workers() or 1):.1f} s per core); "
                       f"load {os.getloadavg()[0]:.1f}; reference: plaintext SHA-256 hash join")


def _small_messages(pair: tuple, count: int) -> float:
    """Round trips per second: guest sends, host answers, in turn."""
    g, h = pair
    payload = {"v": np.arange(16, dtype=np.float64)}

    def echo() -> None:
        for i in range(count):
            h.recv(Address("bench", "ping", i + 1, "q"))
            h.send(Address("bench", "ping", i + 1, "a"), payload)

    th = threading.Thread(target=echo)
    th.start()
    t0 = time.perf_counter()
    for i in range(count):
        g.send(Address("bench", "ping", i + 1, "q"), payload)
        g.recv(Address("bench", "ping", i + 1, "a"))
    dt = time.perf_counter() - t0
    th.join()
    return count / dt


def _bulk(pair: tuple, mb: int, count: int, base: int) -> float:
    g, h = pair
    payload = {"x": np.random.default_rng(0).random(mb * (1 << 20) // 8)}
    t0 = time.perf_counter()
    for i in range(count):
        g.send(Address("bench", "bulk", base + i, "x"), payload)
        h.recv(Address("bench", "bulk", base + i, "x"))
    return count * mb * (1 << 20) / (time.perf_counter() - t0)


def run(bench: Bench) -> None:
    sizes = [2_000] if bench.quick else [10_000, 100_000]
    add_psi_rows(bench, sizes)
    _steps(bench, sizes[-1] if bench.quick else 20_000)

    count = 200 if bench.quick else 2_000
    with tempfile.TemporaryDirectory() as d:
        grpc_pair = _grpc_pair(Path(d))
        try:
            mem = memory_pair()
            ours = _small_messages(grpc_pair, count)
            ref = _small_messages(mem, count)
            bench.add("runtime", "transport: small messages (128-byte array), request/reply in turn", 2 * ours,
                      reference=2 * ref, unit="messages/s", ratio=ours / ref,
                      note=f"{1e3 / ours:.2f} ms per round trip; reference: in-memory transport, same codec")
            mb, n_bulk = (4, 3) if bench.quick else (32, 5)
            ours = _bulk(grpc_pair, mb, n_bulk, count + 1)
            ref = _bulk(mem, mb, n_bulk, count + 1)
            bench.add("runtime", f"transport: {mb} MB float64 arrays, guest -> host", ours / 2**20,
                      reference=ref / 2**20, unit="MB/s", ratio=ours / ref,
                      note="reference: in-memory transport, same codec")
        finally:
            for t in grpc_pair:
                t.close()
