"""DestinationRule: Istio's doc examples decode in every served version and spelling; each
validation rule rejects or warns at the right field path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from pilotfish.config.loader import parse_resource
from pilotfish.config.networking.destination_rule import DestinationRuleSpec
from pilotfish.errors import ConfigError, Problem

VERSIONS = ("v1alpha3", "v1beta1", "v1")

# Istio docs, DestinationRule reference: subsets with their own policy, LB, TLS, outlier detection.
REVIEWS = """
host: reviews.prod.svc.cluster.local
trafficPolicy:
  loadBalancer: {simple: LEAST_REQUEST}
  connectionPool:
    tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
    http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10, idleTimeout: 1h}
  outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 50}
  tls: {mode: ISTIO_MUTUAL}
  portLevelSettings:
  - port: {number: 80}
    loadBalancer: {simple: LEAST_CONN}
  - port: {number: 9080}
    loadBalancer: {simple: ROUND_ROBIN}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 0s}, ringHash: {minimumRingSize: 1024}}
"""
REVIEWS_SNAKE = """
host: reviews.prod.svc.cluster.local
traffic_policy:
  load_balancer: {simple: LEAST_REQUEST}
  connection_pool:
    tcp: {max_connections: 100, connect_timeout: 30ms, tcp_keepalive: {time: 7200s, interval: 75s}}
    http: {http2_max_requests: 1000, max_requests_per_connection: 10, idle_timeout: 1h}
  outlier_detection: {consecutive_5xx_errors: 7, interval: 5m, base_ejection_time: 15m, max_ejection_percent: 50}
  tls: {mode: ISTIO_MUTUAL}
  port_level_settings:
  - port: {number: 80}
    load_balancer: {simple: LEAST_CONN}
  - port: {number: 9080}
    load_balancer: {simple: ROUND_ROBIN}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  traffic_policy:
    load_balancer:
      consistent_hash: {http_cookie: {name: user, ttl: 0s}, ring_hash: {minimum_ring_size: 1024}}
"""
# Istio docs, "Egress TLS origination" and locality failover.
EGRESS_TLS = """
host: edition.cnn.com
trafficPolicy:
  tls: {mode: SIMPLE, sni: edition.cnn.com, credentialName: client-credential}
  loadBalancer:
    simple: ROUND_ROBIN
    localityLbSetting:
      enabled: true
      failover: [{from: us-east, to: eu-west}]
  outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}
"""


def document(spec: Any, version: str = "v1", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "DestinationRule",
        "metadata": {"name": "dr", "namespace": namespace},
        "spec": yaml.safe_load(spec) if isinstance(spec, str) else spec,
    }


def parse(spec: Any, version: str = "v1") -> DestinationRuleSpec:
    resource, warnings = parse_resource(document(spec, version), "<test>", 1)
    assert not warnings, warnings
    return resource.spec  # type: ignore[no-any-return]


def problems(spec: Any) -> list[Problem]:
    try:
        _, warnings = parse_resource(document(spec), "<test>", 1)
    except ConfigError as exc:
        return list(exc.problems)
    return warnings


@pytest.mark.parametrize("version", VERSIONS)
def test_reviews_rule_decodes_subsets_lb_pool_outlier_and_tls(version: str) -> None:
    spec = parse(REVIEWS, version)
    policy = spec.traffic_policy
    assert policy is not None and policy.load_balancer is not None
    assert policy.load_balancer.simple == "LEAST_REQUEST"
    assert policy.connection_pool is not None and policy.connection_pool.tcp is not None
    assert policy.connection_pool.tcp.connect_timeout == timedelta(milliseconds=30)
    assert policy.outlier_detection is not None and policy.outlier_detection.consecutive_5xx_errors == 7
    assert policy.tls is not None and policy.tls.mode == "ISTIO_MUTUAL"
    assert [p.port.number for p in policy.port_level_settings if p.port] == [80, 9080]
    v2 = spec.subset("v2")
    assert v2 is not None and v2.labels == {"version": "v2"}
    assert v2.traffic_policy is not None and v2.traffic_policy.load_balancer is not None
    hashing = v2.traffic_policy.load_balancer.consistent_hash
    assert hashing is not None and hashing.http_cookie is not None and hashing.http_cookie.name == "user"
    assert hashing.ring_hash is not None and hashing.ring_hash.minimum_ring_size == 1024


def test_snake_case_spelling_decodes_to_the_same_object() -> None:
    assert parse(REVIEWS) == parse(REVIEWS_SNAKE)


def test_egress_tls_origination_with_locality_failover_is_valid() -> None:
    spec = parse(EGRESS_TLS)
    assert spec.traffic_policy is not None and spec.traffic_policy.tls is not None
    assert spec.traffic_policy.tls.credential_name == "client-credential"


POLICY = "host: a\ntrafficPolicy: {%s}"

# (case id, spec, field path, message substring, severity)
RULES: list[tuple[str, str, str, str, str]] = [
    ("host-required", "subsets: [{name: v1}]", "spec.host", "required field is missing", "error"),
    ("host-invalid", "host: 'bad host'", "spec.host", "invalid", "error"),
    ("duplicate-subset", "host: a\nsubsets: [{name: v1}, {name: v1}]", "spec.subsets[1].name", "duplicate subset", "error"),
    ("subset-name-required", "host: a\nsubsets: [{labels: {a: b}}]", "spec.subsets[0].name", "required field is missing", "error"),
    ("subset-name-empty", "host: a\nsubsets: [{name: ''}]", "spec.subsets[0].name", "cannot be empty", "error"),
    ("subset-name-invalid", "host: a\nsubsets: [{name: V1}]", "spec.subsets[0].name", "subset name is invalid", "error"),
    ("subset-labels", "host: a\nsubsets: [{name: v1, labels: {'bad key!': v}}]", "spec.subsets[0].labels.bad key!", "invalid label key", "error"),
    ("subset-policy-empty", "host: a\nsubsets: [{name: v1, trafficPolicy: {}}]", "spec.subsets[0].trafficPolicy", "at least one field", "error"),
    ("lb-unknown-name", POLICY % "loadBalancer: {simple: FASTEST}", "spec.trafficPolicy.loadBalancer.simple", "must be one of", "error"),
    ("lb-oneof", POLICY % "loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}",
     "spec.trafficPolicy.loadBalancer", "only one of simple, consistentHash", "error"),
    ("hash-needs-key", POLICY % "loadBalancer: {consistentHash: {ringHash: {minimumRingSize: 64}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash", "needs one of", "error"),
    ("hash-two-keys", POLICY % "loadBalancer: {consistentHash: {useSourceIp: true, httpHeaderName: x}}",
     "spec.trafficPolicy.loadBalancer.consistentHash", "only one of", "error"),
    ("ring-hash-too-big", POLICY % "loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 9000000}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize", "at most", "error"),
    ("ring-size-and-algorithm", POLICY % "loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 64, maglev: {tableSize: 65537}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "only one of minimumRingSize", "error"),
    ("ring-size-deprecated", POLICY % "loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 64}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "deprecated", "warning"),
    ("maglev-not-prime", POLICY % "loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "prime", "error"),
    ("cookie-name-required", POLICY % "loadBalancer: {consistentHash: {httpCookie: {ttl: 0s}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name", "required field is missing", "error"),
    ("cookie-ttl", POLICY % "loadBalancer: {consistentHash: {httpCookie: {name: c, ttl: forever}}}",
     "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl", "invalid duration", "error"),
    ("warmup-percent", POLICY % "loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 10s, minimumPercent: 150}}",
     "spec.trafficPolicy.loadBalancer.warmup.minimumPercent", "not in range 0..100", "error"),
    ("locality-distribute-sum", POLICY % "loadBalancer: {localityLbSetting: {distribute: [{from: 'us/*', to: {'us/a/*': 60, 'us/b/*': 30}}]}}",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "!= 100", "error"),
    ("locality-distribute-and-failover", POLICY % "loadBalancer: {localityLbSetting: {distribute: [{from: 'us/*', to: {'us/*': 100}}], failover: [{from: us, to: eu}]}}",
     "spec.trafficPolicy.loadBalancer.localityLbSetting", "distribute' and 'failover'", "error"),
    ("locality-failover-same", POLICY % "loadBalancer: {localityLbSetting: {failover: [{from: us, to: us}]}}, outlierDetection: {interval: 1s}",
     "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "different regions", "error"),
    ("locality-failover-needs-outlier", POLICY % "loadBalancer: {localityLbSetting: {failover: [{from: us, to: eu}]}}",
     "spec.trafficPolicy.loadBalancer.localityLbSetting", "outlier detection policy must be provided", "warning"),
    ("outlier-max-ejection", POLICY % "outlierDetection: {maxEjectionPercent: 150}",
     "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "not in range 0..100", "error"),
    ("outlier-min-health", POLICY % "outlierDetection: {minHealthPercent: -1}",
     "spec.trafficPolicy.outlierDetection.minHealthPercent", "not in range 0..100", "error"),
    ("outlier-local-origin", POLICY % "outlierDetection: {consecutiveLocalOriginFailures: 5}",
     "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors", "error"),
    ("outlier-interval", POLICY % "outlierDetection: {interval: 0s}",
     "spec.trafficPolicy.outlierDetection.interval", "greater than 1ms", "error"),
    ("outlier-error-code", POLICY % "outlierDetection: {outlierDetectionHttpErrorCodes: [503, 700]}",
     "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[1]", "out of range", "error"),
    ("outlier-consecutive-errors", POLICY % "outlierDetection: {consecutiveErrors: 5}",
     "spec.trafficPolicy.outlierDetection.consecutiveErrors", "deprecated", "warning"),
    ("pool-empty", POLICY % "connectionPool: {}", "spec.trafficPolicy.connectionPool", "at least one field", "error"),
    ("pool-negative", POLICY % "connectionPool: {http: {http1MaxPendingRequests: -1}}",
     "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests", "non-negative", "error"),
    ("pool-max-connections", POLICY % "connectionPool: {tcp: {maxConnections: -5}}",
     "spec.trafficPolicy.connectionPool.tcp.maxConnections", "non-negative", "error"),
    ("pool-upgrade-client-protocol", POLICY % "connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}",
     "spec.trafficPolicy.connectionPool.http", "useClientProtocol must not be true", "error"),
    ("pool-tcp-idle-timeout", POLICY % "connectionPool: {tcp: {idleTimeout: bogus}}",
     "spec.trafficPolicy.connectionPool.tcp.idleTimeout", "invalid duration", "error"),
    ("pool-connect-timeout", POLICY % "connectionPool: {tcp: {connectTimeout: 1500us}}",
     "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "ms precision", "error"),
    ("policy-empty", POLICY % "", "spec.trafficPolicy", "at least one field", "error"),
    ("tunnel-and-proxy-protocol", POLICY % "tunnel: {targetHost: a.com, targetPort: 80}, proxyProtocol: {version: V2}",
     "spec.trafficPolicy", "tunnel and proxyProtocol", "error"),
    ("tunnel-protocol", POLICY % "tunnel: {protocol: GET, targetHost: a.com, targetPort: 80}",
     "spec.trafficPolicy.tunnel.protocol", "CONNECT", "error"),
    ("tunnel-target-port", POLICY % "tunnel: {targetHost: a.com}",
     "spec.trafficPolicy.tunnel.targetPort", "required field is missing", "error"),
    ("tls-mutual-files", POLICY % "tls: {mode: MUTUAL, privateKey: /k.pem}",
     "spec.trafficPolicy.tls.clientCertificate", "client certificate required", "error"),
    ("tls-credential-and-files", POLICY % "tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}",
     "spec.trafficPolicy.tls.caCertificates", "with credentialName", "error"),
    ("tls-insecure-skip-verify", POLICY % "tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a]}",
     "spec.trafficPolicy.tls", "insecureSkipVerify", "error"),
    ("tls-istio-mutual-files", POLICY % "tls: {mode: ISTIO_MUTUAL, clientCertificate: /c.pem}",
     "spec.trafficPolicy.tls", "ignored", "warning"),
    ("tls-mode-unknown", POLICY % "tls: {mode: STRICT}", "spec.trafficPolicy.tls.mode", "must be one of", "error"),
    ("port-level-needs-port", POLICY % "portLevelSettings: [{loadBalancer: {simple: RANDOM}}]",
     "spec.trafficPolicy.portLevelSettings[0]", "need a port", "error"),
    ("port-level-empty", POLICY % "portLevelSettings: [{port: {number: 80}}]",
     "spec.trafficPolicy.portLevelSettings[0]", "at least one field", "error"),
    ("port-level-duplicate", POLICY % "portLevelSettings: [{port: {number: 80}, tls: {mode: DISABLE}}, {port: {number: 80}, tls: {mode: SIMPLE}}]",
     "spec.trafficPolicy.portLevelSettings[1].port.number", "duplicate portLevelSettings", "error"),
    ("port-level-port-range", POLICY % "portLevelSettings: [{port: {number: 0}, tls: {mode: DISABLE}}]",
     "spec.trafficPolicy.portLevelSettings[0].port.number", "between 1 and 65535", "error"),
    ("retry-budget-percent", POLICY % "retryBudget: {percent: 120}",
     "spec.trafficPolicy.retryBudget.percent", "not in range 0..100", "error"),
    ("selector-wildcard", "host: a\nworkloadSelector: {matchLabels: {app: 'web*'}}",
     "spec.workloadSelector.matchLabels.app", "wildcard is not supported", "error"),
    ("selector-empty", "host: a\nworkloadSelector: {}", "spec.workloadSelector", "without labels", "warning"),
    ("selector-export-beyond-namespace", "host: a\nexportTo: [other]\nworkloadSelector: {matchLabels: {app: web}}",
     "spec.exportTo", "cannot be exported beyond its namespace", "error"),
    ("export-to-invalid", "host: a\nexportTo: [Not_A_Namespace]", "spec.exportTo[0]", "invalid exportTo", "error"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "path", "message", "severity"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule_is_enforced_at_its_field_path(spec: str, path: str, message: str, severity: str) -> None:
    found = problems(spec)
    hit = [p for p in found if p.path == path and message.lower() in p.message.lower()]
    assert hit, f"wanted {path}: ...{message}...; got " + "; ".join(f"{p.path}: {p.message}" for p in found)
    assert all(p.severity == severity for p in hit)


@pytest.mark.parametrize(
    "spec",
    [
        REVIEWS,
        EGRESS_TLS,
        "host: '*.example.com'\ntrafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}}}",
        "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: 'us/a/*', to: {'us/a/*': 80, 'us/b/*': 20}}]}}}",
        "host: a\ntrafficPolicy: {tunnel: {protocol: CONNECT, targetHost: 10.0.0.1, targetPort: 8443}}",
        "host: a\ntrafficPolicy: {connectionPool: {tcp: {idleTimeout: 1h30m}}, retryBudget: {percent: 20, budgetInterval: 10s}}",
        "host: a\nexportTo: [.]\nworkloadSelector: {matchLabels: {app: web}}\ntrafficPolicy: {tls: {mode: DISABLE}}",
    ],
)  # fmt: skip
def test_valid_documents_have_no_findings(spec: str) -> None:
    assert problems(spec) == []
