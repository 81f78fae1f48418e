"""Which Sidecar resource configures a proxy, and which services its egress hosts import.

Istio ``pilot/pkg/model/push_context.go`` ``getSidecarScope`` and ``pilot/pkg/model/sidecar.go``
(``ConvertToSidecarScope``, ``convertIstioListenerToWrapper``, ``selectServices``,
``matchingService``):

1. The Sidecar for a proxy: one in the proxy's namespace whose workloadSelector selects it, else
   the proxy's namespace's Sidecar without a selector, else the root namespace's. Gateways
   (routers) never get one. Sidecars are taken in name order (Istio: creation time first).
2. A Sidecar without egress listeners behaves as one catch-all listener importing ``*/*``.
3. Egress hosts are ``namespace/dnsName``: ``.`` is the proxy's namespace, ``*`` any namespace,
   ``~`` none. A service is imported when its hostname is within the dnsName (``host.SubsetOf``)
   of an entry for its own namespace — or, when its namespace has no entry, of a ``*/`` entry.
   Egress hosts only narrow what the proxy may see: they never widen a service's exportTo.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pilotfish.config import checks
from pilotfish.config.networking.sidecar import IstioEgressListener
from pilotfish.config.resource import Resource
from pilotfish.registry.model import Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.endpoints import visible_services

ANY_NAMESPACE = "*"
CURRENT_NAMESPACE = "."
NO_NAMESPACE = "~"
CATCH_ALL = IstioEgressListener(hosts=("*/*",))


def sidecar_for(snapshot: MeshSnapshot, proxy: Proxy) -> Resource[Any] | None:
    """Istio ``getSidecarScope``: the Sidecar resource that configures ``proxy``, if any."""
    if proxy.type != ProxyType.SIDECAR:
        return None
    sidecars = sorted(snapshot.of_kind("Sidecar"), key=lambda r: (r.name, r.namespace))
    own = [s for s in sidecars if s.namespace == proxy.namespace]
    selecting = (s for s in own if _selector_matches(s, proxy))
    namespace_wide = (s for s in own if s.spec.workload_selector is None)
    root = (
        s
        for s in sidecars
        if s.namespace == snapshot.mesh.root_namespace and s.spec.workload_selector is None
    )
    return next(selecting, None) or next(namespace_wide, None) or next(root, None)


def _selector_matches(sidecar: Resource[Any], proxy: Proxy) -> bool:
    selector = sidecar.spec.workload_selector
    return selector is not None and bool(selector.matches(proxy.labels))


def egress_listeners(sidecar: Resource[Any] | None) -> tuple[IstioEgressListener, ...]:
    """The Sidecar's egress listeners; one catch-all ``*/*`` listener when it declares none."""
    egress: tuple[IstioEgressListener, ...] = sidecar.spec.egress if sidecar is not None else ()
    return egress or (CATCH_ALL,)


def hosts_match(a: str, b: str) -> bool:
    """Istio ``host.Name.Matches``: the two (possibly wildcard) hosts overlap."""
    return checks.host_matches(a, b)


def split_host(entry: str, proxy_namespace: str) -> tuple[str, str] | None:
    """``namespace/dnsName`` with ``.`` resolved to the proxy's namespace; ``None`` if malformed."""
    namespace, slash, host = entry.partition("/")
    if not slash:
        return None
    return (proxy_namespace if namespace == CURRENT_NAMESPACE else namespace), host


def host_selects(entry: str, service: Service, proxy_namespace: str) -> bool:
    """Whether one egress host entry imports ``service``."""
    parts = split_host(entry, proxy_namespace)
    if parts is None or parts[0] == NO_NAMESPACE:
        return False
    namespace, host = parts
    in_namespace = namespace in (ANY_NAMESPACE, service.namespace)
    return in_namespace and checks.host_subset_of(service.hostname, host)


def egress_services(services: Iterable[Service], hosts: Sequence[str], proxy_namespace: str) -> list[Service]:
    """Istio ``selectServices``: entries for a service's own namespace decide for it; ``*/``
    entries only for services whose namespace has no entry."""
    parsed = [p for p in (split_host(h, proxy_namespace) for h in hosts) if p is not None]
    namespaces = {namespace for namespace, _ in parsed}
    out: list[Service] = []
    for service in services:
        scope = service.namespace if service.namespace in namespaces else ANY_NAMESPACE
        imports = [host for namespace, host in parsed if namespace == scope]
        if any(checks.host_subset_of(service.hostname, host) for host in imports):
            out.append(service)
    return out


def scoped_services(snapshot: MeshSnapshot, proxy: Proxy) -> list[Service]:
    """The visible services (``endpoints.visible_services``) any egress listener imports."""
    listeners = egress_listeners(sidecar_for(snapshot, proxy))
    visible = visible_services(snapshot, proxy)
    selected = {
        id(s) for egress in listeners for s in egress_services(visible, egress.hosts, proxy.namespace)
    }
    return [s for s in visible if id(s) in selected]
