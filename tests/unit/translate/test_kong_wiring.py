"""Kong's plugins put the ext_authz filter on gateways (not sidecars), name the gateway to the
Check server, forward the route metadata that names the route and its destination, and native
mode falls back to ext_authz for such a gateway, saying why."""

from __future__ import annotations

from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from test_authz_wiring import BOOKINFO, GATEWAY, PRODUCTPAGE, managers, resources

from pilotfish.config.loader import load_text
from pilotfish.kong.check import KONG_METADATA, PROXY_TYPE_KEY
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.translate.authz import EXT_AUTHZ_FILTER, enforcement

PLUGIN = """---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {name: key-auth, namespace: default}
spec: {plugin: key-auth}
"""


def ext_authz(manager: http_connection_manager_pb2.HttpConnectionManager) -> ext_authz_pb2.ExtAuthz | None:
    for f in manager.http_filters:
        if f.name == EXT_AUTHZ_FILTER:
            config = ext_authz_pb2.ExtAuthz()
            f.typed_config.Unpack(config)
            return config
    return None


def test_a_plugin_puts_ext_authz_on_the_gateway_only() -> None:
    gateway = managers(resources(PLUGIN, GATEWAY))
    assert gateway and all(ext_authz(m) is not None for m in gateway.values())
    config = ext_authz(next(iter(gateway.values())))
    assert config is not None
    assert list(config.route_metadata_context_namespaces) == [KONG_METADATA]
    assert {h.key: h.value for h in config.grpc_service.initial_metadata}[PROXY_TYPE_KEY] == "router"
    sidecar = managers(resources(PLUGIN, PRODUCTPAGE))
    assert all(ext_authz(m) is None for m in sidecar.values())
    assert all(ext_authz(m) is None for m in managers(resources("", GATEWAY)).values())


def test_gateway_routes_carry_their_name_and_destination() -> None:
    found = resources(PLUGIN, GATEWAY)
    routes = [r for r in found if r.DESCRIPTOR.name == "RouteConfiguration"]
    kong = [
        dict(route.metadata.filter_metadata[KONG_METADATA])
        for config in routes
        for host in config.virtual_hosts
        for route in host.routes
        if KONG_METADATA in route.metadata.filter_metadata
    ]
    assert kong and all(set(k) == {"route", "service"} for k in kong)
    assert any(k["service"].startswith("productpage") for k in kong)


def test_native_mode_falls_back_for_a_gateway_with_plugins() -> None:
    loaded = load_text(BOOKINFO + PLUGIN)
    snap = MeshSnapshot.build(loaded.resources, authz_address=("127.0.0.1", 9191), authz_mode="native")
    mode, fallback = enforcement(snap, GATEWAY)
    assert mode == "ext_authz" and fallback is not None and "Kong" in fallback
    disabled = load_text(BOOKINFO + PLUGIN.replace("plugin: key-auth", "plugin: key-auth, enabled: false"))
    snap = MeshSnapshot.build(disabled.resources, authz_address=("127.0.0.1", 9191))
    assert enforcement(snap, GATEWAY)[0] == "none"
