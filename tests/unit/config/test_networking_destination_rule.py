"""DestinationRule: Istio's doc examples decode in every served version and spelling; each
validation rule rejects or warns at the right field path."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from typing import Any

import pytest
import yaml
from config_support import KindDocs

from pilotfish.config.networking.destination_rule import DestinationRuleSpec

VERSIONS = ("v1alpha3", "v1beta1", "v1")

# Istio docs, DestinationRule reference: subsets with their own policy, LB, TLS, outlier detection.
REVIEWS = """
host: reviews.prod.svc.cluster.local
trafficPolicy:
  loadBalancer: {simple: LEAST_REQUEST}
  connectionPool:
    tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
    http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10, idleTimeout: 1h}
  outlierDetection:
    {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 50}
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
  outlier_detection:
    {consecutive_5xx_errors: 7, interval: 5m, base_ejection_time: 15m, max_ejection_percent: 50}
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


_DOCS = KindDocs("DestinationRule", "dr", "default")
document = _DOCS.document
problems = _DOCS.problems


def parse(spec: Any, version: str = "v1") -> DestinationRuleSpec:
    return _DOCS.parse(spec, version)  # type: ignore[no-any-return]


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


def cases(text: str) -> list[tuple[Any, ...]]:
    """Rule cases written as YAML: id, spec, field path, message substring, severity."""
    return [
        (c["id"], c["spec"], c["path"], c["message"], c.get("severity", "error"))
        for c in yaml.safe_load(textwrap.dedent(text))
    ]


# Each case breaks one rule; severity is "error" unless given.
RULES = cases(
    r"""
    - id: host-required
      path: spec.host
      message: required field is missing
      spec:
        subsets:
        - {name: v1}

    - id: host-invalid
      path: spec.host
      message: invalid
      spec: {host: bad host}

    - id: duplicate-subset
      path: spec.subsets[1].name
      message: duplicate subset
      spec:
        host: a
        subsets:
        - {name: v1}
        - {name: v1}

    - id: subset-name-required
      path: spec.subsets[0].name
      message: required field is missing
      spec:
        host: a
        subsets:
        - {labels: {a: b}}

    - id: subset-name-empty
      path: spec.subsets[0].name
      message: cannot be empty
      spec:
        host: a
        subsets:
        - {name: ''}

    - id: subset-name-invalid
      path: spec.subsets[0].name
      message: subset name is invalid
      spec:
        host: a
        subsets:
        - {name: V1}

    - id: subset-labels
      path: spec.subsets[0].labels.bad key!
      message: invalid label key
      spec:
        host: a
        subsets:
        - {name: v1, labels: {bad key!: v}}

    - id: subset-policy-empty
      path: spec.subsets[0].trafficPolicy
      message: at least one field
      spec:
        host: a
        subsets:
        - {name: v1, trafficPolicy: {}}

    - id: lb-unknown-name
      path: spec.trafficPolicy.loadBalancer.simple
      message: must be one of
      spec:
        host: a
        trafficPolicy: {loadBalancer: {simple: FASTEST}}

    - id: lb-oneof
      path: spec.trafficPolicy.loadBalancer
      message: only one of simple, consistentHash
      spec:
        host: a
        trafficPolicy:
          loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}

    - id: hash-needs-key
      path: spec.trafficPolicy.loadBalancer.consistentHash
      message: needs one of
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            consistentHash: {ringHash: {minimumRingSize: 64}}

    - id: hash-two-keys
      path: spec.trafficPolicy.loadBalancer.consistentHash
      message: only one of
      spec:
        host: a
        trafficPolicy:
          loadBalancer: {consistentHash: {useSourceIp: true, httpHeaderName: x}}

    - id: ring-hash-too-big
      path: spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize
      message: at most
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 9000000}}

    - id: ring-size-and-algorithm
      path: spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize
      message: only one of minimumRingSize
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            consistentHash: {useSourceIp: true, minimumRingSize: 64, maglev: {tableSize: 65537}}

    - id: ring-size-deprecated
      path: spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize
      message: deprecated
      severity: warning
      spec:
        host: a
        trafficPolicy:
          loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 64}}

    - id: maglev-not-prime
      path: spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize
      message: prime
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}

    - id: cookie-name-required
      path: spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name
      message: required field is missing
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            consistentHash: {httpCookie: {ttl: 0s}}

    - id: cookie-ttl
      path: spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl
      message: invalid duration
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            consistentHash: {httpCookie: {name: c, ttl: forever}}

    - id: warmup-percent
      path: spec.trafficPolicy.loadBalancer.warmup.minimumPercent
      message: not in range 0..100
      spec:
        host: a
        trafficPolicy:
          loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 10s, minimumPercent: 150}}

    - id: locality-distribute-sum
      path: spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to
      message: '!= 100'
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            localityLbSetting:
              distribute:
              - {from: us/*, to: {us/a/*: 60, us/b/*: 30}}

    - id: locality-distribute-and-failover
      path: spec.trafficPolicy.loadBalancer.localityLbSetting
      message: distribute' and 'failover'
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            localityLbSetting:
              distribute:
              - {from: us/*, to: {us/*: 100}}
              failover:
              - {from: us, to: eu}

    - id: locality-failover-same
      path: spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]
      message: different regions
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            localityLbSetting:
              failover:
              - {from: us, to: us}
          outlierDetection: {interval: 1s}

    - id: locality-failover-needs-outlier
      path: spec.trafficPolicy.loadBalancer.localityLbSetting
      message: outlier detection policy must be provided
      severity: warning
      spec:
        host: a
        trafficPolicy:
          loadBalancer:
            localityLbSetting:
              failover:
              - {from: us, to: eu}

    - id: outlier-max-ejection
      path: spec.trafficPolicy.outlierDetection.maxEjectionPercent
      message: not in range 0..100
      spec:
        host: a
        trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}

    - id: outlier-min-health
      path: spec.trafficPolicy.outlierDetection.minHealthPercent
      message: not in range 0..100
      spec:
        host: a
        trafficPolicy: {outlierDetection: {minHealthPercent: -1}}

    - id: outlier-local-origin
      path: spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures
      message: splitExternalLocalOriginErrors
      spec:
        host: a
        trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 5}}

    - id: outlier-interval
      path: spec.trafficPolicy.outlierDetection.interval
      message: greater than 1ms
      spec:
        host: a
        trafficPolicy: {outlierDetection: {interval: 0s}}

    - id: outlier-error-code
      path: spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[1]
      message: out of range
      spec:
        host: a
        trafficPolicy:
          outlierDetection: {outlierDetectionHttpErrorCodes: [503, 700]}

    - id: outlier-consecutive-errors
      path: spec.trafficPolicy.outlierDetection.consecutiveErrors
      message: deprecated
      severity: warning
      spec:
        host: a
        trafficPolicy: {outlierDetection: {consecutiveErrors: 5}}

    - id: pool-empty
      path: spec.trafficPolicy.connectionPool
      message: at least one field
      spec:
        host: a
        trafficPolicy: {connectionPool: {}}

    - id: pool-negative
      path: spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests
      message: non-negative
      spec:
        host: a
        trafficPolicy:
          connectionPool: {http: {http1MaxPendingRequests: -1}}

    - id: pool-max-connections
      path: spec.trafficPolicy.connectionPool.tcp.maxConnections
      message: non-negative
      spec:
        host: a
        trafficPolicy:
          connectionPool: {tcp: {maxConnections: -5}}

    - id: pool-upgrade-client-protocol
      path: spec.trafficPolicy.connectionPool.http
      message: useClientProtocol must not be true
      spec:
        host: a
        trafficPolicy:
          connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}

    - id: pool-tcp-idle-timeout
      path: spec.trafficPolicy.connectionPool.tcp.idleTimeout
      message: invalid duration
      spec:
        host: a
        trafficPolicy:
          connectionPool: {tcp: {idleTimeout: bogus}}

    - id: pool-connect-timeout
      path: spec.trafficPolicy.connectionPool.tcp.connectTimeout
      message: ms precision
      spec:
        host: a
        trafficPolicy:
          connectionPool: {tcp: {connectTimeout: 1500us}}

    - id: policy-empty
      path: spec.trafficPolicy
      message: at least one field
      spec: {host: a, trafficPolicy: {}}

    - id: tunnel-and-proxy-protocol
      path: spec.trafficPolicy
      message: tunnel and proxyProtocol
      spec:
        host: a
        trafficPolicy:
          tunnel: {targetHost: a.com, targetPort: 80}
          proxyProtocol: {version: V2}

    - id: tunnel-protocol
      path: spec.trafficPolicy.tunnel.protocol
      message: CONNECT
      spec:
        host: a
        trafficPolicy:
          tunnel: {protocol: GET, targetHost: a.com, targetPort: 80}

    - id: tunnel-target-port
      path: spec.trafficPolicy.tunnel.targetPort
      message: required field is missing
      spec:
        host: a
        trafficPolicy: {tunnel: {targetHost: a.com}}

    - id: tls-mutual-files
      path: spec.trafficPolicy.tls.clientCertificate
      message: client certificate required
      spec:
        host: a
        trafficPolicy: {tls: {mode: MUTUAL, privateKey: /k.pem}}

    - id: tls-credential-and-files
      path: spec.trafficPolicy.tls.caCertificates
      message: with credentialName
      spec:
        host: a
        trafficPolicy:
          tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}

    - id: tls-insecure-skip-verify
      path: spec.trafficPolicy.tls
      message: insecureSkipVerify
      spec:
        host: a
        trafficPolicy:
          tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a]}

    - id: tls-istio-mutual-files
      path: spec.trafficPolicy.tls
      message: ignored
      severity: warning
      spec:
        host: a
        trafficPolicy: {tls: {mode: ISTIO_MUTUAL, clientCertificate: /c.pem}}

    - id: tls-mode-unknown
      path: spec.trafficPolicy.tls.mode
      message: must be one of
      spec:
        host: a
        trafficPolicy: {tls: {mode: STRICT}}

    - id: port-level-needs-port
      path: spec.trafficPolicy.portLevelSettings[0]
      message: need a port
      spec:
        host: a
        trafficPolicy:
          portLevelSettings:
          - {loadBalancer: {simple: RANDOM}}

    - id: port-level-empty
      path: spec.trafficPolicy.portLevelSettings[0]
      message: at least one field
      spec:
        host: a
        trafficPolicy:
          portLevelSettings:
          - {port: {number: 80}}

    - id: port-level-duplicate
      path: spec.trafficPolicy.portLevelSettings[1].port.number
      message: duplicate portLevelSettings
      spec:
        host: a
        trafficPolicy:
          portLevelSettings:
          - {port: {number: 80}, tls: {mode: DISABLE}}
          - {port: {number: 80}, tls: {mode: SIMPLE}}

    - id: port-level-port-range
      path: spec.trafficPolicy.portLevelSettings[0].port.number
      message: between 1 and 65535
      spec:
        host: a
        trafficPolicy:
          portLevelSettings:
          - {port: {number: 0}, tls: {mode: DISABLE}}

    - id: retry-budget-percent
      path: spec.trafficPolicy.retryBudget.percent
      message: not in range 0..100
      spec:
        host: a
        trafficPolicy: {retryBudget: {percent: 120}}

    - id: selector-wildcard
      path: spec.workloadSelector.matchLabels.app
      message: wildcard is not supported
      spec:
        host: a
        workloadSelector: {matchLabels: {app: web*}}

    - id: selector-empty
      path: spec.workloadSelector
      message: without labels
      severity: warning
      spec: {host: a, workloadSelector: {}}

    - id: selector-export-beyond-namespace
      path: spec.exportTo
      message: cannot be exported beyond its namespace
      spec:
        host: a
        exportTo: [other]
        workloadSelector: {matchLabels: {app: web}}

    - id: export-to-invalid
      path: spec.exportTo[0]
      message: invalid exportTo
      spec: {host: a, exportTo: [Not_A_Namespace]}
    """
)


@pytest.mark.parametrize(
    ("spec", "path", "message", "severity"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
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
        "host: '*.example.com'\n"
        "trafficPolicy: {loadBalancer: "
        "{consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}}}",
        "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: "
        "{distribute: [{from: 'us/a/*', to: {'us/a/*': 80, 'us/b/*': 20}}]}}}",
        "host: a\ntrafficPolicy: {tunnel: {protocol: CONNECT, targetHost: 10.0.0.1, targetPort: 8443}}",
        "host: a\ntrafficPolicy: {connectionPool: {tcp: {idleTimeout: 1h30m}}, "
        "retryBudget: {percent: 20, budgetInterval: 10s}}",
        "host: a\nexportTo: [.]\nworkloadSelector: {matchLabels: {app: web}}\n"
        "trafficPolicy: {tls: {mode: DISABLE}}",
    ],
)  # fmt: skip
def test_valid_documents_have_no_findings(spec: str) -> None:
    assert problems(spec) == []
