"""A small private CA for one Updraft cluster: the CA, then server, agent and client certificates.

Keys are ECDSA P-256: small, fast to sign and verify on an edge device, and accepted by every TLS stack.
Certificate profiles (checked by the stdlib ``ssl`` module on both ends):

* ``server`` — serverAuth; SANs are the DNS names and IP addresses clients dial (``--dns``, ``--ip``).
* ``agent``  — serverAuth and clientAuth: it serves its own endpoint and, with mutual TLS, authenticates to
  the server; its common name is the node name.
* ``client`` — clientAuth only (a CLI user or an SDK program under mutual TLS).

The functions are pure (the clock is passed in); writing files is :func:`write_private` /
:func:`write_public`, which create keys mode 0600 in a directory of mode 0700.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from updraft.errors import ValidationError

Kind = Literal["server", "agent", "client"]
_USAGES: dict[str, list[x509.ObjectIdentifier]] = {
    "server": [ExtendedKeyUsageOID.SERVER_AUTH],
    "agent": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
}
ORGANIZATION = "updraft"


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValidationError("ca: the CA key is not an EC key", field="ca")
        return key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(now: dt.datetime, common_name: str = "updraft CA", days: int = 3650) -> KeyPair:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    _check_days(days)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: KeyPair,
    common_name: str,
    kind: Kind,
    now: dt.datetime,
    *,
    dns: Iterable[str] = (),
    ips: Iterable[str] = (),
    days: int = 397,
) -> KeyPair:
    """A leaf certificate signed by ``ca``. A server or agent certificate needs at least one SAN."""
    _check_days(days)
    if kind not in _USAGES:
        raise ValidationError(f"kind: {kind!r} is not server, agent or client", field="kind")
    if not common_name or len(common_name) > 64:
        raise ValidationError("name: 1 to 64 characters", field="name")
    sans: list[x509.GeneralName] = [x509.DNSName(_dns(d)) for d in dns]
    for ip in ips:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise ValidationError(f"ip: {ip!r} is not an IP address", field="ip") from exc
    if kind != "client" and not sans:
        raise ValidationError(f"a {kind} certificate needs --dns or --ip (the names clients dial)", field="dns")
    ca_cert, ca_key = ca.cert, ca.private_key()
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(_USAGES[kind]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def common_name(cert_pem: bytes) -> str | None:
    """The subject common name of a certificate (an agent's node name under mutual TLS)."""
    attrs = x509.load_pem_x509_certificate(cert_pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else None
    return value if isinstance(value, str) else None


_LABEL = r"[A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def _dns(name: str) -> str:
    if len(name) > 253 or not _DNS.fullmatch(name):
        raise ValidationError(f"dns: {name[:60]!r} is not a DNS name", field="dns")
    return name


def _check_days(days: int) -> None:
    if not 1 <= days <= 36500:
        raise ValidationError("days: between 1 and 36500", field="days")


# -- files -------------------------------------------------------------------------------------------------
def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed; tighten it if it exists and is ours."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid():
        path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes, overwrite: bool = False) -> Path:
    """Write a secret (a key, a token) readable only by its owner: created 0600, never briefly wider."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise ValidationError(f"{path} exists (use --force to replace it)", field="out") from exc
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)
    return path


def write_public(path: Path, data: bytes, overwrite: bool = False) -> Path:
    if path.exists() and not overwrite:
        raise ValidationError(f"{path} exists (use --force to replace it)", field="out")
    path.write_bytes(data)
    return path


def save(pair: KeyPair, directory: Path, name: str, overwrite: bool = False) -> tuple[Path, Path]:
    """``DIR/NAME.crt`` (0644) and ``DIR/NAME.key`` (0600), in a 0700 directory."""
    private_dir(directory)
    key = write_private(directory / f"{name}.key", pair.key_pem, overwrite)
    cert = write_public(directory / f"{name}.crt", pair.cert_pem, overwrite)
    return cert, key


def load(directory: Path, name: str) -> KeyPair:
    try:
        return KeyPair((directory / f"{name}.crt").read_bytes(), (directory / f"{name}.key").read_bytes())
    except OSError as exc:
        raise ValidationError(f"cannot read {directory / name}.crt/.key: {exc.strerror}", field="ca") from exc
