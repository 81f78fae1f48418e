"""MeshConfig: the mesh-wide settings pilotfish uses, read from Istio's ``mesh`` YAML.

``pilotfish serve --mesh FILE`` takes what Istio keeps under the ``mesh`` key of the
``istio`` ConfigMap. Fields: istio/api ``mesh/v1alpha1/config.proto`` (``MeshConfig``,
``ExtensionProvider``). Rules: istio/istio ``pkg/config/validation/agent`` (``ValidateMeshConfig``'s
trust-domain checks; ``extensionprovider.go``).

Theory of operation. pilotfish models the fields it acts on; every other field of Istio's
MeshConfig is listed in ``IGNORED_FIELDS`` and accepted without effect (logged), so a mesh file
copied from an Istio install loads. A field that is in neither is an error with its ``file:line``,
like any unknown field. Unset fields take Istio's defaults (``DEFAULT_MESH``), as istiod merges the
file over its defaults (``pkg/config/mesh.ApplyMeshConfig``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path as FilePath
from typing import Any, Literal, cast

from pilotfish.config import checks
from pilotfish.config.decode import Decoder, JsonValue, Message, Path, UInt32, field, format_path
from pilotfish.config.names import camel_to_snake, snake_to_camel
from pilotfish.config.resource import Finding
from pilotfish.config.source import Node, line_at, read_documents
from pilotfish.errors import ConfigError, Problem

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestBody(Message):
    """``EnvoyExternalAuthorizationRequestBody``: send the request body in the check."""

    max_request_bytes: UInt32 = 0
    allow_partial_message: bool = False
    pack_as_bytes: bool = False


@dataclass(frozen=True, slots=True)
class EnvoyExtAuthzHttpProvider(Message):
    """``EnvoyExternalAuthorizationHttpProvider``. ``timeout`` ``None`` means Istio's 600s."""

    service: str = ""
    port: UInt32 = 0
    timeout: timedelta | None = None
    path_prefix: str = ""
    fail_open: bool = False
    status_on_error: str = ""
    include_headers_in_check: tuple[str, ...] = ()  # deprecated for include_request_headers_in_check
    include_request_headers_in_check: tuple[str, ...] = ()
    include_additional_headers_in_check: Mapping[str, str] = field(default_factory=dict)
    include_request_body_in_check: RequestBody | None = None
    headers_to_upstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_deny: tuple[str, ...] = ()
    headers_to_downstream_on_allow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EnvoyExtAuthzGrpcProvider(Message):
    """``EnvoyExternalAuthorizationGrpcProvider``. ``timeout`` ``None`` means Istio's 600s."""

    service: str = ""
    port: UInt32 = 0
    timeout: timedelta | None = None
    fail_open: bool = False
    status_on_error: str = ""
    include_request_body_in_check: RequestBody | None = None


# Provider kinds of ExtensionProvider's ``provider`` oneof that pilotfish accepts but does not use.
OTHER_PROVIDER_KINDS = (
    "zipkin",
    "lightstep",
    "datadog",
    "stackdriver",
    "opencensus",
    "skywalking",
    "opentelemetry",
    "prometheus",
    "envoyFileAccessLog",
    "envoyHttpAls",
    "envoyTcpAls",
    "envoyOtelAls",
)


@dataclass(frozen=True, slots=True)
class ExtensionProvider(Message):
    """A named extension; AuthorizationPolicy CUSTOM names an ext_authz one in ``provider.name``."""

    ONEOFS = (("envoyExtAuthzHttp", "envoyExtAuthzGrpc", *OTHER_PROVIDER_KINDS),)

    name: str = field(required=True)
    envoy_ext_authz_http: EnvoyExtAuthzHttpProvider | None = None
    envoy_ext_authz_grpc: EnvoyExtAuthzGrpcProvider | None = None
    zipkin: JsonValue | None = None
    lightstep: JsonValue | None = None
    datadog: JsonValue | None = None
    stackdriver: JsonValue | None = None
    opencensus: JsonValue | None = None
    skywalking: JsonValue | None = None
    opentelemetry: JsonValue | None = None
    prometheus: JsonValue | None = None
    envoy_file_access_log: JsonValue | None = None
    envoy_http_als: JsonValue | None = None
    envoy_tcp_als: JsonValue | None = None
    envoy_otel_als: JsonValue | None = None

    @property
    def ext_authz(self) -> EnvoyExtAuthzHttpProvider | EnvoyExtAuthzGrpcProvider | None:
        """The ext_authz configuration, if this is an ext_authz provider."""
        return self.envoy_ext_authz_http or self.envoy_ext_authz_grpc


@dataclass(frozen=True, slots=True)
class OutboundTrafficPolicy(Message):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] = "ALLOW_ANY"


@dataclass(frozen=True, slots=True)
class PathNormalization(Message):
    """``ProxyPathNormalization``: how proxies normalize paths before routing and authorization."""

    normalization: Literal["DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] = "DEFAULT"


@dataclass(frozen=True, slots=True)
class MeshConfig(Message):
    root_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    trust_domain_aliases: tuple[str, ...] = ()
    default_config: JsonValue | None = None  # ProxyConfig, kept as plain data
    extension_providers: tuple[ExtensionProvider, ...] = ()
    enable_auto_mtls: bool = True
    outbound_traffic_policy: OutboundTrafficPolicy = OutboundTrafficPolicy()
    path_normalization: PathNormalization = PathNormalization()

    def extension_provider(self, name: str) -> ExtensionProvider | None:
        return next((p for p in self.extension_providers if p.name == name), None)


DEFAULT_MESH = MeshConfig()

# Every other MeshConfig field (config.proto, JSON names): accepted, not used by pilotfish.
IGNORED_FIELDS: frozenset[str] = frozenset(
    {
        "proxyListenPort",
        "proxyInboundListenPort",
        "proxyHttpPort",
        "connectTimeout",
        "protocolDetectionTimeout",
        "tcpKeepalive",
        "ingressClass",
        "ingressService",
        "ingressControllerMode",
        "ingressSelector",
        "enableTracing",
        "accessLogFile",
        "accessLogFormat",
        "accessLogEncoding",
        "enableEnvoyAccessLogService",
        "disableEnvoyListenerLog",
        "inboundTrafficPolicy",
        "configSources",
        "caCertificates",
        "defaultServiceExportTo",
        "defaultVirtualServiceExportTo",
        "defaultDestinationRuleExportTo",
        "localityLbSetting",
        "dnsRefreshRate",
        "h2UpgradePolicy",
        "inboundClusterStatName",
        "outboundClusterStatName",
        "certificates",
        "serviceSettings",
        "enablePrometheusMerge",
        "verifyCertificateAtClient",
        "ca",
        "defaultProviders",
        "discoverySelectors",
        "defaultHttpRetryPolicy",
        "meshMTLS",
        "tlsDefaults",
        "compliancePolicy",
    }
)


# ---- validation -------------------------------------------------------------------------------------

# envoy.type.v3.StatusCode values: what statusOnError may name (extensionprovider.go).
ENVOY_STATUS_CODES: frozenset[int] = frozenset(
    {0, 100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308}
    | {400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421}
    | {422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511}
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def trust_domain(value: str) -> str | None:
    """Istio ``ValidateTrustDomain``: non-empty, dot-separated DNS-1123 labels (a trailing dot allowed)."""
    if not value:
        return "empty domain name not allowed"
    labels = value.split(".")
    if labels[-1] == "":
        labels.pop()
    if all(len(label) <= 63 and _DNS1123_LABEL.match(label) for label in labels):
        return None
    return f"trust domain name {value!r} invalid"


def validate_mesh(mesh: MeshConfig) -> Iterator[Finding]:
    yield from checks.findings(
        (("trustDomain",), trust_domain(mesh.trust_domain)),
        (("rootNamespace",), checks.dns1123_label(mesh.root_namespace)),
    )
    for i, alias in enumerate(mesh.trust_domain_aliases):
        yield from checks.findings((("trustDomainAliases", i), trust_domain(alias)))
    seen: set[str] = set()
    for i, provider in enumerate(mesh.extension_providers):
        path = ("extensionProviders", i)
        if not provider.name:
            yield Finding((*path, "name"), "empty extension provider name")
        elif provider.name in seen:
            yield Finding((*path, "name"), f"duplicate extension provider name {provider.name}")
        seen.add(provider.name)
        yield from _provider(provider, path)


def _provider(provider: ExtensionProvider, path: Path) -> Iterator[Finding]:
    kinds = ("envoyExtAuthzHttp", "envoyExtAuthzGrpc", *OTHER_PROVIDER_KINDS)
    if all(getattr(provider, camel_to_snake(kind)) is None for kind in kinds):
        yield Finding(path, f"extension provider {provider.name!r} must set one of {', '.join(kinds)}")
    if provider.envoy_ext_authz_http is not None:
        yield from _ext_authz(provider.envoy_ext_authz_http, (*path, "envoyExtAuthzHttp"))
        prefix = provider.envoy_ext_authz_http.path_prefix
        if prefix and not prefix.startswith("/"):
            yield Finding(
                (*path, "envoyExtAuthzHttp", "pathPrefix"),
                f"pathPrefix should begin with `/` but found {prefix!r}",
            )
    if provider.envoy_ext_authz_grpc is not None:
        yield from _ext_authz(provider.envoy_ext_authz_grpc, (*path, "envoyExtAuthzGrpc"))


def _ext_authz(
    config: EnvoyExtAuthzHttpProvider | EnvoyExtAuthzGrpcProvider, path: Path
) -> Iterator[Finding]:
    yield from checks.findings(
        ((*path, "service"), provider_service(config.service)),
        ((*path, "port"), checks.port_number(config.port)),
        ((*path, "statusOnError"), status_on_error(config.status_on_error)),
    )


def provider_service(service: str) -> str | None:
    """``validateExtensionProviderService``: ``[namespace/]host``, the host an FQDN or IP address."""
    if not service:
        return "service must not be empty"
    namespace, slash, host = service.rpartition("/")
    if slash and (not namespace or service.count("/") > 1 or checks.dns1123_label(namespace)):
        return f"invalid service {service!r}: expected [<namespace>/]<hostname>"
    if checks.fqdn(host) and checks.ip_address(host):
        return f"invalid service {service!r}: {checks.fqdn(host)}"
    return None


def status_on_error(value: str) -> str | None:
    """``statusOnError``: empty, or an HTTP status code Envoy knows."""
    if not value:
        return None
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        return f"invalid statusOnError value {value!r}: not an integer"
    return None if int(value) in ENVOY_STATUS_CODES else f"unsupported statusOnError value {value}"


# ---- loading ----------------------------------------------------------------------------------------


def load_mesh_config(path: str | FilePath) -> MeshConfig:
    """Read a mesh config file; raise ``ConfigError`` with ``file:line`` problems."""
    docs = read_documents(FilePath(path))
    file = str(path)
    if not docs:
        return DEFAULT_MESH
    if len(docs) > 1:
        raise ConfigError([Problem("a mesh config file holds one YAML document", "", file, docs[1].line)])
    return parse_mesh_config(docs[0].data, file)


def parse_mesh_config(data: Any, file: str = "<mesh>") -> MeshConfig:
    """Decode and validate one mesh config document (a ``Node`` keeps line numbers)."""
    line = data.line if isinstance(data, Node) else 1
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem("a mesh config must be a YAML mapping of MeshConfig fields", "", file, line)]
        )
    kept, ignored = _split_ignored(data)
    if ignored:
        log.info("%s: MeshConfig fields accepted but not used by pilotfish: %s", file, ", ".join(ignored))
    decoder = Decoder(file, "MeshConfig")
    mesh = cast(MeshConfig, decoder.decode(MeshConfig, kept, (), line))
    if decoder.problems:
        raise ConfigError(decoder.problems)
    problems = [
        Problem(f.message, format_path(f.path), file, line_at(data, f.path, line), "MeshConfig", f.severity)
        for f in validate_mesh(mesh)
    ]
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    return mesh


def _split_ignored(data: dict[str, Any]) -> tuple[Node, list[str]]:
    """The document without its known-but-ignored fields (camelCase or snake_case), and their names."""
    kept = Node(data.line if isinstance(data, Node) else 1)
    ignored = []
    for key, value in data.items():
        if isinstance(key, str) and snake_to_camel(key) in IGNORED_FIELDS:
            ignored.append(key)
            continue
        kept[key] = value
        if isinstance(data, Node):
            kept.key_lines[key] = data.key_lines.get(key, kept.line)
    return kept, ignored
