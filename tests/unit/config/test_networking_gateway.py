"""Gateway: Istio's doc examples decode in every served version and spelling; each validation
rule rejects or warns at the right field path."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml
from config_support import KindDocs

from pilotfish.config.loader import parse_resource
from pilotfish.config.networking.gateway import GatewaySpec
from pilotfish.errors import ConfigError

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
  tls:
    {mode: MUTUAL, serverCertificate: /etc/certs/server.pem, privateKey: /etc/certs/key.pem,
     caCertificates: /etc/certs/ca.pem}
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
  tls:
    {mode: MUTUAL, server_certificate: /etc/certs/server.pem, private_key: /etc/certs/key.pem,
     ca_certificates: /etc/certs/ca.pem}
- port: {number: 8443, name: tls-passthrough, protocol: TLS}
  hosts: ["*/*.example.com"]
  tls: {mode: PASSTHROUGH}
- port: {number: 2379, name: mongo, protocol: MONGO}
  hosts: ["*"]
"""


_DOCS = KindDocs("Gateway", "gw", "istio-system")
document = _DOCS.document
problems = _DOCS.problems


def parse(spec: Any, version: str = "v1") -> GatewaySpec:
    return _DOCS.parse(spec, version)  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", VERSIONS)
def test_bookinfo_gateway_decodes_http_and_https_servers(version: str) -> None:
    spec = parse(BOOKINFO, version)
    http, https, mutual, passthrough, mongo = spec.servers
    assert spec.selector == {"app": "my-gateway-controller"}
    assert (http.port.number, http.port.protocol, http.tls and http.tls.https_redirect) == (80, "HTTP", True)
    assert https.tls is not None and (https.tls.mode, https.tls.credential_name) == (
        "SIMPLE",
        "bookinfo-secret",
    )
    assert mutual.tls is not None and mutual.tls.ca_certificates == "/etc/certs/ca.pem"
    assert passthrough.hosts == ("*/*.example.com",)
    assert mongo.tls is None


def test_snake_case_spelling_decodes_to_the_same_object() -> None:
    assert parse(BOOKINFO) == parse(BOOKINFO_SNAKE)


def server(fragment: str) -> str:
    return f"servers: [{{{fragment}}}]"


HTTP80 = "port: {number: 80, name: http, protocol: HTTP}"
HTTPS443 = "port: {number: 443, name: https, protocol: HTTPS}"


def cases(text: str) -> list[tuple[Any, ...]]:
    """Rule cases written as YAML: id, spec, field path, message substring, severity."""
    return [
        (c["id"], c["spec"], c["path"], c["message"], c.get("severity", "error"))
        for c in yaml.safe_load(textwrap.dedent(text))
    ]


# Each case breaks one rule; severity is "error" unless given.
RULES = cases(
    r"""
    - id: servers-required
      path: spec.servers
      message: at least one server
      spec: {selector: {app: gw}}

    - id: hosts-required
      path: spec.servers[0].hosts
      message: required field is missing
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}

    - id: hosts-empty
      path: spec.servers[0].hosts
      message: at least one host
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: []

    - id: host-short-name
      path: spec.servers[0].hosts[0]
      message: short names
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [ns/reviews]

    - id: host-namespace
      path: spec.servers[0].hosts[0]
      message: invalid namespace
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [Bad_NS/a.com]

    - id: host-partial-wildcard
      path: spec.servers[0].hosts[0]
      message: partial wildcard
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [ns/foo*.com]

    - id: host-empty-part
      path: spec.servers[0].hosts[0]
      message: cannot be empty
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [ns/]

    - id: port-required
      path: spec.servers[0].port
      message: required field is missing
      spec:
        servers:
        - {hosts: [a.com]}

    - id: port-protocol-required
      path: spec.servers[0].port.protocol
      message: required field is missing
      spec:
        servers:
        - {port: {number: 80, name: http}, hosts: [a.com]}

    - id: port-protocol-unknown
      path: spec.servers[0].port.protocol
      message: unsupported protocol
      spec:
        servers:
        - port: {number: 80, name: http, protocol: SPDY}
          hosts: [a.com]

    - id: port-number
      path: spec.servers[0].port.number
      message: between 1 and 65535
      spec:
        servers:
        - port: {number: 0, name: http, protocol: HTTP}
          hosts: [a.com]

    - id: port-name-empty
      path: spec.servers[0].port.name
      message: must be set
      spec:
        servers:
        - port: {number: 80, name: '', protocol: HTTP}
          hosts: [a.com]

    - id: port-target-port
      path: spec.servers[0].port.targetPort
      message: no impact on Gateways
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}
          hosts: [a.com]

    - id: https-needs-tls
      path: spec.servers[0].tls
      message: must have TLS settings
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]

    - id: simple-needs-certificate
      path: spec.servers[0].tls.serverCertificate
      message: SIMPLE TLS requires serverCertificate
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls: {mode: SIMPLE, privateKey: /k.pem}

    - id: mutual-needs-ca
      path: spec.servers[0].tls.caCertificates
      message: MUTUAL TLS requires caCertificates
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}

    - id: istio-mutual-credential
      path: spec.servers[0].tls.credentialName
      message: ISTIO_MUTUAL TLS cannot have
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls: {mode: ISTIO_MUTUAL, credentialName: s}

    - id: credential-sources
      path: spec.servers[0].tls.tlsCertificates
      message: only one of
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls:
            mode: SIMPLE
            credentialName: a
            tlsCertificates:
            - {serverCertificate: /c, privateKey: /k}

    - id: tls-certificate-incomplete
      path: spec.servers[0].tls.tlsCertificates[0]
      message: needs serverCertificate and privateKey
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls:
            mode: SIMPLE
            tlsCertificates:
            - {serverCertificate: /c}

    - id: crl-with-simple
      path: spec.servers[0].tls.caCrl
      message: not supported with SIMPLE
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls:
            mode: SIMPLE
            serverCertificate: /c
            privateKey: /k
            caCrl: /crl

    - id: tls-versions
      path: spec.servers[0].tls.maxProtocolVersion
      message: must not be below
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls:
            mode: SIMPLE
            credentialName: s
            minProtocolVersion: TLSV1_3
            maxProtocolVersion: TLSV1_2

    - id: tls-mode-unknown
      path: spec.servers[0].tls.mode
      message: must be one of
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls: {mode: STRICT}

    - id: http-with-tls
      path: spec.servers[0].tls
      message: plain text HTTP ports
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [a.com]
          tls: {mode: SIMPLE, credentialName: s}

    - id: tcp-with-tls
      path: spec.servers[0].tls
      message: non HTTPS/TLS ports
      spec:
        servers:
        - port: {number: 31400, name: tcp, protocol: TCP}
          hosts: [a.com]
          tls: {mode: PASSTHROUGH}

    - id: passthrough-certificates
      path: spec.servers[0].tls
      message: will be ignored
      severity: warning
      spec:
        servers:
        - port: {number: 443, name: tls, protocol: TLS}
          hosts: [a.com]
          tls: {mode: PASSTHROUGH, serverCertificate: /c}

    - id: https-redirect-on-https
      path: spec.servers[0].tls.httpsRedirect
      message: only be used with HTTP
      severity: warning
      spec:
        servers:
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [a.com]
          tls: {mode: SIMPLE, credentialName: s, httpsRedirect: true}

    - id: duplicate-port-names
      path: spec.servers[1].port.name
      message: must be unique
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [a.com]
        - port: {number: 8080, name: http, protocol: HTTP}
          hosts: [b.com]

    - id: bind-not-ip
      path: spec.servers[0].bind
      message: not an IP address
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [a.com]
          bind: localhost

    - id: unix-bind-with-port
      path: spec.servers[0].port.number
      message: must be 0 for a unix domain socket
      spec:
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [a.com]
          bind: unix:///var/run/gw.sock

    - id: selector-label
      path: spec.selector.bad key!
      message: invalid label key
      spec:
        selector: {bad key!: x}
        servers:
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [a.com]
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


def test_gateway_name_is_a_dns_label_because_routes_refer_to_it_as_namespace_slash_name() -> None:
    doc = document(BOOKINFO)
    doc["metadata"]["name"] = "public.gateway"
    with pytest.raises(ConfigError) as caught:
        parse_resource(doc, "<test>", 1)
    assert [(p.path, p.severity) for p in caught.value.problems] == [("metadata.name", "error")]
    assert "DNS-1123 label" in caught.value.problems[0].message


@pytest.mark.parametrize(
    "spec",
    [
        BOOKINFO,
        server("port: {number: 0, name: uds, protocol: HTTP}, hosts: [a.com], bind: 'unix:///var/run/gw.sock'"),
        server(HTTP80 + ", hosts: [10.1.2.3, ./a.com, '*/*']"),
        server(HTTPS443 + ", hosts: [a.com], tls: {mode: OPTIONAL_MUTUAL, credentialNames: [rsa, ecdsa]}"),
        server(
            "port: {number: 15443, name: tls, protocol: TLS}, hosts: ['*.local'], "
            "tls: {mode: AUTO_PASSTHROUGH}"
        ),
    ],
)  # fmt: skip
def test_valid_documents_have_no_findings(spec: str) -> None:
    assert problems(spec) == []
