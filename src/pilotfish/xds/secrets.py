"""SDS ``Secret`` resources: a proxy's workload certificate, the mesh root, DNS certificates.

Names follow Istio (``pilot/pkg/model/authentication.go``: ``SDSDefaultResourceName = "default"``,
``SDSRootResourceName = "ROOTCA"``): clusters and listeners built for ``ISTIO_MUTUAL`` name
``default`` in ``tls_certificate_sds_secret_configs`` and ``ROOTCA`` in
``validation_context_sds_secret_config``. A DNS certificate is served under its ``secretName``,
the name a Gateway's ``credentialName`` uses.

Material is inline bytes (``DataSource.inline_bytes``): the control plane mints the key, as
Envoy has no agent beside it here. The chain carries the leaf and intermediates; the root travels
only in ``ROOTCA`` (Envoy validates peers against ``trusted_ca``). Deterministic for a given kept
certificate, so the xDS cache's content hash changes only when a certificate is rotated.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from pilotfish.certs.ca import CertificateAuthority, CertifiedKey, certificates_pem
from pilotfish.certs.cache import DnsCertCache, WorkloadCertCache
from pilotfish.certs.config import CertsConfig
from pilotfish.certs.identity import SpiffeId, workload_id
from pilotfish.xds.proxy import Proxy

WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"


def identity_of_proxy(proxy: Proxy, trust_domain: str) -> SpiffeId:
    """The SPIFFE id of a proxy: its namespace and SERVICE_ACCOUNT (``default`` when unset)."""
    return workload_id(trust_domain, proxy.namespace, proxy.service_account)


def workload_secrets(
    ca: CertificateAuthority, proxy_identity: SpiffeId, now: datetime, cache: WorkloadCertCache
) -> list[secret_pb2.Secret]:
    """``[default, ROOTCA]`` for a proxy; the certificate is reused until it needs rotation."""
    certified = cache.get(ca, proxy_identity, now)
    return [_shared_tls_secret(WORKLOAD_SECRET, certified), _shared_root_secret(ROOT_SECRET, ca.root)]


# Every push asks for every proxy's secrets again; PEM-encoding a key and two certificates each
# time cost ~0.1 ms per proxy. The messages are built once per certificate (a rotation makes a
# new ``CertifiedKey``) and shared: callers serialize them, never change them.
@functools.lru_cache(maxsize=8192)
def _shared_tls_secret(name: str, certified: CertifiedKey) -> secret_pb2.Secret:
    return tls_certificate_secret(name, certified)


@functools.lru_cache(maxsize=64)
def _shared_root_secret(name: str, root: x509.Certificate) -> secret_pb2.Secret:
    context = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(inline_bytes=certificates_pem([root]))
    )
    return secret_pb2.Secret(name=name, validation_context=context)


def root_secret(ca: CertificateAuthority, name: str = ROOT_SECRET) -> secret_pb2.Secret:
    """The trust anchor as a validation context (``trusted_ca``)."""
    context = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(inline_bytes=certificates_pem([ca.root]))
    )
    return secret_pb2.Secret(name=name, validation_context=context)


def tls_certificate_secret(name: str, certified: CertifiedKey) -> secret_pb2.Secret:
    """A certificate chain and its private key, inline."""
    certificate = common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(inline_bytes=certified.chain_pem()),
        private_key=base_pb2.DataSource(inline_bytes=certified.key_pem()),
    )
    return secret_pb2.Secret(name=name, tls_certificate=certificate)


def dns_secret(name: str, cert: CertifiedKey) -> secret_pb2.Secret:
    """A DNS certificate from the certs config, served under its ``secretName``."""
    return tls_certificate_secret(name, cert)


def dns_secrets(
    ca: CertificateAuthority,
    config: CertsConfig,
    now: datetime,
    cache: DnsCertCache,
    names: Iterable[str] | None = None,
) -> list[secret_pb2.Secret]:
    """The configured DNS certificates (only ``names`` when given, e.g. what a gateway asked for)."""
    wanted = None if names is None else set(names)
    return [
        dns_secret(spec.secret_name, cache.get(ca, spec, now))
        for spec in config.dns_certificates
        if wanted is None or spec.secret_name in wanted
    ]
