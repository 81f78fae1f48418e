"""ServiceEntry, WorkloadEntry and WorkloadGroup: Istio's doc examples decode in every served
version and spelling; each validation rule rejects or warns at the right field path."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml
from config_support import KindDocs

from pilotfish.config.networking.service_entry import ServiceEntrySpec
from pilotfish.config.networking.workload_entry import WorkloadEntrySpec
from pilotfish.config.networking.workload_group import WorkloadGroupSpec
from pilotfish.errors import Problem

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
  httpGet:
    path: /foo/bar
    host: 127.0.0.1
    port: 3100
    scheme: HTTPS
    httpHeaders: [{name: Lit-Header, value: Im-The-Best}]
"""


def document(kind: str, spec: Any, version: str = "v1") -> dict[str, Any]:
    return KindDocs(kind).document(spec, version)


def parse(kind: str, spec: Any, version: str = "v1") -> Any:
    return KindDocs(kind).parse(spec, version)


def problems(kind: str, spec: Any) -> list[Problem]:
    return KindDocs(kind).problems(spec)


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
    assert (entry.address, entry.service_account, entry.ports) == (
        "2.2.2.2",
        "details-legacy",
        {"http": 9080},
    )
    group: WorkloadGroupSpec = parse("WorkloadGroup", WORKLOAD_GROUP, version)
    assert group.template.ports == {"grpc": 3550, "http": 8080}
    assert group.probe is not None and group.probe.http_get is not None
    assert (group.probe.http_get.port, group.probe.http_get.scheme) == (3100, "HTTPS")
    assert group.metadata is not None and group.metadata.labels == {"app": "reviews"}


SE = "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\n"


def cases(text: str) -> list[tuple[Any, ...]]:
    """Rule cases written as YAML: id, kind, spec, field path, message substring, severity."""
    return [
        (c["id"], c["kind"], c["spec"], c["path"], c["message"], c.get("severity", "error"))
        for c in yaml.safe_load(textwrap.dedent(text))
    ]


# Each case breaks one rule; severity is "error" unless given.
RULES = cases(
    r"""
    - id: se-hosts-required
      kind: ServiceEntry
      path: spec.hosts
      message: required field is missing
      spec: {ports: []}

    - id: se-hosts-empty
      kind: ServiceEntry
      path: spec.hosts
      message: at least one host
      spec: {hosts: []}

    - id: se-host-star
      kind: ServiceEntry
      path: spec.hosts[0]
      message: cannot be wildcard
      spec: {hosts: ['*']}

    - id: se-host-invalid
      kind: ServiceEntry
      path: spec.hosts[0]
      message: invalid
      spec: {hosts: [a..com]}

    - id: se-host-partial-wildcard
      kind: ServiceEntry
      path: spec.hosts[0]
      message: partial wildcard
      severity: warning
      spec: {hosts: ['*foo.com']}

    - id: se-port-name-duplicate
      kind: ServiceEntry
      path: spec.ports[1].name
      message: already defined
      spec:
        hosts: [a.com]
        ports:
        - {number: 80, name: http}
        - {number: 81, name: http}

    - id: se-port-number-duplicate
      kind: ServiceEntry
      path: spec.ports[1].number
      message: already defined
      spec:
        hosts: [a.com]
        ports:
        - {number: 80, name: a}
        - {number: 80, name: b}

    - id: se-port-name-invalid
      kind: ServiceEntry
      path: spec.ports[0].name
      message: invalid port name
      spec:
        hosts: [a.com]
        ports:
        - {number: 80, name: HTTP_1}

    - id: se-port-name-required
      kind: ServiceEntry
      path: spec.ports[0].name
      message: required field is missing
      spec:
        hosts: [a.com]
        ports:
        - {number: 80}

    - id: se-port-protocol
      kind: ServiceEntry
      path: spec.ports[0].protocol
      message: unsupported protocol
      spec:
        hosts: [a.com]
        ports:
        - {number: 80, name: a, protocol: QUIC}

    - id: se-port-number
      kind: ServiceEntry
      path: spec.ports[0].number
      message: between 1 and 65535
      spec:
        hosts: [a.com]
        ports:
        - {number: 70000, name: a}

    - id: se-target-port-none
      kind: ServiceEntry
      path: spec.ports[0].targetPort
      message: no effect
      severity: warning
      spec:
        hosts: [a.com]
        ports:
        - {number: 80, name: a, targetPort: 8080}

    - id: se-address
      kind: ServiceEntry
      path: spec.addresses[0]
      message: not a valid IP
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        addresses: [not-an-ip]

    - id: se-cidr-with-dns
      kind: ServiceEntry
      path: spec.addresses[0]
      message: only for NONE/STATIC
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        addresses: [10.0.0.0/8]
        resolution: DNS

    - id: se-none-with-endpoints
      kind: ServiceEntry
      path: spec.endpoints
      message: no endpoints should be provided for resolution NONE
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        endpoints:
        - {address: 1.1.1.1}

    - id: se-selector-and-endpoints
      kind: ServiceEntry
      path: spec.endpoints
      message: only one of workloadSelector or endpoints
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: STATIC
        workloadSelector: {labels: {app: a}}
        endpoints:
        - {address: 1.1.1.1}

    - id: se-static-hostname-endpoint
      kind: ServiceEntry
      path: spec.endpoints[0].address
      message: not a valid IP address
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: STATIC
        endpoints:
        - {address: db.example.com}

    - id: se-endpoint-port-undefined
      kind: ServiceEntry
      path: spec.endpoints[0].ports.grpc
      message: not defined by the service entry
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: STATIC
        endpoints:
        - {address: 1.1.1.1, ports: {grpc: 9000}}

    - id: se-endpoint-address-required
      kind: ServiceEntry
      path: spec.endpoints[0].address
      message: address is required
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: STATIC
        endpoints:
        - {labels: {a: b}}

    - id: se-endpoint-uds-ports
      kind: ServiceEntry
      path: spec.endpoints[0].ports
      message: unix domain socket address may not have ports
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: STATIC
        endpoints:
        - {address: 'unix:///sock', ports: {http: 80}}

    - id: se-dns-rr-endpoints
      kind: ServiceEntry
      path: spec.endpoints
      message: 0 or 1 endpoint
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: DNS_ROUND_ROBIN
        endpoints:
        - {address: a.com}
        - {address: b.com}

    - id: se-dns-wildcard-host
      kind: ServiceEntry
      path: spec.hosts[0]
      message: must be FQDN
      spec:
        hosts: ['*.example.com']
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: DNS

    - id: se-dns-endpoint-invalid
      kind: ServiceEntry
      path: spec.endpoints[0].address
      message: not a valid FQDN or an IP
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: DNS
        endpoints:
        - {address: bad host}

    - id: se-multiple-hosts-tcp
      kind: ServiceEntry
      path: spec.ports[0].protocol
      message: multiple hosts provided with non-HTTP
      spec:
        hosts: [a.com, b.com]
        ports:
        - {number: 3306, name: mysql, protocol: TCP}
        resolution: DNS

    - id: se-export-to-none-and-more
      kind: ServiceEntry
      path: spec.exportTo
      message: no one (~) and someone
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        exportTo: ['~', ns1]

    - id: se-resolution-unknown
      kind: ServiceEntry
      path: spec.resolution
      message: must be one of
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: ROUND_ROBIN

    - id: se-selector-wildcard
      kind: ServiceEntry
      path: spec.workloadSelector.labels.app
      message: wildcard is not supported
      spec:
        hosts: [a.example.com]
        ports:
        - {number: 80, name: http, protocol: HTTP}
        resolution: STATIC
        workloadSelector: {labels: {app: '*'}}

    - id: we-address-required
      kind: WorkloadEntry
      path: spec.address
      message: address is required
      spec: {labels: {app: a}}

    - id: we-address-network-only
      kind: WorkloadEntry
      path: spec.address
      message: unset with network
      severity: warning
      spec: {network: vpc1}

    - id: we-address-invalid
      kind: WorkloadEntry
      path: spec.address
      message: not a valid FQDN or an IP
      spec: {address: bad host!}

    - id: we-uds-dir
      kind: WorkloadEntry
      path: spec.address
      message: may not be a dir
      spec: {address: 'unix:///var/run/'}

    - id: we-uds-relative
      kind: WorkloadEntry
      path: spec.address
      message: absolute path
      spec: {address: 'unix://relative.sock'}

    - id: we-port-name
      kind: WorkloadEntry
      path: spec.ports.Bad_Name
      message: invalid port name
      spec: {address: 1.1.1.1, ports: {Bad_Name: 80}}

    - id: we-port-number
      kind: WorkloadEntry
      path: spec.ports.http
      message: between 1 and 65535
      spec: {address: 1.1.1.1, ports: {http: 0}}

    - id: wg-template-required
      kind: WorkloadGroup
      path: spec.template
      message: required field is missing
      spec:
        metadata: {labels: {app: a}}

    - id: wg-template-uds-ports
      kind: WorkloadGroup
      path: spec.template.ports
      message: may not have ports
      spec:
        template: {address: 'unix:///s', ports: {http: 80}}

    - id: wg-metadata-labels
      kind: WorkloadGroup
      path: spec.metadata.labels.bad key!
      message: invalid label key
      spec:
        template: {}
        metadata: {labels: {bad key!: x}}

    - id: wg-probe-method
      kind: WorkloadGroup
      path: spec.probe
      message: needs one of
      spec: {template: {}, probe: {periodSeconds: 5}}

    - id: wg-probe-oneof
      kind: WorkloadGroup
      path: spec.probe
      message: only one of
      spec:
        template: {}
        probe:
          tcpSocket: {port: 80}
          exec: {command: [true]}

    - id: wg-probe-negative
      kind: WorkloadGroup
      path: spec.probe.periodSeconds
      message: non-negative
      spec:
        template: {}
        probe: {periodSeconds: -1, tcpSocket: {port: 80}}

    - id: wg-probe-http-port
      kind: WorkloadGroup
      path: spec.probe.httpGet.port
      message: between 1 and 65535
      spec:
        template: {}
        probe: {httpGet: {port: 0}}

    - id: wg-probe-http-scheme
      kind: WorkloadGroup
      path: spec.probe.httpGet.scheme
      message: HTTP, HTTPS
      spec:
        template: {}
        probe: {httpGet: {port: 80, scheme: FTP}}

    - id: wg-probe-http-header
      kind: WorkloadGroup
      path: spec.probe.httpGet.httpHeaders[0].name
      message: not a valid header name
      spec:
        template: {}
        probe:
          httpGet:
            port: 80
            httpHeaders:
            - {name: a b}

    - id: wg-probe-exec-empty
      kind: WorkloadGroup
      path: spec.probe.exec.command
      message: required
      spec:
        template: {}
        probe:
          exec: {command: []}

    - id: wg-probe-grpc-port
      kind: WorkloadGroup
      path: spec.probe.grpc.port
      message: between 1 and 65535
      spec:
        template: {}
        probe: {grpc: {service: health}}
    """
)


@pytest.mark.parametrize(
    ("kind", "spec", "path", "message", "severity"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rule_is_enforced_at_its_field_path(
    kind: str, spec: str, path: str, message: str, severity: str
) -> None:
    found = problems(kind, spec)
    hit = [p for p in found if p.path == path and message.lower() in p.message.lower()]
    assert hit, f"wanted {path}: ...{message}...; got " + "; ".join(f"{p.path}: {p.message}" for p in found)
    assert all(p.severity == severity for p in hit)


def test_workload_entry_service_account_is_at_most_253_characters() -> None:
    found = problems("WorkloadEntry", {"address": "1.1.1.1", "serviceAccount": "a" * 254})
    assert [(p.path, p.message) for p in found] == [("spec.serviceAccount", "must be at most 253 characters")]
    assert problems("WorkloadEntry", {"address": "1.1.1.1", "serviceAccount": "a" * 253}) == []


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("ServiceEntry", STATIC),
        ("ServiceEntry", DNS),
        ("ServiceEntry", "hosts: ['*.wikipedia.org']\nports: [{number: 443, name: https, protocol: TLS}]"),
        ("ServiceEntry", SE + "resolution: STATIC\nworkloadSelector: {labels: {app: vm}}"),
        ("ServiceEntry", "hosts: [uds.local]\nports: [{number: 80, name: http, protocol: HTTP}]\n"
         "resolution: STATIC\nendpoints: [{address: 'unix:///var/run/app.sock'}]"),
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
