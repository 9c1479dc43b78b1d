"""TLS material for the gRPC transport: loading and checking PEM files, loopback rules, dev certificates.

Mutual TLS: each node presents its own certificate (`cert`, `key`) and accepts
only a peer whose certificate chains to `ca`; the client also checks that the
server certificate names the host it dialled (a SAN entry: IP or DNS name).
Without TLS the transport runs only when both its own listen address and the
peer's address are on the loopback interface.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nodes.errors import ConfigError


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes of this node's certificate chain, its private key and the trusted CA."""

    cert: bytes
    key: bytes
    ca: bytes
    subject: str  # this node's certificate subject, for messages


def cert_fingerprint(pem: bytes) -> str:
    """SHA-256 (hex) of the DER form of the first certificate in `pem` (nodes.identity binds proofs to it)."""
    cert = x509.load_pem_x509_certificate(pem)
    return cert.fingerprint(hashes.SHA256()).hex()


def split_host_port(address: str) -> tuple[str, int]:
    """'127.0.0.1:50051' / '[::1]:50051' / 'node.example:50051' -> (host, port)."""
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"address {address!r} is not HOST:PORT")
    return host, int(port_text)


def is_loopback(address: str) -> bool:
    host, _ = split_host_port(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plaintext_allowed(listen: str, peer: str) -> None:
    """Refuse a plaintext link unless both ends are on loopback."""
    for what, addr in (("this node's address", listen), ("the peer's address", peer)):
        if not is_loopback(addr):
            raise ConfigError(
                f"plaintext transport refused: {what} {addr} is not on loopback; "
                "set [transport] cert, key and ca for mutual TLS (see docs/transport.md)")


def _read(path: str, what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"[transport] {what} {path}: no such file")
    return p.read_bytes()


def load_tls(cert: str, key: str, ca: str) -> TlsMaterial | None:
    """Read and check the three PEM files; None when none is set (plaintext)."""
    given = {"cert": cert, "key": key, "ca": ca}
    if not any(given.values()):
        return None
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise ConfigError(f"[transport] TLS needs cert, key and ca; missing: {', '.join(missing)}")
    cert_pem, key_pem, ca_pem = _read(cert, "cert"), _read(key, "key"), _read(ca, "ca")
    try:
        leaf = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError(f"[transport] cert {cert}: not a PEM certificate") from None
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise ConfigError(f"[transport] ca {ca}: not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"[transport] key {key}: not an unencrypted PEM private key") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(serialization.Encoding.PEM, pub) != \
            leaf.public_key().public_bytes(serialization.Encoding.PEM, pub):
        raise ConfigError(f"[transport] key {key} does not belong to the certificate {cert}")
    if not any(leaf.issuer == c.subject for c in cas):
        raise ConfigError(f"[transport] cert {cert} is not issued by the CA in {ca}")
    return TlsMaterial(cert_pem, key_pem, ca_pem, leaf.subject.rfc4514_string())


# -- development certificates ---------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vflchain"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def write_dev_pki(out: str | Path, parties: tuple[str, ...] = ("guest", "host"),
                  hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), ca_name: str = "vflchain dev CA",
                  days: int = 30) -> dict[str, Path]:
    """A CA and one certificate per party (valid for `hosts`), as PEM files in `out`.

    For tests and trying TLS on one machine; a deployment uses certificates from
    the consortium's own CA (docs/transport.md). Returns {"ca", "<party>.crt", "<party>.key"}.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name(ca_name)).issuer_name(_name(ca_name))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    paths = {"ca": out / "ca.crt"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    for party in parties:
        k = ec.generate_private_key(ec.SECP256R1())
        c = (x509.CertificateBuilder().subject_name(_name(party)).issuer_name(ca_cert.subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
             .add_extension(x509.SubjectAlternativeName(sans), critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                   ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
             .sign(ca_key, hashes.SHA256()))
        paths[f"{party}.crt"] = out / f"{party}.crt"
        paths[f"{party}.key"] = out / f"{party}.key"
        paths[f"{party}.crt"].write_bytes(c.public_bytes(serialization.Encoding.PEM))
        paths[f"{party}.key"].write_bytes(_pem_key(k))
        paths[f"{party}.key"].chmod(0o600)
    return paths
