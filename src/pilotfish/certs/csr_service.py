"""Istio's certificate signing API, ``istio.v1.auth.IstioCertificateService/CreateCertificate``.

Theory of operation. istio/api ``security/v1alpha1/ca.proto``: "the service implementation is
REQUIRED to verify the authenticated caller is authorized to all SANs in the CSR". So a request
goes through three pure steps, each of which either passes or raises ``CsrRefused`` with the gRPC
status it maps to (STYLE: logic with plain inputs and outputs; the servicer is a few lines):

1. ``authenticate``: who is calling. Like istiod (``security/pkg/server/ca/server.go``
   ``Authenticate``), authenticators are tried in order: a client certificate from the mutual TLS
   handshake, then a bearer token. A certificate counts only if *our* signing certificate issued it,
   it is valid at ``now`` and carries exactly one workload SPIFFE id of our trust domain; its
   identity is that id. A token counts only if it is one of the operator's bootstrap tokens; its
   identities are the ones the token file lists. Neither → ``UNAUTHENTICATED``.
2. ``authorize``: every SAN in the CSR must be a SPIFFE id the caller owns, else
   ``PERMISSION_DENIED``; the CSR must then request exactly one id (an X.509-SVID has exactly one
   URI SAN, X509-SVID.md §2), else ``INVALID_ARGUMENT``. Nothing is trusted blindly: a CSR that
   names nobody is refused rather than filled in.
3. ``sign``: the certificate's lifetime is the requested ``validity_duration`` (0 or less: the
   default, Istio's ``DEFAULT_WORKLOAD_CERT_TTL``); more than the maximum
   (``MAX_WORKLOAD_CERT_TTL``) is ``INVALID_ARGUMENT``, as istiod's ``TTLError``. Only the CSR's
   public key is used; every other field is the CA's. The response chain is leaf, intermediates,
   root, as istiod sends it.

Tokens are compared as SHA-256 digests, so the table in memory never holds a usable secret and a
lookup does not compare secrets byte by byte.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import grpc
from cryptography import x509

from pilotfish._gen import ca_pb2 as _ca_pb2
from pilotfish.certs import ca as ca_mod
from pilotfish.certs.ca import DEFAULT_WORKLOAD_TTL, MAX_WORKLOAD_TTL, CertificateAuthority
from pilotfish.certs.config import TokenFile
from pilotfish.certs.hooks import NO_HOOKS, CertHooks
from pilotfish.certs.identity import SpiffeId, SpiffeIdError, parse_spiffe_id
from pilotfish.certs.store import Inventory
from pilotfish.errors import PeerError

log = logging.getLogger(__name__)
# protoc's builder creates the message classes at import time, where mypy cannot see them.
ca_pb2: Any = _ca_pb2

# What cryptography raises for malformed PEM/DER, extensions and names: the peer's fault.
_PARSE_ERRORS = (ValueError, UnicodeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)
BEARER = "bearer "  # RFC 6750 §2.1; the scheme is case-insensitive


class Refusal(StrEnum):
    """Why a request is refused, named after the gRPC status code it is answered with."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


class CsrRefused(PeerError):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller and the identities it may obtain certificates for."""

    identities: frozenset[SpiffeId]
    method: Literal["mtls", "token"]


@dataclass(frozen=True, slots=True)
class CsrPolicy:
    default_ttl: timedelta = DEFAULT_WORKLOAD_TTL
    max_ttl: timedelta = MAX_WORKLOAD_TTL


class BootstrapTokens:
    """The operator's bootstrap tokens, kept as SHA-256 digests → allowed identities."""

    def __init__(self, table: Mapping[bytes, frozenset[SpiffeId]] | None = None) -> None:
        self._table = dict(table or {})

    @classmethod
    def from_file(cls, tokens: TokenFile) -> BootstrapTokens:
        """From a validated token file (``load_token_file`` checked every identity)."""
        return cls(
            {
                _digest(entry.token): frozenset(parse_spiffe_id(uri) for uri in entry.identities)
                for entry in tokens.tokens
            }
        )

    def identities(self, token: str) -> frozenset[SpiffeId] | None:
        return self._table.get(_digest(token))

    def __len__(self) -> int:
        return len(self._table)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# ---- 1. authenticate --------------------------------------------------------------------------------


def authenticate(
    ca: CertificateAuthority,
    tokens: BootstrapTokens,
    peer_cert_pem: bytes | None,
    authorization: str | None,
    now: datetime,
) -> Caller:
    """The caller, from its client certificate or else its bearer token; ``CsrRefused`` otherwise."""
    reasons = []
    if peer_cert_pem:
        identity, reason = certificate_identity(ca, peer_cert_pem, now)
        if identity is not None:
            return Caller(frozenset({identity}), "mtls")
        reasons.append(f"client certificate: {reason}")
    if authorization:
        identities, reason = token_identities(tokens, authorization)
        if identities is not None:
            return Caller(identities, "token")
        reasons.append(f"token: {reason}")
    if not reasons:
        reasons.append("no client certificate and no bearer token")
    raise CsrRefused(Refusal.UNAUTHENTICATED, "authentication failed: " + "; ".join(reasons))


def certificate_identity(
    ca: CertificateAuthority, cert_pem: bytes, now: datetime
) -> tuple[SpiffeId | None, str]:
    """The SPIFFE id of a client certificate we issued that is valid at ``now``, or why not."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        uris = ca_mod.uri_sans(cert)
    except _PARSE_ERRORS:
        return None, "not a PEM certificate with readable extensions"
    problem = _certificate_problem(ca, cert, now)
    if problem:
        return None, problem
    if len(uris) != 1:
        return None, f"expected exactly one URI SAN, found {len(uris)}"
    try:
        identity = parse_spiffe_id(uris[0])
    except SpiffeIdError as exc:
        return None, str(exc)
    if identity.trust_domain != ca.trust_domain:
        return None, f"{identity} is not in trust domain {ca.trust_domain}"
    return identity, ""


def _certificate_problem(ca: CertificateAuthority, cert: x509.Certificate, now: datetime) -> str:
    if not ca_mod.signed_by(cert, ca):
        return "not issued by this CA"
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc.isoformat()}"
    if now >= cert.not_valid_after_utc:
        return f"expired at {cert.not_valid_after_utc.isoformat()}"
    return ""


def token_identities(tokens: BootstrapTokens, authorization: str) -> tuple[frozenset[SpiffeId] | None, str]:
    if not authorization.lower().startswith(BEARER):
        return None, "the authorization header is not 'Bearer <token>'"
    identities = tokens.identities(authorization[len(BEARER) :].strip())
    if identities is None:
        return None, "unknown bootstrap token"
    return identities, ""


# ---- 2. authorize -----------------------------------------------------------------------------------


def parse_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """A PKCS#10 request whose self-signature verifies; ``INVALID_ARGUMENT`` otherwise."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        ca_mod.csr_public_key(csr)
        ca_mod.all_sans(csr)  # cryptography parses extensions lazily: a malformed one fails here
    except (*_PARSE_ERRORS, PeerError) as exc:
        raise CsrRefused(Refusal.INVALID_ARGUMENT, f"invalid CSR: {exc}") from None
    return csr


def authorize(caller: Caller, csr: x509.CertificateSigningRequest) -> SpiffeId:
    """The one identity the CSR asks for, which the caller must own."""
    owned = {identity.uri for identity in caller.identities}
    sans = ca_mod.all_sans(csr)
    foreign = [san for san in sans if san not in owned]
    if foreign:
        raise CsrRefused(
            Refusal.PERMISSION_DENIED, f"the caller is not authorized for SAN(s) {', '.join(foreign)}"
        )
    if len(sans) != 1:
        raise CsrRefused(
            Refusal.INVALID_ARGUMENT, f"a CSR must request exactly one SPIFFE id, got {len(sans)}"
        )
    return parse_spiffe_id(sans[0])


# ---- 3. sign ----------------------------------------------------------------------------------------


def requested_ttl(validity_seconds: int, policy: CsrPolicy) -> timedelta:
    if validity_seconds <= 0:
        return policy.default_ttl
    ttl = timedelta(seconds=validity_seconds)
    if ttl > policy.max_ttl:
        raise CsrRefused(
            Refusal.INVALID_ARGUMENT,
            f"requested TTL {ttl} is greater than the max allowed TTL {policy.max_ttl}",
        )
    return ttl


@dataclass(frozen=True, slots=True)
class Signed:
    identity: SpiffeId
    certificate: x509.Certificate
    chain_pem: tuple[str, ...]  # leaf, intermediates, root


def create_certificate(
    ca: CertificateAuthority,
    tokens: BootstrapTokens,
    policy: CsrPolicy,
    *,
    csr_pem: str,
    validity_seconds: int,
    peer_cert_pem: bytes | None,
    authorization: str | None,
    now: datetime,
) -> Signed:
    """The whole decision: authenticate, authorize, sign. ``CsrRefused`` names the gRPC status."""
    caller = authenticate(ca, tokens, peer_cert_pem, authorization, now)
    csr = parse_csr(csr_pem)
    identity = authorize(caller, csr)
    ttl = requested_ttl(validity_seconds, policy)
    cert = ca_mod.issue_workload(ca, identity, csr, now, ttl)
    chain = tuple(ca_mod.certificates_pem([c]).decode() for c in (*ca.leaf_chain(cert), ca.root))
    return Signed(identity, cert, chain)


# ---- the gRPC servicer ------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


class CertificateServicer:
    """The transport around ``create_certificate``: reads the peer certificate and the
    ``authorization`` metadata, answers refusals with their gRPC status."""

    def __init__(
        self,
        ca: CertificateAuthority,
        tokens: BootstrapTokens | None = None,
        policy: CsrPolicy | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        hooks: CertHooks = NO_HOOKS,
        inventory: Inventory | None = None,
    ) -> None:
        self.ca = ca
        self.tokens = tokens or BootstrapTokens()
        self.policy = policy or CsrPolicy()
        self.clock = clock
        self.hooks = hooks
        self.inventory = inventory if inventory is not None else Inventory()

    async def CreateCertificate(  # noqa: N802 - the gRPC method name
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        peer = context.auth_context().get("x509_pem_cert")
        try:
            signed = create_certificate(
                self.ca,
                self.tokens,
                self.policy,
                csr_pem=request.csr,
                validity_seconds=request.validity_duration,
                peer_cert_pem=peer[0] if peer else None,
                authorization=_metadata(context, "authorization"),
                now=self.clock(),
            )
        except CsrRefused as refused:
            self.hooks.on_csr_denied(refused.refusal.value)
            log.info("CSR from %s refused: %s", context.peer(), refused.message)
            await context.abort(grpc.StatusCode[refused.refusal.value], refused.message)
            raise  # abort() raises; this line only satisfies the type checker
        except Exception:
            log.exception("CreateCertificate failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the CA")
            raise
        self.hooks.on_cert_issued("csr")
        self.inventory.record("csr", signed.identity.uri, signed.certificate)
        log.info("signed a certificate for %s (serial %x)", signed.identity, signed.certificate.serial_number)
        return ca_pb2.IstioCertificateResponse(cert_chain=list(signed.chain_pem))


def _metadata(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value)
    return None
