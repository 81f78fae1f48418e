"""Gateway (networking.istio.io): the ports, hosts and TLS settings a gateway proxy listens with.

Fields: istio/api ``networking/v1alpha3/gateway.proto`` (identical in v1alpha3, v1beta1 and v1).
Rules: istio/istio ``pkg/config/validation/validation.go`` (``ValidateGateway``,
``validateServer``, ``validateServerPort``, ``validateServerBind``, ``validateTLSOptions``),
``validation/agent`` (``ValidateNamespaceSlashWildcardHostname``) and the CRD's CEL rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config import checks
from pilotfish.config.decode import Message, Path, UInt32, field
from pilotfish.config.networking.common import is_http, is_tls, protocol_name
from pilotfish.config.resource import Finding, Resource

UNIX_PREFIX = "unix://"

TLSMode = Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]
TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]
TLS_VERSION_ORDER: Mapping[str, int] = {"TLSV1_0": 0, "TLSV1_1": 1, "TLSV1_2": 2, "TLSV1_3": 3}


@dataclass(frozen=True, slots=True)
class Port(Message):
    number: UInt32 = field(required=True)
    protocol: str = field(required=True)
    name: str = field(required=True)
    target_port: UInt32 = 0  # deprecated; no effect on gateways


@dataclass(frozen=True, slots=True)
class TLSCertificate(Message):
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""


@dataclass(frozen=True, slots=True)
class ServerTLSSettings(Message):
    """How a server terminates (or passes through) TLS. Also a Sidecar ingress listener's TLS."""

    https_redirect: bool = False
    mode: TLSMode = "PASSTHROUGH"
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    ca_crl: str = ""
    credential_name: str = ""
    credential_names: tuple[str, ...] = ()
    tls_certificates: tuple[TLSCertificate, ...] = ()
    subject_alt_names: tuple[str, ...] = ()
    verify_certificate_spki: tuple[str, ...] = ()
    verify_certificate_hash: tuple[str, ...] = ()
    min_protocol_version: TLSVersion = "TLS_AUTO"
    max_protocol_version: TLSVersion = "TLS_AUTO"
    cipher_suites: tuple[str, ...] = ()
    insecure_skip_verify: bool | None = None
    ca_cert_credential_name: str = ""

    @property
    def has_credential(self) -> bool:
        """Certificates come from a secret (credentialName(s)) or inline (tlsCertificates)."""
        return bool(self.credential_name or self.credential_names or self.tls_certificates)

    @property
    def is_passthrough(self) -> bool:
        return self.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH")


@dataclass(frozen=True, slots=True)
class Server(Message):
    port: Port = field(required=True)
    hosts: tuple[str, ...] = field(required=True)
    bind: str = ""
    tls: ServerTLSSettings | None = None
    default_endpoint: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class GatewaySpec(Message):
    servers: tuple[Server, ...] = ()
    selector: Mapping[str, str] = field(default_factory=dict)


# ---- TLS -----------------------------------------------------------------------------------------

# (mode, what it needs without a credential secret) — Istio ``validateTLSOptions``.
FILES_REQUIRED: Mapping[str, tuple[tuple[str, str], ...]] = {
    "SIMPLE": (("serverCertificate", "server_certificate"), ("privateKey", "private_key")),
    "MUTUAL": (
        ("serverCertificate", "server_certificate"),
        ("privateKey", "private_key"),
        ("caCertificates", "ca_certificates"),
    ),
    "OPTIONAL_MUTUAL": (
        ("serverCertificate", "server_certificate"),
        ("privateKey", "private_key"),
        ("caCertificates", "ca_certificates"),
    ),
}
ISTIO_MUTUAL_FORBIDS = (
    ("serverCertificate", "server_certificate"),
    ("privateKey", "private_key"),
    ("caCertificates", "ca_certificates"),
    ("credentialName", "credential_name"),
)
CREDENTIAL_SOURCES = ("credentialName", "credentialNames", "tlsCertificates")


def _credential_sources(tls: ServerTLSSettings) -> list[str]:
    values = (tls.credential_name, tls.credential_names, tls.tls_certificates)
    return [name for name, value in zip(CREDENTIAL_SOURCES, values, strict=True) if value]


def _tls_versions(tls: ServerTLSSettings, path: Path) -> Iterator[Finding]:
    low, high = (
        TLS_VERSION_ORDER.get(tls.min_protocol_version),
        TLS_VERSION_ORDER.get(tls.max_protocol_version),
    )
    if low is not None and high is not None and low > high:
        yield Finding(
            (*path, "maxProtocolVersion"), "maxProtocolVersion must not be below minProtocolVersion"
        )
    if tls.min_protocol_version in ("TLSV1_0", "TLSV1_1") and not tls.cipher_suites:
        yield Finding(
            (*path, "minProtocolVersion"), "TLS versions below TLSV1_2 need cipherSuites set", "warning"
        )
    duplicates = sorted({c for c in tls.cipher_suites if tls.cipher_suites.count(c) > 1})
    if duplicates:
        yield Finding((*path, "cipherSuites"), f"ignoring duplicate cipher suites: {duplicates}", "warning")


def _tls_files(tls: ServerTLSSettings, path: Path) -> Iterator[Finding]:
    if tls.mode == "ISTIO_MUTUAL":
        for json_name, attr in ISTIO_MUTUAL_FORBIDS:
            if getattr(tls, attr):
                yield Finding((*path, json_name), f"ISTIO_MUTUAL TLS cannot have an associated {json_name}")
        return
    if tls.is_passthrough and (
        tls.ca_crl or tls.server_certificate or tls.private_key or tls.ca_certificates
    ):
        yield Finding(path, f"{tls.mode} mode does not use certificates, they will be ignored", "warning")
    if not tls.has_credential:
        for json_name, attr in FILES_REQUIRED.get(tls.mode, ()):
            if not getattr(tls, attr):
                yield Finding((*path, json_name), f"{tls.mode} TLS requires {json_name} (or credentialName)")
    for i, cert in enumerate(tls.tls_certificates):
        if not cert.server_certificate or not cert.private_key:
            yield Finding((*path, "tlsCertificates", i), "needs serverCertificate and privateKey")
    if tls.ca_crl and tls.credential_name:
        yield Finding((*path, "caCrl"), "CRL is not supported with credentialName; put it in the credential")
    if tls.ca_crl and tls.mode == "SIMPLE":
        yield Finding((*path, "caCrl"), "CRL is not supported with SIMPLE TLS")


def validate_server_tls(tls: ServerTLSSettings | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateTLSOptions`` and the CRD's rule that one credential source is set."""
    if tls is None:
        return
    sources = _credential_sources(tls)
    if len(sources) > 1:
        yield Finding((*path, sources[1]), f"only one of {', '.join(CREDENTIAL_SOURCES)} can be set")
    yield from _tls_versions(tls, path)
    yield from _tls_files(tls, path)


# ---- servers -------------------------------------------------------------------------------------


def _port(server: Server, path: Path) -> Iterator[Finding]:
    """Istio ``validateServerPort`` and ``validateServerBind``."""
    port, bind = server.port, server.bind
    yield from checks.findings(((*path, "protocol"), protocol_name(port.protocol)))
    if not port.protocol:
        yield Finding((*path, "protocol"), "protocol must be set")
    if port.number > 0 or not bind.startswith(UNIX_PREFIX):
        yield from checks.findings(((*path, "number"), checks.port_number(port.number)))
    if port.target_port:
        yield Finding((*path, "targetPort"), "targetPort has no impact on Gateways")
    if not port.name:
        yield Finding((*path, "name"), "port name must be set")


def _bind(server: Server, path: Path) -> Iterator[Finding]:
    if server.bind.startswith(UNIX_PREFIX):
        yield from checks.findings(((*path, "bind"), checks.unix_address(server.bind[len(UNIX_PREFIX) :])))
        if server.port.number:
            yield Finding((*path, "port", "number"), "port number must be 0 for a unix domain socket bind")
    elif server.bind:
        yield from checks.findings(((*path, "bind"), checks.ip_address(server.bind)))


def _tls_for_protocol(server: Server, path: Path) -> Iterator[Finding]:
    """HTTPS and TLS ports need TLS settings; plain HTTP ports take only httpsRedirect."""
    protocol, tls = server.port.protocol, server.tls
    if protocol_name(protocol) or not protocol:
        return
    if is_tls(protocol) and tls is None:
        yield Finding((*path, "tls"), "server must have TLS settings for HTTPS/TLS protocols")
    elif not is_tls(protocol) and tls is not None:
        if not is_http(protocol):
            yield Finding((*path, "tls"), "server cannot have TLS settings for non HTTPS/TLS ports")
        elif not tls.is_passthrough or tls.ca_certificates or tls.private_key or tls.server_certificate:
            yield Finding((*path, "tls"), "server cannot have TLS settings for plain text HTTP ports")


def validate_server(server: Server, path: Path) -> Iterator[Finding]:
    """Istio ``validateServer``."""
    if not server.hosts:
        yield Finding((*path, "hosts"), "server config must contain at least one host")
    for i, host in enumerate(server.hosts):
        for problem in checks.namespace_slash_host(host, gateway=True):
            yield Finding((*path, "hosts", i), problem)
    yield from _port(server, (*path, "port"))
    yield from _bind(server, path)
    yield from validate_server_tls(server.tls, (*path, "tls"))
    yield from _tls_for_protocol(server, path)


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: GatewaySpec = resource.spec
    if checks.dns1123_label(resource.name):  # VirtualServices refer to it as namespace/name
        yield Finding(
            ("name",), f"invalid gateway name {resource.name!r}: must be a DNS-1123 label", root="metadata"
        )
    if not spec.servers:
        yield Finding(("servers",), "gateway must have at least one server")
    names: dict[str, int] = {}
    for i, server in enumerate(spec.servers):
        yield from validate_server(server, ("servers", i))
        if server.port.name in names:
            yield Finding(
                ("servers", i, "port", "name"),
                f"port names in servers must be unique: duplicate name {server.port.name!r}",
            )
        names.setdefault(server.port.name, i)
        if server.tls is not None and server.tls.https_redirect and not is_http(server.port.protocol):
            yield Finding(
                ("servers", i, "tls", "httpsRedirect"),
                "httpsRedirect should only be used with HTTP servers",
                "warning",
            )
    yield from checks.labels(spec.selector, ("selector",))
