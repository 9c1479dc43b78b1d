"""Sealing the clients' shared Paillier private key to each client, so that no relay can read it.

Client 1 generates the Paillier key pair. Every other client makes a fresh
X25519 key pair and publishes its public half (signed with its chain account
by the runtime, so a relay cannot substitute its own). Client 1 seals the
private key to each: an ephemeral X25519 key, ECDH, HKDF-SHA256 (bound to the
job, both public keys and the recipient's name), AES-256-GCM. The relay (the
coordinator) forwards opaque bytes.

    sealed = ephemeral public key (32) | nonce (12) | AES-GCM ciphertext+tag
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vfl.errors import PaillierError
from vfl.paillier import PrivateKey, PublicKey

_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def new_exchange_key() -> tuple[X25519PrivateKey, bytes]:
    """A fresh X25519 key pair: (private, raw 32-byte public)."""
    sk = X25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes(*_RAW)


def _key(shared: bytes, eph: bytes, recipient_pub: bytes, context: bytes) -> bytes:
    info = b"vflchain-hfl-keyshare|" + context + b"|" + eph + b"|" + recipient_pub
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def seal(recipient_pub: bytes, plaintext: bytes, context: bytes) -> bytes:
    """Encrypt `plaintext` so that only the holder of `recipient_pub`'s private key reads it."""
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(*_RAW)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_pub))
    nonce = os.urandom(12)
    ct = AESGCM(_key(shared, eph_pub, recipient_pub, context)).encrypt(nonce, plaintext, context)
    return eph_pub + nonce + ct


def open_sealed(own: X25519PrivateKey, sealed: bytes, context: bytes) -> bytes:
    """Decrypt a `seal`ed message; PaillierError if it was not sealed to this key under `context`."""
    if len(sealed) < 32 + 12 + 16:
        raise PaillierError("sealed key share is truncated")
    eph_pub, nonce, ct = sealed[:32], sealed[32:44], sealed[44:]
    own_pub = own.public_key().public_bytes(*_RAW)
    shared = own.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    try:
        return AESGCM(_key(shared, eph_pub, own_pub, context)).decrypt(nonce, ct, context)
    except InvalidTag:
        raise PaillierError("the sealed key share does not open with this client's key "
                            "(tampered, or sealed to someone else)") from None


def private_key_bytes(sk: PrivateKey) -> bytes:
    """The private key's factors as canonical JSON (only ever sent sealed)."""
    return json.dumps({"p": hex(sk.p), "q": hex(sk.q)}, sort_keys=True).encode()


def private_key_from_bytes(public_key: PublicKey, data: bytes) -> PrivateKey:
    """Rebuild the private key of `public_key`; PaillierError if the factors do not match it."""
    try:
        obj = json.loads(data)
        return PrivateKey(public_key, int(obj["p"], 16), int(obj["q"], 16))
    except (ValueError, KeyError, TypeError) as exc:
        raise PaillierError(f"the shared private key is malformed or not the announced key's: {exc}") from None
