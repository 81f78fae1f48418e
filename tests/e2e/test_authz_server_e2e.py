"""Real Envoy → ext_authz (pilotfish Check workers) → echo: 403/401/200 flows and fail-closed.

The bootstrap is written here: one listener whose HCM runs ``envoy.filters.http.ext_authz``
(gRPC, ``failure_mode_allow: false``, V3) and the router. Each route names its workload in
``check_settings.context_extensions``, as pilotfish's xDS side will on inbound routes.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jwt as pyjwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from harness import http
from harness.waiting import wait_for
from jwt.algorithms import RSAAlgorithm

from pilotfish.config.loader import load_text
from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.workers import AuthzWorkers

pytestmark = pytest.mark.e2e

ISS = "https://issuer.example.com"
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS = json.dumps(
    {"keys": [{**RSAAlgorithm.to_jwk(PRIVATE.public_key(), as_dict=True), "kid": "k1", "alg": "RS256"}]}
)
REQUESTS = 30


def token(**claims) -> str:
    body = {"iss": ISS, "sub": "alice", "exp": int(time.time()) + 600, "group": "dev", **claims}
    return pyjwt.encode(body, PRIVATE, algorithm="RS256", headers={"kid": "k1"})


def bearer(raw: str) -> dict[str, str]:
    return {"authorization": f"Bearer {raw}"}


def security_config() -> AuthzBundle:
    def doc(kind, name, spec):
        meta = {"name": name, "namespace": "foo"}
        return yaml.safe_dump(
            {"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec}
        )

    jwt_rule = {"issuer": ISS, "jwks": JWKS}
    text = "---\n".join(
        [
            doc(
                "AuthorizationPolicy",
                "require-jwt",
                {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]},
            ),
            doc(
                "AuthorizationPolicy",
                "deny-admin",
                {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]},
            ),
            doc(
                "RequestAuthentication",
                "httpbin-jwt",
                {
                    "selector": {"matchLabels": {"app": "httpbin"}},
                    "jwtRules": [
                        {
                            **jwt_rule,
                            "outputPayloadToHeader": "x-jwt-payload",
                            "outputClaimToHeaders": [{"header": "x-jwt-group", "claim": "group"}],
                        }
                    ],
                },
            ),
            doc(
                "RequestAuthentication",
                "forwarder-jwt",
                {
                    "selector": {"matchLabels": {"app": "forwarder"}},
                    "jwtRules": [{**jwt_rule, "forwardOriginalToken": True}],
                },
            ),
        ]
    )
    result = load_text(text, "e2e.yaml")
    assert not result.errors, [str(p) for p in result.errors]
    return AuthzBundle.build(result.resources)


def route(prefix: str, app: str) -> dict:
    context = {"namespace": "foo", "labels": json.dumps({"app": app}), "workload": app}
    return {
        "match": {"prefix": prefix},
        "route": {"cluster": "echo"},
        "typed_per_filter_config": {
            "envoy.filters.http.ext_authz": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                "check_settings": {"context_extensions": context},
            }
        },
    }


def static_cluster(name: str, port_placeholder: str, http2: bool = False) -> dict:
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": port_placeholder}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


API = "type.googleapis.com/envoy.extensions.filters"
HCM = f"{API}.network.http_connection_manager.v3.HttpConnectionManager"
EXT_AUTHZ = {
    "name": "envoy.filters.http.ext_authz",
    "typed_config": {
        "@type": f"{API}.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "failure_mode_allow": False,  # an unreachable or failing server means 403 (status_on_error)
        "grpc_service": {
            "envoy_grpc": {"cluster_name": "authz"},
            "timeout": "2s",
            # the listener-level identity, as pilotfish's xDS side sends it (xds/translate/authz.py)
            "initial_metadata": [
                {"key": "x-pilotfish-namespace", "value": "foo"},
                {"key": "x-pilotfish-labels", "value": json.dumps({"app": "httpbin"})},
            ],
        },
    },
}
META_ROUTE = {"match": {"prefix": "/meta"}, "route": {"cluster": "echo"}}  # no context_extensions
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": f"{API}.http.router.v3.Router"}}


def listener() -> dict:
    hosts = [
        {
            "name": "httpbin",
            "domains": ["*"],
            "routes": [route("/forward", "forwarder"), META_ROUTE, route("/", "httpbin")],
        }
    ]
    hcm = {
        "@type": HCM,
        "stat_prefix": "ingress",
        "route_config": {"name": "local", "virtual_hosts": hosts},
        "http_filters": [EXT_AUTHZ, ROUTER],
    }
    return {
        "name": "ingress",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": "{listener_port}"}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


BOOTSTRAP = {
    "node": {"id": "authz-e2e", "cluster": "e2e"},
    "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "{admin_port}"}}},
    "static_resources": {
        "listeners": [listener()],
        "clusters": [
            static_cluster("authz", "{authz_port}", http2=True),
            static_cluster("echo", "{echo_port}"),
        ],
    },
}


@pytest.fixture
def authz_workers():
    """``authz_workers(n, restart=)`` → started ``AuthzWorkers`` serving the e2e bundle; always stopped."""
    created: list[AuthzWorkers] = []

    def make(n: int = 2, restart: bool = True) -> AuthzWorkers:
        workers = AuthzWorkers(0, n, bundle=security_config(), restart=restart)
        created.append(workers)
        workers.start()
        return workers

    yield make
    for workers in created:
        workers.stop()


@pytest.fixture
def mesh(authz_workers, echo_factory, envoy_factory):
    def make(n: int = 2, restart: bool = True):
        workers = authz_workers(n, restart)
        echo = echo_factory("httpbin")
        envoy = envoy_factory(BOOTSTRAP, ports={"authz_port": workers.port, "echo_port": echo.port})
        return workers, echo, envoy

    return make


def test_allow_deny_and_jwt_flows_through_envoy(mesh):
    _workers, echo, envoy = mesh()
    url = envoy.url(path="/get?x=1")

    status, headers, body = http.get(url)
    assert (status, body) == (403, "RBAC: access denied")

    raw = token()
    status, _headers, body = http.get(url, headers={**bearer(raw), "x-jwt-group": "spoofed"})
    assert status == 200
    upstream = body["request"]["headers"]
    assert "authorization" not in upstream  # forwardOriginalToken is false: the token is removed
    assert upstream["x-jwt-payload"] == raw.split(".")[1]  # outputPayloadToHeader
    assert upstream["x-jwt-group"] == "dev"  # outputClaimToHeaders overwrites the client's value

    status, headers, body = http.get(url, headers=bearer(token(exp=1_000_000)))
    assert (status, body) == (401, "Jwt is expired")
    assert (
        headers["www-authenticate"] == f'Bearer realm="http://{envoy_host(envoy)}/get", error="invalid_token"'
    )

    forged = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    status, headers, body = http.get(url, headers=bearer(forged))
    assert (status, body) == (401, "Jwt verification fails")
    assert headers["www-authenticate"].endswith('error="invalid_token"')

    status, _headers, body = http.get(envoy.url(path="/admin/users"), headers=bearer(raw))
    assert (status, body) == (403, "RBAC: access denied")  # DENY beats the ALLOW that matched

    assert echo.stats()["requests"] == 1
    assert envoy.stat("http.ingress.ext_authz.ok") == 1
    assert envoy.stat("http.ingress.ext_authz.denied") == 4


def envoy_host(envoy) -> str:
    return f"127.0.0.1:{envoy.ports['listener_port']}"


def test_forward_original_token_keeps_the_header(mesh):
    _workers, _echo, envoy = mesh(n=1)
    raw = token()
    status, _headers, body = http.get(envoy.url(path="/forward/x"), headers=bearer(raw))
    assert status == 200
    assert body["request"]["headers"]["authorization"] == f"Bearer {raw}"
    assert "x-jwt-payload" not in body["request"]["headers"]  # that rule belongs to another workload


def test_without_route_context_the_listener_metadata_names_the_workload(mesh):
    _workers, _echo, envoy = mesh(n=1)
    status, _headers, body = http.get(envoy.url(path="/meta"))
    assert (status, body) == (403, "RBAC: access denied")
    raw = token()
    status, _headers, body = http.get(envoy.url(path="/meta"), headers=bearer(raw))
    assert status == 200
    assert body["request"]["headers"]["x-jwt-payload"] == raw.split(".")[1]  # httpbin's RequestAuthentication


def test_killing_every_worker_makes_envoy_deny_never_allow(mesh):
    workers, echo, envoy = mesh(n=2, restart=False)
    allowed = bearer(token())
    assert http.get(envoy.url(path="/get"), headers=allowed).status == 200
    for pid in workers.pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not workers.pids, timeout=10, message="workers gone")
    statuses = [http.get(envoy.url(path="/get"), headers=allowed).status for _ in range(REQUESTS)]
    assert statuses == [403] * REQUESTS  # status_on_error: a valid token is not enough without the server
    assert echo.stats()["requests"] == 1
    assert envoy.stat("http.ingress.ext_authz.error") >= REQUESTS


def test_a_killed_worker_is_replaced_and_traffic_recovers(mesh):
    workers, _echo, envoy = mesh(n=1, restart=True)
    allowed = bearer(token())
    victim = workers.pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: workers.restarts == 1 and workers.pids, timeout=30, message="worker restarted")
    statuses = [http.get(envoy.url(path="/get")).status for _ in range(5)]
    assert statuses == [403] * 5  # never an allow while the worker came back
    wait_for(
        lambda: http.get(envoy.url(path="/get"), headers=allowed).status == 200, timeout=10, message="allowed"
    )
