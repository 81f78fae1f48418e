"""The CA wired into the server (``mesh_ca.MeshCa``): SDS secrets per proxy, rotation timing,
``/debug/certs`` without keys; ``config_dump`` redaction; ``bootstrap --mtls``; the CA flags."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from pilotfish.app import redact_keys
from pilotfish.bootstrap import BootstrapOptions, XdsTls, bootstrap
from pilotfish.certs import ca as ca_mod
from pilotfish.certs.csr_service import CsrRefused, Refusal, parse_csr
from pilotfish.cli import build_parser, ca_options
from pilotfish.cli import main as cli_main
from pilotfish.config.loader import load_text
from pilotfish.config.mesh import DEFAULT_MESH
from pilotfish.mesh_ca import MAX_SLEEP, CaOptions, MeshCa
from pilotfish.metrics import Metrics
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: MUTUAL, credentialName: shop-cert}
"""
CERTS = """workloadCertTtl: 1m
dnsCertificates:
- secretName: shop-cert
  dnsNames: [shop.example.com]
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def proxy(name: str, account: str, kind: ProxyType = ProxyType.SIDECAR, **labels: str) -> Proxy:
    prefix = kind.value
    return Proxy(
        id=f"{prefix}~10.0.0.1~{name}.shop~shop.svc.cluster.local",
        type=kind,
        ip="10.0.0.1",
        name=name,
        namespace="shop",
        dns_domain="shop.svc.cluster.local",
        labels=labels,
        service_account=account,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mesh_ca(tmp_path: Path, clock: Clock) -> MeshCa:
    (tmp_path / "certs.yaml").write_text(CERTS)
    options = CaOptions(ca_dir=tmp_path / "ca", certs_file=tmp_path / "certs.yaml")
    return MeshCa(options, DEFAULT_MESH, Metrics(), clock)


def mesh() -> MeshSnapshot:
    result = load_text(GATEWAY)
    assert not result.errors
    return MeshSnapshot.build(result.resources)


def certificate(secret: secret_pb2.Secret) -> x509.Certificate:
    return x509.load_pem_x509_certificates(secret.tls_certificate.certificate_chain.inline_bytes)[0]


def test_a_sidecar_gets_its_own_identity_and_the_root(mesh_ca: MeshCa) -> None:
    default, root = mesh_ca.secrets(mesh(), proxy("web-1", "web"))
    assert (default.name, root.name) == ("default", "ROOTCA")
    assert ca_mod.uri_sans(certificate(default)) == ["spiffe://cluster.local/ns/shop/sa/web"]
    assert root.validation_context.trusted_ca.inline_bytes == mesh_ca.root_pem().encode()
    again, _ = mesh_ca.secrets(mesh(), proxy("web-2", "web"))
    assert again == default  # one identity, one kept certificate: the SDS content does not change
    other, _ = mesh_ca.secrets(mesh(), proxy("db-1", "db"))
    assert other.tls_certificate.private_key != default.tls_certificate.private_key


def test_a_gateway_also_gets_the_dns_certificates_its_servers_name_and_their_ca(mesh_ca: MeshCa) -> None:
    gateway = proxy("ingress", "", ProxyType.ROUTER, istio="ingressgateway")
    secrets = {s.name: s for s in mesh_ca.secrets(mesh(), gateway)}
    assert list(secrets) == ["default", "ROOTCA", "shop-cert", "shop-cert-cacert"]
    assert ca_mod.all_sans(certificate(secrets["shop-cert"])) == ["shop.example.com"]
    assert secrets["shop-cert-cacert"].validation_context == secrets["ROOTCA"].validation_context
    assert ca_mod.uri_sans(certificate(secrets["default"])) == ["spiffe://cluster.local/ns/shop/sa/default"]


def test_rotation_is_due_at_half_life_and_reissues(mesh_ca: MeshCa, clock: Clock) -> None:
    assert mesh_ca.seconds_to_next_rotation() == MAX_SLEEP  # nothing kept yet
    first, _ = mesh_ca.secrets(mesh(), proxy("web-1", "web"))
    assert mesh_ca.seconds_to_next_rotation() == 30  # a 1-minute certificate, renewed at half-life
    clock.now += timedelta(seconds=29)
    assert not mesh_ca.due() and mesh_ca.seconds_to_next_rotation() == 1
    clock.now += timedelta(seconds=1)
    assert mesh_ca.due()
    second, _ = mesh_ca.secrets(mesh(), proxy("web-1", "web"))
    assert certificate(second).serial_number != certificate(first).serial_number
    assert not mesh_ca.due()
    assert mesh_ca.debug()["rotated"] == {"workload": 1}


def test_certificates_of_proxies_that_left_are_forgotten(mesh_ca: MeshCa, clock: Clock) -> None:
    mesh_ca.secrets(mesh(), proxy("web-1", "web"))
    clock.now += timedelta(seconds=45)
    assert mesh_ca.due()
    mesh_ca.retain(mesh(), [])
    assert not mesh_ca.due() and mesh_ca.seconds_to_next_rotation() == MAX_SLEEP


def test_debug_certs_lists_public_facts_only(mesh_ca: MeshCa) -> None:
    mesh_ca.secrets(mesh(), proxy("ingress", "", ProxyType.ROUTER, istio="ingressgateway"))
    report = mesh_ca.debug()
    text = json.dumps(report)
    assert "PRIVATE KEY" not in text
    assert report["root"].startswith("-----BEGIN CERTIFICATE-----")
    kinds = {(c["kind"], c["name"]) for c in report["certificates"]}
    assert {("ca", "ROOTCA"), ("dns", "shop-cert"), ("server", "server")} <= kinds
    assert ("workload", "spiffe://cluster.local/ns/shop/sa/default") in kinds
    assert report["issued"] == {"dns": 1, "server": 1, "workload": 1}


def test_the_ca_directory_keeps_the_root_across_restarts(tmp_path: Path, clock: Clock) -> None:
    options = CaOptions(ca_dir=tmp_path / "ca")
    first = MeshCa(options, DEFAULT_MESH, Metrics(), clock)
    assert (tmp_path / "ca" / "ca" / "root-cert.pem").read_text() == first.root_pem()
    assert MeshCa(options, DEFAULT_MESH, Metrics(), clock).root_pem() == first.root_pem()
    assert MeshCa(CaOptions(), DEFAULT_MESH, Metrics(), clock).root_pem() != first.root_pem()  # memory


def test_config_dump_redacts_every_private_key() -> None:
    dump = {"resources": [{"name": "default", "tls_certificate": {"private_key": {"inline_bytes": "S0VZ"}}}]}
    redacted = redact_keys(dump)
    assert redacted["resources"][0]["tls_certificate"]["private_key"] == "[redacted]"
    assert redacted["resources"][0]["name"] == "default"


# ---- bootstrap --mtls and the CA flags --------------------------------------------------------------


def test_an_mtls_bootstrap_presents_its_certificate_and_checks_the_server_name() -> None:
    tls = XdsTls("/etc/mesh/root.pem", "/etc/mesh/chain.pem", "/etc/mesh/key.pem")
    (cluster,) = bootstrap(BootstrapOptions("web-1", "shop", xds_port=15012, tls=tls))["static_resources"][
        "clusters"
    ]
    context = cluster["transport_socket"]["typed_config"]
    common = context["common_tls_context"]
    assert common["tls_certificates"] == [
        {"certificate_chain": {"filename": tls.cert_chain}, "private_key": {"filename": tls.private_key}}
    ]
    assert common["validation_context"]["trusted_ca"] == {"filename": tls.root_cert}
    san = common["validation_context"]["match_typed_subject_alt_names"]
    assert san == [{"san_type": "DNS", "matcher": {"exact": "pilotfish.istio-system.svc"}}]
    plain = bootstrap(BootstrapOptions("web-1", "shop"))["static_resources"]["clusters"][0]
    assert "transport_socket" not in plain


def test_the_bootstrap_cli_needs_all_three_files_for_mtls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["bootstrap", "--node-id", "web-1", "--namespace", "shop"]
    assert cli_main([*base, "--mtls", "--ca-cert-file", "root.pem"]) == 2
    assert "--mtls needs --cert-chain, --private-key" in capsys.readouterr().err
    assert cli_main([*base, "--cert-chain", "c.pem"]) == 2
    assert "need --mtls" in capsys.readouterr().err
    files = ["--ca-cert-file", "r.pem", "--cert-chain", "c.pem", "--private-key", "k.pem"]
    assert cli_main([*base, "--mtls", *files]) == 0
    text = capsys.readouterr().out
    assert "port_value: 15012" in text and str(Path("k.pem").resolve()) in text


def test_serve_ca_flags(tmp_path: Path) -> None:
    parse = build_parser().parse_args
    options = ca_options(parse(["serve", "--ca-dir", str(tmp_path), "--secure-xds-port", "-1"]))
    assert (options.ca_dir, options.secure_xds_port, options.operator) == (tmp_path, None, None)
    default = ca_options(parse(["serve"]))
    assert default.secure_xds_port == 15012 and default.ca_dir.parts[-2:] == ("pilotfish", "ca")
    with pytest.raises(SystemExit, match="go together"):
        ca_options(parse(["serve", "--ca-cert", "c.pem"]))


# A CSR whose key algorithm OID was corrupted (found by the CSR fuzz test): cryptography raises
# UnsupportedAlgorithm while checking its signature, which must be the caller's INVALID_ARGUMENT.
UNKNOWN_KEY_TYPE_CSR = """-----BEGIN CERTIFICATE REQUEST-----
MIIBATCBqAIBADAAMFkwEwYHAIZIzj0CAQYIKoZIzj0DAQcDQgAENCSnCNZxErR40Tr/N8M3g34X
bxNqQah+yLXKRbw0wtKIHYcWpsoFS1Cmk4yQumFeR8MwXB7xtQ5+W73ZF3+ApqBGMEQGCSqGSIb3
DQEJDjE3MDUwMwYDVR0RAQH/BCkwJ4Ylc3BpZmZlOi8vY2x1c3Rlci5sb2NhbC9ucy9zaG9wL3Nh
L3dlYjAKBggqhkjOPQQDAgNIADBFAiAzlhTZEROnhQ1KAGOVKtenwExls/S0HjIVt4S3a6jP+wIh
AOIcWT5mDlHvFTbgAmx36ErcV4+tKxI424/9wnebBZwA
-----END CERTIFICATE REQUEST-----
"""


def test_a_csr_with_an_unknown_key_algorithm_is_an_invalid_argument() -> None:
    with pytest.raises(CsrRefused) as refused:
        parse_csr(UNKNOWN_KEY_TYPE_CSR)
    assert refused.value.refusal == Refusal.INVALID_ARGUMENT


# ---- who may be served on an ADS stream --------------------------------------------------------


def client_cert_pem(mesh_ca: MeshCa, namespace: str, account: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from pilotfish.certs.ca import issue_workload
    from pilotfish.certs.identity import workload_id

    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_workload(
        mesh_ca.ca, workload_id("cluster.local", namespace, account), key.public_key(), mesh_ca.clock()
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_client_certificate_must_prove_the_identity_the_node_claims(mesh_ca: MeshCa) -> None:
    from pilotfish.errors import PeerUnauthorized
    from pilotfish.xds.server import StreamPeer

    claiming_web = proxy("web", "web")
    mesh_ca.authorize_stream(
        claiming_web, StreamPeer("ipv4:10.1.2.3:4000", client_cert_pem(mesh_ca, "shop", "web"))
    )
    with pytest.raises(PeerUnauthorized, match="claims spiffe://cluster.local/ns/shop/sa/web"):
        mesh_ca.authorize_stream(
            claiming_web, StreamPeer("ipv4:10.1.2.3:4000", client_cert_pem(mesh_ca, "shop", "db"))
        )
    with pytest.raises(PeerUnauthorized):
        mesh_ca.authorize_stream(claiming_web, StreamPeer("ipv4:10.1.2.3:4000", b"not a certificate"))


@pytest.mark.parametrize(
    ("address", "served"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv4:127.0.0.21:5000", True),
        ("ipv6:[::1]:5000", True),
        ("unix:/run/pilotfish.sock", True),
        ("ipv4:10.0.0.7:5000", False),
        ("ipv6:[2001:db8::1]:5000", False),
        ("", False),
    ],
)
def test_plaintext_streams_are_served_only_to_proxies_on_this_host(
    mesh_ca: MeshCa, address: str, served: bool
) -> None:
    from pilotfish.errors import PeerUnauthorized
    from pilotfish.xds.server import StreamPeer

    if served:
        mesh_ca.authorize_stream(proxy("web", "web"), StreamPeer(address))
    else:
        with pytest.raises(PeerUnauthorized, match="mTLS xDS port"):
            mesh_ca.authorize_stream(proxy("web", "web"), StreamPeer(address))
