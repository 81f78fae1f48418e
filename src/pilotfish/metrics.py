"""Prometheus collectors. The only module that imports prometheus_client; everything else
reports through the plain hook methods of ``Metrics`` (so cores stay free of metrics code)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Istio's names where Istio has one (pilot/pkg/xds/monitoring.go), prefixed pilotfish_.
_PUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """One registry per server instance, so tests can run several without collisions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connected = Gauge(
            "pilotfish_xds_connected_proxies", "Proxies with an open ADS stream", ["kind"], registry=r
        )
        self.pushes = Counter("pilotfish_xds_pushes", "xDS responses sent", ["type"], registry=r)
        self.nacks = Counter("pilotfish_xds_rejects", "NACKs received from proxies", ["type"], registry=r)
        self.convergence = Histogram(
            "pilotfish_proxy_convergence_time_seconds",
            "Config change to proxy ACK",
            ["type"],
            buckets=_PUSH_BUCKETS,
            registry=r,
        )
        self.config_errors = Gauge(
            "pilotfish_config_validation_errors",
            "Validation errors in the config currently on disk",
            registry=r,
        )
        self.config_rejections = Counter(
            "pilotfish_config_rejected_documents", "Documents rejected by validation since start", registry=r
        )

    def on_connect(self, kind: str) -> None:
        self.connected.labels(kind).inc()

    def on_disconnect(self, kind: str) -> None:
        self.connected.labels(kind).dec()

    def on_push(self, type_name: str) -> None:
        self.pushes.labels(type_name).inc()

    def on_nack(self, type_name: str) -> None:
        self.nacks.labels(type_name).inc()

    def on_ack_latency(self, type_name: str, seconds: float) -> None:
        self.convergence.labels(type_name).observe(seconds)

    def on_config_problems(self, errors: int) -> None:
        self.config_errors.set(errors)
        if errors:
            self.config_rejections.inc(errors)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
