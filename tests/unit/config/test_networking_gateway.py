"""Gateway: Istio's doc examples decode in every served version and spelling; each validation
rule rejects or warns at the right field path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotfish.config.loader import parse_resource
from pilotfish.config.networking.gateway import GatewaySpec
from pilotfish.errors import ConfigError, Problem

VERSIONS = ("v1alpha3", "v1beta1", "v1")

# Istio docs, Gateway reference: HTTP with redirect, HTTPS with SDS, mTLS, passthrough, TCP.
BOOKINFO = """
selector: {app: my-gateway-controller}
servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: [uk.bookinfo.com, eu.bookinfo.com]
  tls: {httpsRedirect: true}
- port: {number: 443, name: https-443, protocol: HTTPS}
  hosts: [uk.bookinfo.com, eu.bookinfo.com]
  tls: {mode: SIMPLE, credentialName: bookinfo-secret}
- port: {number: 9443, name: https-9443, protocol: HTTPS}
  hosts: [bookinfo-namespace/*.bookinfo.com]
  tls: {mode: MUTUAL, serverCertificate: /etc/certs/server.pem, privateKey: /etc/certs/key.pem, caCertificates: /etc/certs/ca.pem}
- port: {number: 8443, name: tls-passthrough, protocol: TLS}
  hosts: ["*/*.example.com"]
  tls: {mode: PASSTHROUGH}
- port: {number: 2379, name: mongo, protocol: MONGO}
  hosts: ["*"]
"""
BOOKINFO_SNAKE = """
selector: {app: my-gateway-controller}
servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: [uk.bookinfo.com, eu.bookinfo.com]
  tls: {https_redirect: true}
- port: {number: 443, name: https-443, protocol: HTTPS}
  hosts: [uk.bookinfo.com, eu.bookinfo.com]
  tls: {mode: SIMPLE, credential_name: bookinfo-secret}
- port: {number: 9443, name: https-9443, protocol: HTTPS}
  hosts: [bookinfo-namespace/*.bookinfo.com]
  tls: {mode: MUTUAL, server_certificate: /etc/certs/server.pem, private_key: /etc/certs/key.pem, ca_certificates: /etc/certs/ca.pem}
- port: {number: 8443, name: tls-passthrough, protocol: TLS}
  hosts: ["*/*.example.com"]
  tls: {mode: PASSTHROUGH}
- port: {number: 2379, name: mongo, protocol: MONGO}
  hosts: ["*"]
"""


def document(spec: Any, version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "istio-system"},
        "spec": yaml.safe_load(spec) if isinstance(spec, str) else spec,
    }


def parse(spec: Any, version: str = "v1") -> GatewaySpec:
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
def test_bookinfo_gateway_decodes_http_and_https_servers(version: str) -> None:
    spec = parse(BOOKINFO, version)
    http, https, mutual, passthrough, mongo = spec.servers
    assert spec.selector == {"app": "my-gateway-controller"}
    assert (http.port.number, http.port.protocol, http.tls and http.tls.https_redirect) == (80, "HTTP", True)
    assert https.tls is not None and (https.tls.mode, https.tls.credential_name) == ("SIMPLE", "bookinfo-secret")
    assert mutual.tls is not None and mutual.tls.ca_certificates == "/etc/certs/ca.pem"
    assert passthrough.hosts == ("*/*.example.com",)
    assert mongo.tls is None


def test_snake_case_spelling_decodes_to_the_same_object() -> None:
    assert parse(BOOKINFO) == parse(BOOKINFO_SNAKE)


def server(fragment: str) -> str:
    return "servers: [{%s}]" % fragment


HTTP80 = "port: {number: 80, name: http, protocol: HTTP}"
HTTPS443 = "port: {number: 443, name: https, protocol: HTTPS}"

# (case id, spec, field path, message substring, severity)
RULES: list[tuple[str, str, str, str, str]] = [
    ("servers-required", "selector: {app: gw}", "spec.servers", "at least one server", "error"),
    ("hosts-required", server(HTTP80), "spec.servers[0].hosts", "required field is missing", "error"),
    ("hosts-empty", server(HTTP80 + ", hosts: []"), "spec.servers[0].hosts", "at least one host", "error"),
    ("host-short-name", server(HTTP80 + ", hosts: [ns/reviews]"), "spec.servers[0].hosts[0]", "short names", "error"),
    ("host-namespace", server(HTTP80 + ", hosts: [Bad_NS/a.com]"), "spec.servers[0].hosts[0]", "invalid namespace", "error"),
    ("host-partial-wildcard", server(HTTP80 + ", hosts: ['ns/foo*.com']"), "spec.servers[0].hosts[0]", "partial wildcard", "error"),
    ("host-empty-part", server(HTTP80 + ", hosts: [ns/]"), "spec.servers[0].hosts[0]", "cannot be empty", "error"),
    ("port-required", server("hosts: [a.com]"), "spec.servers[0].port", "required field is missing", "error"),
    ("port-protocol-required", server("port: {number: 80, name: http}, hosts: [a.com]"),
     "spec.servers[0].port.protocol", "required field is missing", "error"),
    ("port-protocol-unknown", server("port: {number: 80, name: http, protocol: SPDY}, hosts: [a.com]"),
     "spec.servers[0].port.protocol", "unsupported protocol", "error"),
    ("port-number", server("port: {number: 0, name: http, protocol: HTTP}, hosts: [a.com]"),
     "spec.servers[0].port.number", "between 1 and 65535", "error"),
    ("port-name-empty", server("port: {number: 80, name: '', protocol: HTTP}, hosts: [a.com]"),
     "spec.servers[0].port.name", "must be set", "error"),
    ("port-target-port", server("port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}, hosts: [a.com]"),
     "spec.servers[0].port.targetPort", "no impact on Gateways", "error"),
    ("https-needs-tls", server(HTTPS443 + ", hosts: [a.com]"), "spec.servers[0].tls", "must have TLS settings", "error"),
    ("simple-needs-certificate", server(HTTPS443 + ", hosts: [a.com], tls: {mode: SIMPLE, privateKey: /k.pem}"),
     "spec.servers[0].tls.serverCertificate", "SIMPLE TLS requires serverCertificate", "error"),
    ("mutual-needs-ca", server(HTTPS443 + ", hosts: [a.com], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}"),
     "spec.servers[0].tls.caCertificates", "MUTUAL TLS requires caCertificates", "error"),
    ("istio-mutual-credential", server(HTTPS443 + ", hosts: [a.com], tls: {mode: ISTIO_MUTUAL, credentialName: s}"),
     "spec.servers[0].tls.credentialName", "ISTIO_MUTUAL TLS cannot have", "error"),
    ("credential-sources", server(HTTPS443 + ", hosts: [a.com], tls: {mode: SIMPLE, credentialName: a, tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}"),
     "spec.servers[0].tls.tlsCertificates", "only one of", "error"),
    ("tls-certificate-incomplete", server(HTTPS443 + ", hosts: [a.com], tls: {mode: SIMPLE, tlsCertificates: [{serverCertificate: /c}]}"),
     "spec.servers[0].tls.tlsCertificates[0]", "needs serverCertificate and privateKey", "error"),
    ("crl-with-simple", server(HTTPS443 + ", hosts: [a.com], tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k, caCrl: /crl}"),
     "spec.servers[0].tls.caCrl", "not supported with SIMPLE", "error"),
    ("tls-versions", server(HTTPS443 + ", hosts: [a.com], tls: {mode: SIMPLE, credentialName: s, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}"),
     "spec.servers[0].tls.maxProtocolVersion", "must not be below", "error"),
    ("tls-mode-unknown", server(HTTPS443 + ", hosts: [a.com], tls: {mode: STRICT}"),
     "spec.servers[0].tls.mode", "must be one of", "error"),
    ("http-with-tls", server(HTTP80 + ", hosts: [a.com], tls: {mode: SIMPLE, credentialName: s}"),
     "spec.servers[0].tls", "plain text HTTP ports", "error"),
    ("tcp-with-tls", server("port: {number: 31400, name: tcp, protocol: TCP}, hosts: [a.com], tls: {mode: PASSTHROUGH}"),
     "spec.servers[0].tls", "non HTTPS/TLS ports", "error"),
    ("passthrough-certificates", server("port: {number: 443, name: tls, protocol: TLS}, hosts: [a.com], tls: {mode: PASSTHROUGH, serverCertificate: /c}"),
     "spec.servers[0].tls", "will be ignored", "warning"),
    ("https-redirect-on-https", server(HTTPS443 + ", hosts: [a.com], tls: {mode: SIMPLE, credentialName: s, httpsRedirect: true}"),
     "spec.servers[0].tls.httpsRedirect", "only be used with HTTP", "warning"),
    ("duplicate-port-names", "servers: [{%s, hosts: [a.com]}, {port: {number: 8080, name: http, protocol: HTTP}, hosts: [b.com]}]" % HTTP80,
     "spec.servers[1].port.name", "must be unique", "error"),
    ("bind-not-ip", server(HTTP80 + ", hosts: [a.com], bind: localhost"), "spec.servers[0].bind", "not an IP address", "error"),
    ("unix-bind-with-port", server(HTTP80 + ", hosts: [a.com], bind: 'unix:///var/run/gw.sock'"),
     "spec.servers[0].port.number", "must be 0 for a unix domain socket", "error"),
    ("selector-label", "selector: {'bad key!': x}\n" + server(HTTP80 + ", hosts: [a.com]"),
     "spec.selector.bad key!", "invalid label key", "error"),
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
        BOOKINFO,
        server("port: {number: 0, name: uds, protocol: HTTP}, hosts: [a.com], bind: 'unix:///var/run/gw.sock'"),
        server(HTTP80 + ", hosts: [10.1.2.3, ./a.com, '*/*']"),
        server(HTTPS443 + ", hosts: [a.com], tls: {mode: OPTIONAL_MUTUAL, credentialNames: [rsa, ecdsa]}"),
        server("port: {number: 15443, name: tls, protocol: TLS}, hosts: ['*.local'], tls: {mode: AUTO_PASSTHROUGH}"),
    ],
)  # fmt: skip
def test_valid_documents_have_no_findings(spec: str) -> None:
    assert problems(spec) == []
