"""(MeshSnapshot, Proxy, route names) → Envoy RouteConfigurations (RDS), the way istiod builds them.

The listeners name the route configurations they need (``listeners.route_names``); each name is
built on its own (Istio ``pilot/pkg/networking/core/httproute.go`` ``BuildHTTPRoutes``):

- ``"<port>"`` for a sidecar: its outbound routes (``sidecar_routes.py``);
- ``"http.<port>"`` for a gateway: the routes of the VirtualServices bound to the Gateways on
  that port (``gateway_routes.py``); ``"https.<port>.<portName>.<gateway>.<namespace>"`` likewise
  for one HTTPS server (``gateway_tls.py``);
- ``"inbound|<port>||"``: everything to the inbound cluster (``listeners.inbound_route_config``;
  the listeners inline it, so it is only asked for by name if that changes);
- any other name: an empty RouteConfiguration of that name, as Istio answers for a route it cannot
  build (Envoy keeps the listener and answers 404).

Every route's meaning — matches, destinations, retries, faults and the rest — is in
``http_routes.py`` and the modules it names.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.gateway_routes import GATEWAY_ROUTE_PREFIX, gateway_route_configuration
from pilotfish.xds.translate.gateway_tls import HTTPS_ROUTE_PREFIX
from pilotfish.xds.translate.inbound import inbound_ports
from pilotfish.xds.translate.listeners import inbound_route_config
from pilotfish.xds.translate.sidecar_routes import sidecar_route_configuration
from pilotfish.xds.translate.virtual_hosts import RouteConfiguration, empty_route_configuration

INBOUND_PREFIX = "inbound|"


def translate_routes(snapshot: MeshSnapshot, proxy: Proxy, names: Iterable[str]) -> list[RouteConfiguration]:
    """One RouteConfiguration per distinct name, in the order given."""
    return [route_configuration_for(snapshot, proxy, name) for name in dict.fromkeys(names)]


def route_configuration_for(snapshot: MeshSnapshot, proxy: Proxy, name: str) -> RouteConfiguration:
    """The RouteConfiguration ``name`` for ``proxy``; empty when the name means nothing to it."""
    if name.startswith(INBOUND_PREFIX):
        return inbound_configuration(snapshot, proxy, name)
    if proxy.type == ProxyType.ROUTER and name.startswith((GATEWAY_ROUTE_PREFIX, HTTPS_ROUTE_PREFIX)):
        return gateway_route_configuration(snapshot, proxy, name)
    if proxy.type == ProxyType.SIDECAR and name.isascii() and name.isdigit():
        return sidecar_route_configuration(snapshot, proxy, int(name))
    return empty_route_configuration(name)


def inbound_configuration(snapshot: MeshSnapshot, proxy: Proxy, name: str) -> RouteConfiguration:
    """``inbound|<port>||`` by RDS: the configuration the inbound listener otherwise inlines."""
    port = next((p for p in inbound_ports(snapshot, proxy) if p.cluster_name == name), None)
    return inbound_route_config(port) if port is not None else empty_route_configuration(name)
