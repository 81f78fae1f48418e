"""A VirtualService's ``http`` rules → Envoy ``Route``s for one listener port, as istiod builds them.

Istio ``pilot/pkg/networking/core/route/route.go``:

- ``BuildHTTPRoutesForVirtualService``: rules in order, one Route per ``match`` entry (a rule
  without ``match`` is the catch-all ``/``); nothing after the first catch-all is generated.
- ``TranslateRoute``: a match for another port, or whose ``gateways`` / ``sourceLabels`` /
  ``sourceNamespace`` exclude this proxy (``sourceMatchHTTP``), makes no Route. The Route is
  named ``http.name[.match.name]``, carries the VirtualService in its metadata, the rule's header
  operations, then one action — redirect, direct response, or forwarding — a decorator
  (``GetRouteOperation``) and the fault and CORS per-filter configuration.
- ``applyHTTPRouteDestination``: timeout, rewrites (uri → ``prefix_rewrite``, uriRegexRewrite →
  ``regex_rewrite``, authority → ``host_rewrite_literal``), mirrors, one destination as
  ``cluster`` or several as ``weighted_clusters`` (zero weights dropped; per-destination headers
  on the weighted cluster), hash policies, and the retry policy (``route_policies.py``).
- ``GetDestinationCluster``: ``outbound|PORT|SUBSET|HOST``; the port is the destination's, else
  the service's only port, else the listener port.
- ``ApplyRedirect`` and ``ApplyDirectResponse``.

One deliberate difference: a redirect code Envoy cannot express (300, 304, 305, 306, which
validation lets through) makes Istio emit a Route without an action, which Envoy rejects —
taking the whole route configuration with it. pilotfish leaves that one Route out instead.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import struct_pb2

from pilotfish.config.networking.common import Destination
from pilotfish.config.networking.destination_rule import ConsistentHashLB
from pilotfish.config.networking.virtual_service import (
    HTTPDirectResponse,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRoute,
    HTTPRouteDestination,
)
from pilotfish.kong.check import KONG_METADATA
from pilotfish.registry.model import Service
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.names import outbound_cluster_name, parse_cluster_name
from pilotfish.xds.translate.route_hash import hash_policies
from pilotfish.xds.translate.route_match import is_catch_all, route_match
from pilotfish.xds.translate.route_policies import (
    HeaderOperationsOut,
    cors_filter_config,
    fault_filter_config,
    header_operations,
    mirror_fraction,
    mirror_policy_fraction,
    packed,
    request_mirror_policy,
    retry_policy,
    set_timeout,
)
from pilotfish.xds.translate.virtual_services import AppliedVirtualService

Route: TypeAlias = route_components_pb2.Route
RouteAction: TypeAlias = route_components_pb2.RouteAction
RedirectAction: TypeAlias = route_components_pb2.RedirectAction
WeightedCluster: TypeAlias = route_components_pb2.WeightedCluster
ClusterWeight: TypeAlias = route_components_pb2.WeightedCluster.ClusterWeight
RequestMirrorPolicy: TypeAlias = route_components_pb2.RouteAction.RequestMirrorPolicy
RuntimeFractionalPercent: TypeAlias = base_pb2.RuntimeFractionalPercent

ISTIO_METADATA = "istio"
FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
UNKNOWN_SERVICE = "UnknownService"
FROM_REQUEST_PORT = "FROM_REQUEST_PORT"

# redirectCode → Envoy's response code; a code missing here cannot be expressed (ApplyRedirect).
REDIRECT_CODES: Mapping[int, int] = {
    0: RedirectAction.MOVED_PERMANENTLY,
    301: RedirectAction.MOVED_PERMANENTLY,
    302: RedirectAction.FOUND,
    303: RedirectAction.SEE_OTHER,
    307: RedirectAction.TEMPORARY_REDIRECT,
    308: RedirectAction.PERMANENT_REDIRECT,
}
# The scheme's own port, which a redirect leaves out of the URL.
DEFAULT_PORTS: Mapping[str, int] = {"http": 80, "https": 443}
# How the decorator names the path a route matches (GetRouteOperation).
OPERATION_PATHS: Mapping[str, Callable[[route_components_pb2.RouteMatch], str]] = {
    "prefix": lambda match: match.prefix + "*",
    "path": lambda match: match.path,
    "safe_regex": lambda match: match.safe_regex.regex,
}

HashLookup = Callable[[HTTPRouteDestination], ConsistentHashLB | None]


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """Istio ``RouteOptions`` plus what ``TranslateRoute`` reads from the proxy and the push."""

    proxy: Proxy
    listener_port: int
    gateway_names: frozenset[str]
    services: Mapping[str, Service]  # LookupService: the services routes may name, by hostname
    hash_for: HashLookup  # LookupHash: a destination's consistent-hash settings, if any
    is_tls: bool = False


# ---- the rules of one VirtualService -------------------------------------------------------------


def build_http_routes(service: AppliedVirtualService, options: RouteOptions) -> list[Route]:
    """Istio ``BuildHTTPRoutesForVirtualService``; empty when no rule applies on this port."""
    out: list[Route] = []
    for rule in service.spec.http:
        for match in rule.match or (None,):
            route = translate_route(service, rule, match, options)
            if route is None:
                continue
            out.append(route)
            if is_catch_all(route.match):
                return out
        if not rule.match:
            return out
    return out


def source_matches(match: HTTPMatchRequest | None, proxy: Proxy, gateway_names: frozenset[str]) -> bool:
    """Istio ``sourceMatchHTTP``: the match's gateways, else its source labels and namespace."""
    if match is None:
        return True
    if match.gateways:
        return any(g in gateway_names for g in match.gateways)
    if not all(proxy.labels.get(k) == v for k, v in match.source_labels.items()):
        return False
    return not match.source_namespace or match.source_namespace == proxy.namespace


def translate_route(
    service: AppliedVirtualService, rule: HTTPRoute, match: HTTPMatchRequest | None, options: RouteOptions
) -> Route | None:
    """Istio ``TranslateRoute``; ``None`` when the match excludes this listener or proxy."""
    if match is not None and match.port and match.port != options.listener_port:
        return None
    if not source_matches(match, options.proxy, options.gateway_names):
        return None
    name = f"{rule.name}.{match.name}" if match is not None and match.name else rule.name
    out = Route(name=name, match=route_match(match), metadata=config_metadata(service))
    if options.proxy.type == ProxyType.ROUTER and rule.route:
        add_kong_metadata(out, rule.name, rule.route[0].destination.host)
    if match is not None and match.stat_prefix:
        out.stat_prefix = match.stat_prefix
    operations = header_operations(rule.headers) if rule.headers is not None else HeaderOperationsOut()
    add_header_operations(out, operations)
    if not apply_action(out, rule, operations.authority, options):
        return None
    out.decorator.operation = route_operation(out, service.name, options.listener_port)
    add_filter_configs(out, rule)
    return out


def apply_action(out: Route, rule: HTTPRoute, authority: str, options: RouteOptions) -> bool:
    """Redirect, direct response or forwarding; ``False`` when the action cannot be built."""
    if rule.redirect is not None:
        redirect = redirect_action(rule.redirect, options.listener_port, options.is_tls)
        if redirect is None:
            return False
        out.redirect.CopyFrom(redirect)
    elif rule.direct_response is not None:
        out.direct_response.CopyFrom(direct_response_action(rule.direct_response))
    else:
        apply_destination(out, rule, authority, options)
    return True


def config_metadata(service: AppliedVirtualService) -> base_pb2.Metadata:
    """Istio ``util.BuildConfigInfoMetadata``: which VirtualService made the route."""
    istio = struct_pb2.Struct()
    istio.update({"config": service.config_path})
    return base_pb2.Metadata(filter_metadata={ISTIO_METADATA: istio})


def add_kong_metadata(out: Route, name: str, host: str) -> None:
    """The route's name and destination host for Kong's plugin scopes (route, service), read by
    the Check server through ext_authz ``route_metadata_context_namespaces`` (kong/check.py)."""
    kong = struct_pb2.Struct()
    kong.update({"route": name, "service": host})
    out.metadata.filter_metadata[KONG_METADATA].CopyFrom(kong)


def add_header_operations(out: Route, operations: HeaderOperationsOut) -> None:
    out.request_headers_to_add.extend(operations.request_add)
    out.response_headers_to_add.extend(operations.response_add)
    out.request_headers_to_remove.extend(operations.request_remove)
    out.response_headers_to_remove.extend(operations.response_remove)


def add_filter_configs(out: Route, rule: HTTPRoute) -> None:
    """Fault injection and CORS as per-route configuration of their HTTP filters."""
    fault = fault_filter_config(rule.fault) if rule.fault is not None else None
    if fault is not None:
        out.typed_per_filter_config[FAULT_FILTER].CopyFrom(packed(fault))
    if rule.cors_policy is not None:
        out.typed_per_filter_config[CORS_FILTER].CopyFrom(packed(cors_filter_config(rule.cors_policy)))


def route_operation(route: Route, service_name: str, port: int) -> str:
    """Istio ``GetRouteOperation``: ``host:port/path`` for one cluster, else ``vs:port/path``."""
    specifier = route.match.WhichOneof("path_specifier")
    path = OPERATION_PATHS[specifier](route.match) if specifier in OPERATION_PATHS else "/*"
    key = parse_cluster_name(route.route.cluster) if route.WhichOneof("action") == "route" else None
    if key is not None:
        return f"{key.hostname}:{key.port}{path}"
    return f"{service_name}:{port}{path}"


# ---- forwarding (applyHTTPRouteDestination) --------------------------------------------------------


def apply_destination(out: Route, rule: HTTPRoute, authority: str, options: RouteOptions) -> None:
    action = out.route
    set_timeout(action, rule.timeout)
    authority = apply_rewrite(action, rule) or authority
    if authority:
        action.host_rewrite_literal = authority
    action.request_mirror_policies.extend(mirror_policies(rule, options))
    consistent_hash = False
    if len(rule.route) == 1:
        destination = rule.route[0]
        set_single_destination(out, destination, options)
        consistent_hash = options.hash_for(destination) is not None
    else:
        set_weighted_destinations(action, rule.route, options)
    policy = retry_policy(rule.retries, consistent_hash)
    if policy is not None:
        action.retry_policy.CopyFrom(policy)


def apply_rewrite(action: RouteAction, rule: HTTPRoute) -> str:
    """The uri rewrite on ``action``; returns the authority rewrite, if any."""
    rewrite = rule.rewrite
    if rewrite is None:
        return ""
    if rewrite.uri_regex_rewrite is not None:
        action.regex_rewrite.pattern.CopyFrom(regex_pb2.RegexMatcher(regex=rewrite.uri_regex_rewrite.match))
        action.regex_rewrite.substitution = rewrite.uri_regex_rewrite.rewrite
    elif rewrite.uri:
        action.prefix_rewrite = rewrite.uri
    return rewrite.authority


def destination_cluster(destination: Destination, service: Service | None, listener_port: int) -> str:
    """Istio ``GetDestinationCluster``."""
    if not destination.host:
        return UNKNOWN_SERVICE
    port = listener_port
    if destination.port is not None:
        port = destination.port.number
    elif service is not None and len(service.ports) == 1:
        port = service.ports[0].number
    return outbound_cluster_name(destination.host, port, destination.subset)


def cluster_for(destination: Destination, options: RouteOptions) -> str:
    return destination_cluster(destination, options.services.get(destination.host), options.listener_port)


def mirror_policies(rule: HTTPRoute, options: RouteOptions) -> Iterator[RequestMirrorPolicy]:
    """``mirror`` (with its percentage) and every ``mirrors`` entry that mirrors anything."""
    targets: list[tuple[Destination, RuntimeFractionalPercent | None]] = []
    if rule.mirror is not None:
        targets.append((rule.mirror, mirror_fraction(rule)))
    targets.extend((m.destination, mirror_policy_fraction(m)) for m in rule.mirrors)
    for destination, fraction in targets:
        if fraction is not None:
            yield request_mirror_policy(cluster_for(destination, options), fraction)


def set_single_destination(out: Route, destination: HTTPRouteDestination, options: RouteOptions) -> None:
    """Istio ``processDestination``: per-destination headers join the route's."""
    target = destination.destination
    action = out.route
    action.cluster = cluster_for(target, options)
    if destination.headers is not None:
        operations = header_operations(destination.headers)
        add_header_operations(out, operations)
        if operations.authority and not action.HasField("host_rewrite_literal"):
            action.host_rewrite_literal = operations.authority
    action.hash_policy.extend(hash_policies(options.hash_for(destination)))


def set_weighted_destinations(
    action: RouteAction, destinations: Sequence[HTTPRouteDestination], options: RouteOptions
) -> None:
    """Istio ``processWeightedDestination`` for every destination of non-zero weight."""
    weighted = WeightedCluster()
    for destination in destinations:
        if destination.weight == 0:
            continue
        weighted.clusters.append(cluster_weight(destination, options))
        action.hash_policy.extend(hash_policies(options.hash_for(destination)))
    action.weighted_clusters.CopyFrom(weighted)


def cluster_weight(destination: HTTPRouteDestination, options: RouteOptions) -> ClusterWeight:
    out = ClusterWeight(name=cluster_for(destination.destination, options))
    out.weight.value = destination.weight
    if destination.headers is not None:
        operations = header_operations(destination.headers)
        out.request_headers_to_add.extend(operations.request_add)
        out.response_headers_to_add.extend(operations.response_add)
        out.request_headers_to_remove.extend(operations.request_remove)
        out.response_headers_to_remove.extend(operations.response_remove)
        if operations.authority:
            out.host_rewrite_literal = operations.authority
    return out


# ---- redirect and direct response ----------------------------------------------------------------


def redirect_action(redirect: HTTPRedirect, listener_port: int, is_tls: bool) -> RedirectAction | None:
    """Istio ``ApplyRedirect``; ``None`` for a redirect code Envoy cannot express."""
    code = REDIRECT_CODES.get(redirect.redirect_code)
    if code is None:
        return None
    out = RedirectAction(host_redirect=redirect.authority, response_code=code)
    if redirect.prefix_rewrite:
        out.prefix_rewrite = redirect.prefix_rewrite
    else:
        out.path_redirect = redirect.uri
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme
    if redirect.port is not None or redirect.derive_port is not None:
        out.port_redirect = redirect_port(redirect, listener_port, is_tls)
    return out


def redirect_port(redirect: HTTPRedirect, listener_port: int, is_tls: bool) -> int:
    """The explicit port, or the request's (``FROM_REQUEST_PORT``); 0 — no port in the URL —
    for the scheme's default port and for ``FROM_PROTOCOL_DEFAULT``."""
    if redirect.derive_port is not None:
        port = listener_port if redirect.derive_port == FROM_REQUEST_PORT else 0
    else:
        port = redirect.port or 0
    scheme = redirect.scheme or ("https" if is_tls else "http")
    return 0 if DEFAULT_PORTS.get(scheme) == port else port


def direct_response_action(response: HTTPDirectResponse) -> route_components_pb2.DirectResponseAction:
    """Istio ``ApplyDirectResponse``: the status and an inline body, text or bytes."""
    out = route_components_pb2.DirectResponseAction(status=response.status)
    body = response.body
    if body is not None and body.bytes is not None:
        out.body.inline_bytes = base64.b64decode(body.bytes)
    elif body is not None and body.string is not None:
        out.body.inline_string = body.string
    return out
