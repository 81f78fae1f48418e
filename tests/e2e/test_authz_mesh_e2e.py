"""Issue "ext_authz", done-when, through the real path: ``pilotfish serve`` pushes the ext_authz
filter over xDS to the sidecar of a workload that a RequestAuthentication and AuthorizationPolicies
select, its Check workers enforce them, and a local JWKS server provides the keys.

Policies are Istio's documentation examples (tasks/security/authorization/authz-jwt): require a
valid JWT (``requestPrincipals: ["*"]``), let ``/healthz`` through without one, and a DENY on a
path that wins over the ALLOW.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import http
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.jwks import ISSUER, Jwks
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port

from pilotfish.bootstrap import BootstrapOptions, bootstrap

pytestmark = pytest.mark.e2e

IP = "127.0.0.41"


def mesh_config(port: int, jwks_port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: foo}}
spec:
  hosts: [httpbin.foo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: httpbin}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: httpbin-1, namespace: foo}}
spec: {{address: {IP}, ports: {{http: {port}}}, labels: {{app: httpbin}}, serviceAccount: httpbin}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt-example, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: http://127.0.0.1:{jwks_port}/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-healthz, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules:
  - to: [{{operation: {{paths: ["/healthz"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin*"]}}}}]
"""


@dataclass
class Mesh:
    pilotfish: PilotfishProcess
    envoy: EnvoyProcess
    jwks: Jwks
    port: int

    def get(self, path: str, token: str | None = None) -> http.Response:
        headers = {"host": "httpbin.foo.svc.cluster.local"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return http.get(f"http://{IP}:{self.port}{path}", headers=headers, timeout=10)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("authz-mesh")
    jwks = Jwks()
    jwks.add_key("k1")
    jwks.start()
    port = free_port()
    config = root / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(mesh_config(port, jwks.port))
    pf = PilotfishProcess(config, root / "pf", extra_args=["--authz-workers", "1"])
    echo = EchoProcess("httpbin-1", labels={"app": "httpbin"})
    envoy: EnvoyProcess | None = None
    try:
        pf.start()
        echo.start()
        opts = BootstrapOptions(
            "httpbin-1",
            "foo",
            {"app": "httpbin"},
            service_account="httpbin",
            ip=IP,
            xds_port=pf.xds_port,
            admin_port=0,
            app_ports={port: echo.port},
        )
        envoy = EnvoyProcess(bootstrap(opts), workdir=root / "envoy")
        envoy.start()
        m = Mesh(pf, envoy, jwks, port)
        envoy.wait_for(
            lambda: m.get("/healthz").status == 200, timeout=15, message="inbound listener serving"
        )
        yield m
    except BaseException:
        print(pf.log_text()[-5000:])
        raise
    finally:
        if envoy is not None:
            envoy.stop()
        echo.stop()
        pf.stop()
        jwks.stop()


def test_no_token_403_valid_token_200(mesh: Mesh) -> None:
    denied = mesh.get("/headers")
    assert (denied.status, denied.body) == (403, "RBAC: access denied")
    allowed = mesh.get("/headers", mesh.jwks.token("k1"))
    assert allowed.status == 200 and allowed.body["name"] == "httpbin-1"
    assert "authorization" not in allowed.body["request"]["headers"], "the token is removed upstream"


@pytest.mark.parametrize("bad", ["expired", "wrong-issuer", "tampered"])
def test_invalid_tokens_get_401_with_a_bearer_challenge(mesh: Mesh, bad: str) -> None:
    token = {
        "expired": lambda: mesh.jwks.token("k1", lifetime=-3600),
        "wrong-issuer": lambda: mesh.jwks.token("k1", issuer="someone@else.example"),
        "tampered": lambda: tamper(mesh.jwks.token("k1")),
    }[bad]()
    response = mesh.get("/headers", token)
    assert response.status == 401, response
    assert response.headers["www-authenticate"].startswith("Bearer")


def tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return ".".join((header, flipped, signature))


def test_healthz_needs_no_token_and_deny_wins_over_allow(mesh: Mesh) -> None:
    assert mesh.get("/healthz").status == 200
    denied = mesh.get("/admin/users", mesh.jwks.token("k1"))
    assert (denied.status, denied.body) == (403, "RBAC: access denied")


def test_valid_tokens_keep_working_while_the_jwks_server_is_down(mesh: Mesh) -> None:
    token = mesh.jwks.token("k1", sub="bob")
    assert mesh.get("/headers", token).status == 200  # keys cached
    mesh.jwks.stop()
    try:
        assert mesh.get("/headers", mesh.jwks.token("k1", sub="carol")).status == 200
        assert mesh.get("/headers").status == 403  # an outage never turns a deny into an allow
    finally:
        mesh.jwks.start()  # same port


def test_a_new_kid_works_without_waiting_for_a_refresh(mesh: Mesh) -> None:
    mesh.jwks.add_key("k2")
    fetched = mesh.jwks.fetches
    assert mesh.get("/headers", mesh.jwks.token("k2")).status == 200
    assert mesh.jwks.fetches > fetched, "the unknown kid triggered a refetch"


def check_workers(pilotfish_pid: int) -> list[int]:
    """The Check worker processes: pilotfish's multiprocessing children."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pilotfish_pid and b"multiprocessing" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_killing_the_check_worker_gives_403_never_200(mesh: Mesh) -> None:
    token = mesh.jwks.token("k1")
    assert mesh.get("/headers", token).status == 200
    assert mesh.pilotfish._proc is not None
    workers = check_workers(mesh.pilotfish._proc.pid)
    assert workers, "no Check worker found"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    # Envoy cannot reach a Check server: failure_mode_allow is false, so 403, never a silent 200.
    assert mesh.get("/headers", token).status == 403
    # The control plane restarts its worker; service comes back by itself.
    mesh.envoy.wait_for(
        lambda: mesh.get("/headers", token).status == 200, timeout=20, message="Check worker back"
    )


def test_worker_decisions_reach_the_control_plane_metrics(mesh: Mesh) -> None:
    mesh.get("/admin/x", mesh.jwks.token("k1"))
    text = str(http.get(f"http://{mesh.pilotfish.admin}/metrics").body)
    assert 'pilotfish_authz_checks_total{decision="deny",policy="foo/deny-admin"' in text, text[-3000:]
    assert 'pilotfish_authz_checks_total{decision="allow"' in text
