# ruff: noqa: E501  (one-line YAML policies read better unbroken)
"""Kubernetes NetworkPolicy recipes through real Envoy sidecars, with real TCP connections.

    namespace prod (team=a)   api   127.0.14.11  sidecar + echo app: HTTP port H, TCP ports A < B
                              web   127.0.14.21  sidecar (outbound listeners on its own IP)
                              other 127.0.14.22  sidecar
    namespace dev  (team=b)   tool  127.0.14.41  sidecar
    outside the mesh          resolver 127.0.14.12:D  a plain echo server (the "DNS" of the recipe)

Each client reaches ``api`` through its own sidecar's outbound listeners (``<client IP>:H/A/B``),
which connect from the client's IP, and also directly from a socket bound to its IP (a client
without a sidecar: the destination's sidecar still enforces ingress). ``pilotfish serve`` watches
the config directory; each recipe rewrites the policy file and the same Envoys (same PIDs)
enforce it: allowed connections answer 200, denied ones are closed without a byte (a TCP port,
or the direct path) or, on the client sidecar's HTTP port, answered 503 by that sidecar, which
could not get a connection through. Envoys run with ``--drain-time-s 1``: connections opened
under an earlier policy are drained within a second (see README, "NetworkPolicy").
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

import pytest
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.pilotfish import PilotfishProcess
from harness.waiting import wait_for

from pilotfish.bootstrap import BootstrapOptions, bootstrap

pytestmark = pytest.mark.e2e

API_IP, RESOLVER_IP = "127.0.14.11", "127.0.14.12"
CLIENTS = {"web": ("prod", "127.0.14.21"), "other": ("prod", "127.0.14.22"), "tool": ("dev", "127.0.14.41")}
ADDRESSES = ("127.0.0.1", API_IP, RESOLVER_IP, *(ip for _, ip in CLIENTS.values()))
HOST = "api.prod.svc.cluster.local"
OK, REFUSED, UNAVAILABLE = "ok", "refused", "http 503"
# No policy: a comment, not an empty file (a file truncated to 0 bytes keeps its last good content).
NONE = "# no NetworkPolicy\n"


def free_everywhere(taken: set[int]) -> int:
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((API_IP, 0))
            port = int(probe.getsockname()[1])
        if port in taken:
            continue
        try:
            for address in ADDRESSES:
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        taken.add(port)
        return port
    raise RuntimeError("no port free on all test addresses")


def choose_ports() -> tuple[int, int, int, int]:
    """H (HTTP), A < B (TCP), D (the resolver), with H outside [A, B]."""
    taken: set[int] = set()
    http, resolver = free_everywhere(taken), free_everywhere(taken)
    while True:
        a, b = sorted((free_everywhere(taken), free_everywhere(taken)))
        if not a <= http <= b:
            return http, a, b, resolver


def world(h: int, a: int, b: int, d: int) -> str:
    entries = "".join(
        f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {ns}}}
spec: {{address: {ip}, labels: {{app: {name}}}}}
"""
        for name, (ns, ip) in CLIENTS.items()
    )
    return f"""apiVersion: v1
kind: Namespace
metadata: {{name: prod, labels: {{team: a}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: dev, labels: {{team: b}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: prod}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {h}, name: http, protocol: HTTP}}
  - {{number: {a}, name: tcp-a, protocol: TCP}}
  - {{number: {b}, name: tcp-b, protocol: TCP}}
  workloadSelector: {{labels: {{app: api}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: api, namespace: prod}}
spec: {{address: {API_IP}, labels: {{app: api}}, ports: {{http: {h}, tcp-a: {a}, tcp-b: {b}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: resolver, namespace: prod}}
spec:
  hosts: [resolver.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {d}, name: dns, protocol: TCP}}]
  endpoints: [{{address: {RESOLVER_IP}}}]
{entries}"""


def policy(name: str, namespace: str, spec: str) -> str:
    return f"""---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def exchange(address: str, port: int, source: str | None = None) -> str:
    """One HTTP request over a fresh TCP connection: ``ok`` (200), ``refused`` (closed or reset
    without a byte), or ``http <status>``."""
    data = b""
    try:
        with socket.create_connection(
            (address, port), timeout=5, source_address=(source, 0) if source else None
        ) as sock:
            sock.sendall(f"GET /netpol HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            while chunk := sock.recv(65536):
                data += chunk
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        return REFUSED if not data else "reset after data"
    if not data:
        return REFUSED
    status = data.split(b" ", 2)[1].decode()
    return OK if status == "200" else f"http {status}"


class Mesh:
    def __init__(self, ports: tuple[int, int, int, int]) -> None:
        self.h, self.a, self.b, self.d = ports

    def probe(self) -> dict[str, str]:
        """Every path of every client: via its sidecar (HTTP, TCP A, TCP B, the resolver) and direct."""
        out: dict[str, str] = {}
        for name, (_, ip) in CLIENTS.items():
            out[f"{name} http"] = exchange(ip, self.h)
            out[f"{name} tcp-a"] = exchange(ip, self.a)
            out[f"{name} tcp-b"] = exchange(ip, self.b)
            out[f"{name} dns"] = exchange(ip, self.d)
            out[f"{name} direct"] = exchange(API_IP, self.h, source=ip)
        return out


def expect(default: str = OK, **paths: str) -> dict[str, str]:
    """The table of outcomes: every path ``default`` unless named (``web_tcp_a="refused"``);
    a denied HTTP path via the sidecar is the sidecar's 503, a denied direct one is refused."""
    out: dict[str, str] = {}
    for name in CLIENTS:
        for path in ("http", "tcp-a", "tcp-b", "direct"):
            value = paths.get(f"{name}_{path.replace('-', '_')}", paths.get(name, default))
            out[f"{name} {path}"] = UNAVAILABLE if (path == "http" and value == REFUSED) else value
        out[f"{name} dns"] = paths.get(f"{name}_dns", OK)
    return out


DENIED = {name: REFUSED for name in CLIENTS}


def denials(envoy: EnvoyProcess) -> int:
    """Connections a sidecar's NetworkPolicy RBAC closed (stats live as long as the filter)."""
    return sum(v for k, v in envoy.stats().items() if k.endswith("rbac.denied") and "netpol_" in k)


def sidecar(envoy_factory, xds_port: int, name: str, ns: str, ip: str, **options: object) -> EnvoyProcess:
    opts = BootstrapOptions(name, ns, {"app": name}, ip=ip, xds_port=xds_port, admin_port=0, **options)  # type: ignore[arg-type]
    return envoy_factory(bootstrap(opts), name=name, extra_args=["--drain-time-s", "1"])


def test_network_policy_recipes_through_real_sidecars(
    tmp_path: Path, echo_factory, envoy_factory, pilotfish_factory
) -> None:
    h, a, b, d = ports = choose_ports()
    mesh = Mesh(ports)
    app: EchoProcess = echo_factory("api", labels={"app": "api"})
    echo_factory("resolver", host=RESOLVER_IP, port=d)
    config = tmp_path / "config"
    config.mkdir()
    (config / "world.yaml").write_text(world(h, a, b, d))
    policies = config / "policies.yaml"
    pf: PilotfishProcess = pilotfish_factory(config)
    app_ports = {h: app.port, a: app.port, b: app.port}
    envoys = [sidecar(envoy_factory, pf.xds_port, "api", "prod", API_IP, app_ports=app_ports)]
    for name, (ns, ip) in CLIENTS.items():
        envoys.append(sidecar(envoy_factory, pf.xds_port, name, ns, ip, outbound_bind=ip))
    pids = [e.pid for e in envoys]

    def apply(text: str, expected: Mapping[str, str], step: str) -> None:
        policies.write_text(text)
        last: dict[str, dict[str, str]] = {}

        def matches() -> bool:
            last["seen"] = mesh.probe()
            return last["seen"] == dict(expected)

        try:
            wait_for(matches, timeout=20, interval=0.2, message=step)
        except TimeoutError:
            wrong = {k: (v, expected[k]) for k, v in last["seen"].items() if v != expected[k]}
            raise AssertionError(f"{step}: (seen, expected) differ: {wrong}") from None

    apply(NONE, expect(), "no policy: everything connects")
    apply(
        policy("deny-all", "prod", "{podSelector: {}, policyTypes: [Ingress]}"),
        expect(**DENIED),
        "deny all ingress",
    )
    assert denials(envoys[0]) > 0  # the api sidecar's network RBAC closed them
    apply(
        policy("same-ns", "prod", "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}"),
        expect(tool=REFUSED),
        "allow from the same namespace",
    )
    apply(
        policy(
            "from-team-b",
            "prod",
            "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]}",
        ),
        expect(web=REFUSED, other=REFUSED),
        "allow from a namespace by label",
    )
    apply(
        policy(
            "web-http",
            "prod",
            f"{{podSelector: {{matchLabels: {{app: api}}}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web}}}}}}], ports: [{{port: {h}}}]}}]}}",
        ),
        expect(default=REFUSED, web_http=OK, web_direct=OK),
        "allow by pod label and port",
    )
    apply(
        policy(
            "block",
            "prod",
            "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{ipBlock: {cidr: 127.0.14.0/24, except: [127.0.14.32/27]}}]}]}",
        ),
        expect(tool=REFUSED),
        "ipBlock with except",
    )
    apply(
        policy(
            "range",
            "prod",
            f"{{podSelector: {{matchLabels: {{app: api}}}}, ingress: [{{ports: [{{port: {a}, endPort: {b - 1}}}]}}]}}",
        ),
        expect(default=REFUSED, web_tcp_a=OK, other_tcp_a=OK, tool_tcp_a=OK),
        "endPort range",
    )
    # default-deny egress for web with a DNS-like exception: web's sidecar has no endpoint for
    # api (HTTP: 503) and refuses its TCP ports; web without its sidecar is not held back
    apply(
        policy(
            "web-egress",
            "prod",
            f"{{podSelector: {{matchLabels: {{app: web}}}}, policyTypes: [Egress], egress: [{{ports: [{{port: {d}, protocol: UDP}}, {{port: {d}, protocol: TCP}}]}}]}}",
        ),
        expect(web_http=REFUSED, web_tcp_a=REFUSED, web_tcp_b=REFUSED),
        "default-deny egress with a DNS-like exception",
    )
    assert denials(envoys[1]) > 0, {k: v for k, v in envoys[1].stats().items() if "rbac" in k or "tcp." in k}
    apply(
        policy("web-egress", "prod", "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}"),
        expect(web_http=REFUSED, web_tcp_a=REFUSED, web_tcp_b=REFUSED, web_dns=REFUSED),
        "default-deny egress without the exception",
    )
    apply(NONE, expect(), "policies removed: everything connects again")

    assert [e.pid for e in envoys] == pids and all(e.running for e in envoys), "an Envoy restarted"


def test_over_mtls_the_peer_certificate_identifies_the_workload(
    tmp_path: Path, echo_factory, envoy_factory, pilotfish_factory
) -> None:
    """``web``'s sidecar connects from 127.0.14.24, which is not its workload's address
    (127.0.14.25): only its certificate (service account ``web``, which no unselected workload
    shares) can admit it. ``intruder`` claims ``app: web`` in its node labels but is no such
    workload and holds another identity: refused."""
    taken: set[int] = set()
    h = free_everywhere(taken)
    app: EchoProcess = echo_factory("api", labels={"app": "api"})
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(
        f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: prod}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {h}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: api}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: api, namespace: prod}}
spec: {{address: {API_IP}, labels: {{app: api, security.istio.io/tlsMode: istio}}, serviceAccount: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web, namespace: prod}}
spec: {{address: 127.0.14.25, labels: {{app: web}}, serviceAccount: web}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: strict, namespace: prod}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: api-from-web, namespace: prod}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web}}}}}}]}}]
"""
    )
    pf: PilotfishProcess = pilotfish_factory(config)

    def start(name: str, ip: str, account: str, labels: dict[str, str], **options: object) -> EnvoyProcess:
        opts = BootstrapOptions(
            name,
            "prod",
            labels,
            ip=ip,
            xds_port=pf.xds_port,
            admin_port=0,
            service_account=account,
            **options,
        )  # type: ignore[arg-type]
        return envoy_factory(bootstrap(opts), name=name)

    start("api", API_IP, "api", {"app": "api"}, app_ports={h: app.port})
    start("web", "127.0.14.24", "web", {"app": "web"}, outbound_bind="127.0.14.24")
    start("intruder", "127.0.14.26", "intruder", {"app": "web"}, outbound_bind="127.0.14.26")

    wait_for(lambda: exchange("127.0.14.24", h) == OK, timeout=20, message="web admitted by its certificate")
    assert exchange("127.0.14.26", h) == UNAVAILABLE  # its sidecar got no connection through
    assert exchange(API_IP, h, source="127.0.14.25") == REFUSED  # plaintext into STRICT: no handshake
