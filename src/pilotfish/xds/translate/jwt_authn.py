"""RequestAuthentication → Envoy's ``jwt_authn`` filter and the clusters its JWKS come from (pure).

Theory of operation (istio ``pilot/pkg/security/authn/policy_applier.go``): every jwtRule of
every RequestAuthentication that selects the workload is one ``JwtProvider``, sorted by issuer
(``extauthz.jwt.compile_providers``, which the Check server uses too). The requirement is
``requires_any: [P1 … PN, requires_all: [requires_any(Pi, allow_missing) …]]``: a request with
no token passes with no identity, an invalid token is 401 (403 for a disallowed audience), as
API-RA says. ``bypass_cors_preflight`` is on, as istiod sets it.

Each provider writes its verified payload into the dynamic metadata key ``payload`` of this
filter (``payload_in_metadata``), space-delimited claims split into lists
(``normalize_payload_in_metadata``); the RBAC filters read principals and claims there.

Keys: inline ``jwks`` become ``local_jwks``; a ``jwksUri`` becomes ``remote_jwks`` fetched by
Envoy through a cluster pilotfish adds for the URI's host (Istio's ``PILOT_JWT_ENABLE_REMOTE_JWKS``
mode), with the rule's ``timeout``. Envoy does not do OpenID discovery: a rule with neither
``jwks`` nor ``jwksUri`` cannot be enforced natively (``config.security.enforcement``), and
the workload falls back to ext_authz.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, http_uri_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2, empty_pb2

from pilotfish.config.security.request_authentication import DEFAULT_JWKS_TIMEOUT, JWTRule
from pilotfish.extauthz.jwt import CLOCK_SKEW, DEFAULT_SPACE_DELIMITED
from pilotfish.xds.translate.rbac import JWT_AUTHN_FILTER, PAYLOAD_KEY

JWKS_CLUSTER_PREFIX = "pilotfish_jwks"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's; Envoy verifies https JWKS hosts
JWKS_CACHE_SECONDS = 300  # Envoy's default cache_duration is 600 s; Istio refreshes every 20 min
DEFAULT_PORTS = {"http": 80, "https": 443}
_TLS_SOCKET = "envoy.transport_sockets.tls"


@dataclass(frozen=True, slots=True)
class JwksSource:
    """Where Envoy fetches one ``jwksUri``: a cluster per (scheme, host, port)."""

    scheme: str
    host: str
    port: int

    @property
    def cluster_name(self) -> str:
        return f"{JWKS_CLUSTER_PREFIX}|{self.scheme}|{self.host}|{self.port}"


def jwks_source(uri: str) -> JwksSource:
    parts = urlsplit(uri)
    return JwksSource(parts.scheme, parts.hostname or "", parts.port or DEFAULT_PORTS.get(parts.scheme, 80))


def _duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def provider(rule: JWTRule) -> config_pb2.JwtProvider:
    out = config_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=rule.forward_original_token,
        from_headers=[config_pb2.JwtHeader(name=h.name, value_prefix=h.prefix) for h in rule.from_headers],
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
        forward_payload_header=rule.output_payload_to_header,
        payload_in_metadata=PAYLOAD_KEY,
        normalize_payload_in_metadata=config_pb2.JwtProvider.NormalizePayload(
            space_delimited_claims=sorted(DEFAULT_SPACE_DELIMITED | set(rule.space_delimited_claims))
        ),
        clock_skew_seconds=int(CLOCK_SKEW),
        claim_to_headers=[
            config_pb2.JwtClaimToHeader(header_name=c.header, claim_name=c.claim)
            for c in rule.output_claim_to_headers
        ],
    )
    if rule.jwks:
        out.local_jwks.inline_string = rule.jwks
    else:
        timeout = (rule.timeout or DEFAULT_JWKS_TIMEOUT).total_seconds()
        out.remote_jwks.CopyFrom(
            config_pb2.RemoteJwks(
                http_uri=http_uri_pb2.HttpUri(
                    uri=rule.jwks_uri,
                    cluster=jwks_source(rule.jwks_uri).cluster_name,
                    timeout=_duration(timeout),
                ),
                cache_duration=_duration(JWKS_CACHE_SECONDS),
                # Fetch when the listener starts, not on the first request; the listener does not
                # wait for it (a JWKS outage must not keep the workload's listener down).
                async_fetch=config_pb2.JwksAsyncFetch(fast_listener=True),
            )
        )
    return out


def _requirement(names: Sequence[str]) -> config_pb2.JwtRequirement:
    def one(name: str) -> config_pb2.JwtRequirement:
        return config_pb2.JwtRequirement(provider_name=name)

    allow_missing = config_pb2.JwtRequirement(allow_missing=empty_pb2.Empty())
    if len(names) == 1:
        return config_pb2.JwtRequirement(
            requires_any=config_pb2.JwtRequirementOrList(requirements=[one(names[0]), allow_missing])
        )
    each_or_missing = [
        config_pb2.JwtRequirement(
            requires_any=config_pb2.JwtRequirementOrList(requirements=[one(n), allow_missing])
        )
        for n in names
    ]
    return config_pb2.JwtRequirement(
        requires_any=config_pb2.JwtRequirementOrList(
            requirements=[
                *(one(n) for n in names),
                config_pb2.JwtRequirement(
                    requires_all=config_pb2.JwtRequirementAndList(requirements=each_or_missing)
                ),
            ]
        )
    )


def jwt_authn_filter(rules: Sequence[JWTRule]) -> http_connection_manager_pb2.HttpFilter | None:
    """The filter for a workload's jwtRules (sorted by issuer, as the Check server sorts them)."""
    if not rules:
        return None
    ordered = sorted(rules, key=lambda r: r.issuer)
    names = [f"origins-{i}" for i in range(len(ordered))]
    config = config_pb2.JwtAuthentication(
        providers={name: provider(rule) for name, rule in zip(names, ordered, strict=True)},
        rules=[config_pb2.RequirementRule(match={"prefix": "/"}, requires=_requirement(names))],
        bypass_cors_preflight=True,
    )
    out = http_connection_manager_pb2.HttpFilter(name=JWT_AUTHN_FILTER)
    out.typed_config.Pack(config)
    return out


def jwks_sources(manager: http_connection_manager_pb2.HttpConnectionManager) -> set[JwksSource]:
    """The remote JWKS hosts a connection manager's jwt_authn filter fetches from."""
    found: set[JwksSource] = set()
    for http_filter in manager.http_filters:
        config = config_pb2.JwtAuthentication()
        if http_filter.name == JWT_AUTHN_FILTER and http_filter.typed_config.Unpack(config):
            found.update(
                jwks_source(p.remote_jwks.http_uri.uri)
                for p in config.providers.values()
                if p.HasField("remote_jwks")
            )
    return found


def jwks_cluster(source: JwksSource) -> cluster_pb2.Cluster:
    """A cluster for one JWKS host: STATIC for an IP, STRICT_DNS for a name; TLS (SNI, system
    CAs) for https."""
    try:
        ipaddress.ip_address(source.host)
        is_ip = True
    except ValueError:
        is_ip = False
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=source.host, port_value=source.port)
            )
        )
    )
    cluster = cluster_pb2.Cluster(
        name=source.cluster_name,
        type=cluster_pb2.Cluster.STATIC if is_ip else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=duration_pb2.Duration(seconds=5),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=source.cluster_name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )
    if source.scheme == "https":
        context = tls_pb2.UpstreamTlsContext(
            sni=source.host,
            common_tls_context=tls_pb2.CommonTlsContext(
                validation_context=common_pb2.CertificateValidationContext(
                    trusted_ca=base_pb2.DataSource(filename=SYSTEM_CA_BUNDLE),
                    match_typed_subject_alt_names=[
                        common_pb2.SubjectAltNameMatcher(
                            san_type=common_pb2.SubjectAltNameMatcher.DNS,
                            matcher=string_pb2.StringMatcher(exact=source.host),
                        )
                    ],
                )
            ),
        )
        cluster.transport_socket.name = _TLS_SOCKET
        cluster.transport_socket.typed_config.Pack(context)
    return cluster
