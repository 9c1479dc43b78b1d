"""The gRPC transport: delivery, transcripts, retries, failures, TLS."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from nodes.errors import ConfigError
from nodes.testing import free_port
from nodes.transcript import Transcript, round_digest
from nodes.transport import Address, TransportError
from nodes.transport.grpc import SERVICE, GrpcTransport
from nodes.transport.tls import load_tls, write_dev_pki

JOB = "job-1"


def _pair(tmp: Path, tls_g=None, tls_h=None, **kw):
    gp, hp = free_port(), free_port()
    g = GrpcTransport("guest", "host", f"127.0.0.1:{gp}", f"127.0.0.1:{hp}", job=JOB, tls=tls_g,
                      transcript=Transcript(tmp / "g.jsonl"), **kw).start()
    h = GrpcTransport("host", "guest", f"127.0.0.1:{hp}", f"127.0.0.1:{gp}", job=JOB, tls=tls_h,
                      transcript=Transcript(tmp / "h.jsonl"), **kw).start()
    return g, h


@pytest.fixture
def pair(tmp_path):
    g, h = _pair(tmp_path, timeout=10, retries=2)
    yield g, h
    g.close()
    h.close()


def test_messages_arrive_intact_and_both_transcripts_agree(pair, keys_1024) -> None:
    g, h = pair
    (gpk, _), _ = keys_1024
    h.trust(gpk)
    g.connect(5)
    payload = {"x": np.arange(6, dtype=np.float64).reshape(2, 3), "enc": gpk.encrypt(np.array([1, -2])),
               "meta": {"n": 2, "s": "a"}, "raw": b"\x00\x01"}
    g.send(Address(JOB, "p", 1, "data"), payload)
    got = h.recv(Address(JOB, "p", 1, "data"))
    assert np.array_equal(got["x"], payload["x"]) and got["meta"] == {"n": 2, "s": "a"}
    assert got["raw"] == b"\x00\x01" and got["enc"].shape == (2,)
    h.send(Address(JOB, "p", 1, "ack"), {"ok": True})
    assert g.recv(Address(JOB, "p", 1, "ack")) == {"ok": True}
    assert [e["direction"] for e in g.transcript.entries] == ["sent", "received"]
    assert [e["direction"] for e in h.transcript.entries] == ["received", "sent"]
    assert round_digest(Transcript.load(g.transcript.path), 1) == round_digest(Transcript.load(h.transcript.path), 1)
    assert all("x" not in e for e in h.transcript.entries)  # hashes and sizes, never content


def test_resending_the_same_message_is_idempotent(pair) -> None:
    g, h = pair
    a = Address(JOB, "p", 1, "t")
    g.send(a, {"v": 1})
    g.send(a, {"v": 1})
    assert h.recv(a) == {"v": 1}
    g.send(a, {"v": 1})  # a late retry after it was consumed
    assert len([e for e in h.transcript.entries if e["direction"] == "received"]) == 1


def test_capture_writes_the_raw_bytes_of_every_received_message_once(tmp_path) -> None:
    from nodes.transport.codec import decode_message

    g, h = _pair(tmp_path, timeout=10, retries=2, capture=tmp_path / "cap")
    try:
        a = Address(JOB, "binning", 3, "labels.0")
        g.send(a, {"v": [1, 2]})
        g.send(a, {"v": [1, 2]})  # an idempotent resend is not written again
        assert h.recv(a) == {"v": [1, 2]}
        h.send(Address(JOB, "binning", 3, "ack"), {"ok": True})
        g.recv(Address(JOB, "binning", 3, "ack"))
    finally:
        g.close()
        h.close()
    [f] = sorted((tmp_path / "cap" / "host").iterdir())
    assert f.name == "0003-binning-labels.0.bin" and (f.stat().st_mode & 0o777) == 0o600
    assert decode_message(f.read_bytes(), {})[2] == {"v": [1, 2]}
    got = [e for e in h.transcript.entries if e["direction"] == "received"]
    assert len(got) == 1 and got[0]["size"] == f.stat().st_size
    assert [p.name for p in (tmp_path / "cap" / "guest").iterdir()] == ["0003-binning-ack.bin"]


def test_different_content_at_a_used_address_fails_both_sides(pair) -> None:
    g, h = pair
    a = Address(JOB, "p", 1, "t")
    g.send(a, {"v": 1})
    with pytest.raises(TransportError, match="sent twice with different content"):
        g.send(a, {"v": 2})
    with pytest.raises(TransportError, match="sent twice with different content"):
        h.recv(Address(JOB, "p", 2, "next"), timeout=2)


def test_message_for_a_past_round_is_out_of_order(pair) -> None:
    g, h = pair
    g.send(Address(JOB, "p", 3, "t"), {"v": 3})
    h.recv(Address(JOB, "p", 3, "t"))
    with pytest.raises(TransportError, match="out of order"):
        g.send(Address(JOB, "p", 2, "late"), {"v": 2})
    with pytest.raises(TransportError, match="out of order"):
        h.recv(Address(JOB, "p", 4, "t"), timeout=2)


def test_malformed_bytes_are_refused_and_fail_the_receiver(pair) -> None:
    g, h = pair
    with grpc.insecure_channel(h.listen_address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            ch.unary_unary(f"/{SERVICE}/Deliver")(b"VFM1\x00\x00\x00\x05{bad}", timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(TransportError, match="guest sent a malformed message"):
        h.recv(Address(JOB, "p", 1, "t"), timeout=2)


def test_undecodable_payload_is_a_clear_error(pair) -> None:
    g, h = pair
    from nodes.transport.codec import encode_message

    data = bytearray(encode_message(Address(JOB, "p", 1, "t"), "guest", {"x": np.zeros(4)}))
    data = bytes(data[:-8])  # the array's bytes are cut short
    g._deliver_rpc(data, timeout=5)
    with pytest.raises(TransportError, match="malformed message"):
        h.recv(Address(JOB, "p", 1, "t"), timeout=2)


def test_message_of_another_job_or_role_is_refused(pair) -> None:
    g, h = pair
    with pytest.raises(TransportError, match="runs job job-1"):
        g.send(Address("other", "p", 1, "t"), {})
    from nodes.transport.codec import encode_message

    with pytest.raises(grpc.RpcError) as info:
        g._deliver_rpc(encode_message(Address(JOB, "p", 1, "t"), "host", {}), timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _limited_pair(tmp: Path, guest: dict, host: dict):
    gp, hp = free_port(), free_port()
    g = GrpcTransport("guest", "host", f"127.0.0.1:{gp}", f"127.0.0.1:{hp}", job=JOB, timeout=10, retries=1,
                      transcript=Transcript(tmp / "g.jsonl"), **guest).start()
    h = GrpcTransport("host", "guest", f"127.0.0.1:{hp}", f"127.0.0.1:{gp}", job=JOB, timeout=10, retries=1,
                      transcript=Transcript(tmp / "h.jsonl"), **host).start()
    return g, h


def test_an_oversized_message_is_refused_by_the_sender_naming_the_limit(tmp_path) -> None:
    g, h = _limited_pair(tmp_path, {"max_message_bytes": 100_000}, {})
    try:
        g.send(Address(JOB, "p", 1, "small"), {"x": np.zeros(1000)})
        with pytest.raises(TransportError, match=r"^message p/1/big is 160\d{3} bytes, more than "
                                                 r"\[transport\] max_message_bytes = 100000$"):
            g.send(Address(JOB, "p", 1, "big"), {"x": np.zeros(20_000)})
        assert [e["tag"] for e in h.transcript.entries] == ["small"]
    finally:
        g.close()
        h.close()


def test_an_oversized_message_is_refused_by_the_receiver_before_it_is_read(tmp_path) -> None:
    # the receiver's limit is its own: gRPC refuses the bytes before they reach the mailbox
    g, h = _limited_pair(tmp_path, {}, {"max_message_bytes": 100_000})
    try:
        with pytest.raises(TransportError, match=r"^host refused message p/1/big: 160\d{3} bytes is more than "
                                                 r"its \[transport\] max_message_bytes \(RESOURCE_EXHAUSTED: "):
            g.send(Address(JOB, "p", 1, "big"), {"x": np.zeros(20_000)})
        assert h.transcript.entries == [] and h._pending_bytes == 0
        g.close(error="message too big")  # what a failing node does: the host stops with the reason
        with pytest.raises(TransportError, match="guest failed: message too big"):
            h.recv(Address(JOB, "p", 1, "big"), timeout=5)
    finally:
        g.close()
        h.close()


def test_a_flood_of_unread_messages_is_refused_and_fails_both_sides(tmp_path) -> None:
    g, h = _limited_pair(tmp_path, {}, {"max_pending": 5})
    try:
        for i in range(5):
            g.send(Address(JOB, "p", 1, f"m{i}"), {"i": i})
        with pytest.raises(TransportError, match=r"^host refused message p/1/m5: RESOURCE_EXHAUSTED: p/1/m5 "
                                                 r"refused: host holds 5 unread messages, the most "
                                                 r"\[transport\] max_pending = 5 allows$"):
            g.send(Address(JOB, "p", 1, "m5"), {"i": 5})
        with pytest.raises(TransportError, match=r"^guest sent too much: p/1/m5 refused: .*max_pending = 5"):
            h.recv(Address(JOB, "p", 2, "next"), timeout=2)
        assert len(h.transcript.entries) == 5
    finally:
        g.close()
        h.close()


def test_unread_bytes_are_bounded_too(tmp_path) -> None:
    g, h = _limited_pair(tmp_path, {}, {"max_message_bytes": 100_000, "max_pending_bytes": 200_000})
    try:
        for i in range(2):
            g.send(Address(JOB, "p", 1, f"m{i}"), {"x": np.zeros(10_000)})  # 80 kB each
        assert h.recv(Address(JOB, "p", 1, "m0"))["x"].shape == (10_000,)  # reading frees its bytes
        g.send(Address(JOB, "p", 1, "m2"), {"x": np.zeros(10_000)})
        with pytest.raises(TransportError, match=r"more would pass \[transport\] max_pending_bytes = 200000$"):
            g.send(Address(JOB, "p", 1, "m3"), {"x": np.zeros(10_000)})
    finally:
        g.close()
        h.close()


@pytest.mark.parametrize("limits, message", [
    ({"max_message_bytes": 10}, "[transport] max_message_bytes must be between 65536 and 2147483647"),
    ({"max_message_bytes": 2**31}, "[transport] max_message_bytes must be between"),
    ({"max_pending": 0}, "[transport] max_pending must be >= 1, got 0"),
    ({"max_pending_bytes": 2**20}, "[transport] max_pending_bytes (1048576) must be >= max_message_bytes"),
])
def test_transport_limits_out_of_range_name_the_key(limits, message) -> None:
    with pytest.raises(ConfigError) as info:
        GrpcTransport("guest", "host", f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}", **limits)
    assert str(info.value).startswith(message)


def test_the_default_limits_fit_the_largest_messages_of_a_100k_row_job() -> None:
    from nodes.config import TransportSection
    from nodes.transport.grpc import MAX_MESSAGE_BYTES, MAX_PENDING, MAX_PENDING_BYTES

    t = TransportSection()
    assert (t.max_message_bytes, t.max_pending, t.max_pending_bytes) == (MAX_MESSAGE_BYTES, MAX_PENDING,
                                                                         MAX_PENDING_BYTES)
    ciphertext = 512  # bytes of one ciphertext at 2048 bits (mod n^2)
    rows = 100_000
    assert 10 * rows * ciphertext + 4096 < MAX_MESSAGE_BYTES  # GMM responsibilities at K = 10 (K x N)
    assert rows // 4096 + 1 < MAX_PENDING  # binning's label chunks, all unread at once


def test_recv_times_out_with_the_address_in_the_message(pair) -> None:
    _, h = pair
    with pytest.raises(TransportError, match=r"timed out after 0.3s waiting for p/1/t from guest"):
        h.recv(Address(JOB, "p", 1, "t"), timeout=0.3)


def test_unreachable_peer_is_a_clear_error_after_retries(tmp_path) -> None:
    g = GrpcTransport("guest", "host", f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}",
                      job=JOB, retries=2, timeout=5).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(TransportError, match=r"host unreachable at 127\.0\.0\.1:\d+: could not deliver p/1/t in 3 attempts"):
            g.send(Address(JOB, "p", 1, "t"), {"v": 1})
        assert time.monotonic() - t0 < 10
        with pytest.raises(TransportError, match="host unreachable at .* after 0.5s"):
            g.connect(0.5)
    finally:
        g.close()


def test_peer_leaving_is_reported_with_its_error(pair) -> None:
    g, h = pair
    g.close("ValueError: boom")
    with pytest.raises(TransportError, match="guest failed: ValueError: boom while host was waiting"):
        h.recv(Address(JOB, "p", 1, "t"), timeout=5)


def test_peer_process_killed_mid_wait_is_detected_as_disconnect(tmp_path) -> None:
    gp, hp = free_port(), free_port()
    code = textwrap.dedent(f"""
        import time
        from nodes.transport.grpc import GrpcTransport
        t = GrpcTransport("host", "guest", "127.0.0.1:{hp}", "127.0.0.1:{gp}", job="{JOB}").start()
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    g = GrpcTransport("guest", "host", f"127.0.0.1:{gp}", f"127.0.0.1:{hp}", job=JOB,
                      liveness_interval=0.3, liveness_grace=1.0).start()
    try:
        assert proc.stdout.readline().strip() == "ready"
        g.connect(10)
        proc.kill()
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="host disconnected: unreachable"):
            g.recv(Address(JOB, "p", 1, "t"), timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        proc.kill()
        proc.wait()
        g.close()


def test_connect_checks_the_peer_role(tmp_path) -> None:
    p1, p2 = free_port(), free_port()
    a = GrpcTransport("guest", "host", f"127.0.0.1:{p1}", f"127.0.0.1:{p2}", job=JOB).start()
    b = GrpcTransport("guest", "host", f"127.0.0.1:{p2}", f"127.0.0.1:{p1}", job=JOB).start()
    try:
        with pytest.raises(TransportError, match="is a guest, expected the host"):
            a.connect(5)
    finally:
        a.close()
        b.close()


def test_waiting_host_binds_to_the_first_handshake_job(tmp_path) -> None:
    gp, hp = free_port(), free_port()
    g = GrpcTransport("guest", "host", f"127.0.0.1:{gp}", f"127.0.0.1:{hp}", job="job-77").start()
    h = GrpcTransport("host", "guest", f"127.0.0.1:{hp}", f"127.0.0.1:{gp}").start()
    try:
        with pytest.raises(TransportError, match="refused .* not in a job yet"):
            g.send(Address("job-77", "psi", 1, "x"), {})
        g.send(Address("job-77", "handshake", 1, "hello"), {"hi": 1})
        assert h.accept_job(5) == "job-77"
        assert h.recv(Address("job-77", "handshake", 1, "hello")) == {"hi": 1}
    finally:
        g.close()
        h.close()


def test_plaintext_refused_off_loopback() -> None:
    with pytest.raises(ConfigError, match="plaintext transport refused: the peer's address 10.1.2.3:50052 is not on loopback"):
        GrpcTransport("guest", "host", "127.0.0.1:50051", "10.1.2.3:50052")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    good = write_dev_pki(d / "good")
    other = write_dev_pki(d / "other", ca_name="another CA")
    return good, other


def _tls(paths, party):
    return load_tls(str(paths[f"{party}.crt"]), str(paths[f"{party}.key"]), str(paths["ca"]))


def test_mutual_tls_delivers(tmp_path, pki) -> None:
    good, _ = pki
    g, h = _pair(tmp_path, _tls(good, "guest"), _tls(good, "host"), timeout=10, retries=1)
    try:
        g.connect(10)
        g.send(Address(JOB, "p", 1, "t"), {"v": 1})
        assert h.recv(Address(JOB, "p", 1, "t"), timeout=5) == {"v": 1}
    finally:
        g.close()
        h.close()


def test_certificate_from_another_ca_is_refused(tmp_path, pki) -> None:
    good, other = pki
    g, h = _pair(tmp_path, _tls(good, "guest"), _tls(other, "host"), timeout=5, retries=1)
    try:
        with pytest.raises(TransportError, match="TLS handshake with host .* failed"):
            g.connect(3)
    finally:
        g.close()
        h.close()


def test_tls_config_errors_name_the_problem(tmp_path, pki) -> None:
    good, other = pki
    with pytest.raises(ConfigError, match="missing: key, ca"):
        load_tls(str(good["guest.crt"]), "", "")
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        load_tls(str(good["guest.crt"]), str(good["host.key"]), str(good["ca"]))
    with pytest.raises(ConfigError, match="is not issued by the CA"):
        load_tls(str(good["guest.crt"]), str(good["guest.key"]), str(other["ca"]))
    with pytest.raises(ConfigError, match="no such file"):
        load_tls(str(tmp_path / "nope.crt"), str(good["guest.key"]), str(good["ca"]))


def test_a_port_already_served_is_refused() -> None:
    port = free_port()
    a = GrpcTransport("guest", "host", f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}").start()
    try:
        with pytest.raises(TransportError, match=f"guest cannot listen on 127.0.0.1:{port}"):
            GrpcTransport("guest", "host", f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}").start()
    finally:
        a.close()
