"""The certificate authority: a signing key with its chain, and the certificates it issues.

Theory of operation. A ``CertificateAuthority`` is a value: the signing key plus the chain from
the signing certificate up to the self-signed root (``chain[0]`` signs, ``chain[-1]`` is the trust
anchor). It is either generated on first use (``self_signed_root``, like istiod's self-signed
CA, 10 years: istio/istio ``security/pkg/cmd/constants.go``) or plugged in by the operator
(``ca_from_pem``: a root, or an intermediate followed by its chain up to the root, like Istio's
``cacerts`` ``ca-cert.pem`` + ``cert-chain.pem``). Every decision takes ``now`` as an argument;
nothing here reads the clock or touches files (``store.py`` does).

Issued leaves follow the X.509-SVID profile (github.com/spiffe/spiffe ``standards/X509-SVID.md``
§4): ``CA:FALSE``, key usage ``digitalSignature`` (+ ``keyEncipherment``, allowed, and set by
Istio's ``GenCertFromCSR``), EKU serverAuth + clientAuth, exactly one URI SAN for a workload. The
subject is empty, as in Istio's workload certificates, so the SAN extension is critical
(RFC 5280 §4.2.1.6). A leaf never outlives the certificate that signs it.

Keys we generate are EC P-256: Istio supports ECDSA workload keys (``ECC_SIGNATURE_ALGORITHM``),
Envoy/BoringSSL, gRPC and OpenSSL all accept it, and generating one costs well under a
millisecond where RSA 2048 costs tens of milliseconds, which matters when a control plane mints
a key per workload identity and per rotation. Operator CAs and CSRs may use RSA or EC keys.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pilotfish.certs.identity import SpiffeId
from pilotfish.errors import ConfigError, PeerError, Problem

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

DEFAULT_ROOT_TTL = timedelta(days=3650)  # istiod's self-signed root: 10 years
DEFAULT_WORKLOAD_TTL = timedelta(hours=24)  # DEFAULT_WORKLOAD_CERT_TTL / the agent's SECRET_TTL
MAX_WORKLOAD_TTL = timedelta(days=90)  # MAX_WORKLOAD_CERT_TTL

_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A signing key and its chain: ``chain[0]`` is the signing certificate, ``chain[-1]`` the root."""

    trust_domain: str
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey = field(repr=False)

    @property
    def signing_cert(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the signing certificate: tells whether a leaf came from this CA instance."""
        return self.signing_cert.fingerprint(hashes.SHA256())

    def leaf_chain(self, leaf: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """What a peer presents: the leaf and every intermediate, never the root (the trust anchor
        travels separately: SDS ``ROOTCA``)."""
        return (leaf, *self.chain[:-1])


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """A private key with its certificate chain (leaf first, intermediates, no root)."""

    chain: tuple[x509.Certificate, ...]
    private_key: PrivateKey = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    def chain_pem(self) -> bytes:
        return certificates_pem(self.chain)

    def key_pem(self) -> bytes:
        return private_key_pem(self.private_key)


# ---- keys and PEM -----------------------------------------------------------------------------------


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key (see the module docstring for why not RSA)."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificates_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()  # P-384 / P-521 operator keys: a hash as strong as the curve
    return hashes.SHA256()


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC)


def _key_identifiers(public_key: PublicKey, issuer: x509.Certificate) -> list[x509.ExtensionType]:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(_public_key_of(issuer))
    return [x509.SubjectKeyIdentifier.from_public_key(public_key), aki]


def _public_key_of(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError(f"unsupported key type {type(key).__name__}: pilotfish signs with RSA or EC keys")
    return key


# ---- the root -------------------------------------------------------------------------------------


def self_signed_root(
    trust_domain: str, now: datetime, ttl: timedelta = DEFAULT_ROOT_TTL, key: PrivateKey | None = None
) -> CertificateAuthority:
    """A new self-signed root, subject ``O=<trust domain>`` as istiod's self-signed CA."""
    now = _utc(now)
    key = key or new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, _hash_for(key))
    )
    return CertificateAuthority(trust_domain, (cert,), key)


# ---- operator-supplied CA ---------------------------------------------------------------------------


def ca_from_pem(
    cert_pem: bytes,
    key_pem: bytes,
    trust_domain: str,
    now: datetime,
    *,
    cert_file: str = "<ca-cert>",
    key_file: str = "<ca-key>",
) -> CertificateAuthority:
    """A CA from PEM: ``cert_pem`` holds the signing certificate followed by its issuers up to and
    including the self-signed root; ``key_pem`` the signing key. Raises ``ConfigError``."""
    chain = _parse_chain(cert_pem, cert_file)
    key = _parse_key(key_pem, key_file)
    problems = [Problem(message, "", cert_file) for message in chain_problems(chain, key, _utc(now))]
    if problems:
        raise ConfigError(problems)
    return CertificateAuthority(trust_domain, chain, key)


def _parse_chain(cert_pem: bytes, file: str) -> tuple[x509.Certificate, ...]:
    try:
        chain = tuple(x509.load_pem_x509_certificates(cert_pem))
    except ValueError as exc:
        raise ConfigError([Problem(f"not a PEM certificate chain: {exc}", "", file)]) from None
    return chain


def _parse_key(key_pem: bytes, file: str) -> PrivateKey:
    try:
        return load_private_key(key_pem)
    except ValueError as exc:
        raise ConfigError([Problem(str(exc), "", file)]) from None


def load_private_key(key_pem: bytes) -> PrivateKey:
    """An unencrypted PEM RSA or EC private key; ``ValueError`` otherwise."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}: use RSA or EC")
    return key


def chain_problems(chain: Sequence[x509.Certificate], key: PrivateKey, now: datetime) -> list[str]:
    """Why ``chain`` + ``key`` cannot serve as a CA at ``now``; empty when it can."""
    if not chain:
        return ["no certificate found"]
    signing = chain[0]
    problems = [p for p in (_key_problem(signing, key), _is_ca(signing), _in_validity(signing, now)) if p]
    for child, parent in zip(chain, chain[1:], strict=False):
        if not _issued_by(child, parent):
            problems.append(f"{_describe(child)} is not signed by the next certificate, {_describe(parent)}")
    if not _issued_by(chain[-1], chain[-1]):
        problems.append(
            f"the chain must end with the self-signed root; {_describe(chain[-1])} is not self-signed "
            "(append the issuing certificates up to the root)"
        )
    return problems


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``key`` is the private half of ``cert``'s public key."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    return cert.public_key().public_bytes(serialization.Encoding.DER, spki) == ours


def _key_problem(cert: x509.Certificate, key: PrivateKey) -> str | None:
    if not key_matches(cert, key):
        return f"the private key does not belong to the signing certificate {_describe(cert)}"
    return None


def _is_ca(cert: x509.Certificate) -> str | None:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return f"{_describe(cert)} is not a CA certificate (basicConstraints CA:FALSE)"
    except x509.ExtensionNotFound:
        return f"{_describe(cert)} is not a CA certificate (no basicConstraints)"
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            return f"{_describe(cert)} may not sign certificates (keyUsage without keyCertSign)"
    except x509.ExtensionNotFound:
        pass
    return None


def _in_validity(cert: x509.Certificate, now: datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"{_describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}"
    if now >= cert.not_valid_after_utc:
        return f"{_describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}"
    return None


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _describe(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string() or '<empty subject>'} (serial {cert.serial_number:x})"


# ---- issuing ----------------------------------------------------------------------------------------


def issue_workload(
    ca: CertificateAuthority,
    spiffe_id: SpiffeId,
    public_key_or_csr: PublicKey | x509.CertificateSigningRequest,
    now: datetime,
    ttl: timedelta = DEFAULT_WORKLOAD_TTL,
) -> x509.Certificate:
    """An X.509-SVID for ``spiffe_id``: its only SAN is the SPIFFE URI. From a CSR only the public
    key is used (after checking the CSR's signature); every other field is the CA's decision."""
    if isinstance(public_key_or_csr, x509.CertificateSigningRequest):
        public_key = csr_public_key(public_key_or_csr)
    else:
        public_key = public_key_or_csr
    return _leaf(ca, [x509.UniformResourceIdentifier(spiffe_id.uri)], public_key, now, ttl)


def issue_dns(
    ca: CertificateAuthority,
    dns_names: Sequence[str],
    key: PublicKey | PrivateKey,
    now: datetime,
    ttl: timedelta,
) -> x509.Certificate:
    """A serving certificate for ``dns_names``; a name that is an IP literal becomes an IP SAN."""
    if not dns_names:
        raise ValueError("a DNS certificate needs at least one name")
    public_key = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else key
    return _leaf(ca, [general_name(name) for name in dns_names], public_key, now, ttl)


def general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def certify(ca: CertificateAuthority, leaf: x509.Certificate, key: PrivateKey) -> CertifiedKey:
    return CertifiedKey(ca.leaf_chain(leaf), key)


def new_workload_key(
    ca: CertificateAuthority, spiffe_id: SpiffeId, now: datetime, ttl: timedelta = DEFAULT_WORKLOAD_TTL
) -> CertifiedKey:
    """A fresh key and its X.509-SVID, for delivery over SDS."""
    key = new_private_key()
    return certify(ca, issue_workload(ca, spiffe_id, key.public_key(), now, ttl), key)


def new_dns_key(
    ca: CertificateAuthority, dns_names: Sequence[str], now: datetime, ttl: timedelta
) -> CertifiedKey:
    key = new_private_key()
    return certify(ca, issue_dns(ca, dns_names, key, now, ttl), key)


def csr_public_key(csr: x509.CertificateSigningRequest) -> PublicKey:
    """The public key of a CSR whose self-signature verifies; ``PeerError`` otherwise."""
    try:
        valid = csr.is_signature_valid
    except UnsupportedAlgorithm as exc:  # a key or signature algorithm cryptography cannot check
        raise PeerError(f"unsupported CSR algorithm: {exc}") from None
    if not valid:
        raise PeerError("the CSR's signature does not verify")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise PeerError(f"unsupported CSR key type {type(key).__name__}: use RSA or EC")
    return key


def _leaf(
    ca: CertificateAuthority,
    sans: list[x509.GeneralName],
    public_key: PublicKey,
    now: datetime,
    ttl: timedelta,
) -> x509.Certificate:
    if ttl <= timedelta(0):
        raise ValueError(f"certificate lifetime must be positive, got {ttl}")
    now = _utc(now)
    signing = ca.signing_cert
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(signing.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(min(now + ttl, signing.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        .add_extension(_LEAF_EKU, critical=False)
    )
    for extension in _key_identifiers(public_key, signing):
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca.key, _hash_for(ca.key))


# ---- reading certificates back ----------------------------------------------------------------------


def uri_sans(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    return _san(cert).get_values_for_type(x509.UniformResourceIdentifier) if _has_san(cert) else []


def all_sans(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """Every SAN as text (URI, DNS name, IP address, e-mail...), in the certificate's order."""
    if not _has_san(cert):
        return []
    return [_general_name_text(name) for name in _san(cert)]


def _general_name_text(name: x509.GeneralName) -> str:
    value = name.value
    return value.rfc4514_string() if isinstance(value, x509.Name) else str(value)


def _has_san(cert: x509.Certificate | x509.CertificateSigningRequest) -> bool:
    try:
        _san(cert)
    except x509.ExtensionNotFound:
        return False
    return True


def _san(cert: x509.Certificate | x509.CertificateSigningRequest) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def signed_by(cert: x509.Certificate, ca: CertificateAuthority) -> bool:
    """Whether our signing certificate issued ``cert`` (signature check, not validity)."""
    return _issued_by_memo(cert, ca.signing_cert)


# Every push asks whether each proxy's cached certificate is still ours: a signature check per
# proxy per push (~0.15 ms). The answer for one (certificate, issuer) pair never changes.
@functools.lru_cache(maxsize=8192)
def _issued_by_memo(child: x509.Certificate, parent: x509.Certificate) -> bool:
    return _issued_by(child, parent)
