"""The authorization filters of the listeners of workloads that a RequestAuthentication or
AuthorizationPolicy selects (pure).

Two enforcement modes decide alike (``tests/e2e/test_authz_differential_e2e.py``):

- ``native``: Envoy enforces by itself, as Istio does: ``jwt_authn`` (``jwt_authn.py``) then
  RBAC filters for DENY, ALLOW and AUDIT (``rbac.py``). A workload whose policies cannot be
  expressed with upstream Envoy filters (a CUSTOM policy, a jwtRule without jwks/jwksUri) falls
  back to ext_authz, and ``authz_plan`` says why (``proxy-config``, ``/debug/authz``).
- ``ext_authz`` (the default): pilotfish's Check server decides.

The mesh-wide mode is ``serve --authz-mode``; a workload overrides it with the node metadata
annotation ``pilotfish.io/authz-mode`` (``pilotfish bootstrap --annotations``).

In ext_authz mode every inbound sidecar listener and gateway listener of a selected workload
gets ``envoy.filters.http.ext_authz`` first in its HTTP filter chain:

- ``failure_mode_allow: false``: a Check server that is down or failing means 403, never a
  silent allow (Envoy ext_authz docs, "failure_mode_allow");
- ``include_peer_certificate: true``: the Check server reads the caller's SPIFFE id from it;
- the workload's identity (namespace, name, labels, service account) travels as gRPC
  ``initial_metadata`` of the filter's own ``grpc_service``. Each listener has its own filter
  instance, so this names the workload for every route, RDS or inline, without touching routes.
  The Check server also accepts the same keys as per-route ``context_extensions``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, grpc_service_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import duration_pb2

from pilotfish.config.security.enforcement import AUTHZ_MODES, MODE_ANNOTATION, AuthzMode, choose_mode
from pilotfish.config.security.targeting import resource_in_scope
from pilotfish.kong.check import KONG_METADATA, PROXY_TYPE_KEY
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.jwt_authn import jwks_cluster, jwks_sources, jwt_authn_filter
from pilotfish.xds.translate.rbac import rbac_filters

AUTHZ_CLUSTER = "pilotfish_ext_authz"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
POLICY_KINDS = ("RequestAuthentication", "AuthorizationPolicy")
CHECK_TIMEOUT_SECONDS = 1  # Envoy's default 200 ms is tight for a first JWKS fetch on a busy host

# gRPC metadata keys that identify the workload to the Check server (also accepted as
# per-route context_extensions keys without the prefix).
WORKLOAD_KEYS = {
    "namespace": "x-pilotfish-namespace",
    "workload": "x-pilotfish-workload",
    "labels": "x-pilotfish-labels",
    "service_account": "x-pilotfish-service-account",
}
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def authz_applies(snapshot: MeshSnapshot, proxy: Proxy) -> bool:
    """Whether a RequestAuthentication or AuthorizationPolicy selects the proxy's workload (or
    Kong's plugins apply at this gateway)."""
    root = snapshot.mesh.root_namespace
    return kong_plugins_apply(snapshot, proxy) or any(
        resource_in_scope(r, proxy.namespace, proxy.labels, root)
        for kind in POLICY_KINDS
        for r in snapshot.of_kind(kind)
    )


HttpFilter: TypeAlias = http_connection_manager_pb2.HttpFilter


@dataclass(frozen=True, slots=True)
class AuthzPlan:
    """How one workload's policies are enforced: ``mode`` (``none`` when no policy applies),
    the HTTP filters to put first, and why native was asked for but not used."""

    mode: Literal["none", "ext_authz", "native"]
    filters: tuple[HttpFilter, ...] = ()
    fallback: str | None = None


def requested_mode(snapshot: MeshSnapshot, proxy: Proxy) -> AuthzMode:
    value = proxy.metadata.get(MODE_ANNOTATION)
    return value if value in AUTHZ_MODES else snapshot.authz_mode  # type: ignore[return-value]


def _selected(snapshot: MeshSnapshot, proxy: Proxy, kind: str) -> list[Any]:
    root = snapshot.mesh.root_namespace
    return [r for r in snapshot.of_kind(kind) if resource_in_scope(r, proxy.namespace, proxy.labels, root)]


def _policies(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[list[Any], list[Any]]:
    return _selected(snapshot, proxy, "AuthorizationPolicy"), _selected(
        snapshot, proxy, "RequestAuthentication"
    )


def kong_plugins_apply(snapshot: MeshSnapshot, proxy: Proxy) -> bool:
    """Kong's plugins (pilotfish.io Plugin) run in the Check server, at gateways only."""
    return proxy.type == ProxyType.ROUTER and any(p.spec.enabled for p in snapshot.of_kind("Plugin"))


def enforcement(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[str, str | None]:
    """Pure and cheap (no filters built), for ``/debug/syncz`` and ``proxy-status``."""
    policies, authns = _policies(snapshot, proxy)
    check_server = snapshot.authz_address is not None
    if kong_plugins_apply(snapshot, proxy):
        requested = requested_mode(snapshot, proxy)
        fallback = "Kong plugins are enforced by the Check server" if requested == "native" else None
        return ("ext_authz" if check_server else "none"), fallback
    return choose_mode(policies, authns, requested_mode(snapshot, proxy), check_server)


def authz_plan(snapshot: MeshSnapshot, proxy: Proxy) -> AuthzPlan:
    """Pure: which mode and filters enforce the policies that select ``proxy``."""
    mode, fallback = enforcement(snapshot, proxy)
    if mode == "none":
        return AuthzPlan("none", fallback=fallback)
    if mode == "native":
        policies, authns = _policies(snapshot, proxy)
        jwt = jwt_authn_filter([rule for r in authns for rule in r.spec.jwt_rules])
        return AuthzPlan("native", (*([jwt] if jwt else []), *rbac_filters(policies, snapshot.mesh)))
    out = http_connection_manager_pb2.HttpFilter(name=EXT_AUTHZ_FILTER)
    out.typed_config.Pack(ext_authz(proxy))
    return AuthzPlan("ext_authz", (out,), fallback)


def authz_filters_for(snapshot: MeshSnapshot, proxy: Proxy) -> tuple[HttpFilter, ...]:
    """The filters that go first in this proxy's inbound/gateway connection managers."""
    return authz_plan(snapshot, proxy).filters


def ext_authz(proxy: Proxy) -> ext_authz_pb2.ExtAuthz:
    service = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=AUTHZ_CLUSTER),
        timeout=duration_pb2.Duration(seconds=CHECK_TIMEOUT_SECONDS),
        initial_metadata=[base_pb2.HeaderValue(key=k, value=v) for k, v in workload_metadata(proxy).items()],
    )
    return ext_authz_pb2.ExtAuthz(
        grpc_service=service,
        transport_api_version=config_source_pb2.V3,
        failure_mode_allow=False,
        include_peer_certificate=True,
        status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.Forbidden),
        # gateway routes name their route and destination for Kong's plugin scopes (kong/check.py)
        route_metadata_context_namespaces=[KONG_METADATA] if proxy.type == ProxyType.ROUTER else [],
    )


def workload_metadata(proxy: Proxy) -> dict[str, str]:
    values = {
        "namespace": proxy.namespace,
        "workload": proxy.workload_name or proxy.name,
        "labels": json.dumps(dict(proxy.labels), sort_keys=True, separators=(",", ":")),
        "service_account": proxy.service_account,
    }
    out = {WORKLOAD_KEYS[key]: value for key, value in values.items()}
    if proxy.type == ProxyType.ROUTER:
        out[PROXY_TYPE_KEY] = "router"  # Kong's plugins run at gateways (kong/check.py)
    return out


def _managers(
    listeners: Iterable[listener_pb2.Listener],
) -> Iterable[http_connection_manager_pb2.HttpConnectionManager]:
    for listener in listeners:
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                manager = http_connection_manager_pb2.HttpConnectionManager()
                if network_filter.typed_config.Unpack(manager):
                    yield manager


def uses_authz(listeners: Iterable[listener_pb2.Listener]) -> bool:
    """Whether any listener's connection manager carries the ext_authz filter."""
    return any(f.name == EXT_AUTHZ_FILTER for m in _managers(listeners) for f in m.http_filters)


def authz_clusters(
    snapshot: MeshSnapshot, listeners: Iterable[listener_pb2.Listener]
) -> list[cluster_pb2.Cluster]:
    """The clusters the listeners' authorization filters call: the Check server (ext_authz) and
    the JWKS hosts (native jwt_authn), sorted by name."""
    listeners = list(listeners)
    check = authz_cluster(snapshot) if uses_authz(listeners) else None
    sources = {source for m in _managers(listeners) for source in jwks_sources(m)}
    jwks = [jwks_cluster(s) for s in sorted(sources, key=lambda s: s.cluster_name)]
    return [*([check] if check else []), *jwks]


def authz_cluster(snapshot: MeshSnapshot) -> cluster_pb2.Cluster | None:
    """The STATIC HTTP/2 cluster of the Check server (pushed over CDS to proxies that use it)."""
    if snapshot.authz_address is None:
        return None
    host, port = snapshot.authz_address
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=host, port_value=port)
            )
        )
    )
    cluster = cluster_pb2.Cluster(
        name=AUTHZ_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration_pb2.Duration(seconds=1),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=AUTHZ_CLUSTER,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    cluster.typed_extension_protocol_options[_HTTP_OPTIONS].Pack(options)
    return cluster
