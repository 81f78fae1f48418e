"""Issue "Certificates and mTLS", done-when: real Envoys configured by a real ``pilotfish serve``
speak mutual TLS with certificates pilotfish's CA issues and rotates.

Two meshes, each started once for the module:

- ``foo``: an httpbin workload (service account ``httpbin``) and two client sidecars, ``sleep`` and
  ``other``, in namespace ``foo``: PeerAuthentication STRICT / PERMISSIVE and an
  AuthorizationPolicy on ``principals`` (decided by pilotfish's Check server from the peer
  certificate Envoy presents it); a third client gets a certificate from the CSR API with a
  bootstrap token and its config over the mTLS xDS port (``pilotfish bootstrap --mtls``);
- ``bookinfo``: examples/bookinfo (WorkloadEntries labelled ``security.istio.io/tlsMode: istio``,
  so auto mTLS applies) served with ``--certs``: workload certificates live one minute (the
  shortest TTL the certs config accepts; they rotate at half-life, 30 s after issue, instead of the
  issue's 2-minute/60 s, to keep the module short) and a DNS certificate ``bookinfo-credential``
  that an HTTPS gateway server names as its ``credentialName``.

The CSR API's refusal of a SAN the caller does not own is covered over real gRPC by
``tests/integration/certs/test_certs_csr_grpc.py`` (``test_a_san_mismatch_is_refused_...``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from http.client import HTTPException
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from harness import http
from harness.bookinfo import Bookinfo
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port
from harness.waiting import wait_for

from pilotfish._gen import ca_pb2
from pilotfish.bootstrap import BootstrapOptions, bootstrap
from pilotfish.certs.server import certificate_client

pytestmark = pytest.mark.e2e

TRUST_DOMAIN = "cluster.local"
HTTPBIN = "httpbin.foo.svc.cluster.local"
SERVER_IP, SERVER_OUTBOUND = "127.0.6.11", "127.0.6.12"
SLEEP_IP, OTHER_IP, SECURE_IP = "127.0.6.21", "127.0.6.22", "127.0.6.23"
ADDRESSES = ("127.0.0.1", SERVER_IP, SERVER_OUTBOUND, SLEEP_IP, OTHER_IP, SECURE_IP)
TOKEN = "mtls-e2e-token-0123456789"
REFUSED = (OSError, HTTPException)  # reset, or closed before a status line


def spiffe(namespace: str, account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{account}"


def port_free_everywhere() -> int:
    """A port free on every address the foo mesh binds (the service port)."""
    for _ in range(50):
        port = free_port()
        try:
            for address in ADDRESSES:
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on all test addresses")


# ---- the foo mesh --------------------------------------------------------------------------------


class Foo:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.config = root / "config"
        self.stack = ExitStack()
        self.envoys: dict[str, EnvoyProcess] = {}

    def start(self) -> Foo:
        self.config.mkdir(parents=True)
        (self.config / "httpbin.yaml").write_text(httpbin_config(self.port))
        tokens = self.root / "tokens.yaml"
        tokens.write_text(f"tokens:\n- token: {TOKEN}\n  identities: [{spiffe('foo', 'sleep')}]\n")
        tokens.chmod(0o600)
        ca_flags = ["--ca-tokens", str(tokens), "--ca-token-port", "0"]
        self.pilotfish = PilotfishProcess(self.config, self.root / "pf", extra_args=ca_flags)
        self.stack.callback(self.pilotfish.stop)
        self.pilotfish.start()
        self.echo = EchoProcess("httpbin-1", labels={"app": "httpbin"})
        self.stack.callback(self.echo.stop)
        self.echo.start()
        server = {"app_ports": {self.port: self.echo.port}, "outbound_bind": SERVER_OUTBOUND}
        self.sidecar("httpbin-1", "httpbin", SERVER_IP, {"app": "httpbin"}, **server)
        self.sidecar("sleep", "sleep", SLEEP_IP, {"app": "sleep"}, outbound_bind=SLEEP_IP)
        self.sidecar("other", "other", OTHER_IP, {"app": "other"}, outbound_bind=OTHER_IP)
        for envoy in self.envoys.values():
            envoy.wait_ready(20)
        inbound = f"{SERVER_IP}_{self.port}"
        self.envoys["httpbin-1"].wait_for(lambda: inbound in self.envoys["httpbin-1"].listeners())
        return self

    def sidecar(self, name: str, account: str, ip: str, labels: dict[str, str], **options: object) -> None:
        opts = BootstrapOptions(
            name,
            "foo",
            labels,
            service_account=account,
            ip=ip,
            xds_port=self.pilotfish.xds_port,
            admin_port=0,
            **options,  # type: ignore[arg-type]
        )
        envoy = EnvoyProcess(bootstrap(opts), workdir=self.root / name, name=name)
        self.stack.callback(envoy.stop)
        self.envoys[name] = envoy.start(wait=False)

    def write(self, name: str, text: str) -> None:
        tmp = self.config / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(self.config / name)

    def via(self, client_ip: str, path: str = "/") -> http.Response:
        """A request through a client sidecar's outbound listener to httpbin."""
        return http.get(f"http://{client_ip}:{self.port}{path}", headers={"host": HTTPBIN}, timeout=10)

    def direct(self) -> http.Response:
        """A plaintext request straight to httpbin's inbound listener, with no sidecar of its own."""
        return http.get(f"http://{SERVER_IP}:{self.port}/", headers={"host": HTTPBIN}, timeout=5)

    def diagnostics(self) -> str:
        parts = [f"--- pilotfish\n{self.pilotfish.log_text()[-3000:]}"]
        parts += [f"--- envoy {name}\n{envoy.log_tail(30)}" for name, envoy in self.envoys.items()]
        return "\n".join(parts)


def httpbin_config(port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: foo}}
spec:
  hosts: [{HTTPBIN}]
  location: MESH_INTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: httpbin}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: httpbin-1, namespace: foo}}
spec:
  address: {SERVER_IP}
  labels: {{app: httpbin, security.istio.io/tlsMode: istio}}
  serviceAccount: httpbin
"""


def peer_authentication(mode: str) -> str:
    return f"""apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: foo}}
spec:
  mtls: {{mode: {mode}}}
"""


ALLOW_SLEEP = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-allow-sleep, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]
"""


@pytest.fixture(scope="module")
def foo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Foo]:
    mesh = Foo(tmp_path_factory.mktemp("foo"), port_free_everywhere())
    with mesh.stack:
        try:
            mesh.start()
            yield mesh
        except BaseException:
            print(mesh.diagnostics())
            raise


def client_identity(response: http.Response) -> str:
    """The caller's SPIFFE id as the server sidecar saw it: the ``URI`` of the
    ``x-forwarded-client-cert`` header it added for the app (empty for plaintext)."""
    header = response.json()["request"]["headers"].get("x-forwarded-client-cert", "")
    fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    return fields.get("URI", "")


def refused(mesh: Foo) -> bool:
    try:
        mesh.direct()
    except REFUSED:
        return True
    return False


def test_strict_mtls_serves_sidecars_and_refuses_plaintext_then_permissive_accepts_both(foo: Foo) -> None:
    foo.write("peer-authentication.yaml", peer_authentication("STRICT"))
    wait_for(lambda: refused(foo), timeout=15, message="STRICT: plaintext refused")

    through = foo.via(SLEEP_IP)
    assert through.status == 200, through
    assert through.json()["name"] == "httpbin-1"
    assert client_identity(through) == spiffe("foo", "sleep")  # mutual TLS, the client's certificate
    with pytest.raises(REFUSED):
        foo.direct()

    foo.write("peer-authentication.yaml", peer_authentication("PERMISSIVE"))
    plaintext = wait_for(lambda: not refused(foo) and foo.direct(), timeout=15, message="PERMISSIVE")
    assert plaintext.status == 200 and client_identity(plaintext) == ""
    through = foo.via(SLEEP_IP)
    assert through.status == 200 and client_identity(through) == spiffe("foo", "sleep")


def test_authorization_policy_on_principals_allows_sleep_and_denies_another_service_account(foo: Foo) -> None:
    foo.write("peer-authentication.yaml", peer_authentication("PERMISSIVE"))
    foo.write("authorization-policy.yaml", ALLOW_SLEEP)
    try:
        wait_for(lambda: foo.via(OTHER_IP).status == 403, timeout=15, message="policy in force")
        allowed = foo.via(SLEEP_IP)
        assert allowed.status == 200, allowed
        assert client_identity(allowed) == spiffe("foo", "sleep")
        assert [foo.via(OTHER_IP).status for _ in range(5)] == [403] * 5  # mTLS as foo/other: denied
        assert foo.direct().status == 403  # plaintext: no principal at all
    finally:
        (foo.config / "authorization-policy.yaml").unlink()


# ---- bookinfo ------------------------------------------------------------------------------------

CERTS = """workloadCertTtl: 1m
dnsCertificates:
- secretName: bookinfo-credential
  dnsNames: [bookinfo.example.com]
"""

HTTPS_GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bookinfo-https, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    hosts: [bookinfo.example.com]
    tls: {{mode: SIMPLE, credentialName: bookinfo-credential}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo-https, namespace: default}}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-https]
  http:
  - route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
"""


@pytest.fixture(scope="module")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bookinfo]:
    root = tmp_path_factory.mktemp("bookinfo-mtls")
    (root / "certs.yaml").write_text(CERTS)
    mesh = Bookinfo(root / "mesh", port=free_port(), pilotfish_args=["--certs", str(root / "certs.yaml")])
    try:
        mesh.start()
        mesh.wait_ready()
        yield mesh
    except BaseException:
        print(mesh.diagnostics())
        raise
    finally:
        mesh.stop()


def debug_certs(mesh: Bookinfo) -> dict:
    assert mesh.pilotfish is not None
    return mesh.pilotfish.get_json("/debug/certs")


def test_bookinfo_traffic_between_sidecars_and_from_the_gateway_is_mutual_tls(bookinfo: Bookinfo) -> None:
    reviews = bookinfo.call("reviews")
    assert reviews.status == 200, reviews
    assert client_identity(reviews) == spiffe("default", "bookinfo-productpage")
    xfcc = reviews.json()["request"]["headers"]["x-forwarded-client-cert"]
    assert f"By={spiffe('default', 'bookinfo-reviews')}" in xfcc  # the server side's own certificate
    page = http.get(bookinfo.gateway_url("/productpage"), headers={"host": "bookinfo.example.com"})
    assert page.status == 200 and client_identity(page) == spiffe("default", "default")  # the gateway


def test_the_gateway_serves_https_with_a_dns_certificate_from_the_ca(
    bookinfo: Bookinfo, tmp_path: Path
) -> None:
    port = free_port()
    bookinfo.apply("gateway-https.yaml", HTTPS_GATEWAY.format(port=port))
    root = tmp_path / "root.pem"
    root.write_text(debug_certs(bookinfo)["root"])
    assert bookinfo.pilotfish is not None
    assert root.read_bytes() == bookinfo.pilotfish.root_cert_path.read_bytes()  # the CA dir's root
    url = f"https://bookinfo.example.com:{port}/productpage"
    resolve = f"bookinfo.example.com:{port}:{bookinfo.gateway_ip}"

    def curl(*extra: str) -> subprocess.CompletedProcess[str]:
        args = ["curl", "-sS", "--max-time", "5", "--resolve", resolve, *extra, url]
        return subprocess.run(args, capture_output=True, text=True, timeout=15)

    verified = wait_for(lambda: (r := curl("--cacert", str(root))).returncode == 0 and r, timeout=15)
    assert json.loads(verified.stdout)["name"] == "productpage-v1"
    untrusted = curl()  # the system roots do not know pilotfish's CA
    assert untrusted.returncode == 60, untrusted.stderr  # CURLE_PEER_FAILED_VERIFICATION
    names = {c["name"]: c for c in debug_certs(bookinfo)["certificates"] if c["kind"] == "dns"}
    assert names["bookinfo-credential"]["sans"] == ["bookinfo.example.com"]
    gateway = BootstrapOptions("istio-ingressgateway", "default", gateway=True, ip=bookinfo.gateway_ip)
    query = f"/debug/config_dump?proxyID={gateway.full_node_id()}&type=secret"
    secrets = {r["name"]: r for r in bookinfo.pilotfish.get_json(query)["SDS"]["resources"]}
    assert set(secrets) == {"default", "ROOTCA", "bookinfo-credential"}
    assert secrets["bookinfo-credential"]["tls_certificate"]["private_key"] == "[redacted]"


def served_serials(envoy: EnvoyProcess, identity: str) -> set[str]:
    """Serial numbers of the certificates for ``identity`` Envoy serves now (admin ``/certs``)."""
    document = envoy.admin_json("/certs")
    return {
        cert["serial_number"]
        for context in document.get("certificates", [])
        for cert in context.get("cert_chain", [])
        if any(san.get("uri") == identity for san in cert.get("subject_alt_names", []))
    }


def metric(mesh: Bookinfo, line_start: str) -> float:
    assert mesh.pilotfish is not None
    with urllib.request.urlopen(f"http://{mesh.pilotfish.admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_certificates_rotate_at_half_life_while_requests_keep_flowing(bookinfo: Bookinfo) -> None:
    reviews = bookinfo.workloads["reviews-v1"].envoy
    assert reviews is not None
    identity = spiffe("default", "bookinfo-reviews")
    first = wait_for(lambda: served_serials(reviews, identity), message="reviews serves its certificate")
    rotated_before = debug_certs(bookinfo)["rotated"].get("workload", 0)
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + 50  # issued at connect; rotated 30 s later (1-minute TTL)
    while served_serials(reviews, identity) <= first:
        assert time.monotonic() < deadline, f"no rotation: {debug_certs(bookinfo)}"
        statuses[bookinfo.call("reviews", **{"end-user": "jason"}).status] += 1  # -> reviews-v2
        statuses[bookinfo.call("ratings").status] += 1
    for _ in range(20):  # and after the switch
        statuses[bookinfo.call("reviews", **{"end-user": "jason"}).status] += 1
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) > 40

    new = served_serials(reviews, identity) - first
    kept = {c["serial"] for c in debug_certs(bookinfo)["certificates"] if c["name"] == identity}
    assert {int(s, 16) for s in new} == {int(s, 16) for s in kept}  # what pilotfish issued last
    assert debug_certs(bookinfo)["rotated"]["workload"] > rotated_before
    assert metric(bookinfo, 'pilotfish_certs_rotated_total{kind="workload"}') >= 1
    assert metric(bookinfo, f'pilotfish_cert_expiry_timestamp_seconds{{secret="{identity}"}}') > time.time()


# ---- a proxy on the mTLS xDS port ------------------------------------------------------------------


def create_certificate(mesh: Foo, identity: str) -> tuple[list[str], bytes]:
    """A key and a CSR for ``identity``, signed through the CSR API on the token port (server
    TLS verified against the root in the CA directory); returns the chain and the key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    csr = csr.add_extension(san, critical=True).sign(key, hashes.SHA256())
    root = mesh.pilotfish.root_cert_path.read_bytes()
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    with grpc.secure_channel(f"127.0.0.1:{mesh.pilotfish.ca_token_port}", credentials) as channel:
        request = ca_pb2.IstioCertificateRequest(
            csr=csr.public_bytes(serialization.Encoding.PEM).decode(), validity_duration=3600
        )
        response = certificate_client(channel)(
            request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return list(response.cert_chain), key_pem


def test_a_proxy_gets_its_certificate_from_the_csr_api_and_its_config_over_mtls_xds(
    foo: Foo, tmp_path: Path
) -> None:
    with pytest.raises(grpc.RpcError) as refused:  # the token does not own foo/other
        create_certificate(foo, spiffe("foo", "other"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    chain, key = create_certificate(foo, spiffe("foo", "sleep"))
    (tmp_path / "chain.pem").write_text("".join(chain))
    (tmp_path / "key.pem").write_bytes(key)
    args = ["--node-id", "sleep-secure", "--namespace", "foo", "--service-account", "sleep"]
    args += ["--ip", SECURE_IP, "--outbound-bind", SECURE_IP, "--admin-port", "0", "--mtls"]
    args += ["--xds-address", f"127.0.0.1:{foo.pilotfish.secure_xds_port}"]
    args += ["--ca-cert-file", str(foo.pilotfish.root_cert_path)]
    args += ["--cert-chain", str(tmp_path / "chain.pem"), "--private-key", str(tmp_path / "key.pem")]
    command = [sys.executable, "-m", "pilotfish", "bootstrap", *args]
    text = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout
    (xds,) = yaml.safe_load(text)["static_resources"]["clusters"]
    assert xds["transport_socket"]["name"] == "envoy.transport_sockets.tls"

    envoy = EnvoyProcess(text, workdir=tmp_path / "envoy", name="sleep-secure")
    try:
        envoy.start(wait=False)
        envoy.wait_ready(20)  # LIVE: CDS and LDS arrived, over the mTLS port only
        node = BootstrapOptions("sleep-secure", "foo", ip=SECURE_IP).full_node_id()
        foo.pilotfish.wait_synced(node, ("CDS", "EDS", "LDS", "RDS", "SDS"))
        response = envoy.wait_for(lambda: foo.via(SECURE_IP), message="outbound listener")
        assert response.status == 200 and client_identity(response) == spiffe("foo", "sleep")
    finally:
        envoy.stop()
