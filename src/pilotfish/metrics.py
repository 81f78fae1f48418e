"""Prometheus collectors. The only module that imports prometheus_client; everything else
reports through the plain hook methods of ``Metrics`` (so cores stay free of metrics code)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache, partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

# Istio's names where Istio has one (pilot/pkg/xds/monitoring.go), prefixed pilotfish_.
_PUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30)
# ext_authz Check latency: the budget is ~1 ms p50 / 3 ms p99 added through Envoy.
_TRANSLATE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
_CHECK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1, 0.5)


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
        self.rejected = Gauge(
            "pilotfish_xds_rejected_resources",
            "Resources a connected proxy rejected and was not sent again since, by type",
            ["type"],
            registry=r,
        )
        self.dropped_endpoints = Gauge(
            "pilotfish_xds_endpoints_dropped",
            "Endpoints left out of xDS because Envoy would reject them (see /debug/problemz)",
            registry=r,
        )
        self.convergence = Histogram(
            "pilotfish_proxy_convergence_time_seconds",
            "Config change to proxy ACK",
            ["type"],
            buckets=_PUSH_BUCKETS,
            registry=r,
        )
        # ``labels()`` validates and locks on every call; a push to 1,000 proxies counts 1,000
        # pushes and 1,000 ACKs, so the few children (one per type) are looked up once.
        self._push_child = cache(self.pushes.labels)
        self._convergence_child = cache(self.convergence.labels)
        self.config_errors = Gauge(
            "pilotfish_config_validation_errors",
            "Validation errors in the config currently on disk",
            registry=r,
        )
        self.config_rejections = Counter(
            "pilotfish_config_rejected_documents", "Documents rejected by validation since start", registry=r
        )
        self.store_up = Gauge(
            "pilotfish_store_up", "1 when the last datastore call succeeded, 0 during an outage", registry=r
        )
        self.store_up.set(1)
        self.task_failures = Counter(
            "pilotfish_task_failures",
            "Background task failures (each is logged with its traceback and restarted)",
            ["task"],
            registry=r,
        )

        self.authz_checks = Counter(
            "pilotfish_authz_checks",
            "ext_authz Check decisions",
            ["decision", "reason", "policy"],
            registry=r,
        )
        self.authz_check_seconds = Histogram(
            "pilotfish_authz_check_duration_seconds",
            "Time to decide one ext_authz Check, parse to response",
            buckets=_CHECK_BUCKETS,
            registry=r,
        )
        self.jwks_fetches = Counter(
            "pilotfish_authz_jwks_fetches", "JWKS fetches by result (ok, error)", ["result"], registry=r
        )
        self.token_cache = Counter(
            "pilotfish_authz_token_cache_lookups",
            "Verified-JWT cache lookups (hit, miss)",
            ["result"],
            registry=r,
        )
        self.decision_cache = Counter(
            "pilotfish_authz_decision_cache_lookups",
            "Check answers served again from the decision cache (hit) or decided (miss)",
            ["result"],
            registry=r,
        )
        self.custom_providers = Counter(
            "pilotfish_authz_custom_provider_calls",
            "CUSTOM extension provider calls by provider and result",
            ["provider", "result"],
            registry=r,
        )
        # Certificates: Istio has citadel_server_root_cert_expiry_timestamp and
        # citadel_server_success_cert_issuance_count (security/pkg/server/ca/monitoring.go).
        self.cert_expiry = Gauge(
            "pilotfish_cert_expiry_timestamp_seconds",
            "Unix time at which the certificate currently served under a secret expires",
            ["secret"],
            registry=r,
        )
        # With the expiry, the lifetime: alerts speak of the fraction left (deploy/prometheus).
        self.cert_not_before = Gauge(
            "pilotfish_cert_not_before_timestamp_seconds",
            "Unix time from which the certificate currently served under a secret is valid",
            ["secret"],
            registry=r,
        )
        self.certs_issued = Counter("pilotfish_certs_issued", "Certificates issued", ["kind"], registry=r)
        self.certs_rotated = Counter(
            "pilotfish_certs_rotated", "Certificates replaced before expiry", ["kind"], registry=r
        )
        self.csr_denied = Counter(
            "pilotfish_csr_denied", "CreateCertificate calls refused, by gRPC status", ["reason"], registry=r
        )

        self._xds_scale_metrics(r)

    def _xds_scale_metrics(self, r: CollectorRegistry) -> None:
        """The push pipeline (xds.builder, xds.publisher, server.PushGate)."""
        self.translate_seconds = Histogram(
            "pilotfish_xds_translate_seconds",
            "Time translating one proxy's resources of a type (shared parts count once)",
            ["type"],
            buckets=_TRANSLATE_BUCKETS,
            registry=r,
        )
        self.pushes_skipped = Counter(
            "pilotfish_xds_pushes_skipped", "Proxies not pushed because nothing changed for them", registry=r
        )
        self.push_pass_seconds = Histogram(
            "pilotfish_xds_push_pass_seconds",
            "Time to rebuild and publish every connected proxy's snapshot",
            buckets=_PUSH_BUCKETS,
            registry=r,
        )
        self.push_queue = Gauge(
            "pilotfish_xds_push_queue",
            "ADS streams with a snapshot to push, waiting for or holding a push slot",
            registry=r,
        )

    def on_translate(self, type_name: str, seconds: float) -> None:
        self.translate_seconds.labels(type_name).observe(seconds)

    def on_pushes_skipped(self, count: int) -> None:
        self.pushes_skipped.inc(count)

    def on_push_pass(self, seconds: float, proxies: int) -> None:
        self.push_pass_seconds.observe(seconds)

    def on_push_queue(self, length: int) -> None:
        self.push_queue.set(length)

    def on_connect(self, kind: str) -> None:
        self.connected.labels(kind).inc()

    def on_disconnect(self, kind: str) -> None:
        self.connected.labels(kind).dec()

    def on_push(self, type_name: str) -> None:
        self._push_child(type_name).inc()

    def on_nack(self, type_name: str) -> None:
        self.nacks.labels(type_name).inc()

    def use_rejected_counts(self, source: Callable[[], Mapping[str, int]]) -> None:
        """``pilotfish_xds_rejected_resources`` is read from the push status when scraped."""
        for type_name in ("CDS", "EDS", "LDS", "RDS", "SDS"):
            self.rejected.labels(type_name).set_function(partial(_count_of, source, type_name))

    def on_dropped_endpoints(self, count: int) -> None:
        self.dropped_endpoints.set(count)

    def on_ack_latency(self, type_name: str, seconds: float) -> None:
        self._convergence_child(type_name).observe(seconds)

    def on_config_problems(self, errors: int) -> None:
        self.config_errors.set(errors)
        if errors:
            self.config_rejections.inc(errors)

    def use_authz_workers(self, source: Callable[[], Sequence[dict[str, Any]]]) -> None:
        """Check serving runs in worker processes: replace the in-process authz collectors with
        one that sums the workers' tallies (``extauthz.tally``) when ``/metrics`` is scraped."""
        in_process = (
            self.authz_checks,
            self.authz_check_seconds,
            self.jwks_fetches,
            self.token_cache,
            self.decision_cache,
        )
        for collector in (*in_process, self.custom_providers):
            self.registry.unregister(collector)
        self.registry.register(WorkerAuthzCollector(source))

    def use_proxy_states(self, source: Callable[[], Mapping[str, int]]) -> None:
        """``pilotfish_xds_proxies{state}``: connected proxies by push state (SYNCED, STALE,
        NACKED; ``xds.status.proxy_states``), read from ``source`` when ``/metrics`` is scraped."""
        self.registry.register(ProxyStateCollector(source))

    def on_authz_check(self, decision: str, reason: str, policy: str, seconds: float) -> None:
        """``decision`` allow/deny; ``reason`` a small fixed set; ``policy`` "ns/name" or ""."""
        self.authz_checks.labels(decision, reason, policy).inc()
        self.authz_check_seconds.observe(seconds)

    def on_jwks_fetch(self, ok: bool) -> None:
        self.jwks_fetches.labels("ok" if ok else "error").inc()

    def on_token_cache(self, hit: bool) -> None:
        self.token_cache.labels("hit" if hit else "miss").inc()

    def on_decision_cache(self, hit: bool) -> None:
        self.decision_cache.labels("hit" if hit else "miss").inc()

    def on_custom_provider(self, provider: str, result: str) -> None:
        """``result``: allow, deny, failed_open or failed_closed."""
        self.custom_providers.labels(provider, result).inc()

    def on_task_failure(self, task: str) -> None:
        self.task_failures.labels(task).inc()

    def on_store_up(self, up: bool) -> None:
        self.store_up.set(1 if up else 0)

    # CertHooks (pilotfish.certs.hooks): kind is ca, workload, dns, server or csr.
    def on_cert_issued(self, kind: str) -> None:
        self.certs_issued.labels(kind).inc()

    def on_cert_rotated(self, kind: str) -> None:
        self.certs_rotated.labels(kind).inc()

    def on_cert_expiry(self, secret: str, not_after_unix: float, not_before_unix: float) -> None:
        self.cert_expiry.labels(secret).set(not_after_unix)
        self.cert_not_before.labels(secret).set(not_before_unix)

    def on_cert_forgotten(self, secret: str) -> None:
        """Only for a secret earlier reported through ``on_cert_expiry``."""
        self.cert_expiry.remove(secret)
        self.cert_not_before.remove(secret)

    def on_csr_denied(self, reason: str) -> None:
        self.csr_denied.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def samples(self, prefix: str = "pilotfish_") -> list[tuple[str, dict[str, str], float]]:
        """Every current sample ``(name, labels, value)`` whose name starts with ``prefix``: what
        a scrape would read, as data (the web console's live charts)."""
        return [
            (s.name, dict(s.labels), float(s.value))
            for family in self.registry.collect()
            for s in family.samples
            if s.name.startswith(prefix)
        ]


def _count_of(source: Callable[[], Mapping[str, int]], key: str) -> float:
    return float(source().get(key, 0))


class ProxyStateCollector:
    """Connected proxies by push state, computed at scrape time (the status is the truth)."""

    def __init__(self, source: Callable[[], Mapping[str, int]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "pilotfish_xds_proxies",
            "Connected proxies by push state of their latest responses",
            labels=["state"],
        )
        for state, count in sorted(self.source().items()):
            family.add_metric([state], count)
        yield family


class WorkerAuthzCollector:
    """The authz metric families, summed over the Check workers' ``stats()[i]["metrics"]``."""

    def __init__(self, source: Callable[[], Sequence[dict[str, Any]]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        tallies = [s["metrics"] for s in self.source() if "metrics" in s]
        checks = CounterMetricFamily(
            "pilotfish_authz_checks", "ext_authz Check decisions", labels=["decision", "reason", "policy"]
        )
        totals: Tally[tuple[str, ...]] = Tally()
        for tally in tallies:
            for *key, count in tally["checks"]:
                totals[tuple(key)] += count
        for key, count in sorted(totals.items()):
            checks.add_metric(list(key), count)
        yield checks
        yield _latency(tallies)
        yield _counter("pilotfish_authz_jwks_fetches", "JWKS fetches by result (ok, error)", tallies, "jwks")
        yield _counter(
            "pilotfish_authz_token_cache_lookups",
            "Verified-JWT cache lookups (hit, miss)",
            tallies,
            "token_cache",
        )
        yield _counter(
            "pilotfish_authz_decision_cache_lookups",
            "Check answers served again from the decision cache (hit) or decided (miss)",
            tallies,
            "decision_cache",
        )
        yield _custom_providers(tallies)


def _counter(name: str, doc: str, tallies: list[dict[str, Any]], key: str) -> Metric:
    family = CounterMetricFamily(name, doc, labels=["result"])
    totals: Tally[str] = Tally()
    for tally in tallies:
        totals.update(tally[key])
    for result, count in sorted(totals.items()):
        family.add_metric([result], count)
    return family


def _latency(tallies: list[dict[str, Any]]) -> Metric:
    bounds = list(_CHECK_BUCKETS)
    counts = [0] * (len(bounds) + 1)
    total = 0.0
    for tally in tallies:
        if tally["latency"]["bounds"] == bounds:
            counts = [a + b for a, b in zip(counts, tally["latency"]["counts"], strict=True)]
            total += tally["latency"]["sum"]
    cumulative, buckets = 0, []
    for bound, count in zip([*map(str, bounds), "+Inf"], counts, strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(
        "pilotfish_authz_check_duration_seconds",
        "Time to decide one ext_authz Check, parse to response",
        buckets=buckets,
        sum_value=total,
    )


def _custom_providers(tallies: list[dict[str, Any]]) -> Metric:
    family = CounterMetricFamily(
        "pilotfish_authz_custom_provider_calls",
        "CUSTOM extension provider calls by provider and result",
        labels=["provider", "result"],
    )
    totals: Tally[tuple[str, str]] = Tally()
    for tally in tallies:
        for provider, result, count in tally.get("custom_providers", []):
            totals[(provider, result)] += count
    for (provider, result), count in sorted(totals.items()):
        family.add_metric([provider, result], count)
    return family
