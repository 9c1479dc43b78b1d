"""Parallel execution: worker processes and threads give exactly the serial results.

Deterministic operations (sums, products, X @ enc, per-bin sums, packing) must
produce bit-identical ciphertexts whatever the worker count; randomized ones
(encryption) must decrypt to the same values.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import vfl
from vfl.errors import PaillierError
from vfl.paillier import (
    _ipc,
    _kernels,
    _parallel,
    _randomness,
    array,
    configure,
    generate_keypair,
    keys,
    pack,
)
from vfl.paillier._kernels import IntVec


@pytest.fixture(scope="module")
def pair():
    return generate_keypair(1024)


@pytest.fixture
def small_chunks(monkeypatch):
    """Split even small arrays into many chunks, so that the pools really run."""
    for name in ("_CHEAP_CHUNK", "_MUL_CHUNK", "_MULTIEXP_CHUNK", "_GROUP_CHUNK"):
        monkeypatch.setattr(array, name, (8, 32))
    monkeypatch.setattr(array, "_MIN_PARALLEL_WORK", 16)
    monkeypatch.setattr(_kernels, "MULTIEXP_BATCH", 64)  # serial runs: outputs in small batches
    monkeypatch.setattr(keys, "ENCRYPT_CHUNK", (8, 32))
    monkeypatch.setattr(keys, "DECRYPT_CHUNK", (8, 32))
    yield
    configure(workers=0)


def _deterministic_results(pk, enc, y_enc, X, groups, mult):
    return {
        "add": (enc + enc).cipher.tolist(),
        "add_plain": (enc + X[0]).cipher.tolist(),
        "mul": enc.mul(mult).cipher.tolist(),
        "neg": (-enc).cipher.tolist(),
        "sum": enc.sum().cipher.tolist(),
        "rmatmul": enc.rmatmul(X, precision=12).cipher.tolist(),
        "rmatmul_few_values": enc.rmatmul(np.round(X * 2) / 2, precision=12).cipher.tolist(),
        "group_sum": y_enc.group_sum(groups, 6).cipher.tolist(),
        "pack": pack(y_enc, bound=1).cipher.tolist(),
    }


def test_parallel_and_serial_results_are_identical(pair, small_chunks):
    pk, sk = pair
    rng = np.random.default_rng(11)
    n = 120
    x = rng.normal(size=n)
    X = rng.normal(size=(4, n))
    groups = rng.integers(0, 6, size=(n, 5))
    mult = rng.integers(-50, 50, size=n)
    enc = pk.encrypt(x, precision=20)
    y_enc = pk.encrypt(rng.integers(0, 2, size=n))

    configure(workers=1)
    serial = _deterministic_results(pk, enc, y_enc, X, groups, mult)
    serial_dec = sk.decrypt(enc)
    serial_enc = pk.encrypt(x, precision=20)

    configure(workers=2)
    assert _parallel.workers() == 2
    parallel = _deterministic_results(pk, enc, y_enc, X, groups, mult)
    assert parallel == serial
    np.testing.assert_array_equal(sk.decrypt(enc), serial_dec)
    parallel_enc = pk.encrypt(x, precision=20)
    assert parallel_enc.cipher.tolist() != serial_enc.cipher.tolist()  # fresh randomness
    np.testing.assert_array_equal(sk.decrypt(parallel_enc), sk.decrypt(serial_enc))
    assert _parallel._procs is not None  # the worker processes did the work


def test_worker_failures_surface_as_paillier_errors(pair, small_chunks):
    pk, _ = pair
    configure(workers=2)
    bad = [(int(pk.nsquare), IntVec([1, 2, 3]), np.array([1, 2])) for _ in range(2)]
    with pytest.raises(PaillierError, match="worker failed: ValueError"):
        _parallel.run("mul", bad)


def test_worker_messages_are_raw_bytes_never_objects():
    value = ("multiexp", (12345678901234567890123, IntVec([0, 1, 2**300]), np.arange(6).reshape(2, 3),
                          np.array([2**70, -3], dtype=object), "text", b"raw", None))
    back = _ipc.decode(_ipc.encode(value))
    assert back[0] == "multiexp"
    args = back[1]
    assert args[0] == 12345678901234567890123 and args[1].values == [0, 1, 2**300]
    np.testing.assert_array_equal(args[2], np.arange(6).reshape(2, 3))
    assert args[3].tolist() == [2**70, -3] and args[4:] == ("text", b"raw", None)
    with pytest.raises(TypeError, match="cannot send"):
        _ipc.encode(object())
    with pytest.raises(ValueError, match="trailing"):
        _ipc.decode(_ipc.encode(1) + b"x")


def test_vfl_never_imports_pickle():
    root = Path(vfl.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle)\b", p.read_text(), re.M)]
    assert offenders == []


def test_configuration_is_validated(monkeypatch):
    with pytest.raises(PaillierError, match="unknown compute backend 'gpu'"):
        configure(backend="gpu")
    with pytest.raises(PaillierError, match="workers must be >= 0"):
        configure(workers=-1)
    with pytest.raises(PaillierError, match="window"):
        configure(window=40)
    monkeypatch.setenv("VFLCHAIN_WORKERS", "3")
    assert _parallel.workers() == 3
    monkeypatch.setenv("VFLCHAIN_WORKERS", "many")
    with pytest.raises(PaillierError, match="VFLCHAIN_WORKERS must be an integer"):
        _parallel.workers()


def test_precomputed_randomizers_are_used_once_each(pair):
    pk, sk = pair
    pk.precompute(40)
    kernel, _, spec = pk._obfuscator_source()
    pool = _randomness.existing_pool(kernel, spec)
    pool.wait(60)
    assert len(pool) >= 40
    ready = list(pool._values)
    enc = pk.encrypt(np.arange(30))
    assert len(pool) == len(ready) - 30
    np.testing.assert_array_equal(sk.decrypt(enc), np.arange(30))
    taken = pool.take(10**6)
    assert not set(map(int, taken)) & {int(r) for r in ready[:30]}
    assert len({int(r) for r in ready}) == len(ready)
    _randomness.drop_pools()


def test_fixed_base_tables_agree_with_plain_exponentiation():
    import gmpy2

    mod = gmpy2.mpz(2**127 - 1) ** 2
    base = gmpy2.mpz(123456789)
    for window in (3, 8, 10):
        fb = _kernels.FixedBase(base, mod, 64, window)
        digits = _kernels.random_digits(5, 64, window)
        for row, got in zip(digits, fb.pow_digits(digits).tolist(), strict=True):
            e = sum(int(d) << (window * i) for i, d in enumerate(row))
            assert got == gmpy2.powmod(base, e, mod)


def test_protocol_steps_in_tiny_chunks_on_two_workers_equal_the_plaintext(pair, small_chunks):
    """Bounded memory comes from chunking: an LR batch, EM statistics and binning sums cut into
    chunks of at most 32 rows on two worker processes still give the plaintext results."""
    from vfl.binning import guest_decrypt_event_counts, host_encrypted_bin_sums, host_pack_bin_sums
    from vfl.gmm.mstep import (
        guest_decrypt_masked_statistics,
        guest_encrypt_responsibilities,
        host_encrypted_statistics,
        host_mask_statistics,
        host_unmask_statistics,
    )
    from vfl.lr.protocol import (
        MATRIX_PRECISION_BITS,
        decrypt_masked,
        guest_gradient_masked,
        guest_residual_offsets_encrypted,
        guest_residuals_encrypted,
        host_gradient_masked,
        host_partial_scores_encrypted,
        unmask_values,
    )
    from vfl.lr.taylor import residuals

    (gpk, gsk), (hpk, hsk) = pair, generate_keypair(1024)
    configure(workers=2)
    rng = np.random.default_rng(5)
    m = 150
    Xg, Xh = rng.normal(size=(m, 3)), rng.normal(size=(m, 4))
    y_pm = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    wg, wh = rng.normal(size=3) * 0.3, rng.normal(size=4) * 0.3
    u_g, u_h = Xg @ wg, Xh @ wh
    enc_d = guest_residuals_encrypted(host_partial_scores_encrypted(hpk, Xh, wh).scores, u_g, y_pm)
    grad_g = guest_gradient_masked(enc_d, Xg, packed=True)
    grad_h = host_gradient_masked(guest_residual_offsets_encrypted(gpk, u_g, y_pm), u_h, Xh)
    d = residuals(u_g + u_h, y_pm)
    tol = m * 2.0 ** -(MATRIX_PRECISION_BITS + 1) * np.abs(d).max() + 1e-9  # the columns' rounding
    np.testing.assert_allclose(unmask_values(decrypt_masked(hsk, grad_g.enc), grad_g), Xg.T @ d, rtol=0, atol=tol)
    np.testing.assert_allclose(unmask_values(decrypt_masked(gsk, grad_h.enc), grad_h), Xh.T @ d, rtol=0, atol=tol)

    resp = rng.dirichlet(np.ones(3), size=m)
    enc_stats = host_encrypted_statistics(guest_encrypt_responsibilities(gpk, resp), Xh)
    masked, mask = host_mask_statistics(enc_stats)
    stats = host_unmask_statistics(guest_decrypt_masked_statistics(gsk, masked), mask, enc_stats.precision,
                                   gpk, Xh, 3)
    np.testing.assert_allclose(stats, resp.T @ Xh, atol=1e-9)

    y = rng.integers(0, 2, size=m)
    bins = rng.integers(0, 5, size=(m, 4))
    sums = host_encrypted_bin_sums(gpk.encrypt(y), bins, 5)
    counts = guest_decrypt_event_counts(gsk, host_pack_bin_sums(sums, m), m)
    expected = np.array([[int(y[bins[:, j] == b].sum()) for b in range(5)] for j in range(4)])
    np.testing.assert_array_equal(counts, expected)


def test_a_worker_whose_party_is_gone_exits_silently():
    """A party killed mid-computation: its worker's answer meets a closed pipe. The worker shares the
    party's error output, so a traceback there would be quoted as the cause of the party's death."""
    import subprocess
    import sys

    from vfl.paillier import _ipc

    proc = subprocess.Popen([sys.executable, "-m", "vfl.paillier._worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the party is gone: nobody reads the answer
    _ipc.write_frame(proc.stdin, _ipc.encode(("no_such_kernel", ())))
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert proc.stderr.read() == b""

    proc = subprocess.Popen([sys.executable, "-m", "vfl.paillier._worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.stdin.write(b"\x00\x00\x00\x00\x00\x00\x01\x00abc")  # killed in the middle of a request
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert proc.stderr.read() == b""
