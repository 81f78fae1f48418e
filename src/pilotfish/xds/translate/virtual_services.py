"""Which VirtualServices a proxy sees, for the mesh or for a gateway — Istio's VirtualService index.

Theory of operation (istio/istio ``pilot/pkg/model/push_context.go`` ``initVirtualServices``,
``VirtualServicesForGateway``; ``virtualservice.go`` ``resolveVirtualServiceShortnames``,
``resolveGatewayName``, ``mergeVirtualServicesIfNeeded``; ``config/model.go``
``sortConfigByCreationTime``):

1. Short names are resolved in each VirtualService's own namespace: hosts and destination hosts
   (``reviews`` in ``prod`` is ``reviews.prod.svc.cluster.local``), gateway names
   (``gw`` → ``prod/gw``, ``./gw`` → ``prod/gw``, legacy ``gw.ns.svc.cluster.local`` → ``ns/gw``).
2. Delegates (VirtualServices without hosts) are merged into the roots that name them
   (``delegates.py``) and are not indexed themselves.
3. The rest are ordered by name, then namespace (Istio orders by creation time first; pilotfish
   keeps none) and indexed per gateway they bind to (``mesh`` when ``gateways`` is empty) and per
   visibility: private to their namespace (``exportTo: [.]``), exported to named namespaces, or
   public (no exportTo, or ``*``). ``~`` exports to nobody.
4. A proxy in namespace N sees, for gateway G: N's private ones, those exported to N, then the
   public ones — each group in the order of step 3.

The index depends on the snapshot alone, so it is computed once per snapshot
(``MeshSnapshot.derived``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pilotfish.config.hosts import PRIVATE, PUBLIC, resolve_gateway_name, resolve_host
from pilotfish.config.networking.common import Destination
from pilotfish.config.networking.virtual_service import (
    MESH_GATEWAY,
    HTTPMatchRequest,
    HTTPMirrorPolicy,
    HTTPRoute,
    HTTPRouteDestination,
    L4MatchAttributes,
    RouteDestination,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
    VirtualServiceSpec,
)
from pilotfish.config.resource import Resource
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.translate.delegates import delegate_visible, merge_routes

NOBODY = "~"
KIND_PATH = "virtual-service"  # the kind in Istio's config metadata path (CamelCaseToKebabCase)


@dataclass(frozen=True, slots=True)
class AppliedVirtualService:
    """A VirtualService as Istio routes with it: short names resolved, delegates merged in."""

    name: str
    namespace: str
    api_version: str
    spec: VirtualServiceSpec

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def gateways(self) -> tuple[str, ...]:
        """Istio ``getGatewayNames``: the bound gateways, ``mesh`` when none are named."""
        return self.spec.gateways or (MESH_GATEWAY,)

    @property
    def config_path(self) -> str:
        """Istio ``AddConfigInfoMetadata``'s path:
        ``/apis/GROUP/VERSION/namespaces/NS/virtual-service/NAME``."""
        group, _, version = self.api_version.partition("/")
        return f"/apis/{group}/{version}/namespaces/{self.namespace}/{KIND_PATH}/{self.name}"


@dataclass(frozen=True, slots=True)
class VirtualServiceIndex:
    """Istio's ``virtualServiceIndex``: VirtualServices by visibility and gateway."""

    private: Mapping[tuple[str, str], tuple[AppliedVirtualService, ...]] = field(default_factory=dict)
    exported: Mapping[tuple[str, str], tuple[AppliedVirtualService, ...]] = field(default_factory=dict)
    public: Mapping[str, tuple[AppliedVirtualService, ...]] = field(default_factory=dict)


# ---- short names ----------------------------------------------------------------------------------


def _destination(destination: Destination, namespace: str) -> Destination:
    return replace(destination, host=resolve_host(destination.host, namespace))


def _match(match: HTTPMatchRequest, namespace: str) -> HTTPMatchRequest:
    return replace(match, gateways=tuple(resolve_gateway_name(g, namespace) for g in match.gateways))


def _weighted(dest: HTTPRouteDestination, namespace: str) -> HTTPRouteDestination:
    return replace(dest, destination=_destination(dest.destination, namespace))


def _mirror(mirror: HTTPMirrorPolicy, namespace: str) -> HTTPMirrorPolicy:
    return replace(mirror, destination=_destination(mirror.destination, namespace))


def _http_route(route: HTTPRoute, namespace: str) -> HTTPRoute:
    return replace(
        route,
        match=tuple(_match(m, namespace) for m in route.match),
        route=tuple(_weighted(d, namespace) for d in route.route),
        mirror=_destination(route.mirror, namespace) if route.mirror is not None else None,
        mirrors=tuple(_mirror(m, namespace) for m in route.mirrors),
    )


def _l4_match(match: L4MatchAttributes | TLSMatchAttributes, namespace: str) -> Any:
    return replace(match, gateways=tuple(resolve_gateway_name(g, namespace) for g in match.gateways))


def _l4_destination(dest: RouteDestination, namespace: str) -> RouteDestination:
    return replace(dest, destination=_destination(dest.destination, namespace))


def _tcp_route(route: TCPRoute, namespace: str) -> TCPRoute:
    return replace(
        route,
        match=tuple(_l4_match(m, namespace) for m in route.match),
        route=tuple(_l4_destination(d, namespace) for d in route.route),
    )


def _tls_route(route: TLSRoute, namespace: str) -> TLSRoute:
    return replace(
        route,
        match=tuple(_l4_match(m, namespace) for m in route.match),
        route=tuple(_l4_destination(d, namespace) for d in route.route),
    )


def resolve_short_names(spec: VirtualServiceSpec, namespace: str) -> VirtualServiceSpec:
    """Istio ``resolveVirtualServiceShortnames``: hosts, gateways and destinations of the HTTP,
    TLS and TCP rules."""
    return replace(
        spec,
        hosts=tuple(resolve_host(h, namespace) for h in spec.hosts),
        gateways=tuple(resolve_gateway_name(g, namespace) for g in spec.gateways),
        http=tuple(_http_route(r, namespace) for r in spec.http),
        tls=tuple(_tls_route(r, namespace) for r in spec.tls),
        tcp=tuple(_tcp_route(r, namespace) for r in spec.tcp),
    )


def applied(resource: Resource[Any]) -> AppliedVirtualService:
    spec = resolve_short_names(resource.spec, resource.namespace)
    return AppliedVirtualService(resource.name, resource.namespace, resource.api_version, spec)


# ---- delegates (mergeVirtualServicesIfNeeded) -------------------------------------------------------


def is_root(service: AppliedVirtualService) -> bool:
    return any(route.delegate is not None for route in service.spec.http)


def merge_delegates(services: Iterable[AppliedVirtualService]) -> list[AppliedVirtualService]:
    """Istio ``mergeVirtualServicesIfNeeded``: delegates dropped, roots given their routes."""
    services = list(services)
    delegates = {s.key: s for s in services if s.spec.is_delegate}
    out = [s for s in services if not s.spec.is_delegate and not is_root(s)]
    out.extend(
        _merged_root(root, delegates) for root in services if not root.spec.is_delegate and is_root(root)
    )
    return sorted(out, key=order)


def _merged_root(
    root: AppliedVirtualService, delegates: Mapping[tuple[str, str], AppliedVirtualService]
) -> AppliedVirtualService:
    routes: list[HTTPRoute] = []
    for route in root.spec.http:
        if route.delegate is None:
            routes.append(route)
            continue
        key = (route.delegate.namespace or root.namespace, route.delegate.name)
        delegate = delegates.get(key)
        if delegate is None or not delegate_visible(delegate.spec.export_to, key[0], root.namespace):
            continue
        routes.extend(merge_routes(replace(route, delegate=None), delegate.spec.http))
    return replace(root, spec=replace(root.spec, http=tuple(routes)))


# ---- the index ------------------------------------------------------------------------------------


def order(service: AppliedVirtualService) -> tuple[str, str]:
    """Istio ``sortConfigByCreationTime`` without creation times: by name, then namespace."""
    return (service.name, service.namespace)


def visibility(service: AppliedVirtualService) -> tuple[bool, frozenset[str]]:
    """(public, namespaces it is exported to); ``.`` resolves to its own namespace."""
    export_to = set(service.spec.export_to) or {PUBLIC}
    if PUBLIC in export_to:
        return True, frozenset()
    if NOBODY in export_to:
        return False, frozenset()
    return False, frozenset(service.namespace if e == PRIVATE else e for e in export_to)


def index_virtual_services(resources: Iterable[Resource[Any]]) -> VirtualServiceIndex:
    """Istio ``initVirtualServices``."""
    private: dict[tuple[str, str], list[AppliedVirtualService]] = {}
    exported: dict[tuple[str, str], list[AppliedVirtualService]] = {}
    public: dict[str, list[AppliedVirtualService]] = {}
    for service in merge_delegates(applied(r) for r in resources):
        is_public, namespaces = visibility(service)
        for gateway in service.gateways:
            if is_public:
                public.setdefault(gateway, []).append(service)
            for namespace in sorted(namespaces):
                table = private if namespace == service.namespace else exported
                table.setdefault((namespace, gateway), []).append(service)
    return VirtualServiceIndex(
        private={k: tuple(v) for k, v in private.items()},
        exported={k: tuple(v) for k, v in exported.items()},
        public={k: tuple(v) for k, v in public.items()},
    )


def virtual_service_index(snapshot: MeshSnapshot) -> VirtualServiceIndex:
    """The snapshot's VirtualService index, built once and shared by every proxy."""
    return snapshot.derived(_index_of_snapshot)


def _index_of_snapshot(snapshot: MeshSnapshot) -> VirtualServiceIndex:
    return index_virtual_services(snapshot.of_kind("VirtualService"))


def virtual_services_for_gateway(
    index: VirtualServiceIndex, namespace: str, gateway: str
) -> tuple[AppliedVirtualService, ...]:
    """Istio ``VirtualServicesForGateway``: private, then exported, then public."""
    return (
        *index.private.get((namespace, gateway), ()),
        *index.exported.get((namespace, gateway), ()),
        *index.public.get(gateway, ()),
    )
