"""The real Envoy accepts the route configurations we translate: every golden case's
RouteConfigurations, each inlined in a listener whose connection manager has the fault, CORS and
router filters (as the listeners build them), through ``envoy --mode validate``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import json_format
from harness.envoy import envoy_binary
from test_routes_golden import CASES, case_routes

from pilotfish.xds.translate.virtual_hosts import RouteConfiguration

pytestmark = pytest.mark.e2e

HTTP_FILTERS = (
    ("envoy.filters.http.fault", fault_pb2.HTTPFault()),
    ("envoy.filters.http.cors", cors_pb2.Cors()),
    ("envoy.filters.http.router", router_pb2.Router()),
)


def connection_manager(config: RouteConfiguration) -> hcm.HttpConnectionManager:
    manager = hcm.HttpConnectionManager(stat_prefix=f"validate_{config.name}", route_config=config)
    for name, typed in HTTP_FILTERS:
        http_filter = manager.http_filters.add(name=name)
        http_filter.typed_config.Pack(typed)
    return manager


def listener(index: int, config: RouteConfiguration) -> listener_pb2.Listener:
    network_filter = listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager")
    network_filter.typed_config.Pack(connection_manager(config))
    address = address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=0))
    chain = listener_components_pb2.FilterChain(filters=[network_filter])
    return listener_pb2.Listener(name=f"validate_{index}", address=address, filter_chains=[chain])


def bootstrap(configs: list[RouteConfiguration]) -> bootstrap_pb2.Bootstrap:
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id = "sidecar~127.0.0.1~validate.prod~prod.svc.cluster.local"
    boot.node.cluster = "validate"
    boot.static_resources.listeners.extend(listener(i, c) for i, c in enumerate(configs))
    return boot


def validate(boot: bootstrap_pb2.Bootstrap, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(json_format.MessageToDict(boot)))
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("case", CASES)
def test_envoy_accepts_the_translated_route_configurations(case, tmp_path: Path):
    configs = case_routes(case)
    assert any(config.virtual_hosts for config in configs), "nothing to validate"
    result = validate(bootstrap(configs), tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "OK" in result.stdout + result.stderr


def test_envoy_rejects_a_broken_route(tmp_path: Path):
    """The check above can fail: Envoy rejects a route whose regex does not compile."""
    configs = case_routes(CASES[0])
    broken = next(c for c in configs if c.virtual_hosts)
    route = broken.virtual_hosts[0].routes.add(name="broken")
    route.match.safe_regex.regex = "(unclosed"
    route.direct_response.CopyFrom(route_components_pb2.DirectResponseAction(status=200))
    result = validate(bootstrap(configs), tmp_path)
    assert result.returncode != 0
