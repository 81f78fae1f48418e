"""Golden files for listeners: config in (``listeners_golden/*.in.yaml``), listeners, inbound
clusters and the RDS names they reference out (``*.out.json``); and the real Envoy accepts them.

Each input names its proxy in a ``# proxy: TYPE NAMESPACE IP [k=v ...]`` line: lower-case keys are
labels, upper-case keys node metadata (``APP_PORTS=9080:19080,9090:19090``).
``PILOTFISH_UPDATE_GOLDEN=1`` rewrites the outputs; review the diff before committing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format
from harness.envoy import envoy_binary
from listeners_builders import HCM, client
from translate_builders import snapshot

from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate import translate_clusters
from pilotfish.xds.translate.inbound import translate_inbound_clusters
from pilotfish.xds.translate.listeners import route_names, translate_listeners

GOLDEN = Path(__file__).parent / "listeners_golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))
PROXY_LINE = re.compile(r"^# proxy: (sidecar|router) (\S+) (\S+)((?: \S+=\S+)*)$", re.MULTILINE)
UPDATE = os.environ.get("PILOTFISH_UPDATE_GOLDEN") == "1"


def proxy_of(text: str) -> Proxy:
    match = PROXY_LINE.search(text)
    assert match, "a golden input needs a '# proxy: TYPE NAMESPACE IP [k=v ...]' line"
    kind, namespace, ip, rest = match.groups()
    pairs = dict(item.split("=", 1) for item in rest.split())
    labels = {k: v for k, v in pairs.items() if not k.isupper()}
    metadata = {k: v for k, v in pairs.items() if k.isupper() and k != "APP_PORTS"}
    app_ports = (
        dict(map(int, p.split(":")) for p in pairs["APP_PORTS"].split(",")) if "APP_PORTS" in pairs else {}
    )
    return client(namespace, labels, ip, ProxyType(kind), app_ports, **metadata)


def translated(case: str):
    text = (GOLDEN / f"{case}.in.yaml").read_text()
    snap, proxy = snapshot(text), proxy_of(text)
    return snap, proxy, translate_listeners(snap, proxy), translate_inbound_clusters(snap, proxy)


def render(case: str) -> str:
    _, _, listeners, clusters = translated(case)
    document = {
        "listeners": [json.loads(json_format.MessageToJson(m, sort_keys=True)) for m in listeners],
        "inbound_clusters": [json.loads(json_format.MessageToJson(m, sort_keys=True)) for m in clusters],
        "route_names": route_names(listeners),
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def test_there_are_golden_cases():
    assert CASES == ["gateway", "gateway-l4", "sidecar", "sidecar-scoped", "sidecar-tcp"]


@pytest.mark.parametrize("case", CASES)
def test_golden(case):
    rendered = render(case)
    expected_path = GOLDEN / f"{case}.out.json"
    if UPDATE:
        expected_path.write_text(rendered)
    assert expected_path.exists(), f"no {expected_path.name}; run with PILOTFISH_UPDATE_GOLDEN=1"
    assert rendered == expected_path.read_text()


def bootstrap_for(case: str) -> bootstrap_pb2.Bootstrap:
    """Listeners and clusters as static resources; RDS and EDS over an ADS that validation never
    dials (``--mode validate`` checks the config, not the connection)."""
    snap, proxy, listeners, inbound = translated(case)
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id, boot.node.cluster = proxy.id, "validate"
    xds = boot.static_resources.clusters.add(name="xds-grpc", type=0)
    xds.connect_timeout.seconds = 1
    xds.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
        _http2_options()
    )
    xds.load_assignment.cluster_name = "xds-grpc"
    endpoint = xds.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    endpoint.address, endpoint.port_value = "127.0.0.1", 15010
    ads = boot.dynamic_resources.ads_config
    ads.api_type, ads.transport_api_version = ads.GRPC, 2  # V3
    ads.grpc_services.add().envoy_grpc.cluster_name = "xds-grpc"
    boot.static_resources.clusters.extend([*translate_clusters(snap, proxy), *inbound])
    boot.static_resources.listeners.extend(listeners)
    return boot


def _http2_options():
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
    from google.protobuf import any_pb2

    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.SetInParent()
    packed = any_pb2.Any()
    packed.Pack(options)
    return packed


def validate(boot: bootstrap_pb2.Bootstrap, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(json_format.MessageToDict(boot)))
    command = [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES)
def test_envoy_accepts_the_translated_listeners(case, tmp_path: Path):
    boot = bootstrap_for(case)
    assert boot.static_resources.listeners, "nothing to validate"
    result = validate(boot, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.e2e
def test_envoy_rejects_a_router_that_is_not_the_last_filter(tmp_path: Path):
    """The check above can fail: Envoy refuses a connection manager whose router is not last."""
    boot = bootstrap_for("sidecar")
    listener = next(item for item in boot.static_resources.listeners if item.name == "127.0.0.12_9080")
    manager = HCM()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    manager.http_filters.insert(0, manager.http_filters.pop())
    listener.filter_chains[0].filters[0].typed_config.Pack(manager)
    result = validate(boot, tmp_path)
    assert result.returncode != 0
    assert "router" in result.stdout + result.stderr
