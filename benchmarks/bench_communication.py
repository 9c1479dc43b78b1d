"""Communication cost of one vertical LR job: packed vs unpacked wire format, Paillier vs plaintext exchange.

The same job each time: the breast data, the lr phase (full batch, `EPOCHS` epochs, 2048-bit keys;
1024-bit and 1 epoch with --quick), guest and host in this process over the in-memory transport
(the real wire format). Breast's 455-row batches are too small for row packing to pay (the cost
model leaves them unpacked; only gradients are packed), so the full run adds a synthetic
10,000 x (10+40) job of 1 epoch, where row packing is used. Bytes and messages are what `nodes.communication` derives from the two
transcripts (encoded messages, no TLS/gRPC framing).

- packed: the default protocol (gradients in the public packed layout, row packing where the
  cost model says it pays). unpacked: the same job with packing switched off (bench-only switch:
  `columns_fit` reports False, so neither party packs; there is no config key for it).
- plaintext exchange: a bench-only baseline, not a protocol vflchain runs. Bytes: the same
  messages re-encoded with every ciphertext array replaced by float64 plaintexts of the same shape
  (what the protocol would send without encryption). Time: the plaintext reference training
  of the same algorithm on the joined rows (`vfl.lr.fit_reference`: no encryption, no messages).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Bench, timed
from nodes.communication import summarize
from nodes.config import load_config
from nodes.phases import lr as phase
from nodes.testing import make_contexts, run_pair
from nodes.transport.base import Address, Payload
from nodes.transport.codec import encode_message
from vfl.data import PartyData
from vfl.datasets import breast_split, synth_split
from vfl.lr import fit_reference
from vfl.paillier import EncryptedArray, PackedEncryptedArray

EPOCHS = 3


def _plaintext(payload: Payload) -> Payload:
    """The payload with each ciphertext array replaced by float64 zeros of its (values') shape."""
    out: dict[str, Any] = {}
    for k, v in payload.items():
        out[k] = np.zeros(v.shape, dtype=np.float64) if isinstance(v, EncryptedArray | PackedEncryptedArray) else v
    return out


class _PlainSizes:
    """Wraps a transport's send: counts the bytes each message would take with plaintexts."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.bytes, self.messages = inner, 0, 0
        self._send = inner.send

    def __call__(self, address: Address, payload: Payload) -> None:
        self.bytes += len(encode_message(address, self.inner.role, _plaintext(payload)))
        self.messages += 1
        self._send(address, payload)


@contextlib.contextmanager
def _unpacked() -> Iterator[None]:
    """Neither party packs (bench-only): the columns are reported as not fitting the packing bound."""
    saved = phase.columns_fit
    phase.columns_fit = lambda X: False
    try:
        yield
    finally:
        phase.columns_fit = saved


def _job(bits: int, epochs: int, plain: bool = False, data: tuple[PartyData, PartyData] | None = None
         ) -> dict[str, Any]:
    g, h = data or breast_split()
    cfg = load_config(None, [f"lr.epochs={epochs}", "lr.tol=0.0", f"paillier.key_bits={bits}",
                             "paillier.insecure_test_keys=true"])
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        gctx, hctx = make_contexts(Path(tmp), g, h, cfg, bits=bits)
        counters = []
        if plain:
            for ctx in (gctx, hctx):
                counter = _PlainSizes(ctx.transport)
                ctx.transport.send = counter  # type: ignore[method-assign]
                counters.append(counter)
        t0 = time.perf_counter()
        run_pair(phase.run_guest, phase.run_host, gctx, hctx)
        seconds = time.perf_counter() - t0
        comm = summarize(gctx.transcript.entries)
    return {"seconds": seconds, "bytes": comm["totals"]["sent_bytes"] + comm["totals"]["received_bytes"],
            "messages": comm["totals"]["sent_messages"] + comm["totals"]["received_messages"],
            "plain_bytes": sum(c.bytes for c in counters), "plain_messages": sum(c.messages for c in counters)}


def run(bench: Bench) -> None:
    from nodes.testing import party_keys

    bits, epochs = (1024, 1) if bench.quick else (2048, EPOCHS)
    party_keys(bits)  # key generation is not part of the job
    job = f"breast lr {epochs} epoch(s) {bits}b"
    _job(bits, 1)  # warm-up (worker pools, key tables): not measured
    packed = _job(bits, epochs, plain=True)
    with _unpacked():
        unpacked = _job(bits, epochs)
    bench.add("communication", f"{job}: bytes, packed vs unpacked", packed["bytes"], unpacked["bytes"], unit="B",
              ratio=unpacked["bytes"] / packed["bytes"],
              note=f"both directions; {packed['messages']} vs {unpacked['messages']} messages; unpacked = "
                   "packing switched off in the bench (no config key)")
    bench.add("communication", f"{job}: seconds, packed vs unpacked", packed["seconds"], unpacked["seconds"],
              note="whole lr phase incl. setup, scoring and outputs (after a warm-up run)")
    bench.add("communication", f"{job}: bytes, Paillier vs plaintext exchange", packed["bytes"],
              packed["plain_bytes"], unit="B", ratio=packed["plain_bytes"] / packed["bytes"],
              note="plaintext exchange is a bench-only baseline: the same messages with float64 plaintexts "
                   "in place of ciphertexts (below 1: the cost of encryption in bytes)")
    if not bench.quick:  # rows enough for row packing to pay
        synth = synth_split(10_000, 10, 40, seed=1)
        big = _job(bits, 1, data=synth)
        with _unpacked():
            big_off = _job(bits, 1, data=synth)
        bench.add("communication", f"synth 10,000x(10+40) lr 1 epoch {bits}b: bytes, packed vs unpacked",
                  big["bytes"], big_off["bytes"], unit="B", ratio=big_off["bytes"] / big["bytes"],
                  note=f"row packing and packed gradients vs neither; {big['seconds']:.1f} s vs "
                       f"{big_off['seconds']:.1f} s")
    g, h = breast_split()
    opts = phase.options_from_config(load_config(None, [f"lr.epochs={epochs}", "lr.tol=0.0"]))
    plain_seconds, _ = timed(lambda: fit_reference(g.X, h.X, g.y, opts), repeat=3)
    bench.add("communication", f"{job}: seconds, Paillier vs plaintext", packed["seconds"], plain_seconds,
              note="plaintext = the reference training of the same algorithm on the joined rows "
                   "(bench-only baseline: no encryption, no messages)")
