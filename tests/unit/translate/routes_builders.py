"""Inputs and readers for the route tests: VirtualService / Gateway / Sidecar YAML, route options
for one VirtualService, and lookups into translated RouteConfigurations."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping

from translate_builders import proxy

from pilotfish.config.loader import load_text
from pilotfish.registry.model import Service, ServicePort
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.http_routes import RouteOptions
from pilotfish.xds.translate.virtual_hosts import Route, RouteConfiguration, VirtualHost
from pilotfish.xds.translate.virtual_services import AppliedVirtualService, applied


def resource(kind: str, name: str, namespace: str, body: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{textwrap.indent(textwrap.dedent(body).strip(), "  ")}
"""


def virtual_service(name: str, namespace: str, body: str) -> str:
    return resource("VirtualService", name, namespace, body)


def gateway(name: str, namespace: str, body: str) -> str:
    return resource("Gateway", name, namespace, body)


def sidecar(name: str, namespace: str, body: str) -> str:
    return resource("Sidecar", name, namespace, body)


def applied_vs(body: str, name: str = "vs", namespace: str = "prod") -> AppliedVirtualService:
    """One VirtualService through the real loader (it must be valid), short names resolved."""
    result = load_text(virtual_service(name, namespace, body))
    assert not result.errors, [str(p) for p in result.errors]
    (loaded,) = result.resources
    return applied(loaded)


def service(host: str, *ports: int, namespace: str = "prod", protocol: str = "HTTP") -> Service:
    return Service(host, namespace, tuple(ServicePort(f"p{p}", p, protocol) for p in ports or (9080,)))


def options(
    port: int = 9080,
    client: Proxy | None = None,
    services: Iterable[Service] = (),
    gateways: Iterable[str] = ("mesh",),
    hashed: Mapping[str, object] | None = None,
    is_tls: bool = False,
) -> RouteOptions:
    """Route options with a hash lookup keyed by destination host (``hashed``)."""
    hashes = dict(hashed or {})
    return RouteOptions(
        client or proxy(),
        port,
        frozenset(gateways),
        {s.hostname: s for s in services},
        lambda destination: hashes.get(destination.destination.host),  # type: ignore[arg-type,return-value]
        is_tls,
    )


def host_named(config: RouteConfiguration, name: str) -> VirtualHost:
    found = [h for h in config.virtual_hosts if h.name == name]
    assert found, f"no virtual host {name!r} in {[h.name for h in config.virtual_hosts]}"
    return found[0]


def host_names(config: RouteConfiguration) -> list[str]:
    return [h.name for h in config.virtual_hosts]


def route_names(routes: Iterable[Route]) -> list[str]:
    return [r.name for r in routes]
