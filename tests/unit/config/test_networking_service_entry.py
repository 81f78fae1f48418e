"""ServiceEntry, WorkloadEntry and WorkloadGroup: Istio's doc examples decode in every served
version and spelling; each validation rule rejects or warns at the right field path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotfish.config.loader import parse_resource
from pilotfish.config.networking.service_entry import ServiceEntrySpec
from pilotfish.config.networking.workload_entry import WorkloadEntrySpec
from pilotfish.config.networking.workload_group import WorkloadGroupSpec
from pilotfish.errors import ConfigError, Problem

VERSIONS = ("v1alpha3", "v1beta1", "v1")

# Istio docs, ServiceEntry reference: STATIC with endpoints, DNS with hostname endpoints.
STATIC = """
hosts: [mymongodb.somedomain]
addresses: [192.192.192.192/24]
ports: [{number: 27018, name: mongodb, protocol: MONGO}]
location: MESH_INTERNAL
resolution: STATIC
endpoints:
- address: 2.2.2.2
- address: 3.3.3.3
  ports: {mongodb: 27019}
  labels: {app: mongo}
"""
DNS = """
hosts: [foo.bar.com]
location: MESH_EXTERNAL
ports:
- {number: 80, name: http, protocol: HTTP}
- {number: 443, name: https, protocol: TLS}
resolution: DNS
endpoints:
- {address: us.foo.bar.com, ports: {https: 8443}, locality: us-west/zone1}
- {address: uk.foo.bar.com, ports: {https: 9443}, weight: 2}
subjectAltNames: [spiffe://cluster.local/ns/foo/sa/bar]
"""
DNS_SNAKE = DNS.replace("subjectAltNames", "subject_alt_names")
WORKLOAD_ENTRY = """
serviceAccount: details-legacy
address: 2.2.2.2
labels: {app: details-legacy, instance-id: vm1}
ports: {http: 9080}
"""
WORKLOAD_GROUP = """
metadata:
  labels: {app: reviews}
template:
  ports: {grpc: 3550, http: 8080}
  serviceAccount: default
probe:
  initialDelaySeconds: 5
  timeoutSeconds: 3
  periodSeconds: 4
  successThreshold: 3
  failureThreshold: 3
  httpGet: {path: /foo/bar, host: 127.0.0.1, port: 3100, scheme: HTTPS, httpHeaders: [{name: Lit-Header, value: Im-The-Best}]}
"""


def document(kind: str, spec: Any, version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default"},
        "spec": yaml.safe_load(spec) if isinstance(spec, str) else spec,
    }


def parse(kind: str, spec: Any, version: str = "v1") -> Any:
    resource, warnings = parse_resource(document(kind, spec, version), "<test>", 1)
    assert not warnings, warnings
    return resource.spec


def problems(kind: str, spec: Any) -> list[Problem]:
    try:
        _, warnings = parse_resource(document(kind, spec), "<test>", 1)
    except ConfigError as exc:
        return list(exc.problems)
    return warnings


@pytest.mark.parametrize("version", VERSIONS)
def test_static_and_dns_service_entries_decode_with_endpoints(version: str) -> None:
    static: ServiceEntrySpec = parse("ServiceEntry", STATIC, version)
    assert (static.resolution, static.location) == ("STATIC", "MESH_INTERNAL")
    assert [e.address for e in static.endpoints] == ["2.2.2.2", "3.3.3.3"]
    assert static.endpoints[1].ports == {"mongodb": 27019}
    dns: ServiceEntrySpec = parse("ServiceEntry", DNS, version)
    assert dns.endpoints[1] == WorkloadEntrySpec(address="uk.foo.bar.com", ports={"https": 9443}, weight=2)
    assert dns.subject_alt_names == ("spiffe://cluster.local/ns/foo/sa/bar",)
    assert dns == parse("ServiceEntry", DNS_SNAKE, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_workload_entry_and_group_decode(version: str) -> None:
    entry: WorkloadEntrySpec = parse("WorkloadEntry", WORKLOAD_ENTRY, version)
    assert (entry.address, entry.service_account, entry.ports) == ("2.2.2.2", "details-legacy", {"http": 9080})
    group: WorkloadGroupSpec = parse("WorkloadGroup", WORKLOAD_GROUP, version)
    assert group.template.ports == {"grpc": 3550, "http": 8080}
    assert group.probe is not None and group.probe.http_get is not None
    assert (group.probe.http_get.port, group.probe.http_get.scheme) == (3100, "HTTPS")
    assert group.metadata is not None and group.metadata.labels == {"app": "reviews"}


SE = "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\n"

# (case id, kind, spec, field path, message substring, severity)
RULES: list[tuple[str, str, str, str, str, str]] = [
    ("se-hosts-required", "ServiceEntry", "ports: []", "spec.hosts", "required field is missing", "error"),
    ("se-hosts-empty", "ServiceEntry", "hosts: []", "spec.hosts", "at least one host", "error"),
    ("se-host-star", "ServiceEntry", "hosts: ['*']", "spec.hosts[0]", "cannot be wildcard", "error"),
    ("se-host-invalid", "ServiceEntry", "hosts: ['a..com']", "spec.hosts[0]", "invalid", "error"),
    ("se-host-partial-wildcard", "ServiceEntry", "hosts: ['*foo.com']", "spec.hosts[0]", "partial wildcard", "warning"),
    ("se-port-name-duplicate", "ServiceEntry", "hosts: [a.com]\nports: [{number: 80, name: http}, {number: 81, name: http}]",
     "spec.ports[1].name", "already defined", "error"),
    ("se-port-number-duplicate", "ServiceEntry", "hosts: [a.com]\nports: [{number: 80, name: a}, {number: 80, name: b}]",
     "spec.ports[1].number", "already defined", "error"),
    ("se-port-name-invalid", "ServiceEntry", "hosts: [a.com]\nports: [{number: 80, name: HTTP_1}]",
     "spec.ports[0].name", "invalid port name", "error"),
    ("se-port-name-required", "ServiceEntry", "hosts: [a.com]\nports: [{number: 80}]",
     "spec.ports[0].name", "required field is missing", "error"),
    ("se-port-protocol", "ServiceEntry", "hosts: [a.com]\nports: [{number: 80, name: a, protocol: QUIC}]",
     "spec.ports[0].protocol", "unsupported protocol", "error"),
    ("se-port-number", "ServiceEntry", "hosts: [a.com]\nports: [{number: 70000, name: a}]",
     "spec.ports[0].number", "between 1 and 65535", "error"),
    ("se-target-port-none", "ServiceEntry", "hosts: [a.com]\nports: [{number: 80, name: a, targetPort: 8080}]",
     "spec.ports[0].targetPort", "no effect", "warning"),
    ("se-address", "ServiceEntry", SE + "addresses: [not-an-ip]", "spec.addresses[0]", "not a valid IP", "error"),
    ("se-cidr-with-dns", "ServiceEntry", SE + "addresses: [10.0.0.0/8]\nresolution: DNS",
     "spec.addresses[0]", "only for NONE/STATIC", "error"),
    ("se-none-with-endpoints", "ServiceEntry", SE + "endpoints: [{address: 1.1.1.1}]",
     "spec.endpoints", "no endpoints should be provided for resolution NONE", "error"),
    ("se-selector-and-endpoints", "ServiceEntry", SE + "resolution: STATIC\nworkloadSelector: {labels: {app: a}}\nendpoints: [{address: 1.1.1.1}]",
     "spec.endpoints", "only one of workloadSelector or endpoints", "error"),
    ("se-static-hostname-endpoint", "ServiceEntry", SE + "resolution: STATIC\nendpoints: [{address: db.example.com}]",
     "spec.endpoints[0].address", "not a valid IP address", "error"),
    ("se-endpoint-port-undefined", "ServiceEntry", SE + "resolution: STATIC\nendpoints: [{address: 1.1.1.1, ports: {grpc: 9000}}]",
     "spec.endpoints[0].ports.grpc", "not defined by the service entry", "error"),
    ("se-endpoint-address-required", "ServiceEntry", SE + "resolution: STATIC\nendpoints: [{labels: {a: b}}]",
     "spec.endpoints[0].address", "address is required", "error"),
    ("se-endpoint-uds-ports", "ServiceEntry", SE + "resolution: STATIC\nendpoints: [{address: 'unix:///sock', ports: {http: 80}}]",
     "spec.endpoints[0].ports", "unix domain socket address may not have ports", "error"),
    ("se-dns-rr-endpoints", "ServiceEntry", SE + "resolution: DNS_ROUND_ROBIN\nendpoints: [{address: a.com}, {address: b.com}]",
     "spec.endpoints", "0 or 1 endpoint", "error"),
    ("se-dns-wildcard-host", "ServiceEntry", "hosts: ['*.example.com']\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS",
     "spec.hosts[0]", "must be FQDN", "error"),
    ("se-dns-endpoint-invalid", "ServiceEntry", SE + "resolution: DNS\nendpoints: [{address: 'bad host'}]",
     "spec.endpoints[0].address", "not a valid FQDN or an IP", "error"),
    ("se-multiple-hosts-tcp", "ServiceEntry", "hosts: [a.com, b.com]\nports: [{number: 3306, name: mysql, protocol: TCP}]\nresolution: DNS",
     "spec.ports[0].protocol", "multiple hosts provided with non-HTTP", "error"),
    ("se-export-to-none-and-more", "ServiceEntry", SE + "exportTo: ['~', ns1]",
     "spec.exportTo", "no one (~) and someone", "error"),
    ("se-resolution-unknown", "ServiceEntry", SE + "resolution: ROUND_ROBIN", "spec.resolution", "must be one of", "error"),
    ("se-selector-wildcard", "ServiceEntry", SE + "resolution: STATIC\nworkloadSelector: {labels: {app: '*'}}",
     "spec.workloadSelector.labels.app", "wildcard is not supported", "error"),
    ("we-address-required", "WorkloadEntry", "labels: {app: a}", "spec.address", "address is required", "error"),
    ("we-address-network-only", "WorkloadEntry", "network: vpc1", "spec.address", "unset with network", "warning"),
    ("we-address-invalid", "WorkloadEntry", "address: 'bad host!'", "spec.address", "not a valid FQDN or an IP", "error"),
    ("we-uds-dir", "WorkloadEntry", "address: 'unix:///var/run/'", "spec.address", "may not be a dir", "error"),
    ("we-uds-relative", "WorkloadEntry", "address: 'unix://relative.sock'", "spec.address", "absolute path", "error"),
    ("we-port-name", "WorkloadEntry", "address: 1.1.1.1\nports: {Bad_Name: 80}", "spec.ports.Bad_Name", "invalid port name", "error"),
    ("we-port-number", "WorkloadEntry", "address: 1.1.1.1\nports: {http: 0}", "spec.ports.http", "between 1 and 65535", "error"),
    ("we-service-account-length", "WorkloadEntry", "address: 1.1.1.1\nserviceAccount: " + "a" * 254,
     "spec.serviceAccount", "at most 253", "error"),
    ("wg-template-required", "WorkloadGroup", "metadata: {labels: {app: a}}", "spec.template", "required field is missing", "error"),
    ("wg-template-uds-ports", "WorkloadGroup", "template: {address: 'unix:///s', ports: {http: 80}}",
     "spec.template.ports", "may not have ports", "error"),
    ("wg-metadata-labels", "WorkloadGroup", "template: {}\nmetadata: {labels: {'bad key!': x}}",
     "spec.metadata.labels.bad key!", "invalid label key", "error"),
    ("wg-probe-method", "WorkloadGroup", "template: {}\nprobe: {periodSeconds: 5}", "spec.probe", "needs one of", "error"),
    ("wg-probe-oneof", "WorkloadGroup", "template: {}\nprobe: {tcpSocket: {port: 80}, exec: {command: [true]}}",
     "spec.probe", "only one of", "error"),
    ("wg-probe-negative", "WorkloadGroup", "template: {}\nprobe: {periodSeconds: -1, tcpSocket: {port: 80}}",
     "spec.probe.periodSeconds", "non-negative", "error"),
    ("wg-probe-http-port", "WorkloadGroup", "template: {}\nprobe: {httpGet: {port: 0}}",
     "spec.probe.httpGet.port", "between 1 and 65535", "error"),
    ("wg-probe-http-scheme", "WorkloadGroup", "template: {}\nprobe: {httpGet: {port: 80, scheme: FTP}}",
     "spec.probe.httpGet.scheme", "HTTP, HTTPS", "error"),
    ("wg-probe-http-header", "WorkloadGroup", "template: {}\nprobe: {httpGet: {port: 80, httpHeaders: [{name: 'a b'}]}}",
     "spec.probe.httpGet.httpHeaders[0].name", "not a valid header name", "error"),
    ("wg-probe-exec-empty", "WorkloadGroup", "template: {}\nprobe: {exec: {command: []}}",
     "spec.probe.exec.command", "required", "error"),
    ("wg-probe-grpc-port", "WorkloadGroup", "template: {}\nprobe: {grpc: {service: health}}",
     "spec.probe.grpc.port", "between 1 and 65535", "error"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "spec", "path", "message", "severity"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rule_is_enforced_at_its_field_path(kind: str, spec: str, path: str, message: str, severity: str) -> None:
    found = problems(kind, spec)
    hit = [p for p in found if p.path == path and message.lower() in p.message.lower()]
    assert hit, f"wanted {path}: ...{message}...; got " + "; ".join(f"{p.path}: {p.message}" for p in found)
    assert all(p.severity == severity for p in hit)


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("ServiceEntry", STATIC),
        ("ServiceEntry", DNS),
        ("ServiceEntry", "hosts: ['*.wikipedia.org']\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: NONE"),
        ("ServiceEntry", SE + "resolution: STATIC\nworkloadSelector: {labels: {app: vm}}"),
        ("ServiceEntry", "hosts: [uds.local]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\n"
         "endpoints: [{address: 'unix:///var/run/app.sock'}]"),
        ("ServiceEntry", SE + "exportTo: ['~']"),
        ("WorkloadEntry", WORKLOAD_ENTRY),
        ("WorkloadEntry", "address: vm1.example.com"),
        ("WorkloadEntry", "address: 'unix://@abstract'"),
        ("WorkloadGroup", WORKLOAD_GROUP),
        ("WorkloadGroup", "template: {}\nprobe: {exec: {command: [cat, /tmp/healthy]}}"),
    ],
)  # fmt: skip
def test_valid_documents_have_no_findings(kind: str, spec: str) -> None:
    assert problems(kind, spec) == []
