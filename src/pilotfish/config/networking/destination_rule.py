"""DestinationRule (networking.istio.io): what happens to traffic after routing — load balancing,
connection pools, outlier detection, client TLS — for a host, its subsets and its ports.

Fields: istio/api ``networking/v1alpha3/destination_rule.proto`` (identical in v1alpha3, v1beta1
and v1). Rules: istio/istio ``pkg/config/validation/validation.go`` (``ValidateDestinationRule``,
``validateTrafficPolicy``, ``validateOutlierDetection``, ``validateConnectionPool``,
``validateLoadBalancer``, ``validatePortTrafficPolicies``, ``validateTunnelSettings``,
``validateSubset``), ``validation/agent`` (``ValidateTLS``, ``ValidateLocalityLbSetting``) and the
CRD's schema and CEL rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pilotfish.config import checks
from pilotfish.config.decode import Int32, IntRange, Message, Path, UInt32, UInt64, field
from pilotfish.config.names import camel_to_snake
from pilotfish.config.networking.common import (
    PortSelector,
    subset_name,
    validate_export_to,
    validate_workload_selector,
)
from pilotfish.config.resource import Finding, Resource
from pilotfish.config.selector import WorkloadSelector

# ---- connection pool -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcpKeepalive(Message):
    probes: UInt32 = 0
    time: timedelta | None = None
    interval: timedelta | None = None


@dataclass(frozen=True, slots=True)
class TCPSettings(Message):
    max_connections: Int32 = 0
    connect_timeout: timedelta | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: timedelta | None = None
    idle_timeout: str = ""  # a duration; the CRD has no duration() rule for it, so it stays text


@dataclass(frozen=True, slots=True)
class HTTP2KeepAlive(Message):
    interval: timedelta | None = None
    timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class HTTPSettings(Message):
    http1_max_pending_requests: Int32 = 0
    http2_max_requests: Int32 = 0
    max_requests_per_connection: Int32 = 0
    max_retries: Int32 = 0
    idle_timeout: timedelta | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] = "DEFAULT"
    use_client_protocol: bool = False
    max_concurrent_streams: Int32 = 0
    http2_keep_alive: HTTP2KeepAlive | None = None


@dataclass(frozen=True, slots=True)
class ConnectionPoolSettings(Message):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


# ---- load balancing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CookieAttribute(Message):
    name: str = field(required=True)
    value: str = ""


@dataclass(frozen=True, slots=True)
class HTTPCookie(Message):
    name: str = field(required=True)
    path: str = ""
    ttl: str = ""  # a duration; the CRD has no duration() rule for it, so it stays text
    attributes: tuple[CookieAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class RingHash(Message):
    minimum_ring_size: UInt64 = 0


@dataclass(frozen=True, slots=True)
class MagLev(Message):
    table_size: UInt64 = 0


@dataclass(frozen=True, slots=True)
class ConsistentHashLB(Message):
    """Hash on one request property (the first group) with ring hash or Maglev (the second)."""

    ONEOFS = (
        ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"),
        ("ringHash", "maglev"),
    )

    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: UInt64 = 0  # deprecated: use ringHash

    @property
    def has_hash_key(self) -> bool:
        keys = (self.http_header_name, self.http_cookie, self.use_source_ip, self.http_query_parameter_name)
        return any(key is not None for key in keys)


@dataclass(frozen=True, slots=True)
class LocalityDistribute(Message):
    from_: str = ""
    to: Mapping[str, UInt32] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LocalityFailover(Message):
    from_: str = ""
    to: str = ""


@dataclass(frozen=True, slots=True)
class LocalityLoadBalancerSetting(Message):
    distribute: tuple[LocalityDistribute, ...] = ()
    failover: tuple[LocalityFailover, ...] = ()
    failover_priority: tuple[str, ...] = ()
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class ZoneAwareLoadBalancerSetting(Message):
    enabled: bool | None = None
    failover: tuple[LocalityFailover, ...] = ()
    failover_priority: tuple[str, ...] = ()
    min_cluster_size: UInt64 | None = None


@dataclass(frozen=True, slots=True)
class WarmupConfiguration(Message):
    duration: timedelta = field(required=True)
    minimum_percent: float | None = None
    aggression: float | None = None


SimpleLB = Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]


@dataclass(frozen=True, slots=True)
class LoadBalancerSettings(Message):
    ONEOFS = (("simple", "consistentHash"),)

    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    zone_aware_lb_setting: ZoneAwareLoadBalancerSetting | None = None
    warmup_duration_secs: timedelta | None = None
    warmup: WarmupConfiguration | None = None


# ---- outlier detection, TLS, tunnels -------------------------------------------------------------

# The CRD bounds outlier-detection error codes to HTTP statuses.
HttpStatusCode = Annotated[int, IntRange(100, 599, "HTTP status code")]


@dataclass(frozen=True, slots=True)
class OutlierDetection(Message):
    consecutive_errors: Int32 = 0  # deprecated
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive_5xx_errors: UInt32 | None = None
    interval: timedelta | None = None
    base_ejection_time: timedelta | None = None
    max_ejection_percent: Int32 = 0
    min_health_percent: Int32 = 0
    outlier_detection_http_error_codes: tuple[HttpStatusCode, ...] = ()


@dataclass(frozen=True, slots=True)
class ClientTLSSettings(Message):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] = "DISABLE"
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    credential_name: str = ""
    subject_alt_names: tuple[str, ...] = ()
    sni: str = ""
    insecure_skip_verify: bool | None = None
    ca_crl: str = ""


@dataclass(frozen=True, slots=True)
class TunnelSettings(Message):
    target_host: str = field(required=True)
    target_port: UInt32 = field(required=True)
    protocol: str = ""


@dataclass(frozen=True, slots=True)
class ProxyProtocol(Message):
    version: Literal["V1", "V2"] = "V1"


@dataclass(frozen=True, slots=True)
class RetryBudget(Message):
    percent: float | None = None
    min_retry_concurrency: UInt32 = 0
    budget_interval: str = ""  # a duration; the CRD has no duration() rule for it, so it stays text


@dataclass(frozen=True, slots=True)
class PortTrafficPolicy(Message):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy(Message):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None


@dataclass(frozen=True, slots=True)
class Subset(Message):
    name: str = field(required=True)
    labels: Mapping[str, str] = field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True)
class DestinationRuleSpec(Message):
    host: str = field(required=True)
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: WorkloadSelector | None = None

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


# ---- tables --------------------------------------------------------------------------------------

MAGLEV_TABLE_SIZE_LIMIT = 5000011  # Envoy: the table size must be a prime below this
RING_HASH_MAX = 8 * 1024 * 1024  # Envoy RingHashLbConfig.minimum_ring_size <= 8M
TOPOLOGY_LABELS = frozenset(
    {"topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone"}
)
TUNNEL_PROTOCOLS = frozenset({"", "CONNECT", "POST"})
CREDENTIAL_FILES = ("clientCertificate", "privateKey", "caCertificates", "caCrl")


# ---- checks --------------------------------------------------------------------------------------


def _durations(path: Path, **values: timedelta | None) -> Iterator[Finding]:
    for name, value in values.items():
        if value is not None:
            yield from checks.findings(((*path, name), checks.duration(value)))


def _text_durations(path: Path, **values: str) -> Iterator[Finding]:
    for name, value in values.items():
        if value:
            yield from checks.findings(((*path, name), checks.duration_text(value)))


def _non_negative(path: Path, **values: int) -> Iterator[Finding]:
    for name, value in values.items():
        if value < 0:
            yield Finding((*path, name), f"{name} must be non-negative")


def _percent(path: Path, **values: int | float | None) -> Iterator[Finding]:
    for name, value in values.items():
        if value is not None and not 0 <= value <= 100:
            yield Finding((*path, name), f"percentage {value} is not in range 0..100")


def validate_connection_pool(pool: ConnectionPoolSettings | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateConnectionPool`` (also used for Sidecar inbound pools)."""
    if pool is None:
        return
    if pool.http is None and pool.tcp is None:
        yield Finding(path, "connection pool must have at least one field")
    if (http := pool.http) is not None:
        where = (*path, "http")
        yield from _non_negative(
            where,
            http1MaxPendingRequests=http.http1_max_pending_requests,
            http2MaxRequests=http.http2_max_requests,
            maxRequestsPerConnection=http.max_requests_per_connection,
            maxRetries=http.max_retries,
            maxConcurrentStreams=http.max_concurrent_streams,
        )
        yield from _durations(where, idleTimeout=http.idle_timeout)
        if http.http2_keep_alive is not None:
            ka = http.http2_keep_alive
            yield from _durations((*where, "http2KeepAlive"), interval=ka.interval, timeout=ka.timeout)
        if http.h2_upgrade_policy == "UPGRADE" and http.use_client_protocol:
            yield Finding(where, "useClientProtocol must not be true when h2UpgradePolicy is UPGRADE")
    if (tcp := pool.tcp) is not None:
        where = (*path, "tcp")
        yield from _non_negative(where, maxConnections=tcp.max_connections)
        yield from _durations(
            where, connectTimeout=tcp.connect_timeout, maxConnectionDuration=tcp.max_connection_duration
        )
        yield from _text_durations(where, idleTimeout=tcp.idle_timeout)
        if tcp.tcp_keepalive is not None:
            ka2 = tcp.tcp_keepalive
            yield from _durations((*where, "tcpKeepalive"), time=ka2.time, interval=ka2.interval)


def validate_outlier_detection(outlier: OutlierDetection | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateOutlierDetection``."""
    if outlier is None:
        return
    yield from _durations(path, interval=outlier.interval, baseEjectionTime=outlier.base_ejection_time)
    if outlier.consecutive_errors:
        yield Finding(
            (*path, "consecutiveErrors"),
            "consecutiveErrors is deprecated; use consecutiveGatewayErrors or consecutive5xxErrors",
            "warning",
        )
    if (
        outlier.consecutive_local_origin_failures or 0
    ) > 0 and not outlier.split_external_local_origin_errors:
        yield Finding(
            (*path, "consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true",
        )
    yield from _percent(
        path, maxEjectionPercent=outlier.max_ejection_percent, minHealthPercent=outlier.min_health_percent
    )


def _is_prime(n: int) -> bool:
    """Envoy's primality test for Maglev table sizes."""
    if 0 < n < 4:
        return True
    if n % 2 == 0:
        return False
    return all(n % f for f in range(3, math.isqrt(n) + 1, 2))


def _consistent_hash(ch: ConsistentHashLB, path: Path) -> Iterator[Finding]:
    if not ch.has_hash_key:
        yield Finding(
            path,
            "consistentHash needs one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName",
        )
    if ch.http_cookie is not None and not ch.http_cookie.name:
        yield Finding((*path, "httpCookie", "name"), "name required for httpCookie")
    if ch.http_cookie is not None and ch.http_cookie.ttl:  # 0s: a session cookie
        where = (*path, "httpCookie", "ttl")
        yield from checks.findings((where, checks.duration_text(ch.http_cookie.ttl, zero_ok=True)))
    if ch.minimum_ring_size:
        yield Finding((*path, "minimumRingSize"), "minimumRingSize is deprecated; use ringHash", "warning")
        if ch.ring_hash is not None or ch.maglev is not None:
            yield Finding(
                (*path, "minimumRingSize"), "only one of minimumRingSize or maglev/ringHash can be set"
            )
    ring = ch.ring_hash.minimum_ring_size if ch.ring_hash else ch.minimum_ring_size
    if ring > RING_HASH_MAX:
        where = (*path, "ringHash", "minimumRingSize") if ch.ring_hash else (*path, "minimumRingSize")
        yield Finding(where, f"minimumRingSize must be at most {RING_HASH_MAX}")
    if ch.maglev is not None:
        yield from checks.findings(((*path, "maglev", "tableSize"), _maglev_table_size(ch.maglev.table_size)))


def _maglev_table_size(size: int) -> str | None:
    if size == 0:
        return "tableSize must be set for maglev"
    if size >= MAGLEV_TABLE_SIZE_LIMIT:
        return f"tableSize must be less than {MAGLEV_TABLE_SIZE_LIMIT} for maglev"
    return None if _is_prime(size) else "tableSize must be a prime number for maglev"


def _locality_names(localities: list[tuple[Path, str]]) -> Iterator[Finding]:
    """Istio ``validateLocalities``: region[/zone[/subzone]], one trailing ``*`` at most, no overlap."""
    seen: list[str] = []
    for path, locality in localities:
        if locality.count("*") > 1 or ("*" in locality and not locality.endswith("*")):
            yield Finding(
                path, f"locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
            )
        elif any(not part for part in locality.split("/", 2)):
            yield Finding(path, f"locality {locality} must not contain empty region/zone/subzone info")
        elif any(_locality_overlaps(locality, other) for other in seen):
            yield Finding(path, f"locality {locality} overlap with previous specified ones")
        seen.append(locality)


def _locality_overlaps(a: str, b: str) -> bool:
    a_parts, b_parts = a.rstrip("*").rstrip("/").split("/"), b.rstrip("*").rstrip("/").split("/")
    if a in ("*", "") or b in ("*", ""):
        return True
    shorter = min(len(a_parts), len(b_parts))
    return a_parts[:shorter] == b_parts[:shorter]


def validate_locality_lb(
    lb: LocalityLoadBalancerSetting | None, has_outlier: bool, path: Path
) -> Iterator[Finding]:
    """Istio ``agent.ValidateLocalityLbSetting``."""
    if lb is None:
        return
    if lb.distribute and lb.failover:
        yield Finding(path, "can not simultaneously specify 'distribute' and 'failover'")
        return
    if lb.failover:
        for i, label in enumerate(lb.failover_priority):
            if label in TOPOLOGY_LABELS:
                yield Finding(
                    (*path, "failoverPriority", i), f"can not set 'failover' and topology label {label!r}"
                )
    for i, dist in enumerate(lb.distribute):
        where = (*path, "distribute", i, "to")
        if any(not 1 <= w <= 100 for w in dist.to.values()):
            yield Finding(where, "locality weight must be in range [1, 100]")
        elif sum(dist.to.values()) != 100:
            yield Finding(where, f"total locality weight {sum(dist.to.values())} != 100")
        else:
            yield from _locality_names([((*where, loc), loc) for loc in dist.to])
    yield from _locality_names(
        [((*path, "distribute", i, "from"), d.from_) for i, d in enumerate(lb.distribute)]
    )
    if (lb.failover or lb.failover_priority) and not has_outlier:
        yield Finding(path, "outlier detection policy must be provided for failover", "warning")
    for i, failover in enumerate(lb.failover):
        yield from checks.findings(((*path, "failover", i), _failover(failover)))


def _failover(failover: LocalityFailover) -> str | None:
    if failover.from_ == failover.to:
        return "locality lb failover settings must specify different regions"
    if "/" in failover.from_ or "/" in failover.to:
        return "locality lb failover only specify region"
    if "*" in failover.from_ or "*" in failover.to:
        return "locality lb failover region should not contain '*' wildcard"
    return None


def validate_load_balancer(
    lb: LoadBalancerSettings | None, has_outlier: bool, path: Path
) -> Iterator[Finding]:
    """Istio ``validateLoadBalancer``."""
    if lb is None:
        return
    if lb.consistent_hash is not None:
        yield from _consistent_hash(lb.consistent_hash, (*path, "consistentHash"))
    yield from validate_locality_lb(lb.locality_lb_setting, has_outlier, (*path, "localityLbSetting"))
    yield from _durations(path, warmupDurationSecs=lb.warmup_duration_secs)
    if lb.warmup is not None:
        where = (*path, "warmup")
        yield from _durations(where, duration=lb.warmup.duration)
        yield from _percent(where, minimumPercent=lb.warmup.minimum_percent)
        if lb.warmup.aggression is not None and lb.warmup.aggression < 0:
            yield Finding((*where, "aggression"), "aggression must be non-negative")
    zone = lb.zone_aware_lb_setting
    if zone is not None and zone.min_cluster_size is not None and zone.min_cluster_size < 1:
        yield Finding((*path, "zoneAwareLbSetting", "minClusterSize"), "minClusterSize must be at least 1")


def validate_client_tls(tls: ClientTLSSettings | None, path: Path) -> Iterator[Finding]:
    """Istio ``agent.ValidateTLS``."""
    if tls is None:
        return
    if tls.insecure_skip_verify:
        if tls.mode == "SIMPLE" and (tls.ca_certificates or tls.credential_name or tls.subject_alt_names):
            yield Finding(
                path, "cannot set caCertificates, credentialName or subjectAltNames with insecureSkipVerify"
            )
        if tls.mode == "MUTUAL" and (tls.ca_certificates or tls.subject_alt_names):
            yield Finding(path, "cannot set caCertificates or subjectAltNames with insecureSkipVerify")
    files = [name for name in CREDENTIAL_FILES if getattr(tls, camel_to_snake(name))]
    if tls.mode in ("SIMPLE", "MUTUAL") and tls.credential_name:
        if files:
            yield Finding(
                (*path, files[0]),
                "cannot set client certificates, CA certificates or CRL with credentialName",
            )
        return
    if tls.mode == "MUTUAL":
        if not tls.client_certificate:
            yield Finding((*path, "clientCertificate"), "client certificate required for mutual tls")
        if not tls.private_key:
            yield Finding((*path, "privateKey"), "private key required for mutual tls")
    if tls.mode == "ISTIO_MUTUAL" and (files or tls.credential_name):
        yield Finding(
            path,
            "ISTIO_MUTUAL uses the mesh's certificates; the files and credentialName are ignored",
            "warning",
        )


def _tunnel(tunnel: TunnelSettings | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateTunnelSettings``."""
    if tunnel is None:
        return
    if tunnel.protocol not in TUNNEL_PROTOCOLS:
        yield Finding((*path, "protocol"), 'tunnel protocol must be "CONNECT" or "POST"')
    if checks.fqdn(tunnel.target_host) and not checks.is_ip(tunnel.target_host):
        yield Finding((*path, "targetHost"), "tunnel target host must be a valid FQDN or IP address")
    yield from checks.findings(((*path, "targetPort"), checks.port_number(tunnel.target_port)))


def _retry_budget(budget: RetryBudget | None, path: Path) -> Iterator[Finding]:
    if budget is None:
        return
    yield from _percent(path, percent=budget.percent)
    yield from _text_durations(path, budgetInterval=budget.budget_interval)


def _port_policy(policy: PortTrafficPolicy, path: Path) -> Iterator[Finding]:
    if policy.port is None:
        yield Finding(path, "portLevelSettings need a port")
    else:
        yield from checks.findings(((*path, "port", "number"), checks.port_number(policy.port.number)))
    parts = (policy.load_balancer, policy.connection_pool, policy.outlier_detection, policy.tls)
    if all(part is None for part in parts):
        yield Finding(path, "port traffic policy must have at least one field")
    has_outlier = policy.outlier_detection is not None
    yield from validate_outlier_detection(policy.outlier_detection, (*path, "outlierDetection"))
    yield from validate_connection_pool(policy.connection_pool, (*path, "connectionPool"))
    yield from validate_load_balancer(policy.load_balancer, has_outlier, (*path, "loadBalancer"))
    yield from validate_client_tls(policy.tls, (*path, "tls"))


def _port_policies(policies: tuple[PortTrafficPolicy, ...], path: Path) -> Iterator[Finding]:
    seen: set[int] = set()
    for i, policy in enumerate(policies):
        yield from _port_policy(policy, (*path, i))
        if policy.port is not None:
            if policy.port.number in seen:
                yield Finding(
                    (*path, i, "port", "number"), f"duplicate portLevelSettings for port {policy.port.number}"
                )
            seen.add(policy.port.number)


def validate_traffic_policy(policy: TrafficPolicy | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateTrafficPolicy``."""
    if policy is None:
        return
    parts = (
        policy.outlier_detection,
        policy.connection_pool,
        policy.load_balancer,
        policy.tls,
        policy.port_level_settings or None,
        policy.tunnel,
        policy.proxy_protocol,
        policy.retry_budget,
    )
    if all(part is None for part in parts):
        yield Finding(path, "traffic policy must have at least one field")
    if policy.tunnel is not None and policy.proxy_protocol is not None:
        yield Finding(path, "tunnel and proxyProtocol must not be set together")
    has_outlier = policy.outlier_detection is not None
    yield from validate_outlier_detection(policy.outlier_detection, (*path, "outlierDetection"))
    yield from validate_connection_pool(policy.connection_pool, (*path, "connectionPool"))
    yield from validate_load_balancer(policy.load_balancer, has_outlier, (*path, "loadBalancer"))
    yield from validate_client_tls(policy.tls, (*path, "tls"))
    yield from _port_policies(policy.port_level_settings, (*path, "portLevelSettings"))
    yield from _tunnel(policy.tunnel, (*path, "tunnel"))
    yield from _retry_budget(policy.retry_budget, (*path, "retryBudget"))


def _subsets(subsets: tuple[Subset, ...]) -> Iterator[Finding]:
    seen: set[str] = set()
    for i, subset in enumerate(subsets):
        if subset.name in seen:
            yield Finding(("subsets", i, "name"), f"duplicate subset name {subset.name!r}")
        seen.add(subset.name)
        yield from checks.findings((("subsets", i, "name"), subset_name(subset.name)))
        yield from checks.labels(subset.labels, ("subsets", i, "labels"))
        yield from validate_traffic_policy(subset.traffic_policy, ("subsets", i, "trafficPolicy"))


def _selector_export(resource: Resource[Any]) -> Iterator[Finding]:
    """A DestinationRule with a workload selector applies in its own namespace only."""
    spec: DestinationRuleSpec = resource.spec
    if spec.workload_selector is None or not spec.export_to:
        return
    targets = {resource.namespace if e == "." else e for e in spec.export_to}
    if targets != {resource.namespace}:
        yield Finding(
            ("exportTo",), "destination rule with workload selector cannot be exported beyond its namespace"
        )


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: DestinationRuleSpec = resource.spec
    yield from checks.findings((("host",), checks.wildcard_domain(spec.host)))
    yield from validate_traffic_policy(spec.traffic_policy, ("trafficPolicy",))
    yield from _subsets(spec.subsets)
    yield from validate_export_to(resource.namespace, spec.export_to, ("exportTo",))
    yield from _selector_export(resource)
    yield from validate_workload_selector(spec.workload_selector, ("workloadSelector",))
