"""Builders shared by the certs tests: a fixed clock, CAs (self-signed and with an intermediate),
CSRs, and a hooks recorder. Everything is generated per test run; nothing is checked in."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.ca import CertificateAuthority
from pilotfish.certs.identity import workload_id

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TRUST_DOMAIN = "cluster.local"
WEB = workload_id(TRUST_DOMAIN, "shop", "web")
DB = workload_id(TRUST_DOMAIN, "shop", "db")


@cache
def root_ca() -> CertificateAuthority:
    """One self-signed root per test session (keys are cheap, but a shared CA keeps tests short)."""
    return ca_mod.self_signed_root(TRUST_DOMAIN, NOW - timedelta(days=1))


@cache
def intermediate_ca() -> CertificateAuthority:
    """An operator-style CA: an intermediate signed by a separate root, chain = (intermediate, root)."""
    root = ca_mod.self_signed_root("corp.example", NOW - timedelta(days=30))
    key = ca_mod.new_private_key()
    cert = ca_certificate(
        root, key, "pilotfish intermediate", NOW - timedelta(days=1), NOW + timedelta(days=365)
    )
    return CertificateAuthority(TRUST_DOMAIN, (cert, root.root), key)


def ca_certificate(
    issuer: CertificateAuthority,
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    not_before: datetime,
    not_after: datetime,
    *,
    is_ca: bool = True,
) -> x509.Certificate:
    """A certificate for ``key`` signed by ``issuer``'s signing key (a CA unless ``is_ca=False``)."""
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.signing_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_key_usage(is_ca), critical=True)
        .sign(issuer.key, hashes.SHA256())
    )


def _key_usage(is_ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not is_ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=is_ca,
        crl_sign=is_ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_csr(
    key: ec.EllipticCurvePrivateKey, uris: tuple[str, ...] = (), dns: tuple[str, ...] = ()
) -> x509.CertificateSigningRequest:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    return builder.sign(key, hashes.SHA256())


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    from cryptography.hazmat.primitives import serialization

    return csr.public_bytes(serialization.Encoding.PEM).decode()


class RecordingHooks:
    """A ``CertHooks`` that remembers every call."""

    def __init__(self) -> None:
        self.issued: Counter[str] = Counter()
        self.rotated: Counter[str] = Counter()
        self.expiry: dict[str, float] = {}
        self.forgotten: list[str] = []
        self.denied: Counter[str] = Counter()

    def on_cert_issued(self, kind: str) -> None:
        self.issued[kind] += 1

    def on_cert_rotated(self, kind: str) -> None:
        self.rotated[kind] += 1

    def on_cert_expiry(self, secret: str, not_after_unix: float, not_before_unix: float) -> None:
        self.expiry[secret] = not_after_unix

    def on_cert_forgotten(self, secret: str) -> None:
        self.forgotten.append(secret)

    def on_csr_denied(self, reason: str) -> None:
        self.denied[reason] += 1
