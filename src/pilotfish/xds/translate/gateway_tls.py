"""Gateway servers that terminate TLS: which they are, their route names and TLS contexts (pure).

Istio ``pilot/pkg/networking/core/gateway.go`` (``buildGatewayListeners``,
``createGatewayHTTPFilterChainOpts``, ``gatewayRDSRouteName``, ``buildGatewayListenerTLSContext``):

- a server with protocol HTTPS whose TLS mode terminates (SIMPLE, MUTUAL, OPTIONAL_MUTUAL,
  ISTIO_MUTUAL; not PASSTHROUGH) gets its own filter chain on the port's listener, matched by SNI
  on the server's hosts (none for ``*``), and its own RDS route
  ``https.<port>.<portName>.<gatewayName>.<namespace>`` (``.<bind>`` appended when it binds);
- the certificate comes over SDS under the server's ``credentialName`` (each of
  ``credentialNames``), or from the files ``serverCertificate``/``privateKey``; a MUTUAL server
  validates clients against SDS ``caCertCredentialName``, else ``<credentialName>-cacert``, else
  the file ``caCertificates``; ISTIO_MUTUAL uses the mesh certificate (``default``/``ROOTCA``);
- TLS versions default to TLS 1.2 at least (MeshConfig ``tlsDefaults``), ALPN ``h2, http/1.1``.

In pilotfish the secrets a ``credentialName`` names are the CA's DNS certificates (``--certs``
``dnsCertificates[].secretName``); ``<secretName>-cacert`` is the mesh root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import wrappers_pb2

from pilotfish.config.networking.gateway import Server, ServerTLSSettings
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.mtls import (
    CACERT_SUFFIX,
    INBOUND_ALPN,
    mesh_common_context,
    san_matchers,
    sds_secret,
)

HTTPS_ROUTE_PREFIX = "https."
TERMINATING_MODES = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"})
CLIENT_CERTIFICATE_MODES = frozenset({"MUTUAL", "ISTIO_MUTUAL"})  # require_client_certificate
CLIENT_VALIDATION_MODES = frozenset({"MUTUAL", "OPTIONAL_MUTUAL"})  # a CA secret validates clients
GATEWAY_ALPN = ("h2", "http/1.1")  # util.ALPNHttp
Versions = common_pb2.TlsParameters
TLS_VERSIONS: Mapping[str, int] = {
    "TLS_AUTO": Versions.TLS_AUTO,
    "TLSV1_0": Versions.TLSv1_0,
    "TLSV1_1": Versions.TLSv1_1,
    "TLSV1_2": Versions.TLSv1_2,
    "TLSV1_3": Versions.TLSv1_3,
}
DEFAULT_MIN_VERSION = "TLSV1_2"  # MeshConfig.tlsDefaults.minProtocolVersion


@dataclass(frozen=True, slots=True)
class HttpsServer:
    """An HTTPS server that terminates TLS, and the Gateway it belongs to."""

    gateway: str  # namespace/name
    namespace: str
    name: str  # the Gateway's name
    server: Server

    @property
    def tls(self) -> ServerTLSSettings:
        assert self.server.tls is not None, "https_servers only yields servers with tls"
        return self.server.tls

    @property
    def route_name(self) -> str:
        """Istio ``gatewayRDSRouteName`` for HTTPS."""
        port = self.server.port
        bind = f".{self.server.bind}" if self.server.bind else ""
        return f"{HTTPS_ROUTE_PREFIX}{port.number}.{port.name}.{self.name}.{self.namespace}{bind}"

    @property
    def server_names(self) -> list[str]:
        """SNI names of the filter chain: the hosts without their namespace; none for ``*``."""
        hosts = [entry.rpartition("/")[2] for entry in self.server.hosts]
        return [] if "*" in hosts else hosts


def selects(gateway: Any, proxy: Proxy) -> bool:
    return all(proxy.labels.get(k) == v for k, v in gateway.spec.selector.items())


def https_servers(snapshot: MeshSnapshot, proxy: Proxy) -> list[HttpsServer]:
    """Terminating HTTPS servers of the Gateways that select the proxy, Gateways in name order."""
    gateways = sorted(snapshot.of_kind("Gateway"), key=lambda r: (r.name, r.namespace))
    return [
        HttpsServer(f"{gw.namespace}/{gw.name}", gw.namespace, gw.name, server)
        for gw in gateways
        if selects(gw, proxy)
        for server in gw.spec.servers
        if terminates_https(server)
    ]


def terminates_https(server: Server) -> bool:
    return (
        server.port.protocol.upper() == "HTTPS"
        and server.tls is not None
        and server.tls.mode in TERMINATING_MODES
    )


def credential_names(snapshot: MeshSnapshot, proxy: Proxy) -> list[str]:
    """The SDS secrets the proxy's HTTPS servers name: their certificates, and for a server that
    validates clients the CA secret ``add_client_validation`` names."""
    names: dict[str, None] = {}
    for server in https_servers(snapshot, proxy):
        tls = server.tls
        for name in (tls.credential_name, *tls.credential_names):
            if name:
                names.setdefault(name)
        if tls.mode in CLIENT_VALIDATION_MODES:
            own_ca = tls.credential_name + CACERT_SUFFIX if tls.credential_name else ""
            if tls.ca_cert_credential_name or own_ca:
                names.setdefault(tls.ca_cert_credential_name or own_ca)
    return list(names)


# ---- the TLS context ---------------------------------------------------------------------------


def server_tls_context(tls: ServerTLSSettings) -> tls_pb2.DownstreamTlsContext:
    """Istio ``buildGatewayListenerTLSContext``."""
    if tls.mode == "ISTIO_MUTUAL":
        common = mesh_common_context(INBOUND_ALPN, tls.subject_alt_names)
    else:
        common = tls_pb2.CommonTlsContext(alpn_protocols=list(GATEWAY_ALPN))
        add_certificates(common, tls)
        if tls.mode in CLIENT_VALIDATION_MODES:
            add_client_validation(common, tls)
    common.tls_params.CopyFrom(tls_parameters(tls))
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common,
        require_client_certificate=wrappers_pb2.BoolValue(value=tls.mode in CLIENT_CERTIFICATE_MODES),
    )


def add_certificates(common: tls_pb2.CommonTlsContext, tls: ServerTLSSettings) -> None:
    """SDS ``credentialName`` (and each of ``credentialNames``), else the certificate files."""
    names = [n for n in (tls.credential_name, *tls.credential_names) if n]
    for name in names:
        common.tls_certificate_sds_secret_configs.append(sds_secret(name))
    if names:
        return
    pairs = [(tls.server_certificate, tls.private_key)] + [
        (c.server_certificate, c.private_key) for c in tls.tls_certificates
    ]
    for chain, key in pairs:
        if chain and key:
            certificate = common.tls_certificates.add()
            certificate.certificate_chain.filename = chain
            certificate.private_key.filename = key


def add_client_validation(common: tls_pb2.CommonTlsContext, tls: ServerTLSSettings) -> None:
    """The CA clients must chain to: an SDS secret, else the ``caCertificates`` file."""
    validation = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=san_matchers(tls.subject_alt_names),
        verify_certificate_spki=list(tls.verify_certificate_spki),
        verify_certificate_hash=list(tls.verify_certificate_hash),
    )
    if tls.ca_crl:  # revoked client certificates are refused
        validation.crl.filename = tls.ca_crl
    own_ca = tls.credential_name + CACERT_SUFFIX if tls.credential_name else ""
    secret = tls.ca_cert_credential_name or own_ca
    if secret:
        combined = common.combined_validation_context
        combined.default_validation_context.CopyFrom(validation)
        combined.validation_context_sds_secret_config.CopyFrom(sds_secret(secret))
        return
    if tls.ca_certificates:
        validation.trusted_ca.filename = tls.ca_certificates
    common.validation_context.CopyFrom(validation)


def tls_parameters(tls: ServerTLSSettings) -> common_pb2.TlsParameters:
    minimum = DEFAULT_MIN_VERSION if tls.min_protocol_version == "TLS_AUTO" else tls.min_protocol_version
    return common_pb2.TlsParameters(
        tls_minimum_protocol_version=TLS_VERSIONS[minimum],
        tls_maximum_protocol_version=TLS_VERSIONS[tls.max_protocol_version],
        cipher_suites=list(tls.cipher_suites),
    )
