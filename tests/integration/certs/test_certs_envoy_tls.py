"""Acceptance: a real Envoy serves HTTPS with the exact SDS ``Secret`` resources pilotfish
builds (static secrets in the bootstrap, referenced by name as SDS would deliver them), and
standard clients verify them against the root alone: Python ``ssl``, ``curl --cacert`` and
``openssl s_client -verify_return_error``.

The mTLS listener uses an operator-style CA with an intermediate, so it proves both directions
of the chain: Envoy sends leaf + intermediate and the client trusts only the root; the client
sends leaf + intermediate and Envoy validates it against ``ROOTCA`` (the root only).
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from google.protobuf.json_format import MessageToDict

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.ca import CertificateAuthority
from pilotfish.certs.cache import DnsCertCache, WorkloadCertCache
from pilotfish.certs.config import CertsConfig, DnsCertificate
from pilotfish.certs.identity import workload_id
from pilotfish.certs.store import DirectoryStorage
from pilotfish.xds.secrets import dns_secrets, workload_secrets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TRUST_DOMAIN = "cluster.local"
WEB = workload_id(TRUST_DOMAIN, "shop", "web")
CLIENT = workload_id(TRUST_DOMAIN, "shop", "frontend")
HOST = "shop.example.test"
TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def operator_ca(now: datetime) -> CertificateAuthority:
    """A root and an intermediate that signs (chain kept), as an operator would plug in."""
    root = ca_mod.self_signed_root("corp.example", now - timedelta(days=1))
    key = ca_mod.new_private_key()
    intermediate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mesh intermediate")]))
        .issuer_name(root.root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    pem = ca_mod.certificates_pem([intermediate, root.root])
    return ca_mod.ca_from_pem(pem, ca_mod.private_key_pem(key), TRUST_DOMAIN, now)


def listener(name: str, port: str, tls: dict[str, Any]) -> dict[str, Any]:
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": f"hello from {name}"}},
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {"@type": TLS_CONTEXT, **tls},
                },
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM,
                            "stat_prefix": name,
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": [route],
                                        "response_headers_to_add": [
                                            {
                                                "header": {
                                                    "key": "x-peer",
                                                    "value": "%DOWNSTREAM_PEER_URI_SAN%",
                                                }
                                            }
                                        ],
                                    }
                                ]
                            },
                            "http_filters": [
                                {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}
                            ],
                        },
                    }
                ],
            }
        ],
    }


def bootstrap(secrets: list[Any]) -> dict[str, Any]:
    mtls = {
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [{"name": "default"}],
            "validation_context_sds_secret_config": {"name": "ROOTCA"},
        },
    }
    dns = {"common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "shop-gateway"}]}}
    return {
        "node": {"id": "certs-acceptance", "cluster": "certs"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "{admin_port}"}}},
        "static_resources": {
            "secrets": [MessageToDict(s, preserving_proto_field_name=True) for s in secrets],
            "listeners": [listener("mtls", "{mtls_port}", mtls), listener("dns", "{dns_port}", dns)],
        },
    }


@pytest.fixture
def tls_envoy(envoy_factory, tmp_path):
    now = datetime.now(UTC)
    authority = operator_ca(now)
    secrets = workload_secrets(authority, WEB, now, WorkloadCertCache())
    config = CertsConfig(dns_certificates=(DnsCertificate("shop-gateway", (HOST,), timedelta(days=1)),))
    secrets += dns_secrets(authority, config, now, DnsCertCache(DirectoryStorage(tmp_path / "ca")))
    assert [s.name for s in secrets] == ["default", "ROOTCA", "shop-gateway"]
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(secrets[1].validation_context.trusted_ca.inline_bytes)
    client = ca_mod.new_workload_key(authority, CLIENT, now)
    (tmp_path / "client-chain.pem").write_bytes(client.chain_pem())
    (tmp_path / "client-key.pem").write_bytes(client.key_pem())
    envoy = envoy_factory(bootstrap(secrets))
    return envoy, tmp_path


def https_get(port: int, context: ssl.SSLContext, host: str = "127.0.0.1"):
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        peer = connection.sock.getpeercert(binary_form=True)
        return response.status, dict(response.getheaders()), response.read().decode(), peer
    finally:
        connection.close()


def workload_context(files: Path, with_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files / "root.pem"))
    context.check_hostname = False  # an X.509-SVID has no DNS name; the SPIFFE id is checked below
    if with_client_cert:
        context.load_cert_chain(files / "client-chain.pem", files / "client-key.pem")
    return context


def test_mutual_tls_with_the_workload_secrets_verifies_both_ways(tls_envoy):
    envoy, files = tls_envoy
    status, headers, body, peer = https_get(envoy.ports["mtls_port"], workload_context(files, True))
    assert (status, body) == (200, "hello from mtls")
    assert headers["x-peer"] == CLIENT.uri  # Envoy validated our client certificate against ROOTCA
    assert ca_mod.uri_sans(x509.load_der_x509_certificate(peer)) == [WEB.uri]


def test_mutual_tls_refuses_a_client_without_a_certificate(tls_envoy):
    envoy, files = tls_envoy
    with pytest.raises(OSError):
        https_get(envoy.ports["mtls_port"], workload_context(files, False))


def test_python_ssl_verifies_the_dns_certificate_by_hostname(tls_envoy):
    envoy, files = tls_envoy
    context = ssl.create_default_context(cafile=str(files / "root.pem"))
    with connect(envoy.ports["dns_port"], context, HOST) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        reply = b"".join(iter(lambda: tls.recv(4096), b""))
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello from dns")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        connect(envoy.ports["dns_port"], context, "other.example.test")


def connect(port: int, context: ssl.SSLContext, server_hostname: str) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def tool(name: str) -> str:
    """The e2e tier fails rather than skips when a client it needs is missing."""
    found = shutil.which(name)
    assert found, f"{name} is not installed; the certs acceptance tests need it"
    return found


def test_curl_verifies_the_dns_certificate_against_the_root(tls_envoy):
    envoy, files = tls_envoy
    port = envoy.ports["dns_port"]
    url = f"https://{HOST}:{port}/"
    ok = subprocess.run(
        [
            tool("curl"),
            "-sS",
            "--cacert",
            str(files / "root.pem"),
            "--resolve",
            f"{HOST}:{port}:127.0.0.1",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (ok.returncode, ok.stdout) == (0, "hello from dns"), ok.stderr
    other_root = files / "other-root.pem"
    other_root.write_bytes(ca_mod.certificates_pem([ca_mod.self_signed_root("x", datetime.now(UTC)).root]))
    refused = subprocess.run(
        [tool("curl"), "-sS", "--cacert", str(other_root), "--resolve", f"{HOST}:{port}:127.0.0.1", url],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert refused.returncode == 60, refused.stderr  # CURLE_PEER_FAILED_VERIFICATION


def test_openssl_verifies_the_workload_chain_through_the_intermediate(tls_envoy):
    envoy, files = tls_envoy
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{envoy.ports['mtls_port']}",
            "-CAfile",
            str(files / "root.pem"),
            "-verify_return_error",
            "-cert",
            str(files / "client-chain.pem"),
            "-cert_chain",  # -cert sends only the leaf; Envoy needs the intermediate to reach ROOTCA
            str(files / "client-chain.pem"),
            "-key",
            str(files / "client-key.pem"),
            "-showcerts",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert "Verify return code: 0 (ok)" in result.stdout
    assert result.stdout.count("BEGIN CERTIFICATE") == 2  # leaf + intermediate; the root is not sent
