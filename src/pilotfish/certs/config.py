"""The CA's own configuration files: ``--certs FILE`` and ``--ca-tokens FILE``.

Istio kept DNS certificates in ``MeshConfig.certificates`` (``[{secretName, dnsNames}]``) until it
was deprecated in 2022 (istio/api#2392); pilotfish does not add fields to Istio's MeshConfig, so
they live in a pilotfish file instead::

    # --certs FILE
    workloadCertTtl: 24h          # Istio DEFAULT_WORKLOAD_CERT_TTL: used when a CSR asks for none
    maxWorkloadCertTtl: 2160h     # Istio MAX_WORKLOAD_CERT_TTL (90 days): longer requests are refused
    dnsCertificates:
    - secretName: shop-gateway    # the SDS secret name a Gateway's credentialName refers to
      dnsNames: [shop.example.com, "*.shop.example.com"]
      ttl: 2160h                  # optional; default 90 days

    # --ca-tokens FILE (keep it 0600): bootstrap tokens for the CSR service
    tokens:
    - token: 3f0c...              # a shared secret, at least 16 characters
      identities: [spiffe://cluster.local/ns/shop/sa/web]

Both decode with ``pilotfish.config.decode`` (errors carry ``file:line`` and a field path) and are
then validated; any problem raises one ``ConfigError`` listing all of them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from pilotfish.certs.ca import DEFAULT_WORKLOAD_TTL, MAX_WORKLOAD_TTL
from pilotfish.certs.identity import SpiffeIdError, parse_spiffe_id
from pilotfish.config import checks
from pilotfish.config.decode import Decoder, Message, field, format_path
from pilotfish.config.decode import Path as FieldPath
from pilotfish.config.resource import Finding
from pilotfish.config.source import Node, line_at, read_documents
from pilotfish.errors import ConfigError, Problem

T = TypeVar("T")

DEFAULT_DNS_TTL = timedelta(days=90)
MIN_TTL = timedelta(minutes=1)
MIN_TOKEN_LENGTH = 16
# Istio's SDS resource names for the workload certificate and the root (pilot/pkg/model/authentication.go).
RESERVED_SECRET_NAMES = frozenset({"default", "ROOTCA"})
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class DnsCertificate(Message):
    """One DNS certificate: served over SDS under ``secretName``, with ``dnsNames`` as SANs."""

    secret_name: str = field(required=True)
    dns_names: tuple[str, ...] = field(required=True)
    ttl: timedelta = DEFAULT_DNS_TTL


@dataclass(frozen=True, slots=True)
class CertsConfig(Message):
    workload_cert_ttl: timedelta = DEFAULT_WORKLOAD_TTL
    max_workload_cert_ttl: timedelta = MAX_WORKLOAD_TTL
    dns_certificates: tuple[DnsCertificate, ...] = ()

    def dns_certificate(self, secret_name: str) -> DnsCertificate | None:
        return next((c for c in self.dns_certificates if c.secret_name == secret_name), None)


DEFAULT_CERTS = CertsConfig()


@dataclass(frozen=True, slots=True)
class BootstrapToken(Message):
    """A shared secret and the SPIFFE ids a caller presenting it may obtain certificates for."""

    token: str = field(required=True)
    identities: tuple[str, ...] = field(required=True)

    def __repr__(self) -> str:  # never print the secret
        return f"BootstrapToken(token=<redacted>, identities={self.identities!r})"


@dataclass(frozen=True, slots=True)
class TokenFile(Message):
    tokens: tuple[BootstrapToken, ...] = ()


# ---- validation -------------------------------------------------------------------------------------


def validate_certs(config: CertsConfig) -> Iterator[Finding]:
    yield from _ttl(("workloadCertTtl",), config.workload_cert_ttl)
    yield from _ttl(("maxWorkloadCertTtl",), config.max_workload_cert_ttl)
    if config.workload_cert_ttl > config.max_workload_cert_ttl:
        yield Finding(("workloadCertTtl",), "must not exceed maxWorkloadCertTtl")
    seen: set[str] = set()
    for i, cert in enumerate(config.dns_certificates):
        path = ("dnsCertificates", i)
        yield from _secret_name((*path, "secretName"), cert.secret_name, seen)
        seen.add(cert.secret_name)
        if not cert.dns_names:
            yield Finding((*path, "dnsNames"), "at least one DNS name is required")
        for j, name in enumerate(cert.dns_names):
            yield from checks.findings(((*path, "dnsNames", j), _dns_or_ip(name)))
        yield from _ttl((*path, "ttl"), cert.ttl)


def _ttl(path: FieldPath, ttl: timedelta) -> Iterator[Finding]:
    if ttl < MIN_TTL:
        yield Finding(path, f"must be at least {int(MIN_TTL.total_seconds())}s")


def _secret_name(path: FieldPath, name: str, seen: set[str]) -> Iterator[Finding]:
    if name in RESERVED_SECRET_NAMES:
        yield Finding(path, f"{name!r} is reserved for the workload certificate (SDS 'default', 'ROOTCA')")
    elif len(name) > 253 or not _SECRET_NAME.match(name):
        yield Finding(path, f"{name!r} is not a valid secret name (a DNS-1123 subdomain)")
    elif name in seen:
        yield Finding(path, f"duplicate secretName {name!r}")


def _dns_or_ip(name: str) -> str | None:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return checks.dns_name(name) if name != "*" else "'*' is not a DNS name a certificate can carry"
    return None


def validate_tokens(tokens: TokenFile, trust_domain: str) -> Iterator[Finding]:
    seen: set[str] = set()
    for i, entry in enumerate(tokens.tokens):
        path = ("tokens", i)
        if len(entry.token) < MIN_TOKEN_LENGTH:
            yield Finding(
                (*path, "token"),
                f"must be at least {MIN_TOKEN_LENGTH} characters (try `openssl rand -hex 16`)",
            )
        elif entry.token in seen:
            yield Finding((*path, "token"), "duplicate token")
        seen.add(entry.token)
        if not entry.identities:
            yield Finding((*path, "identities"), "at least one SPIFFE id is required")
        for j, identity in enumerate(entry.identities):
            yield from checks.findings(((*path, "identities", j), _identity(identity, trust_domain)))


def _identity(uri: str, trust_domain: str) -> str | None:
    try:
        parsed = parse_spiffe_id(uri)
    except SpiffeIdError as exc:
        return str(exc)
    if parsed.trust_domain != trust_domain:
        return f"{uri!r} is not in the mesh trust domain {trust_domain!r}"
    return None


# ---- loading ----------------------------------------------------------------------------------------


def load_certs_config(path: str | Path) -> CertsConfig:
    """Read ``--certs FILE``; raise ``ConfigError`` with ``file:line: field.path: message`` problems."""
    data, file = _one_document(path)
    if data is None:
        return DEFAULT_CERTS
    config = _decode(CertsConfig, data, file, "CertsConfig")
    _raise_findings(list(validate_certs(config)), data, file, "CertsConfig")
    return config


def load_token_file(path: str | Path, trust_domain: str) -> TokenFile:
    """Read ``--ca-tokens FILE``; identities must be workload SPIFFE ids of ``trust_domain``."""
    data, file = _one_document(path)
    if data is None:
        return TokenFile()
    tokens = _decode(TokenFile, data, file, "TokenFile")
    _raise_findings(list(validate_tokens(tokens, trust_domain)), data, file, "TokenFile")
    return tokens


def _one_document(path: str | Path) -> tuple[Any, str]:
    docs = read_documents(Path(path))
    file = str(path)
    if len(docs) > 1:
        raise ConfigError([Problem("this file holds one YAML document", "", file, docs[1].line)])
    return (docs[0].data if docs else None), file


def _decode(cls: type[T], data: Any, file: str, ref: str) -> T:
    line = data.line if isinstance(data, Node) else 1
    decoder = Decoder(file, ref)
    out = decoder.decode(cls, data, (), line)
    if decoder.problems:
        raise ConfigError(decoder.problems)
    return cast(T, out)


def _raise_findings(findings: list[Finding], data: Any, file: str, ref: str) -> None:
    line = data.line if isinstance(data, Node) else 1
    problems = [
        Problem(f.message, format_path(f.path), file, line_at(data, f.path, line), ref) for f in findings
    ]
    if problems:
        raise ConfigError(problems)
