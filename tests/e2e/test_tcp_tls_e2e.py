"""Issue "TCP and TLS traffic", done-when: real Envoys configured by a real ``pilotfish serve``
carry TCP and TLS traffic.

One mesh for the module (namespace ``db``, addresses 127.0.15.x):

- ``pg-a`` and ``pg-b``: two server sidecars whose inbound port forwards to the real PostgreSQL
  (127.0.0.1:5432), under a STRICT PeerAuthentication; a client sidecar reaches the service ``pg``
  whose VirtualService ``tcp`` rule splits connections 75/25 between them. ``psql`` runs through
  the client's outbound listener; the split is read from each server sidecar's inbound cluster;
- an ingress gateway with a TLS ``PASSTHROUGH`` server routing by SNI (``tls`` rules) to a TLS
  backend with its own certificate, an HTTPS ``MUTUAL`` server whose client CA is a file, and a
  TCP server whose ``tcp`` rule sends ``psql`` to ``pg-b`` (mTLS from the gateway, STRICT there),
  a TLS server that terminates into a ``tcp`` rule, and an AUTO_PASSTHROUGH server that routes the
  client's own mesh mTLS by its SNI (``outbound_.<port>_._.<host>``) to ``pg-a``.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port
from harness.tls_server import TlsServer, issue, write_pem
from harness.waiting import wait_for

from pilotfish.bootstrap import BootstrapOptions, bootstrap

pytestmark = pytest.mark.e2e

PG_A, PG_B = "127.0.15.11", "127.0.15.12"
PG_A_OUT, PG_B_OUT = "127.0.15.13", "127.0.15.14"
CLIENT = "127.0.15.21"
GATEWAY = "127.0.15.31"
BACKEND = "127.0.15.41"
ADDRESSES = (PG_A, PG_B, PG_A_OUT, PG_B_OUT, CLIENT, GATEWAY, BACKEND, "127.0.0.1")
SECURE_HOST, MUTUAL_HOST = "secure.example.com", "mutual.example.com"


def ports_free_everywhere(count: int) -> list[int]:
    """Ports free on every address the mesh binds."""
    found: list[int] = []
    for _ in range(200):
        port = free_port()
        try:
            for address in ADDRESSES:
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        if port not in found:
            found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError("no ports free on all test addresses")


def mesh_config(
    front: int, back: int, passthrough: int, mutual: int, backend: int, echo: int, tcp: int, terminate: int
) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pg, namespace: db}}
spec:
  hosts: [pg.db.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {front}, name: postgres}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pg-a, namespace: db}}
spec:
  hosts: [pg-a.db.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {back}, name: tcp-postgres}}]
  workloadSelector: {{labels: {{app: pg-a}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pg-b, namespace: db}}
spec:
  hosts: [pg-b.db.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {back}, name: tcp-postgres}}]
  workloadSelector: {{labels: {{app: pg-b}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: pg-a-1, namespace: db}}
spec:
  address: {PG_A}
  labels: {{app: pg-a, security.istio.io/tlsMode: istio}}
  serviceAccount: pg
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: pg-b-1, namespace: db}}
spec:
  address: {PG_B}
  labels: {{app: pg-b, security.istio.io/tlsMode: istio}}
  serviceAccount: pg
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: db}}
spec:
  mtls: {{mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: pg-split, namespace: db}}
spec:
  hosts: [pg]
  tcp:
  - route:
    - {{destination: {{host: pg-a}}, weight: 75}}
    - {{destination: {{host: pg-b}}, weight: 25}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: secure, namespace: db}}
spec:
  hosts: [{SECURE_HOST}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {backend}, name: tls}}]
  endpoints: [{{address: {BACKEND}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: db}}
spec:
  hosts: [echo.db.svc.cluster.local]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {echo}, name: http}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge, namespace: db}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {passthrough}, name: tls-passthrough, protocol: TLS}}
    hosts: [{SECURE_HOST}]
    tls: {{mode: PASSTHROUGH}}
  - port: {{number: {tcp}, name: tcp-postgres, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {terminate}, name: tls-terminate, protocol: TLS}}
    hosts: [{MUTUAL_HOST}]
    tls: {{mode: SIMPLE, serverCertificate: {{server_cert}}, privateKey: {{server_key}}}}
  - port: {{number: {mutual}, name: https-mutual, protocol: HTTPS}}
    hosts: [{MUTUAL_HOST}]
    tls:
      mode: MUTUAL
      serverCertificate: {{server_cert}}
      privateKey: {{server_key}}
      caCertificates: {{client_ca}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secure-sni, namespace: db}}
spec:
  hosts: [{SECURE_HOST}]
  gateways: [edge, mesh]
  tls:
  - match: [{{sniHosts: [{SECURE_HOST}], port: {passthrough}, gateways: [edge]}}]
    route: [{{destination: {{host: {SECURE_HOST}, port: {{number: {backend}}}}}}}]
  - match: [{{sniHosts: [{SECURE_HOST}], port: {backend}, gateways: [mesh]}}]
    route: [{{destination: {{host: {SECURE_HOST}, port: {{number: {backend}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo-over-tls, namespace: db}}
spec:
  hosts: [{MUTUAL_HOST}]
  gateways: [edge]
  tcp:
  - match: [{{port: {terminate}}}]
    route: [{{destination: {{host: echo.db.svc.cluster.local, port: {{number: {echo}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: pg-edge, namespace: db}}
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
  - match: [{{port: {tcp}}}]
    route: [{{destination: {{host: pg-b.db.svc.cluster.local, port: {{number: {back}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: mutual, namespace: db}}
spec:
  hosts: [{MUTUAL_HOST}]
  gateways: [edge]
  http:
  - route: [{{destination: {{host: echo.db.svc.cluster.local, port: {{number: {echo}}}}}}}]
"""


def cross_network_config(back: int, remote: int, cross: int) -> str:
    """An AUTO_PASSTHROUGH server on the gateway, and ``pg-remote``: a service whose only endpoint
    is that gateway port, reached with the mesh certificate and the SNI of ``pg-a``'s cluster
    (what a sidecar in another network sends): the gateway routes by that SNI, unread."""
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: cross-network, namespace: db}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {cross}, name: tls-cross, protocol: TLS}}
    hosts: ["*.local"]
    tls: {{mode: AUTO_PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pg-remote, namespace: db}}
spec:
  hosts: [pg-remote.db.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {remote}, name: tcp-postgres}}]
  endpoints: [{{address: {GATEWAY}, ports: {{tcp-postgres: {cross}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: pg-remote, namespace: db}}
spec:
  host: pg-remote.db.svc.cluster.local
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
      sni: outbound_.{back}_._.pg-a.db.svc.cluster.local
      subjectAltNames: [spiffe://cluster.local/ns/db/sa/pg]
"""


class L4Mesh:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "config"
        self.stack = ExitStack()
        self.envoys: dict[str, EnvoyProcess] = {}
        ports = ports_free_everywhere(9)
        self.front, self.back, self.passthrough, self.mutual, self.backend_port = ports[:5]
        self.tcp, self.terminate, self.remote, self.cross = ports[5:]

    def start(self) -> L4Mesh:
        self.config.mkdir(parents=True)
        pki = self.root / "pki"
        pki.mkdir()
        # the TLS backend's own CA and certificate: nothing the mesh issues
        backend_ca = issue("backend-ca", ca=True)
        self.backend_ca = write_pem(pki / "backend-ca.pem", backend_ca.cert)
        backend = issue(SECURE_HOST, issuer=backend_ca, dns=[SECURE_HOST])
        # the MUTUAL gateway server: its certificate, and the CA its clients must chain to
        self.server_ca_cert = issue("gateway-ca", ca=True)
        self.server_ca = write_pem(pki / "gateway-ca.pem", self.server_ca_cert.cert)
        server = issue(MUTUAL_HOST, issuer=self.server_ca_cert, dns=[MUTUAL_HOST])
        self.client_ca_cert = issue("client-ca", ca=True)
        client_ca = write_pem(pki / "client-ca.pem", self.client_ca_cert.cert)
        good = issue("good-client", issuer=self.client_ca_cert)
        self.good_cert, self.good_key = (
            write_pem(pki / "good.pem", good.cert),
            write_pem(pki / "good.key", good.key),
        )
        stranger_ca = issue("stranger-ca", ca=True)
        bad = issue("bad-client", issuer=stranger_ca)
        self.bad_cert, self.bad_key = (
            write_pem(pki / "bad.pem", bad.cert),
            write_pem(pki / "bad.key", bad.key),
        )
        server_cert, server_key = (
            write_pem(pki / "server.pem", server.cert),
            write_pem(pki / "server.key", server.key),
        )

        self.echo = EchoProcess("echo-mutual")
        self.stack.callback(self.echo.stop)
        self.echo.start()
        text = mesh_config(
            self.front,
            self.back,
            self.passthrough,
            self.mutual,
            self.backend_port,
            self.echo.port,
            self.tcp,
            self.terminate,
        )
        text = text.replace("{server_cert}", str(server_cert)).replace("{server_key}", str(server_key))
        (self.config / "mesh.yaml").write_text(text.replace("{client_ca}", str(client_ca)))
        (self.config / "cross.yaml").write_text(cross_network_config(self.back, self.remote, self.cross))

        self.tls_backend = TlsServer(BACKEND, self.backend_port, backend, name="secure-backend")
        self.stack.callback(self.tls_backend.stop)
        self.tls_backend.start()

        self.pilotfish = PilotfishProcess(self.config, self.root / "pf")
        self.stack.callback(self.pilotfish.stop)
        self.pilotfish.start()
        pg = {"app_ports": {self.back: 5432}}
        self.proxy("pg-a", PG_A, {"app": "pg-a"}, account="pg", outbound_bind=PG_A_OUT, **pg)
        self.proxy("pg-b", PG_B, {"app": "pg-b"}, account="pg", outbound_bind=PG_B_OUT, **pg)
        self.proxy("client", CLIENT, {"app": "client"}, account="client", outbound_bind=CLIENT)
        self.proxy("gateway", GATEWAY, {"istio": "ingressgateway"}, gateway=True, gateway_bind=GATEWAY)
        for envoy in self.envoys.values():
            envoy.wait_ready(30)
        wait_for(lambda: f"{CLIENT}_{self.front}" in self.envoys["client"].listeners(), timeout=20)
        for name, ip in (("pg-a", PG_A), ("pg-b", PG_B)):
            envoy = self.envoys[name]
            wait_for(lambda: f"{ip}_{self.back}" in envoy.listeners(), timeout=20)  # noqa: B023
        return self

    def proxy(
        self, name: str, ip: str, labels: dict[str, str], account: str = "default", **options: object
    ) -> None:
        opts = BootstrapOptions(
            name,
            "db",
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

    def diagnostics(self) -> str:
        pilotfish = getattr(self, "pilotfish", None)
        parts = [f"--- pilotfish\n{pilotfish.log_text()[-3000:]}"] if pilotfish is not None else []
        parts += [f"--- envoy {name}\n{envoy.log_tail(30)}" for name, envoy in self.envoys.items()]
        return "\n".join(parts)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[L4Mesh]:
    l4 = L4Mesh(tmp_path_factory.mktemp("l4"))
    with l4.stack:
        try:
            l4.start()
            yield l4
        except BaseException:
            print(l4.diagnostics())
            raise


def psql(host: str, port: int, query: str = "select 42") -> subprocess.CompletedProcess[str]:
    command = ["psql", "-h", host, "-p", str(port), "-U", "postgres", "-d", "postgres", "-tAc", query]
    env = {"PGCONNECT_TIMEOUT": "5", "PGSSLMODE": "disable", "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, capture_output=True, text=True, timeout=20, env=env)


def inbound_connections(mesh: L4Mesh, name: str) -> int:
    return mesh.envoys[name].stat(f"cluster.inbound|{mesh.back}||.upstream_cx_total") or 0


def test_psql_through_strict_mtls_sidecars_with_a_weighted_tcp_route(mesh: L4Mesh) -> None:
    first = wait_for(lambda: (r := psql(CLIENT, mesh.front)).returncode == 0 and r, timeout=20)
    assert first.stdout.strip() == "42"
    before = {name: inbound_connections(mesh, name) for name in ("pg-a", "pg-b")}
    runs = 40
    for i in range(runs):
        result = psql(CLIENT, mesh.front, f"select {i} + 1")
        assert result.returncode == 0 and result.stdout.strip() == str(i + 1), result.stderr
    counts = {name: inbound_connections(mesh, name) - before[name] for name in before}
    assert counts["pg-a"] + counts["pg-b"] == runs, counts
    assert counts["pg-b"] > 0 and counts["pg-a"] > counts["pg-b"], counts  # 75/25 split

    # mTLS on the way: the client's clusters shook hands, and plaintext straight to a STRICT
    # server sidecar is refused
    client = mesh.envoys["client"]
    handshakes = sum(
        value
        for name, value in client.stats().items()
        if name.endswith("ssl.handshake") and any(f"||pg-{x}.db.svc.cluster.local" in name for x in "ab")
    )
    assert handshakes >= runs, {k: v for k, v in client.stats().items() if "ssl" in k}
    direct = psql(PG_A, mesh.back)
    assert direct.returncode != 0


def test_psql_through_a_gateway_tcp_server_to_a_strict_mtls_sidecar(mesh: L4Mesh) -> None:
    before = inbound_connections(mesh, "pg-b")
    first = wait_for(lambda: (r := psql(GATEWAY, mesh.tcp)).returncode == 0 and r, timeout=20)
    assert first.stdout.strip() == "42"
    assert inbound_connections(mesh, "pg-b") > before  # the tcp rule's destination, over mTLS
    gateway = mesh.envoys["gateway"]
    handshakes = sum(
        value
        for name, value in gateway.stats().items()
        if name.endswith("ssl.handshake") and "||pg-b.db.svc.cluster.local" in name
    )
    assert handshakes >= 1


def test_a_tls_server_terminates_and_forwards_the_stream_by_its_tcp_rule(mesh: L4Mesh) -> None:
    """TLS ends at the gateway (its own certificate, SNI matched); the bytes inside go on as
    plain TCP to the echo server, which sees an ordinary HTTP request."""
    ca = ("--cacert", str(mesh.server_ca))
    ok = wait_for(lambda: ok_or_none(curl(mesh, MUTUAL_HOST, mesh.terminate, *ca)), timeout=20)
    assert json.loads(ok.stdout)["name"] == "echo-mutual"
    assert curl(mesh, MUTUAL_HOST, mesh.terminate).returncode == 60  # not the system roots' certificate


def test_auto_passthrough_gateway_routes_mesh_mtls_by_its_sni(mesh: L4Mesh) -> None:
    """The client's mTLS (its own certificate, pg-a's SNI) passes through the gateway untouched:
    pg-a's STRICT sidecar sees the client's certificate and serves psql."""
    before = inbound_connections(mesh, "pg-a")
    first = wait_for(lambda: (r := psql(CLIENT, mesh.remote)).returncode == 0 and r, timeout=30)
    assert first.stdout.strip() == "42"
    assert inbound_connections(mesh, "pg-a") > before
    gateway = mesh.envoys["gateway"]
    sni_cluster = f"outbound_.{mesh.back}_._.pg-a.db.svc.cluster.local"
    assert (gateway.stat(f"cluster.{sni_cluster}.upstream_cx_total") or 0) >= 1
    assert not any(  # the gateway terminated nothing: no TLS of its own towards pg-a
        name.endswith("ssl.handshake") and value and sni_cluster in name
        for name, value in gateway.stats().items()
    )


def curl(
    mesh: L4Mesh, host: str, port: int, *extra: str, via: str = GATEWAY
) -> subprocess.CompletedProcess[str]:
    args = ["curl", "-sS", "--max-time", "5", "--resolve", f"{host}:{port}:{via}", *extra]
    return subprocess.run([*args, f"https://{host}:{port}/"], capture_output=True, text=True, timeout=15)


def ok_or_none(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str] | None:
    return result if result.returncode == 0 else None


def test_passthrough_gateway_routes_by_sni_to_a_backend_with_its_own_certificate(mesh: L4Mesh) -> None:
    ca = str(mesh.backend_ca)
    ok = wait_for(
        lambda: (r := curl(mesh, SECURE_HOST, mesh.passthrough, "--cacert", ca)).returncode == 0 and r,
        timeout=20,
    )
    assert json.loads(ok.stdout) == {"server": "secure-backend", "sni": SECURE_HOST}
    # the certificate the client saw is the backend's own: it names the host, signed by its CA
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection((GATEWAY, mesh.passthrough), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SECURE_HOST) as tls,
    ):
        peer = tls.getpeercert()
    assert dict(x[0] for x in peer["issuer"])["commonName"] == "backend-ca"
    assert ("DNS", SECURE_HOST) in peer["subjectAltName"]
    # another SNI matches no chain: the gateway closes the connection
    other = curl(mesh, "other.example.com", mesh.passthrough, "--cacert", ca)
    assert other.returncode not in (0, 60), other.stderr  # closed before any certificate


def test_a_sidecar_routes_tls_by_sni_without_terminating_it(mesh: L4Mesh) -> None:
    """The client sidecar's outbound TLS port: a ``tls`` rule (gateways: mesh) matched on the SNI
    by the tls_inspector; the backend's own certificate reaches the client."""
    ca = ("--cacert", str(mesh.backend_ca))
    port = mesh.backend_port
    ok = wait_for(lambda: ok_or_none(curl(mesh, SECURE_HOST, port, *ca, via=CLIENT)), timeout=20)
    assert json.loads(ok.stdout) == {"server": "secure-backend", "sni": SECURE_HOST}
    listener = mesh.envoys["client"].listeners()
    assert f"{CLIENT}_{port}" in listener
    other = curl(mesh, "other.example.com", port, *ca, via=CLIENT)
    assert other.returncode not in (0, 60), other.stderr  # closed before any certificate: no chain


def test_mutual_gateway_refuses_clients_without_a_certificate_from_the_configured_ca(mesh: L4Mesh) -> None:
    ca = str(mesh.server_ca)
    good = ("--cacert", ca, "--cert", str(mesh.good_cert), "--key", str(mesh.good_key))
    ok = wait_for(
        lambda: (r := curl(mesh, MUTUAL_HOST, mesh.mutual, *good)).returncode == 0 and r, timeout=20
    )
    assert json.loads(ok.stdout)["name"] == "echo-mutual"
    without = curl(mesh, MUTUAL_HOST, mesh.mutual, "--cacert", ca)
    assert without.returncode != 0, without.stdout
    stranger = curl(
        mesh,
        MUTUAL_HOST,
        mesh.mutual,
        "--cacert",
        ca,
        "--cert",
        str(mesh.bad_cert),
        "--key",
        str(mesh.bad_key),
    )
    assert stranger.returncode != 0, stranger.stdout
