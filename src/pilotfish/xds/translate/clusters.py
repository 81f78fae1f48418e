"""(MeshSnapshot, Proxy) → outbound Envoy Clusters, the way istiod builds them.

Theory of operation. For every service the proxy's namespace may see and every non-UDP port of
it, one default cluster ``outbound|PORT||HOST`` and one per subset of the DestinationRule that
applies (``destination_rules.py``). Each is built in Istio's order
(``pilot/pkg/networking/core/cluster.go`` ``buildOutboundClusters``, ``cluster_builder.go``
``buildCluster`` / ``applyDestinationRule`` / ``buildSubsetCluster``,
``cluster_traffic_policy.go`` ``applyTrafficPolicy``):

1. the base cluster: discovery type from the service's resolution (``convertResolution``),
   ``alt_stat_name``, DNS settings and an inline load assignment for DNS clusters (a DNS
   cluster without endpoints is left out, as Istio does), the upstream protocol of the port;
2. the traffic policy (``traffic_policy.py`` picks it): h2 upgrade, connection pool (circuit
   breakers that default to MaxUint32, connect timeout, idle timeouts, keepalive), outlier
   detection, load balancer (PASSTHROUGH turns the cluster into ORIGINAL_DST);
3. the EDS config source (ADS) when the cluster is still EDS after step 2;
4. the DestinationRule (and subset) in ``metadata.filter_metadata["istio"]``;
5. client TLS: ``trafficPolicy.tls`` or auto mTLS (``mtls.py``, Istio ``applyUpstreamTLSSettings``),
   per cluster since the SNI names the cluster.

Locality (``locality.py``): ``localityLbSetting.distribute`` sets ``locality_weighted_lb_config``;
a DNS cluster's inline endpoints get the proxy's locality priorities (EDS ones in ``endpoints.py``).
Not done here: proxyProtocol and tunnel (``validate`` warns), inbound and passthrough clusters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TypeAlias

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, protocol_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2

from pilotfish.config.decode import parse_duration
from pilotfish.config.networking.destination_rule import (
    ConnectionPoolSettings,
    ConsistentHashLB,
    HTTPCookie,
    LoadBalancerSettings,
    OutlierDetection,
    RetryBudget,
    TcpKeepalive,
    TrafficPolicy,
    WarmupConfiguration,
)
from pilotfish.registry.model import Endpoint, Service, ServicePort
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.destination_rules import AppliedRule
from pilotfish.xds.translate.endpoint_checks import sendable
from pilotfish.xds.translate.endpoints import (
    LbEndpointWriter,
    by_locality,
    subset_endpoints,
    visible_destinations,
)
from pilotfish.xds.translate.health import health_checks_for
from pilotfish.xds.translate.locality import effective_setting, locality_groups
from pilotfish.xds.translate.mtls import ClusterTarget, apply_cluster_tls
from pilotfish.xds.translate.names import outbound_cluster_name
from pilotfish.xds.translate.netpol import admitted, bind_source, egress_admission
from pilotfish.xds.translate.traffic_policy import cluster_policy

Cluster: TypeAlias = cluster_pb2.Cluster
HashPolicy: TypeAlias = route_components_pb2.RouteAction.HashPolicy

# Istio's mesh defaults (pkg/config/mesh/mesh.go DefaultMeshConfig): connectTimeout 10s,
# dnsRefreshRate 60s, h2UpgradePolicy DO_NOT_UPGRADE. pilotfish's MeshConfig does not carry them.
CONNECT_TIMEOUT = timedelta(seconds=10)
DNS_REFRESH_RATE = timedelta(seconds=60)
MAX_UINT32 = 2**32 - 1
# Istio: 1024 is Envoy's default ring size, used when consistentHash names neither ringHash nor maglev.
DEFAULT_MINIMUM_RING_SIZE = 1024
# Istio applyRetryBudget defaults: Percent{0.2} and a minimum retry concurrency of 3.
RETRY_BUDGET_PERCENT = 0.2
RETRY_BUDGET_MIN_CONCURRENCY = 3
# Istio setWarmup defaults: linear ramp (aggression 1) from 10% (Envoy's default minimum weight).
WARMUP_AGGRESSION = 1.0
WARMUP_MIN_WEIGHT_PERCENT = 10.0
# Istio fixes the warmup aggression with a runtime key that can never be set.
WARMUP_RUNTIME_KEY = "("
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
ISTIO_METADATA = "istio"
RULE_KIND_PATH = "destination-rule"  # the kind in AddConfigInfoMetadata's path (CamelCaseToKebabCase)
STAT_PREFIX_DELIMITER = ";"  # Istio constants.StatPrefixDelimiter, appended to alt_stat_name

# convertResolution: ServiceEntry resolution → discovery type. A gateway cannot use ORIGINAL_DST.
DISCOVERY_TYPE: Mapping[str, int] = {
    "STATIC": Cluster.EDS,
    "DNS": Cluster.STRICT_DNS,
    "DNS_ROUND_ROBIN": Cluster.LOGICAL_DNS,
    "NONE": Cluster.ORIGINAL_DST,
}
DNS_TYPES = frozenset({Cluster.STRICT_DNS, Cluster.LOGICAL_DNS})
# applyLoadBalancer: loadBalancer.simple → lb_policy; unset/UNSPECIFIED is Istio's default (LEAST_REQUEST).
SIMPLE_LB: Mapping[str | None, int] = {
    None: Cluster.LEAST_REQUEST,
    "UNSPECIFIED": Cluster.LEAST_REQUEST,
    "LEAST_CONN": Cluster.LEAST_REQUEST,
    "LEAST_REQUEST": Cluster.LEAST_REQUEST,
    "ROUND_ROBIN": Cluster.ROUND_ROBIN,
    "RANDOM": Cluster.RANDOM,
    "PASSTHROUGH": Cluster.CLUSTER_PROVIDED,
}
# Where the slow-start config of a policy lives (applyRoundRobin/LeastRequestLoadBalancer).
SLOW_START_CONFIG: Mapping[int, str] = {
    Cluster.ROUND_ROBIN: "round_robin_lb_config",
    Cluster.LEAST_REQUEST: "least_request_lb_config",
}
HTTP2_PROTOCOLS = frozenset({"HTTP2", "GRPC", "GRPC-WEB"})  # Istio protocol.IsHTTP2
KNOWN_PROTOCOLS = frozenset(
    {"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB", "HTTPS", "TLS", "TCP", "UDP"}
    | {"MONGO", "REDIS", "MYSQL"}
)


# ---- entry point -------------------------------------------------------------------------------


def translate_clusters(snapshot: MeshSnapshot, proxy: Proxy) -> list[Cluster]:
    """The outbound clusters for ``proxy``: per visible service and port, the default cluster
    followed by its subset clusters. A name seen twice keeps the first (``normalizeClusters``)."""
    templates = ClusterTemplates(proxy)
    out: dict[str, Cluster] = {}
    for service, rule in visible_destinations(snapshot, proxy).values():
        for port in service.ports:
            for cluster in service_port_clusters(snapshot, templates, service, port, rule):
                out.setdefault(cluster.name, cluster)
    bind_source(snapshot, proxy, out.values())  # NetworkPolicy: connect from the workload's IP
    return list(out.values())


def service_port_clusters(
    snapshot: MeshSnapshot,
    templates: ClusterTemplates,
    service: Service,
    port: ServicePort,
    rule: AppliedRule | None,
) -> Iterator[Cluster]:
    """Istio ``buildOutboundClusters`` for one port: the default cluster, then the subsets'."""
    discovery = discovery_type(service, templates.proxy)
    if port.protocol == "UDP" or discovery is None:
        return
    destination = rule.spec.traffic_policy if rule is not None else None
    name = outbound_cluster_name(service.hostname, port.number)
    endpoints = sendable(snapshot, snapshot.endpoints_for(service.hostname, port.number), dns=True)
    if discovery in DNS_TYPES:  # inline endpoints: NetworkPolicy egress leaves denied ones out
        endpoints = admitted(egress_admission(snapshot, templates.proxy), endpoints)
    policy = cluster_policy(destination, port.number)
    default = outbound_cluster(templates, name, discovery, endpoints, port, policy)
    if default is None:
        return
    set_rule_metadata(default, rule, None)
    apply_cluster_tls(snapshot, default, ClusterTarget(service, port.number, None, is_http2(default)), policy)
    checks = health_checks_for(snapshot, service)
    default.health_checks.extend(checks)
    yield default
    for subset in rule.spec.subsets if rule is not None else ():
        simple = _simple(subset.traffic_policy.load_balancer if subset.traffic_policy else None)
        subset_type = Cluster.ORIGINAL_DST if simple == "PASSTHROUGH" else default.type
        # Only a DNS cluster inlines its endpoints; the others leave them to EDS.
        selected = subset_endpoints(endpoints, subset.labels) if subset_type in DNS_TYPES else ()
        name = outbound_cluster_name(service.hostname, port.number, subset.name)
        policy = cluster_policy(destination, port.number, subset)
        cluster = outbound_cluster(templates, name, subset_type, selected, port, policy)
        if cluster is None:
            continue
        set_rule_metadata(cluster, rule, subset.name)
        target = ClusterTarget(service, port.number, subset.name, is_http2(cluster))
        apply_cluster_tls(snapshot, cluster, target, policy)
        cluster.health_checks.extend(checks)
        yield cluster


def discovery_type(service: Service, proxy: Proxy) -> int | None:
    """Istio ``convertResolution``; ``None`` for a resolution pilotfish does not build."""
    discovery = DISCOVERY_TYPE.get(service.resolution)
    if discovery == Cluster.ORIGINAL_DST and proxy.type == ProxyType.ROUTER:
        return int(Cluster.EDS)
    return discovery


def outbound_cluster(
    templates: ClusterTemplates,
    name: str,
    discovery: int,
    endpoints: Iterable[Endpoint],
    port: ServicePort,
    policy: TrafficPolicy | None,
) -> Cluster | None:
    """One cluster before its rule metadata; ``None`` for a DNS cluster without endpoints."""
    if discovery in DNS_TYPES:
        return build_cluster(name, discovery, endpoints, port, templates.proxy, policy)
    return templates.cluster(name, discovery, port, policy)


def build_cluster(
    name: str,
    discovery: int,
    endpoints: Iterable[Endpoint],
    port: ServicePort,
    proxy: Proxy,
    policy: TrafficPolicy | None,
) -> Cluster | None:
    """Istio's steps for one cluster: ``buildCluster``, ``applyTrafficPolicy``, then the EDS
    config once the type is final (``maybeApplyEdsConfig``) and a complete ``HttpProtocolOptions``
    (``clusterWrapper.build``)."""
    endpoints = tuple(endpoints)
    cluster = base_cluster(name, discovery, endpoints, port, proxy)
    if cluster is None:
        return None
    apply_traffic_policy(cluster, policy)
    if discovery in DNS_TYPES and policy is not None:
        apply_inline_locality(cluster, endpoints, policy, proxy)
    complete_http_options(cluster)
    if cluster.type == Cluster.EDS:
        cluster.eds_cluster_config.CopyFrom(eds_config(cluster.name))
    return cluster


class ClusterTemplates:
    """Prebuilt clusters for one ``translate_clusters`` call.

    A cluster without inline endpoints (any but STRICT_DNS / LOGICAL_DNS) is, but for its names,
    a function of its discovery type, port protocol, proxy type and traffic policy. Each such
    combination is built once through ``build_cluster`` and copied (in C) for every cluster that
    shares it; at 1,000 services that turns 2,000 builds into a handful. The policy is keyed by its
    ``repr``, which is complete for the frozen config dataclasses, where ``==`` is not exact
    (``0.0 == -0.0`` serialize differently) and ``hash`` fails for a policy holding a Mapping."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self._built: dict[tuple[int, str, str], Cluster] = {}

    def cluster(self, name: str, discovery: int, port: ServicePort, policy: TrafficPolicy | None) -> Cluster:
        key = (discovery, port.protocol, repr(policy))
        template = self._built.get(key)
        if template is None:
            template = self._built[key] = self._build(discovery, port, policy)
        cluster = Cluster()
        cluster.CopyFrom(template)
        set_names(cluster, name)
        return cluster

    def _build(self, discovery: int, port: ServicePort, policy: TrafficPolicy | None) -> Cluster:
        built = build_cluster("", discovery, (), port, self.proxy, policy)
        assert built is not None, "only a DNS cluster can lack endpoints"
        return built


def set_names(cluster: Cluster, name: str) -> None:
    """The fields named after the cluster: its name, stat name and EDS service name."""
    cluster.name = name
    cluster.alt_stat_name = name + STAT_PREFIX_DELIMITER
    if cluster.type == Cluster.EDS:
        cluster.eds_cluster_config.service_name = name


# ---- the base cluster (buildCluster) -------------------------------------------------------------


def base_cluster(
    name: str, discovery: int, endpoints: Iterable[Endpoint], port: ServicePort, proxy: Proxy
) -> Cluster | None:
    """Istio ``buildCluster``; ``None`` for a DNS cluster that has no endpoints to resolve."""
    cluster = Cluster(name=name, type=discovery, alt_stat_name=name + STAT_PREFIX_DELIMITER)
    cluster.common_lb_config.SetInParent()
    if discovery in DNS_TYPES:
        LbEndpointWriter().add_localities(cluster.load_assignment.endpoints, endpoints)
        if not cluster.load_assignment.endpoints:
            return None
        cluster.load_assignment.cluster_name = name
        apply_dns_settings(cluster, proxy)
    apply_upstream_protocol(cluster, port, proxy)
    return cluster


def apply_dns_settings(cluster: Cluster, proxy: Proxy) -> None:
    """Istio ``buildCluster`` for STRICT_DNS / LOGICAL_DNS: the address family of the proxy
    (V4_ONLY unless the proxy is IPv6-only), the mesh refresh rate, TTLs respected."""
    cluster.dns_lookup_family = Cluster.V6_ONLY if _is_ipv6(proxy.ip) else Cluster.V4_ONLY
    cluster.dns_refresh_rate.CopyFrom(duration(DNS_REFRESH_RATE))
    cluster.respect_dns_ttl = True


def _is_ipv6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return False


def apply_upstream_protocol(cluster: Cluster, port: ServicePort, proxy: Proxy) -> None:
    """Istio ``setUpstreamProtocol``: HTTP/2 for HTTP2/gRPC ports; a sidecar follows the
    downstream protocol on a port of unknown protocol."""
    if port.protocol in HTTP2_PROTOCOLS:
        set_http2(cluster)
    elif port.protocol not in KNOWN_PROTOCOLS and proxy.type == ProxyType.SIDECAR:
        set_use_downstream_protocol(cluster)


def eds_config(cluster_name: str) -> cluster_pb2.Cluster.EdsClusterConfig:
    """Istio ``maybeApplyEdsConfig``: endpoints over ADS, named like the cluster, no fetch timeout."""
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        initial_fetch_timeout=duration(timedelta(0)),
        resource_api_version=config_source_pb2.V3,
    )
    return Cluster.EdsClusterConfig(eds_config=source, service_name=cluster_name)


# ---- HTTP protocol options -----------------------------------------------------------------------


def http_options(cluster: Cluster) -> http_protocol_options_pb2.HttpProtocolOptions:
    """The cluster's ``HttpProtocolOptions`` (a copy; store it back with ``set_http_options``)."""
    options = http_protocol_options_pb2.HttpProtocolOptions()
    packed = cluster.typed_extension_protocol_options.get(HTTP_PROTOCOL_OPTIONS)
    if packed is not None:
        packed.Unpack(options)
    return options


def set_http_options(cluster: Cluster, options: http_protocol_options_pb2.HttpProtocolOptions) -> None:
    packed = any_pb2.Any()
    packed.Pack(options)
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(packed)


def set_http2(cluster: Cluster) -> None:
    """Istio ``setH2Options``: explicit HTTP/2 (replacing any upstream protocol choice) unless
    ``upstream_http_protocol_options`` is set, which only TLS settings do."""
    options = http_options(cluster)
    if not options.HasField("upstream_http_protocol_options"):
        options.explicit_http_config.http2_protocol_options.SetInParent()
    set_http_options(cluster, options)


def is_http2(cluster: Cluster) -> bool:
    """Istio ``IsHttp2Cluster``: the cluster speaks HTTP/2 upstream explicitly."""
    return bool(http_options(cluster).explicit_http_config.HasField("http2_protocol_options"))


def complete_http_options(cluster: Cluster) -> None:
    """Istio ``clusterWrapper.build``: Envoy requires an upstream protocol in
    ``HttpProtocolOptions``; options that name none get explicit HTTP/1.1."""
    if HTTP_PROTOCOL_OPTIONS not in cluster.typed_extension_protocol_options:
        return
    options = http_options(cluster)
    if options.WhichOneof("upstream_protocol_options") is None:
        options.explicit_http_config.http_protocol_options.SetInParent()
        set_http_options(cluster, options)


def set_use_downstream_protocol(cluster: Cluster) -> None:
    """Istio ``setUseDownstreamProtocol``: keep explicit HTTP/1 options, offer HTTP/2 too."""
    options = http_options(cluster)
    http1 = protocol_pb2.Http1ProtocolOptions()
    http1.CopyFrom(options.explicit_http_config.http_protocol_options)
    options.use_downstream_protocol_config.http_protocol_options.CopyFrom(http1)
    options.use_downstream_protocol_config.http2_protocol_options.SetInParent()
    set_http_options(cluster, options)


# ---- traffic policy (applyTrafficPolicy) ---------------------------------------------------------


def apply_traffic_policy(cluster: Cluster, policy: TrafficPolicy | None) -> None:
    """Istio ``applyTrafficPolicy`` for an outbound cluster (TLS and proxyProtocol excepted)."""
    pool = (policy.connection_pool if policy else None) or ConnectionPoolSettings()
    if should_h2_upgrade(pool):
        set_http2(cluster)
    apply_connection_pool(cluster, pool, policy.retry_budget if policy else None)
    apply_outlier_detection(cluster, policy.outlier_detection if policy else None)
    apply_load_balancer(cluster, policy.load_balancer if policy else None)
    setting = effective_setting(policy)
    if setting is not None and setting.distribute:  # Istio applyLocalityLoadBalancer
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()


def apply_inline_locality(
    cluster: Cluster, endpoints: Sequence[Endpoint], policy: TrafficPolicy, proxy: Proxy
) -> None:
    """A DNS cluster's inline endpoints with the proxy's locality priorities and weights."""
    groups = locality_groups(by_locality(endpoints), policy, proxy.locality, proxy.labels)
    cluster.load_assignment.ClearField("endpoints")
    LbEndpointWriter().add_groups(cluster.load_assignment.endpoints, groups)


def should_h2_upgrade(pool: ConnectionPoolSettings) -> bool:
    """Istio ``shouldH2Upgrade`` with the mesh default policy DO_NOT_UPGRADE: only a
    DestinationRule's ``h2UpgradePolicy: UPGRADE`` (without useClientProtocol) upgrades, on
    any port; without it even HTTP ports stay HTTP/1.1."""
    http = pool.http
    if http is None or http.use_client_protocol:
        return False
    return http.h2_upgrade_policy == "UPGRADE"


def apply_connection_pool(
    cluster: Cluster, pool: ConnectionPoolSettings, retry_budget: RetryBudget | None
) -> None:
    """Istio ``applyConnectionPool``: circuit breakers (MaxUint32 unless set), connect timeout,
    TCP keepalive, and the HTTP idle/lifetime/stream limits."""
    cluster.circuit_breakers.thresholds.append(thresholds(pool, retry_budget))
    tcp = pool.tcp
    connect_timeout = tcp.connect_timeout if tcp is not None else None
    cluster.connect_timeout.CopyFrom(
        duration(connect_timeout if connect_timeout is not None else CONNECT_TIMEOUT)
    )
    if tcp is not None and tcp.tcp_keepalive is not None:
        apply_tcp_keepalive(cluster, tcp.tcp_keepalive)
    apply_http_limits(cluster, pool)
    if pool.http is not None and pool.http.use_client_protocol:
        set_use_downstream_protocol(cluster)


def thresholds(
    pool: ConnectionPoolSettings, retry_budget: RetryBudget | None
) -> circuit_breaker_pb2.CircuitBreakers.Thresholds:
    """``getDefaultCircuitBreakerThresholds`` overridden by the positive pool limits."""
    http, tcp = pool.http, pool.tcp
    limits = {
        "max_connections": tcp.max_connections if tcp else 0,
        "max_pending_requests": http.http1_max_pending_requests if http else 0,
        "max_requests": http.http2_max_requests if http else 0,
        "max_retries": http.max_retries if http else 0,
    }
    out = circuit_breaker_pb2.CircuitBreakers.Thresholds(track_remaining=True)
    for field_name, limit in limits.items():
        getattr(out, field_name).value = limit if limit > 0 else MAX_UINT32
    if retry_budget is not None:
        out.retry_budget.budget_percent.value = (
            retry_budget.percent if retry_budget.percent is not None else RETRY_BUDGET_PERCENT
        )
        out.retry_budget.min_retry_concurrency.value = (
            retry_budget.min_retry_concurrency or RETRY_BUDGET_MIN_CONCURRENCY
        )
    return out


def apply_tcp_keepalive(cluster: Cluster, keepalive: TcpKeepalive) -> None:
    """Istio ``setKeepAliveSettings``: SO_KEEPALIVE with the set values (whole seconds)."""
    tcp = cluster.upstream_connection_options.tcp_keepalive
    tcp.SetInParent()
    if keepalive.probes > 0:
        tcp.keepalive_probes.value = keepalive.probes
    if keepalive.time is not None:
        tcp.keepalive_time.value = int(keepalive.time.total_seconds())
    if keepalive.interval is not None:
        tcp.keepalive_interval.value = int(keepalive.interval.total_seconds())


def apply_http_limits(cluster: Cluster, pool: ConnectionPoolSettings) -> None:
    """Idle timeout (HTTP's, else TCP's), max requests per connection, max connection duration,
    and max concurrent streams (HTTP/2 clusters only) into ``HttpProtocolOptions``."""
    http, tcp = pool.http, pool.tcp
    idle = http.idle_timeout if http and http.idle_timeout is not None else None
    if idle is None and tcp is not None and tcp.idle_timeout:
        idle = parse_duration(tcp.idle_timeout)
    per_connection = http.max_requests_per_connection if http else 0
    streams = http.max_concurrent_streams if http else 0
    lifetime = tcp.max_connection_duration if tcp else None
    if idle is None and per_connection <= 0 and streams <= 0 and lifetime is None:
        return
    options = http_options(cluster)
    common = options.common_http_protocol_options
    common.SetInParent()
    if idle is not None:
        common.idle_timeout.CopyFrom(duration(idle))
    if per_connection > 0:
        common.max_requests_per_connection.value = per_connection
    if lifetime is not None:
        common.max_connection_duration.CopyFrom(duration(lifetime))
    if streams > 0 and options.explicit_http_config.HasField("http2_protocol_options"):
        options.explicit_http_config.http2_protocol_options.max_concurrent_streams.value = streams
    set_http_options(cluster, options)


def apply_outlier_detection(cluster: Cluster, outlier: OutlierDetection | None) -> None:
    """Istio ``applyOutlierDetection``: success-rate ejection off, the consecutive-error
    detectors enforced at 100% when set, and the panic threshold set from minHealthPercent
    (0 disables panic mode, which is Istio's intent)."""
    if outlier is None:
        return
    out = outlier_detection_pb2.OutlierDetection()
    out.enforcing_success_rate.value = 0
    if outlier.consecutive_errors > 0:  # deprecated: gateway errors only (istio/api#617)
        out.consecutive_gateway_failure.value = outlier.consecutive_errors
        out.enforcing_consecutive_gateway_failure.value = 100
        out.enforcing_consecutive_5xx.value = 0
    _consecutive(out, "consecutive_5xx", outlier.consecutive_5xx_errors)
    _consecutive(out, "consecutive_gateway_failure", outlier.consecutive_gateway_errors)
    if outlier.interval is not None:
        out.interval.CopyFrom(duration(outlier.interval))
    if outlier.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(outlier.base_ejection_time))
    if outlier.max_ejection_percent > 0:
        out.max_ejection_percent.value = outlier.max_ejection_percent
    if outlier.split_external_local_origin_errors:
        _split_local_origin(out, outlier.consecutive_local_origin_failures or 0)
    cluster.outlier_detection.CopyFrom(out)
    if outlier.min_health_percent >= 0:
        cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
            percent_pb2.Percent(value=float(outlier.min_health_percent))
        )


def _consecutive(out: outlier_detection_pb2.OutlierDetection, detector: str, value: int | None) -> None:
    """A consecutive-error detector: its threshold, enforced at 100% when positive, else 0."""
    if value is None:
        return
    getattr(out, detector).value = value
    getattr(out, "enforcing_" + detector).value = 100 if value > 0 else 0


def _split_local_origin(out: outlier_detection_pb2.OutlierDetection, failures: int) -> None:
    out.split_external_local_origin_errors = True
    if failures > 0:
        out.consecutive_local_origin_failure.value = failures
        out.enforcing_consecutive_local_origin_failure.value = 100
    out.enforcing_local_origin_success_rate.value = 0


def apply_load_balancer(cluster: Cluster, lb: LoadBalancerSettings | None) -> None:
    """Istio ``applyLoadBalancer`` (without locality settings): an ORIGINAL_DST cluster is
    CLUSTER_PROVIDED; PASSTHROUGH makes the cluster ORIGINAL_DST; simple policies map through
    ``SIMPLE_LB`` with their slow start; consistentHash then sets RING_HASH or MAGLEV."""
    if cluster.type == Cluster.ORIGINAL_DST:
        cluster.lb_policy = Cluster.CLUSTER_PROVIDED
        return
    simple = _simple(lb)
    cluster.lb_policy = SIMPLE_LB[simple]
    if simple == "PASSTHROUGH":
        cluster.type = Cluster.ORIGINAL_DST
        cluster.ClearField("load_assignment")
    elif cluster.lb_policy in SLOW_START_CONFIG and lb is not None:
        apply_slow_start(cluster, lb)
    if lb is not None and lb.consistent_hash is not None:
        apply_consistent_hash(cluster, lb.consistent_hash)


def _simple(lb: LoadBalancerSettings | None) -> str | None:
    return lb.simple if lb is not None else None


def apply_slow_start(cluster: Cluster, lb: LoadBalancerSettings) -> None:
    """Istio ``setWarmup`` (``warmup``) or the deprecated ``setSlowStartConfig`` (``warmupDurationSecs``)."""
    if lb.warmup is not None:
        config = warmup(lb.warmup)
    elif lb.warmup_duration_secs is not None:
        config = Cluster.SlowStartConfig(slow_start_window=duration(lb.warmup_duration_secs))
    else:
        return
    getattr(cluster, SLOW_START_CONFIG[cluster.lb_policy]).slow_start_config.CopyFrom(config)


def warmup(config: WarmupConfiguration) -> cluster_pb2.Cluster.SlowStartConfig:
    aggression = config.aggression if config.aggression is not None else WARMUP_AGGRESSION
    minimum = config.minimum_percent if config.minimum_percent is not None else WARMUP_MIN_WEIGHT_PERCENT
    return Cluster.SlowStartConfig(
        slow_start_window=duration(config.duration),
        aggression=base_pb2.RuntimeDouble(default_value=aggression, runtime_key=WARMUP_RUNTIME_KEY),
        min_weight_percent=percent_pb2.Percent(value=minimum),
    )


def apply_consistent_hash(cluster: Cluster, hashing: ConsistentHashLB) -> None:
    """Istio ``ApplyRingHashLoadBalancer``."""
    if hashing.maglev is not None:
        cluster.lb_policy = Cluster.MAGLEV
        if hashing.maglev.table_size:
            cluster.maglev_lb_config.table_size.value = hashing.maglev.table_size
    elif hashing.ring_hash is not None:
        cluster.lb_policy = Cluster.RING_HASH
        if hashing.ring_hash.minimum_ring_size:
            cluster.ring_hash_lb_config.minimum_ring_size.value = hashing.ring_hash.minimum_ring_size
    else:
        cluster.lb_policy = Cluster.RING_HASH
        size = hashing.minimum_ring_size or DEFAULT_MINIMUM_RING_SIZE
        cluster.ring_hash_lb_config.minimum_ring_size.value = size


# ---- route hash policy ---------------------------------------------------------------------------


def hash_policy_for(policy: TrafficPolicy | None) -> list[HashPolicy]:
    """The route ``hash_policy`` for a cluster built from ``policy`` (pass the policy
    ``traffic_policy.cluster_policy`` picks for the destination's port and subset): Istio
    ``route.go`` ``consistentHashToHashPolicy``. Empty unless the policy hashes consistently."""
    lb = policy.load_balancer if policy is not None else None
    hashing = lb.consistent_hash if lb is not None else None
    if hashing is None:
        return []
    if hashing.http_header_name is not None:
        return [HashPolicy(header=HashPolicy.Header(header_name=hashing.http_header_name))]
    if hashing.http_cookie is not None:
        return [HashPolicy(cookie=cookie_hash(hashing.http_cookie))]
    if hashing.use_source_ip is not None:
        return [
            HashPolicy(connection_properties=HashPolicy.ConnectionProperties(source_ip=hashing.use_source_ip))
        ]
    if hashing.http_query_parameter_name is not None:
        return [HashPolicy(query_parameter=HashPolicy.QueryParameter(name=hashing.http_query_parameter_name))]
    return []


def cookie_hash(cookie: HTTPCookie) -> route_components_pb2.RouteAction.HashPolicy.Cookie:
    out = HashPolicy.Cookie(
        name=cookie.name,
        path=cookie.path,
        attributes=[HashPolicy.CookieAttribute(name=a.name, value=a.value) for a in cookie.attributes],
    )
    if cookie.ttl:
        out.ttl.CopyFrom(duration(parse_duration(cookie.ttl)))
    return out


# ---- metadata and small helpers ------------------------------------------------------------------


def set_rule_metadata(cluster: Cluster, rule: AppliedRule | None, subset: str | None) -> None:
    """Istio ``util.AddConfigInfoMetadata`` (+ ``AddSubsetToMetadata``): the rule's API path."""
    if rule is None:
        return
    group, _, version = rule.api_version.partition("/")
    path = f"/apis/{group}/{version}/namespaces/{rule.namespace}/{RULE_KIND_PATH}/{rule.name}"
    istio = cluster.metadata.filter_metadata[ISTIO_METADATA].fields
    istio["config"].string_value = path
    if subset is not None:
        istio["subset"].string_value = subset


def duration(value: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out
