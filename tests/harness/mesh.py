"""Bootstraps for proxies connected to a pilotfish under test.

``sidecar_bootstrap`` is exactly what ``pilotfish bootstrap`` prints, plus one static "probe"
listener that routes each request to the cluster named in its ``x-target-cluster`` header, so a
test can send traffic to any cluster pilotfish pushed (CDS/EDS) before routing exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilotfish.bootstrap import BootstrapOptions, bootstrap

TARGET_HEADER = "x-target-cluster"


def probe_listener(port: object = "{listener_port}") -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "probe",
        "route_config": {
            "name": "probe",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster_header": TARGET_HEADER, "timeout": "15s"},
                        }
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": "probe",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def sidecar_bootstrap(
    xds_port: int,
    *,
    name: str = "productpage",
    namespace: str = "prod",
    labels: Mapping[str, str] | None = None,
    delta: bool = False,
) -> dict[str, Any]:
    opts = BootstrapOptions(
        name, namespace, dict(labels or {"app": name}), xds_port=xds_port, delta=delta, admin_port=0
    )
    out = bootstrap(opts)
    out["static_resources"]["listeners"] = [probe_listener()]
    return out


def node_id(name: str = "productpage", namespace: str = "prod") -> str:
    return BootstrapOptions(name, namespace).full_node_id()
