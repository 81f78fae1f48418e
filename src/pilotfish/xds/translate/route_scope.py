"""What one outbound route configuration of a sidecar may contain: the services and the
VirtualServices the egress listener for its port imports — Istio's ``IstioEgressListenerWrapper``.

Istio ``pilot/pkg/model/sidecar.go`` (``GetEgressListenerForRDS``, ``convertIstioListenerToWrapper``,
``selectServices``, ``needsPortMatch``, ``DefaultSidecarScopeForNamespace``) and
``virtualservice.go`` ``SelectVirtualServices``:

1. The Sidecar that configures the proxy and its egress listeners come from ``sidecar_scope.py``
   (no Sidecar: one catch-all listener importing ``*/*``).
2. Route configuration ``"<port>"`` uses the first egress listener without a port (the catch-all,
   which validation keeps last) or the first whose port is that port.
3. Its services are the ones exported to the proxy's namespace that its hosts import
   (``sidecar_scope.egress_services``); a listener with a port (other than an HTTP proxy port)
   keeps only services that have it. Of one hostname from several namespaces, the proxy's own
   namespace wins, else the first.
4. Its VirtualServices are those bound to ``mesh`` and visible to the proxy's namespace
   (``virtual_services.py``) one of whose hosts overlaps an import of the VirtualService's own
   namespace or a ``*/`` import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pilotfish.config import checks
from pilotfish.config.networking.sidecar import IstioEgressListener
from pilotfish.registry.model import Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.sidecar_scope import egress_listeners, egress_services, sidecar_for
from pilotfish.xds.translate.virtual_services import (
    AppliedVirtualService,
    virtual_service_index,
    virtual_services_for_gateway,
)

ANY_NAMESPACE = "*"
CURRENT_NAMESPACE = "."
MESH_GATEWAY = "mesh"
HTTP_PROXY = "HTTP_PROXY"
REGISTRY_ONLY = "REGISTRY_ONLY"


@dataclass(frozen=True, slots=True)
class EgressScope:
    """One egress listener as route building sees it."""

    services: tuple[Service, ...]
    virtual_services: tuple[AppliedVirtualService, ...]


def egress_listener_for_port(
    listeners: Sequence[IstioEgressListener], port: int
) -> IstioEgressListener | None:
    """Istio ``GetEgressListenerForRDS`` for a TCP port."""
    for listener in listeners:
        if listener.port is None or listener.port.number in (0, port):
            return listener
    return None


def required_port(listener: IstioEgressListener) -> int:
    """Istio ``needsPortMatch``: the port imported services must have; 0 for any."""
    port = listener.port
    if port is None or port.protocol.upper() == HTTP_PROXY:
        return 0
    return port.number


def imports_by_namespace(listener: IstioEgressListener, proxy_namespace: str) -> dict[str, list[str]]:
    """The listener's hosts grouped by (resolved) namespace."""
    out: dict[str, list[str]] = {}
    for entry in listener.hosts:
        namespace, slash, host = entry.partition("/")
        if slash:
            out.setdefault(proxy_namespace if namespace == CURRENT_NAMESPACE else namespace, []).append(host)
    return out


def listener_services(
    services: Iterable[Service], listener: IstioEgressListener, proxy_namespace: str
) -> tuple[Service, ...]:
    """Istio ``selectServices``: imported, with the listener's port, one per hostname."""
    port = required_port(listener)
    imported = [
        s for s in egress_services(services, listener.hosts, proxy_namespace) if not port or s.port(port)
    ]
    chosen: dict[str, Service] = {}
    for service in imported:
        if service.hostname not in chosen or service.namespace == proxy_namespace:
            chosen[service.hostname] = service
    return tuple(s for s in imported if chosen[s.hostname] is s)


def listener_virtual_services(
    services: Iterable[AppliedVirtualService], imports: Mapping[str, Sequence[str]]
) -> tuple[AppliedVirtualService, ...]:
    """Istio ``SelectVirtualServices`` (host overlap, checked against both import groups)."""

    def overlaps(service: AppliedVirtualService, hosts: Sequence[str]) -> bool:
        return any(checks.host_matches(h, i) for h in service.spec.hosts for i in hosts)

    return tuple(
        s
        for s in services
        if overlaps(s, imports.get(s.namespace, ())) or overlaps(s, imports.get(ANY_NAMESPACE, ()))
    )


def egress_scope(snapshot: MeshSnapshot, proxy: Proxy, port: int) -> EgressScope | None:
    """What route configuration ``"<port>"`` of ``proxy`` may contain; ``None`` when no egress
    listener covers the port."""
    listener = egress_listener_for_port(egress_listeners(sidecar_for(snapshot, proxy)), port)
    if listener is None:
        return None
    exported = [s for s in snapshot.services if s.visible_from(proxy.namespace)]
    mesh = virtual_services_for_gateway(virtual_service_index(snapshot), proxy.namespace, MESH_GATEWAY)
    imports = imports_by_namespace(listener, proxy.namespace)
    return EgressScope(
        listener_services(exported, listener, proxy.namespace), listener_virtual_services(mesh, imports)
    )


def outbound_traffic_mode(snapshot: MeshSnapshot, proxy: Proxy) -> str:
    """``REGISTRY_ONLY`` or ``ALLOW_ANY``: the Sidecar's outboundTrafficPolicy, else the mesh's."""
    sidecar = sidecar_for(snapshot, proxy)
    policy = sidecar.spec.outbound_traffic_policy if sidecar is not None else None
    return str(policy.mode if policy is not None else snapshot.mesh.outbound_traffic_policy.mode)
