"""Issue "Kong's model on Envoy", done-when, through a real gateway Envoy: Consumers with
key-auth, JWT and basic-auth credentials, Plugins scoped to VirtualService routes (key-auth +
acl, jwt, basic-auth, rate-limiting local and redis), enforced by the Check server that
``pilotfish serve`` runs, with real traffic to an echo upstream.

Redis is the real server at 127.0.0.1:6379; to take it away the redis plugin goes through a TCP
gate (``harness.gate``) that the test shuts, never the shared server.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import jwt as pyjwt
import pytest
from harness import http
from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.gate import Gate
from harness.pilotfish import PilotfishProcess
from harness.ports import free_port

from pilotfish.bootstrap import BootstrapOptions, bootstrap

pytestmark = pytest.mark.e2e

GATEWAY_IP = "127.0.16.21"
HOST = "api.example.com"


def config(echo_port: int, gw_port: int, redis_port: int, run: str) -> str:
    routes = ["key", "jwt", "basic", "limited", "redis-open", "redis-closed"]
    dest = "route: [{destination: {host: api.default.svc.cluster.local}}]"
    http_routes = "\n".join(
        f"  - name: {r}\n    match: [{{uri: {{prefix: /{r}}}}}]\n    {dest}" for r in routes
    )
    redis = f"policy: redis, redis_host: 127.0.0.1, redis_port: {redis_port}, redis_timeout: 500"
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: {echo_port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw_port}, name: http, protocol: HTTP}}
    hosts: [{HOST}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [{HOST}]
  gateways: [gw]
  http:
{http_routes}
---
apiVersion: pilotfish.io/v1alpha1
kind: Consumer
metadata: {{name: alice, namespace: default}}
spec:
  username: alice
  custom_id: cust-alice
  keyAuth: [{{key: alice-key, id: 11111111-1111-1111-1111-111111111111}}]
  jwt: [{{key: alice-iss, secret: alice-secret-0123456789abcdef0123456789}}]
  basicAuth: [{{username: alice, password: wonderland}}]
  acls: [{{group: gold}}]
---
apiVersion: pilotfish.io/v1alpha1
kind: Consumer
metadata: {{name: bob, namespace: default}}
spec:
  username: bob
  keyAuth: [{{key: bob-key}}]
  jwt: [{{key: bob-iss, secret: bob-secret-0123456789abcdef0123456789abc}}]
  acls: [{{group: silver}}]
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: key-auth, namespace: default}}
spec: {{plugin: key-auth, route: key, config: {{hide_credentials: true}}}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: gold-only, namespace: default}}
spec: {{plugin: acl, route: key, config: {{allow: [gold]}}}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: jwt, namespace: default}}
spec: {{plugin: jwt, route: jwt, config: {{claims_to_verify: [exp]}}}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: basic, namespace: default}}
spec: {{plugin: basic-auth, route: basic, config: {{hide_credentials: true}}}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: key-limited, namespace: default}}
spec: {{plugin: key-auth, route: limited}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: limit, namespace: default}}
spec: {{plugin: rate-limiting, route: limited, config: {{minute: 10, limit_by: consumer, policy: local}}}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: redis-open, namespace: default}}
spec:
  plugin: rate-limiting
  route: redis-open
  config: {{minute: 1000, limit_by: path, path: /redis-open/{run}, {redis}, fault_tolerant: true}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: redis-closed, namespace: default}}
spec:
  plugin: rate-limiting
  route: redis-closed
  config: {{minute: 3, limit_by: path, path: /redis-closed/{run}, {redis}, fault_tolerant: false}}
"""


@dataclass
class Gw:
    port: int
    gate: Gate
    run: str

    def get(self, path: str, headers: dict[str, str] | None = None) -> http.Response:
        return http.get(
            f"http://{GATEWAY_IP}:{self.port}{path}", headers={"host": HOST, **(headers or {})}, timeout=10
        )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    root = tmp_path_factory.mktemp("kong")
    gate = Gate("redis://redis@127.0.0.1:6379")
    gate.open()
    echo = EchoProcess("api-1", labels={"app": "api"})
    pf: PilotfishProcess | None = None
    envoy: EnvoyProcess | None = None
    try:
        echo.start()
        port = free_port()
        run = uuid.uuid4().hex[:8]  # Redis is shared: counters of this run only
        (root / "config").mkdir()
        (root / "config" / "mesh.yaml").write_text(config(echo.port, port, gate.port, run))
        pf = PilotfishProcess(root / "config", root / "pf", extra_args=["--authz-workers", "1"])
        pf.start()
        opts = BootstrapOptions(
            "gw-1",
            "default",
            {"istio": "ingressgateway"},
            gateway=True,
            ip=GATEWAY_IP,
            xds_port=pf.xds_port,
            admin_port=0,
        )
        envoy = EnvoyProcess(bootstrap(opts), workdir=root / "envoy")
        envoy.start()
        g = Gw(port, gate, run)
        envoy.wait_for(
            lambda: g.get("/key", {"apikey": "alice-key"}).status == 200,
            timeout=20,
            message="gateway serving",
        )
        yield g
    except BaseException:
        if pf is not None:
            print(pf.log_text()[-5000:])
        raise
    finally:
        if envoy is not None:
            envoy.stop()
        if pf is not None:
            pf.stop()
        echo.stop()
        if gate.is_open:
            gate.shut()


def upstream_headers(response: http.Response) -> dict[str, str]:
    return dict(response.body["request"]["headers"])


def test_key_auth_401_without_key_200_with_key_and_consumer_headers(gw: Gw) -> None:
    missing = gw.get("/key/x")
    assert missing.status == 401 and missing.body == {"message": "No API key found in request"}
    wrong = gw.get("/key/x", {"apikey": "nope"})
    assert wrong.status == 401 and wrong.body == {"message": "Invalid authentication credentials"}
    ok = gw.get(
        "/key/x", {"apikey": "alice-key", "x-consumer-username": "forged", "x-anonymous-consumer": "true"}
    )
    assert ok.status == 200, ok
    headers = upstream_headers(ok)
    assert headers["x-consumer-username"] == "alice"
    assert headers["x-consumer-custom-id"] == "cust-alice"
    assert headers["x-credential-identifier"] == "11111111-1111-1111-1111-111111111111"
    assert uuid.UUID(headers["x-consumer-id"])
    assert headers["x-consumer-groups"] == "gold"
    assert "x-anonymous-consumer" not in headers, "a client cannot claim to be anonymous"
    assert "apikey" not in headers, "hide_credentials strips the key"


def test_key_in_query_is_stripped_too(gw: Gw) -> None:
    ok = gw.get("/key/q?apikey=alice-key&keep=1")
    assert ok.status == 200, ok
    assert ok.body["request"]["query"] == "keep=1"


def test_acl_denies_a_consumer_outside_the_group(gw: Gw) -> None:
    denied = gw.get("/key/x", {"apikey": "bob-key"})
    assert denied.status == 403 and denied.body == {"message": "You cannot consume this service"}


def token(iss: str, secret: str, lifetime: int = 300) -> str:
    return pyjwt.encode({"iss": iss, "exp": int(time.time()) + lifetime}, secret, algorithm="HS256")


def test_jwt_credentials_match_by_iss_and_verify_the_consumer_secret(gw: Gw) -> None:
    ok = gw.get(
        "/jwt/a", {"authorization": f"Bearer {token('alice-iss', 'alice-secret-0123456789abcdef0123456789')}"}
    )
    assert ok.status == 200, ok
    assert upstream_headers(ok)["x-consumer-username"] == "alice"
    forged = gw.get(
        "/jwt/a",
        {"authorization": f"Bearer {token('alice-iss', 'bob-secret-0123456789abcdef0123456789abc')}"},
    )
    assert forged.status == 401 and forged.body == {"message": "Invalid signature"}
    unknown = gw.get("/jwt/a", {"authorization": f"Bearer {token('eve-iss', 'x' * 32)}"})
    assert unknown.status == 401 and unknown.body == {"message": "No credentials found for given 'iss'"}
    expired = gw.get(
        "/jwt/a",
        {"authorization": f"Bearer {token('bob-iss', 'bob-secret-0123456789abcdef0123456789abc', -10)}"},
    )
    assert expired.status == 401 and expired.body == {"message": "token expired"}
    assert gw.get("/jwt/a").status == 401


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth(gw: Gw) -> None:
    challenge = gw.get("/basic/a")
    assert challenge.status == 401 and challenge.headers["www-authenticate"] == 'Basic realm="service"'
    assert gw.get("/basic/a", basic("alice", "wrong")).status == 401
    ok = gw.get("/basic/a", basic("alice", "wonderland"))
    assert ok.status == 200, ok
    headers = upstream_headers(ok)
    assert headers["x-consumer-username"] == "alice" and "authorization" not in headers


def test_a_10_per_minute_limit_by_consumer_allows_exactly_10_then_429(gw: Gw) -> None:
    # A fresh minute, so the 11 requests fall in one window.
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    answers = [gw.get("/limited/x", {"apikey": "bob-key"}) for _ in range(11)]
    assert [a.status for a in answers] == [200] * 10 + [429]
    first, last = answers[0], answers[-1]
    assert first.headers["x-ratelimit-limit-minute"] == "10"
    assert first.headers["x-ratelimit-remaining-minute"] == "9"
    assert first.headers["ratelimit-limit"] == "10" and first.headers["ratelimit-remaining"] == "9"
    assert 0 < int(first.headers["ratelimit-reset"]) <= 60
    assert last.body == {"message": "API rate limit exceeded"}
    assert last.headers["x-ratelimit-remaining-minute"] == "0"
    assert 0 < int(last.headers["retry-after"]) <= 60
    # another consumer has its own counter
    assert gw.get("/limited/x", {"apikey": "alice-key"}).status == 200


def test_redis_down_fault_tolerant_passes_and_fail_closed_answers_500(gw: Gw) -> None:
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    open_path, closed_path = f"/redis-open/{gw.run}", f"/redis-closed/{gw.run}"
    up = gw.get(open_path)
    assert up.status == 200 and up.headers["x-ratelimit-remaining-minute"] == "999"
    assert gw.get(closed_path).status == 200
    gw.gate.shut()
    try:
        down_open = gw.get(open_path)
        assert down_open.status == 200 and "x-ratelimit-remaining-minute" not in down_open.headers
        assert gw.get(closed_path).status == 500
    finally:
        gw.gate.open()
    # Redis back: the counters kept what they had (nothing lost), and counting goes on.
    back = gw.get(closed_path)
    assert back.status == 200, back
    assert back.headers["x-ratelimit-remaining-minute"] == "1", "2 counted before the outage + this one"
    assert gw.get(closed_path).status == 200
    assert gw.get(closed_path).status == 429


# ---- two replicas on one PostgreSQL ----------------------------------------------------------------

REPLICA_IPS = ("127.0.16.22", "127.0.16.23")


def replica_config(echo_port: int, gw_port: int, run: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: {echo_port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: {gw_port}, name: http, protocol: HTTP}}, hosts: [{HOST}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [{HOST}]
  gateways: [gw]
  http:
  - name: cluster
    match: [{{uri: {{prefix: /cluster}}}}]
    route: [{{destination: {{host: api.default.svc.cluster.local}}}}]
  - name: redis
    match: [{{uri: {{prefix: /redis}}}}]
    route: [{{destination: {{host: api.default.svc.cluster.local}}}}]
---
apiVersion: pilotfish.io/v1alpha1
kind: Consumer
metadata: {{name: carol-{run}, namespace: default}}
spec: {{username: carol-{run}, keyAuth: [{{key: carol-{run}}}]}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: key-auth, namespace: default}}
spec: {{plugin: key-auth, config: {{}}}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: cluster-limit, namespace: default}}
spec: {{plugin: rate-limiting, route: cluster, config: {{minute: 10, policy: cluster}}}}
---
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {{name: redis-limit, namespace: default}}
spec:
  plugin: rate-limiting
  route: redis
  config: {{minute: 10, policy: redis, redis_host: 127.0.0.1, redis_port: 6379}}
"""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Gw], str]]:
    from registry_e2e_support import scratch_database

    root = tmp_path_factory.mktemp("kong-replicas")
    run = uuid.uuid4().hex[:8]
    echo = EchoProcess("api-1", labels={"app": "api"})
    started: list[PilotfishProcess | EnvoyProcess] = []
    with scratch_database("pilotfish_kong") as url:
        try:
            echo.start()
            port = free_port()
            (root / "config").mkdir()
            (root / "config" / "mesh.yaml").write_text(replica_config(echo.port, port, run))
            (root / "credential.key").write_bytes(b"shared-credential-key-0123456789")
            gws = []
            for i, ip in enumerate(REPLICA_IPS):
                pf = PilotfishProcess(
                    root / "config",
                    root / f"pf{i}",
                    extra_args=["--store", url, "--credential-key", str(root / "credential.key")],
                )
                pf.start()
                started.append(pf)
                opts = BootstrapOptions(
                    f"gw-{i}",
                    "default",
                    {"istio": "ingressgateway"},
                    gateway=True,
                    ip=ip,
                    xds_port=pf.xds_port,
                    admin_port=0,
                )
                envoy = EnvoyProcess(bootstrap(opts), workdir=root / f"envoy{i}")
                envoy.start()
                started.append(envoy)
                g = Gw(port, Gate("redis://x@127.0.0.1:6379"), run)
                g.ip = ip  # type: ignore[attr-defined]
                gws.append(g)
                envoy.wait_for(
                    lambda g=g: replica_get(g, "/cluster/warm", "nope").status == 401,
                    timeout=20,
                    message=f"gateway {ip} serving",
                )
            yield gws, run
        finally:
            for proc in reversed(started):
                proc.stop()
            echo.stop()


def replica_get(gw: Gw, path: str, key: str) -> http.Response:
    ip = gw.ip  # type: ignore[attr-defined]
    return http.get(f"http://{ip}:{gw.port}{path}", headers={"host": HOST, "apikey": key}, timeout=10)


@pytest.mark.parametrize("policy", ["cluster", "redis"])
def test_the_limit_holds_across_two_replicas(replicas: tuple[list[Gw], str], policy: str) -> None:
    gws, run = replicas
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)
    statuses = [replica_get(gws[i % 2], f"/{policy}/x", f"carol-{run}").status for i in range(20)]
    allowed = statuses.count(200)
    assert allowed <= 10 + len(gws), statuses
    assert allowed >= 10, statuses
    assert statuses.count(429) == 20 - allowed
    print(f"\n{policy}: 20 requests alternating over 2 replicas, limit 10/minute: {allowed} allowed")
