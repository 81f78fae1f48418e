"""Issue "Registry and datastore" item 5: the health check a ServiceEntry annotation asks for,
as ``health_checks_for`` builds it, ejects a failing endpoint in a real Envoy and brings it back.

The cluster is the checked-in static two-echo cluster with the translated ``health_checks``
added, so this proves the translated check itself, independent of how clusters.py attaches it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from google.protobuf import json_format
from harness import http
from harness.envoy import load_template, render_bootstrap

from pilotfish.config.loader import load_text
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.translate.health import health_checks_for

pytestmark = pytest.mark.e2e

TEMPLATE = Path(__file__).resolve().parents[2] / "envoy" / "static-two-echo.yaml"
ENTRY = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: echo
  namespace: prod
  annotations:
    pilotfish.io/health-check: '{"path": "/healthz", "interval": "100ms", "unhealthyThreshold": 2}'
spec:
  hosts: [echo.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
"""


def translated_checks() -> list[dict]:
    mesh = MeshSnapshot.build(load_text(ENTRY).resources)
    return [
        json_format.MessageToDict(c, preserving_proto_field_name=True)
        for c in health_checks_for(mesh, mesh.services[0])
    ]


def host_flags(envoy, cluster: str = "echo") -> dict[str, str]:
    status = envoy.clusters()[cluster]
    return {
        str(host["address"]["socket_address"]["port_value"]): ",".join(sorted(host["health_status"]))
        for host in status["host_statuses"]
    }


def test_a_failing_endpoint_is_ejected_by_the_translated_check_and_returns(
    echo_factory, envoy_factory
) -> None:
    a, b = echo_factory("a"), echo_factory("b")
    bootstrap, values = render_bootstrap(
        load_template(TEMPLATE), {"echo_a_port": a.port, "echo_b_port": b.port}
    )
    (cluster,) = bootstrap["static_resources"]["clusters"]
    cluster["health_checks"] = translated_checks()
    envoy = envoy_factory(bootstrap, ports=values)
    envoy.wait_for(
        lambda: http.count_by_name(envoy.url(), 10) == Counter({"a": 5, "b": 5}), message="both healthy"
    )

    a.configure(fail_rate=1.0)  # /healthz (and everything else) answers 503
    envoy.wait_for(
        lambda: "failed_active_health_check" in host_flags(envoy)[str(a.port)], message="a ejected"
    )
    assert http.count_by_name(envoy.url(), 10) == Counter({"b": 10})
    assert envoy.stat("cluster.echo.membership_healthy") == 1

    a.configure(fail_rate=0.0)
    envoy.wait_for(lambda: http.count_by_name(envoy.url(), 10) == Counter({"a": 5, "b": 5}), message="a back")
