"""translate_clusters: Istio's cluster_builder.go / cluster_traffic_policy.go, case by case."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from translate_builders import by_name, destination_rule, proxy, service_entry, snapshot, workload

from pilotfish.config.decode import decode
from pilotfish.config.networking.destination_rule import TrafficPolicy
from pilotfish.xds.proxy import ProxyType
from pilotfish.xds.translate import hash_policy_for, translate_clusters, translate_endpoints
from pilotfish.xds.translate.clusters import HTTP_PROTOCOL_OPTIONS, MAX_UINT32

Cluster = cluster_pb2.Cluster
SEED = Path(__file__).parent / "golden" / "seed.in.yaml"
HOST = "svc.prod.svc.cluster.local"
DEFAULT = f"outbound|9080||{HOST}"


def clusters_for(*docs, client=None):
    return by_name(translate_clusters(snapshot(*docs), client or proxy()))


def with_rule(body, *, se=None, client=None):
    """The default cluster for HOST (STATIC, port 9080 HTTP) under a DestinationRule ``body``."""
    docs = [se or service_entry(HOST), destination_rule("rule", "prod", f"host: {HOST}\n{body}")]
    return clusters_for(*docs, client=client)


def http_options(cluster):
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    return options


# ---- the seed ------------------------------------------------------------------------------------


def test_seed_default_cluster_is_least_request_with_five_endpoints_subset_round_robin_with_three():
    snap = snapshot(SEED.read_text())
    client = proxy("prod")
    clusters = translate_clusters(snap, client)
    names = [c.name for c in clusters]
    default = "outbound|9080||ratings.prod.svc.cluster.local"
    subset = "outbound|9080|testversion|ratings.prod.svc.cluster.local"
    assert names == [default, subset]
    found = by_name(clusters)
    assert found[default].lb_policy == Cluster.LEAST_REQUEST
    assert found[subset].lb_policy == Cluster.ROUND_ROBIN
    for name in names:
        assert found[name].type == Cluster.EDS
        assert found[name].eds_cluster_config.service_name == name
        assert found[name].eds_cluster_config.eds_config.HasField("ads")
    assignments = {a.cluster_name: a for a in translate_endpoints(snap, client, clusters)}
    counts = {name: sum(len(g.lb_endpoints) for g in a.endpoints) for name, a in assignments.items()}
    assert counts == {default: 5, subset: 3}


# ---- discovery type ------------------------------------------------------------------------------


def test_static_resolution_is_eds_over_ads():
    cluster = clusters_for(service_entry(HOST))[DEFAULT]
    assert cluster.type == Cluster.EDS
    source = cluster.eds_cluster_config.eds_config
    assert source.HasField("ads") and source.resource_api_version == 2  # V3
    assert not cluster.HasField("load_assignment")


@pytest.mark.parametrize(
    ("resolution", "kind"), [("DNS", Cluster.STRICT_DNS), ("DNS_ROUND_ROBIN", Cluster.LOGICAL_DNS)]
)
def test_dns_resolutions_inline_the_endpoints(resolution, kind):
    host = "api.example.com"
    cluster = clusters_for(service_entry(host, resolution=resolution, port=443, protocol="TLS"))[
        f"outbound|443||{host}"
    ]
    assert cluster.type == kind
    assert not cluster.HasField("eds_cluster_config")
    [group] = cluster.load_assignment.endpoints
    [lb] = group.lb_endpoints
    assert lb.endpoint.address.socket_address.address == host
    assert lb.endpoint.address.socket_address.port_value == 443
    assert cluster.load_assignment.cluster_name == cluster.name
    assert cluster.dns_lookup_family == Cluster.V4_ONLY
    assert cluster.respect_dns_ttl and cluster.dns_refresh_rate.seconds == 60


def test_dns_lookup_family_follows_an_ipv6_proxy():
    se = service_entry("api.example.com", resolution="DNS")
    cluster = clusters_for(se, client=proxy(ip="fd00::1"))["outbound|9080||api.example.com"]
    assert cluster.dns_lookup_family == Cluster.V6_ONLY


def test_dns_cluster_without_endpoints_is_left_out():
    se = service_entry(HOST, resolution="DNS", extra="  workloadSelector: {labels: {app: nobody}}")
    assert clusters_for(se) == {}


def test_resolution_none_is_original_dst_for_sidecars_and_eds_for_gateways():
    se = service_entry(HOST, resolution="NONE")
    sidecar = clusters_for(se)[DEFAULT]
    assert sidecar.type == Cluster.ORIGINAL_DST and sidecar.lb_policy == Cluster.CLUSTER_PROVIDED
    assert not sidecar.HasField("eds_cluster_config")
    gateway = clusters_for(se, client=proxy(kind=ProxyType.ROUTER))[DEFAULT]
    assert gateway.type == Cluster.EDS and gateway.lb_policy == Cluster.LEAST_REQUEST


def test_passthrough_turns_a_static_service_into_original_dst():
    found = with_rule(
        """
trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
subsets:
- {name: direct, labels: {v: a}, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}
- {name: balanced, labels: {v: b}}
"""
    )
    direct = found[f"outbound|9080|direct|{HOST}"]
    assert direct.type == Cluster.ORIGINAL_DST and direct.lb_policy == Cluster.CLUSTER_PROVIDED
    assert not direct.HasField("eds_cluster_config")
    assert found[f"outbound|9080|balanced|{HOST}"].type == Cluster.EDS
    assert found[DEFAULT].type == Cluster.EDS and found[DEFAULT].lb_policy == Cluster.ROUND_ROBIN
    top = with_rule(
        "trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}\nsubsets: [{name: s, labels: {v: a}}]"
    )
    assert top[DEFAULT].type == Cluster.ORIGINAL_DST
    assert top[f"outbound|9080|s|{HOST}"].type == Cluster.ORIGINAL_DST  # subsets inherit the type


def test_visibility_and_udp():
    private = service_entry(HOST, extra="  exportTo: ['.']")
    assert DEFAULT in clusters_for(private, client=proxy("prod"))
    assert clusters_for(private, client=proxy("client")) == {}
    assert clusters_for(service_entry(HOST, protocol="UDP")) == {}


def test_proxy_namespace_declaration_wins_a_duplicate_hostname():
    mine = service_entry(HOST, namespace="client", port=9080, resolution="DNS")
    theirs = service_entry(HOST, namespace="prod", port=9080)
    assert clusters_for(theirs, mine, client=proxy("client"))[DEFAULT].type == Cluster.STRICT_DNS
    assert clusters_for(theirs, mine, client=proxy("prod"))[DEFAULT].type == Cluster.EDS


# ---- load balancer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("simple", "policy"),
    [
        ("LEAST_CONN", Cluster.LEAST_REQUEST),
        ("LEAST_REQUEST", Cluster.LEAST_REQUEST),
        ("ROUND_ROBIN", Cluster.ROUND_ROBIN),
        ("RANDOM", Cluster.RANDOM),
        ("UNSPECIFIED", Cluster.LEAST_REQUEST),
    ],
)
def test_simple_load_balancers(simple, policy):
    assert with_rule(f"trafficPolicy: {{loadBalancer: {{simple: {simple}}}}}")[DEFAULT].lb_policy == policy


def test_no_rule_means_least_request_and_default_circuit_breakers():
    cluster = clusters_for(service_entry(HOST))[DEFAULT]
    assert cluster.lb_policy == Cluster.LEAST_REQUEST
    [limits] = cluster.circuit_breakers.thresholds
    assert (limits.max_connections.value, limits.max_pending_requests.value) == (MAX_UINT32, MAX_UINT32)
    assert (limits.max_requests.value, limits.max_retries.value) == (MAX_UINT32, MAX_UINT32)
    assert limits.track_remaining
    assert cluster.connect_timeout.seconds == 10
    assert not cluster.HasField("outlier_detection") and not cluster.HasField("metadata")


@pytest.mark.parametrize(
    ("hashing", "policy", "ring", "table"),
    [
        ("{httpHeaderName: x-user, ringHash: {minimumRingSize: 4096}}", Cluster.RING_HASH, 4096, None),
        ("{httpHeaderName: x-user, maglev: {tableSize: 65537}}", Cluster.MAGLEV, None, 65537),
        ("{useSourceIp: true, minimumRingSize: 2048}", Cluster.RING_HASH, 2048, None),
        ("{httpQueryParameterName: user}", Cluster.RING_HASH, 1024, None),
    ],
)
def test_consistent_hash(hashing, policy, ring, table):
    cluster = with_rule(f"trafficPolicy: {{loadBalancer: {{consistentHash: {hashing}}}}}")[DEFAULT]
    assert cluster.lb_policy == policy
    if ring is not None:
        assert cluster.ring_hash_lb_config.minimum_ring_size.value == ring
    if table is not None:
        assert cluster.maglev_lb_config.table_size.value == table


def lb_policy(lb):
    return decode(TrafficPolicy, {"loadBalancer": lb})


def test_hash_policy_for_each_hash_key():
    [header] = hash_policy_for(lb_policy({"consistentHash": {"httpHeaderName": "x-user"}}))
    assert header.header.header_name == "x-user"
    cookie_lb = {
        "httpCookie": {
            "name": "user",
            "path": "/",
            "ttl": "10s",
            "attributes": [{"name": "SameSite", "value": "Strict"}],
        }
    }
    [cookie] = hash_policy_for(lb_policy({"consistentHash": cookie_lb}))
    assert (cookie.cookie.name, cookie.cookie.path, cookie.cookie.ttl.seconds) == ("user", "/", 10)
    assert [(a.name, a.value) for a in cookie.cookie.attributes] == [("SameSite", "Strict")]
    [source] = hash_policy_for(lb_policy({"consistentHash": {"useSourceIp": True}}))
    assert source.connection_properties.source_ip
    [query] = hash_policy_for(lb_policy({"consistentHash": {"httpQueryParameterName": "u"}}))
    assert query.query_parameter.name == "u"
    assert hash_policy_for(lb_policy({"simple": "ROUND_ROBIN"})) == []
    assert hash_policy_for(None) == []


def test_cookie_without_ttl_has_no_ttl():
    [cookie] = hash_policy_for(lb_policy({"consistentHash": {"httpCookie": {"name": "s"}}}))
    assert not cookie.cookie.HasField("ttl")


def test_warmup_sets_slow_start_on_the_chosen_policy():
    round_robin = with_rule("trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 30s}}}")[
        DEFAULT
    ]
    slow = round_robin.round_robin_lb_config.slow_start_config
    assert slow.slow_start_window.seconds == 30
    assert slow.aggression.default_value == 1.0 and slow.min_weight_percent.value == 10.0
    tuned = "warmup: {duration: 1m, aggression: 2.5, minimumPercent: 25}"
    least = with_rule(f"trafficPolicy: {{loadBalancer: {{{tuned}}}}}")[DEFAULT]
    slow = least.least_request_lb_config.slow_start_config
    assert (slow.slow_start_window.seconds, slow.aggression.default_value) == (60, 2.5)
    assert slow.min_weight_percent.value == 25.0
    legacy = with_rule("trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST, warmupDurationSecs: 15s}}")[
        DEFAULT
    ]
    slow = legacy.least_request_lb_config.slow_start_config
    assert slow.slow_start_window.seconds == 15 and not slow.HasField("aggression")
    assert not with_rule("trafficPolicy: {loadBalancer: {simple: RANDOM, warmupDurationSecs: 15s}}")[
        DEFAULT
    ].HasField("least_request_lb_config")


# ---- connection pool -----------------------------------------------------------------------------


def test_connection_pool_limits_and_timeouts():
    cluster = with_rule(
        """
trafficPolicy:
  connectionPool:
    tcp: {maxConnections: 100, connectTimeout: 30ms, maxConnectionDuration: 1h, idleTimeout: 5m,
          tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}}
    http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 10, maxRetries: 3}
"""
    )[DEFAULT]
    [limits] = cluster.circuit_breakers.thresholds
    assert (limits.max_connections.value, limits.max_pending_requests.value) == (100, 10)
    assert (limits.max_requests.value, limits.max_retries.value) == (1000, 3)
    assert cluster.connect_timeout.ToMilliseconds() == 30
    keepalive = cluster.upstream_connection_options.tcp_keepalive
    assert (keepalive.keepalive_probes.value, keepalive.keepalive_time.value) == (3, 7200)
    assert keepalive.keepalive_interval.value == 75
    common = http_options(cluster).common_http_protocol_options
    assert common.idle_timeout.seconds == 300  # TCP idle timeout when HTTP sets none
    assert common.max_requests_per_connection.value == 10
    assert common.max_connection_duration.seconds == 3600


def test_http_idle_timeout_wins_over_tcp():
    cluster = with_rule(
        "trafficPolicy: {connectionPool: {tcp: {idleTimeout: 5m}, http: {idleTimeout: 20s}}}"
    )[DEFAULT]
    assert http_options(cluster).common_http_protocol_options.idle_timeout.seconds == 20


def test_max_concurrent_streams_only_on_http2_clusters():
    body = "trafficPolicy: {connectionPool: {http: {maxConcurrentStreams: 64}}}"
    grpc = with_rule(body, se=service_entry(HOST, protocol="GRPC"))[DEFAULT]
    options = http_options(grpc)
    assert options.explicit_http_config.http2_protocol_options.max_concurrent_streams.value == 64
    plain = http_options(with_rule(body)[DEFAULT])
    assert not plain.explicit_http_config.HasField("http2_protocol_options")
    assert not plain.common_http_protocol_options.HasField("idle_timeout")


def test_h2_upgrade_and_client_protocol():
    upgraded = http_options(
        with_rule("trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}")[DEFAULT]
    )
    assert upgraded.explicit_http_config.HasField("http2_protocol_options")
    assert DEFAULT not in {
        name
        for name, c in with_rule("trafficPolicy: {loadBalancer: {simple: RANDOM}}").items()
        if HTTP_PROTOCOL_OPTIONS in c.typed_extension_protocol_options
    }
    client = http_options(
        with_rule("trafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}")[DEFAULT]
    )
    assert client.use_downstream_protocol_config.HasField("http2_protocol_options")
    assert client.use_downstream_protocol_config.HasField("http_protocol_options")


def test_grpc_ports_speak_http2():
    cluster = clusters_for(service_entry(HOST, protocol="GRPC"))[DEFAULT]
    assert http_options(cluster).explicit_http_config.HasField("http2_protocol_options")


def test_retry_budget():
    [limits] = with_rule("trafficPolicy: {retryBudget: {}}")[DEFAULT].circuit_breakers.thresholds
    assert limits.retry_budget.budget_percent.value == pytest.approx(0.2)
    assert limits.retry_budget.min_retry_concurrency.value == 3
    tuned = "trafficPolicy: {retryBudget: {percent: 25, minRetryConcurrency: 7}}"
    [limits] = with_rule(tuned)[DEFAULT].circuit_breakers.thresholds
    assert (limits.retry_budget.budget_percent.value, limits.retry_budget.min_retry_concurrency.value) == (
        25,
        7,
    )


# ---- outlier detection ---------------------------------------------------------------------------


def test_outlier_detection_like_istio():
    cluster = with_rule(
        """
trafficPolicy:
  outlierDetection: {consecutive5xxErrors: 7, consecutiveGatewayErrors: 0, interval: 5m,
                     baseEjectionTime: 15m, maxEjectionPercent: 50, minHealthPercent: 30}
"""
    )[DEFAULT]
    out = cluster.outlier_detection
    assert (out.consecutive_5xx.value, out.enforcing_consecutive_5xx.value) == (7, 100)
    assert (out.consecutive_gateway_failure.value, out.enforcing_consecutive_gateway_failure.value) == (0, 0)
    assert out.HasField("enforcing_success_rate") and out.enforcing_success_rate.value == 0
    assert (out.interval.seconds, out.base_ejection_time.seconds, out.max_ejection_percent.value) == (
        300,
        900,
        50,
    )
    assert not out.split_external_local_origin_errors
    assert cluster.common_lb_config.healthy_panic_threshold.value == 30


def test_outlier_detection_disables_panic_mode_by_default_and_splits_local_origin():
    cluster = with_rule(
        """
trafficPolicy:
  outlierDetection: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 4}
"""
    )[DEFAULT]
    out = cluster.outlier_detection
    assert out.split_external_local_origin_errors
    assert (
        out.consecutive_local_origin_failure.value,
        out.enforcing_consecutive_local_origin_failure.value,
    ) == (4, 100)
    assert (
        out.HasField("enforcing_local_origin_success_rate")
        and out.enforcing_local_origin_success_rate.value == 0
    )
    assert not out.HasField("consecutive_5xx")
    panic = cluster.common_lb_config.healthy_panic_threshold
    assert cluster.common_lb_config.HasField("healthy_panic_threshold") and panic.value == 0


# ---- port-level settings, subsets, metadata ------------------------------------------------------


def test_port_level_settings_apply_to_their_port_only():
    se = service_entry(HOST).replace(
        "ports: [{number: 9080, name: p9080, protocol: HTTP}]",
        "ports: [{number: 9080, name: a, protocol: HTTP}, {number: 9090, name: b, protocol: HTTP}]",
    )
    found = with_rule(
        """
trafficPolicy:
  loadBalancer: {simple: RANDOM}
  outlierDetection: {consecutive5xxErrors: 2}
  portLevelSettings:
  - port: {number: 9090}
    loadBalancer: {simple: ROUND_ROBIN}
""",
        se=se,
    )
    assert found[DEFAULT].lb_policy == Cluster.RANDOM and found[DEFAULT].HasField("outlier_detection")
    other = found[f"outbound|9090||{HOST}"]
    assert other.lb_policy == Cluster.ROUND_ROBIN
    assert not other.HasField("outlier_detection")  # port-level settings do not inherit


def test_subset_policy_overrides_groups_of_the_rule():
    found = with_rule(
        """
trafficPolicy:
  loadBalancer: {simple: RANDOM}
  connectionPool: {tcp: {maxConnections: 5}}
subsets:
- name: v2
  labels: {version: v2}
  trafficPolicy: {connectionPool: {http: {http2MaxRequests: 9}}}
"""
    )
    subset = found[f"outbound|9080|v2|{HOST}"]
    assert subset.lb_policy == Cluster.RANDOM
    [limits] = subset.circuit_breakers.thresholds
    assert limits.max_requests.value == 9 and limits.max_connections.value == MAX_UINT32  # group replaced
    [limits] = found[DEFAULT].circuit_breakers.thresholds
    assert limits.max_connections.value == 5


def test_rule_and_subset_in_metadata():
    found = with_rule("subsets: [{name: v1, labels: {version: v1}}]")
    path = "/apis/networking.istio.io/v1/namespaces/prod/destination-rule/rule"
    assert found[DEFAULT].metadata.filter_metadata["istio"]["config"] == path
    assert "subset" not in found[DEFAULT].metadata.filter_metadata["istio"]
    subset = found[f"outbound|9080|v1|{HOST}"].metadata.filter_metadata["istio"]
    assert (subset["config"], subset["subset"]) == (path, "v1")


def test_dns_subset_clusters_hold_only_matching_endpoints():
    se = service_entry(HOST, resolution="DNS", extra="  workloadSelector: {labels: {app: svc}}")
    docs = [
        se,
        workload("a", "prod", "a.example.com", {"app": "svc", "version": "v1"}),
        workload("b", "prod", "b.example.com", {"app": "svc", "version": "v2"}),
        destination_rule(
            "rule",
            "prod",
            f"host: {HOST}\nsubsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v9, labels: {{v: x}}}}]",
        ),
    ]
    found = clusters_for(*docs)
    v1 = found[f"outbound|9080|v1|{HOST}"]
    addresses = [
        lb.endpoint.address.socket_address.address
        for g in v1.load_assignment.endpoints
        for lb in g.lb_endpoints
    ]
    assert addresses == ["a.example.com"]
    assert f"outbound|9080|v9|{HOST}" not in found  # a DNS subset with no endpoints is left out
    assert len([lb for g in found[DEFAULT].load_assignment.endpoints for lb in g.lb_endpoints]) == 2
    assert all(
        lb.health_status == health_check_pb2.HEALTHY
        for g in found[DEFAULT].load_assignment.endpoints
        for lb in g.lb_endpoints
    )
