"""Sidecar: Istio's doc examples decode in every served version and spelling; each validation
rule rejects or warns at the right field path."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml
from config_support import KindDocs

from pilotfish.config.networking.sidecar import SidecarSpec, default_endpoint, split_host_port

VERSIONS = ("v1alpha3", "v1beta1", "v1")

# Istio docs, Sidecar reference: ingress with a default endpoint, egress with namespace/host.
RATINGS = """
workloadSelector:
  labels: {app: ratings}
ingress:
- port: {number: 9080, protocol: HTTP, name: somename}
  defaultEndpoint: unix:///var/run/someuds.sock
  connectionPool: {http: {http1MaxPendingRequests: 100}}
- port: {number: 8443, protocol: HTTPS, name: https}
  defaultEndpoint: 127.0.0.1:8080
  tls: {mode: SIMPLE, privateKey: /etc/certs/privatekey.pem, serverCertificate: /etc/certs/servercert.pem}
egress:
- port: {number: 9080, protocol: HTTP, name: egresshttp}
  hosts: [prod-us1/*]
- hosts: [istio-system/*, ./*.example.com]
outboundTrafficPolicy:
  mode: ALLOW_ANY
  egressProxy: {host: egress.example.com, port: {number: 3128}}
inboundConnectionPool: {tcp: {maxConnections: 10}}
"""
RATINGS_SNAKE = (
    RATINGS.replace("workloadSelector", "workload_selector")
    .replace("defaultEndpoint", "default_endpoint")
    .replace("privateKey", "private_key")
    .replace("serverCertificate", "server_certificate")
    .replace("connectionPool", "connection_pool")
    .replace("http1MaxPendingRequests", "http1_max_pending_requests")
    .replace("outboundTrafficPolicy", "outbound_traffic_policy")
    .replace("egressProxy", "egress_proxy")
    .replace("inboundConnectionPool", "inbound_connection_pool")
)


_DOCS = KindDocs("Sidecar", "sc", "prod-us1")
document = _DOCS.document
problems = _DOCS.problems


def parse(spec: Any, version: str = "v1") -> SidecarSpec:
    return _DOCS.parse(spec, version)  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", VERSIONS)
def test_ratings_sidecar_decodes_ingress_egress_and_outbound_policy(version: str) -> None:
    spec = parse(RATINGS, version)
    assert spec.workload_selector is not None and spec.workload_selector.matches({"app": "ratings", "v": "1"})
    uds, https = spec.ingress
    assert (uds.port.number, uds.default_endpoint) == (9080, "unix:///var/run/someuds.sock")
    assert https.tls is not None and https.tls.mode == "SIMPLE"
    assert spec.egress[0].hosts == ("prod-us1/*",) and spec.egress[1].port is None
    policy = spec.outbound_traffic_policy
    assert (
        policy is not None
        and policy.egress_proxy is not None
        and policy.egress_proxy.host == "egress.example.com"
    )


def test_snake_case_spelling_decodes_to_the_same_object() -> None:
    assert parse(RATINGS) == parse(RATINGS_SNAKE)


@pytest.mark.parametrize(
    ("text", "parts"),
    [("127.0.0.1:80", ("127.0.0.1", "80")), ("[::1]:80", ("::1", "80")), (":80", ("", "80")),
     ("::1:80", None), ("[::1]80", None), ("host", None)],
)  # fmt: skip
def test_split_host_port_follows_go(text: str, parts: tuple[str, str] | None) -> None:
    assert split_host_port(text) == parts


@pytest.mark.parametrize(
    "value", ["127.0.0.1:8080", "0.0.0.0:80", "[::1]:80", "[::]:80", ":8080", "unix://@abstract"]
)
def test_default_endpoint_forms_istio_accepts(value: str) -> None:
    assert default_endpoint(value) is None


EGRESS_ALL = "egress: [{hosts: ['*/*']}]"


def cases(text: str) -> list[tuple[Any, ...]]:
    """Rule cases written as YAML: id, spec, field path, message substring, severity."""
    return [
        (c["id"], c["spec"], c["path"], c["message"], c.get("severity", "error"))
        for c in yaml.safe_load(textwrap.dedent(text))
    ]


# Each case breaks one rule; severity is "error" unless given.
RULES = cases(
    r"""
    - id: empty
      path: spec
      message: empty configuration
      spec:
        workloadSelector: {labels: {app: a}}

    - id: selector-without-labels
      path: spec.workloadSelector
      message: without labels
      severity: warning
      spec:
        workloadSelector: {}
        egress:
        - {hosts: ['*/*']}

    - id: selector-wildcard
      path: spec.workloadSelector.labels.app
      message: wildcard is not supported
      spec:
        workloadSelector: {labels: {app: a*}}
        egress:
        - {hosts: ['*/*']}

    - id: egress-hosts-required
      path: spec.egress[0].hosts
      message: required field is missing
      spec:
        egress:
        - port: {number: 80, protocol: HTTP, name: http}

    - id: egress-hosts-empty
      path: spec.egress[0].hosts
      message: at least one host
      spec:
        egress:
        - {hosts: []}

    - id: egress-host-form
      path: spec.egress[0].hosts[0]
      message: namespace/dnsName
      spec:
        egress:
        - {hosts: [foo.com]}

    - id: egress-host-short
      path: spec.egress[0].hosts[0]
      message: short names
      spec:
        egress:
        - {hosts: ['*/reviews']}

    - id: egress-host-namespace
      path: spec.egress[0].hosts[0]
      message: invalid namespace
      spec:
        egress:
        - {hosts: [Bad_NS/a.com]}

    - id: egress-host-duplicate
      path: spec.egress[0].hosts[1]
      message: duplicated egress host
      severity: warning
      spec:
        egress:
        - {hosts: [ns/a.com, ns/a.com]}

    - id: egress-catch-all-not-last
      path: spec.egress[0].port
      message: must be the last listener
      spec:
        egress:
        - {hosts: ['*/*']}
        - port: {number: 80, protocol: HTTP, name: h}
          hosts: ['*/*']

    - id: egress-duplicate-port
      path: spec.egress[1].port.number
      message: must be unique
      spec:
        egress:
        - port: {number: 80, protocol: HTTP, name: a}
          hosts: ['*/*']
        - port: {number: 80, protocol: HTTP, name: b}
          hosts: ['*/*']

    - id: egress-port-zero-needs-uds
      path: spec.egress[0].bind
      message: unix domain socket bind
      spec:
        egress:
        - {port: {number: 0, protocol: HTTP}, hosts: ['*/*']}

    - id: egress-uds-capture-mode
      path: spec.egress[0].captureMode
      message: DEFAULT/NONE
      spec:
        egress:
        - port: {number: 0, protocol: HTTP}
          bind: unix:///s.sock
          captureMode: IPTABLES
          hosts: ['*/*']

    - id: egress-bind
      path: spec.egress[0].bind
      message: not an IP address
      spec:
        egress:
        - port: {number: 80, protocol: HTTP}
          bind: not-an-ip
          hosts: ['*/*']

    - id: egress-port-name
      path: spec.egress[0].port.name
      message: invalid port name
      spec:
        egress:
        - port: {number: 80, protocol: HTTP, name: Bad_Name}
          hosts: ['*/*']

    - id: capture-mode-unknown
      path: spec.egress[0].captureMode
      message: must be one of
      spec:
        egress:
        - {captureMode: TPROXY, hosts: ['*/*']}

    - id: ingress-port-required
      path: spec.ingress[0].port
      message: required field is missing
      spec:
        ingress:
        - {defaultEndpoint: '127.0.0.1:80'}

    - id: ingress-port-number
      path: spec.ingress[0].port.number
      message: between 1 and 65535
      spec:
        ingress:
        - {port: {number: 0, protocol: HTTP}}

    - id: ingress-protocol
      path: spec.ingress[0].port.protocol
      message: unsupported protocol
      spec:
        ingress:
        - {port: {number: 80, protocol: SPDY}}

    - id: ingress-target-port
      path: spec.ingress[0].port.targetPort
      message: no impact on Sidecars
      spec:
        ingress:
        - port: {number: 80, protocol: HTTP, targetPort: 8080}

    - id: ingress-duplicate-port
      path: spec.ingress[1].port.number
      message: must be unique
      spec:
        ingress:
        - {port: {number: 80, protocol: HTTP}}
        - {port: {number: 80, protocol: TCP}}

    - id: default-endpoint-host
      path: spec.ingress[0].defaultEndpoint
      message: must be of form
      spec:
        ingress:
        - port: {number: 80, protocol: HTTP}
          defaultEndpoint: 10.0.0.1:8080

    - id: default-endpoint-port
      path: spec.ingress[0].defaultEndpoint
      message: not a number
      spec:
        ingress:
        - port: {number: 80, protocol: HTTP}
          defaultEndpoint: 127.0.0.1:http

    - id: default-endpoint-port-range
      path: spec.ingress[0].defaultEndpoint
      message: between 1 and 65535
      spec:
        ingress:
        - port: {number: 80, protocol: HTTP}
          defaultEndpoint: 127.0.0.1:99999

    - id: default-endpoint-uds
      path: spec.ingress[0].defaultEndpoint
      message: absolute path
      spec:
        ingress:
        - port: {number: 80, protocol: HTTP}
          defaultEndpoint: unix://relative.sock

    - id: ingress-tls-istio-mutual
      path: spec.ingress[0].tls.mode
      message: cannot set mode to ISTIO_MUTUAL
      spec:
        ingress:
        - {port: {number: 443, protocol: HTTPS}, tls: {mode: ISTIO_MUTUAL}}

    - id: ingress-tls-credential-name
      path: spec.ingress[0].tls.credentialName
      message: not supported in sidecar ingress
      spec:
        ingress:
        - port: {number: 443, protocol: HTTPS}
          tls: {mode: SIMPLE, credentialName: c}

    - id: ingress-tls-needs-files
      path: spec.ingress[0].tls.serverCertificate
      message: SIMPLE TLS requires
      spec:
        ingress:
        - {port: {number: 443, protocol: HTTPS}, tls: {mode: SIMPLE}}

    - id: ingress-http-pool-on-tcp
      path: spec.ingress[0].connectionPool.http
      message: only TCP settings apply
      severity: warning
      spec:
        ingress:
        - port: {number: 80, protocol: TCP}
          connectionPool: {http: {maxRetries: 3}}

    - id: inbound-pool-empty
      path: spec.inboundConnectionPool
      message: at least one field
      spec: {inboundConnectionPool: {}}

    - id: egress-proxy-registry-only
      path: spec.outboundTrafficPolicy.egressProxy
      message: only with the ALLOW_ANY mode
      spec:
        outboundTrafficPolicy:
          mode: REGISTRY_ONLY
          egressProxy: {host: a.com, port: {number: 80}}

    - id: egress-proxy-port
      path: spec.outboundTrafficPolicy.egressProxy.port
      message: needs a port
      spec:
        outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: a.com}}

    - id: egress-proxy-host
      path: spec.outboundTrafficPolicy.egressProxy.host
      message: invalid
      spec:
        outboundTrafficPolicy:
          mode: ALLOW_ANY
          egressProxy: {host: '*.a.com', port: {number: 80}}
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
        RATINGS,
        EGRESS_ALL,
        "egress: [{port: {number: 0, protocol: HTTP}, bind: 'unix:///var/run/out.sock', captureMode: NONE, "
        "hosts: ['~/*']}]",
        "outboundTrafficPolicy: {mode: REGISTRY_ONLY}",
    ],
)  # fmt: skip
def test_valid_documents_have_no_findings(spec: str) -> None:
    assert problems(spec) == []
