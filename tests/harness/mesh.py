"""Bootstraps for proxies connected to a pilotfish under test.

``sidecar_bootstrap`` is what ``pilotfish bootstrap --probe-port`` prints: the probe listener
routes each request to the cluster named in its ``x-target-cluster`` header, so a test can send
traffic to any cluster pilotfish pushed (CDS/EDS) before routing exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilotfish.bootstrap import PROBE_HEADER, BootstrapOptions, bootstrap

TARGET_HEADER = PROBE_HEADER


def sidecar_bootstrap(
    xds_port: int,
    *,
    name: str = "productpage",
    namespace: str = "prod",
    labels: Mapping[str, str] | None = None,
    delta: bool = False,
) -> dict[str, Any]:
    opts = BootstrapOptions(
        name,
        namespace,
        dict(labels or {"app": name}),
        xds_port=xds_port,
        delta=delta,
        admin_port=0,
        probe_port="{listener_port}",  # type: ignore[arg-type]  # the harness fills in a free port
    )
    return bootstrap(opts)


def node_id(name: str = "productpage", namespace: str = "prod") -> str:
    return BootstrapOptions(name, namespace).full_node_id()
