"""Who may reach what on the admin port: every route but /healthz behind RBAC when tokens are
configured (``metrics-reader`` for Prometheus), /debug/configz filtered like /apis, cross-site
writes refused without tokens, idle and slow-header connections closed."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from harness import http
from harness.admin import StubAdminBackend
from registry_api_support import Api

from pilotfish.admin import http as admin_http

pytestmark = pytest.mark.integration

HOST = "ratings.prod.svc.cluster.local"


def resource(kind: str, name: str, namespace: str, spec: str) -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: {kind}\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )


SERVICE = resource(
    "ServiceEntry",
    "ratings",
    "prod",
    f"  hosts: [{HOST}]\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n",
)
RULE_PROD = resource("DestinationRule", "ratings", "prod", f"  host: {HOST}\n")
RULE_DEV = resource("DestinationRule", "ratings", "dev", f"  host: {HOST}\n")

TOKENS = """tokens:
  - {token: t-admin, subject: admin}
  - {token: t-alice, subject: alice}
  - {token: t-prometheus, subject: prometheus}
roles:
  - {name: all, rules: [{verbs: ["*"], kinds: ["*"]}]}
  - name: prod-rules
    namespace: prod
    rules: [{verbs: [get, list], kinds: [DestinationRule]}]
bindings:
  - {subject: admin, role: all}
  - {subject: alice, role: prod-rules}
  - {subject: prometheus, role: metrics-reader}
"""
DEBUG = ("/debug/syncz", "/debug/configz", "/debug/certs", "/debug/config_dump?proxyID=x")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "all.yaml").write_text("---\n".join([SERVICE, RULE_PROD, RULE_DEV]))
    return config


def test_with_tokens_every_route_but_healthz_needs_a_token_and_a_role(config, tmp_path, pilotfish_factory):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    pf = pilotfish_factory(config, extra_args=["--admin-tokens", str(tokens)])
    anonymous, alice, prometheus, admin = (
        Api(pf.admin, t) for t in (None, "t-alice", "t-prometheus", "t-admin")
    )
    assert anonymous.call("GET", "/healthz").status == 200, "open for probes"
    for path in ("/metrics", "/openapi.yaml", *DEBUG):
        response = anonymous.call("GET", path)
        assert response.status == 401 and response.headers["www-authenticate"].startswith("Bearer"), path
        assert Api(pf.admin, "t-wrong").call("GET", path).status == 401, path

    metrics = prometheus.call("GET", "/metrics")
    assert metrics.status == 200 and "pilotfish_" in metrics.body
    for path in ("/debug/syncz", "/debug/certs", "/debug/config_dump?proxyID=x", "/openapi.yaml"):
        denied = prometheus.call("GET", path)
        assert denied.status == 403 and "prometheus may not get" in denied.json()["error"], path
        assert alice.call("GET", path).status == 403, path
    assert alice.call("GET", "/metrics").status == 403
    assert prometheus.call("GET", "/apis/DestinationRule?namespace=prod").status == 403

    assert admin.call("GET", "/debug/syncz").status == 200
    assert admin.call("GET", "/metrics").status == 200
    assert admin.call("GET", "/debug/config_dump?proxyID=x").status == 404, "allowed; no such proxy"

    # configz shows what /apis would: alice reads DestinationRules in prod, and nothing else.
    assert alice.call("GET", "/apis/DestinationRule/prod/ratings").status == 404, "allowed (not stored)"
    assert alice.call("GET", "/apis/ServiceEntry/prod/ratings").status == 403
    shown = {(r["kind"], r["namespace"]) for r in alice.call("GET", "/debug/configz").body}
    assert shown == {("DestinationRule", "prod")}
    assert prometheus.call("GET", "/debug/configz").body == []
    everything = {(r["kind"], r["namespace"]) for r in admin.call("GET", "/debug/configz").body}
    assert everything == {("ServiceEntry", "prod"), ("DestinationRule", "prod"), ("DestinationRule", "dev")}

    # With tokens a page cannot write without one, so a DNS name is as good as an IP; a foreign
    # Origin is still refused.
    named = {"authorization": "Bearer t-admin", "content-type": "application/yaml"}
    named |= {
        "host": f"pilotfish.internal:{pf.admin_port}",
        "origin": f"http://pilotfish.internal:{pf.admin_port}",
    }
    assert write(pf, named).status == 200
    assert write(pf, named | {"origin": "http://evil.example"}).status == 403


def test_the_cli_sends_its_token_to_the_debug_routes(config, tmp_path, pilotfish_factory, capsys) -> None:
    from pilotfish.cli import main as cli

    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    pf = pilotfish_factory(config, extra_args=["--admin-tokens", str(tokens)])
    assert cli(["proxy-status", "--admin", pf.admin]) == 1
    assert "a valid bearer token is required" in capsys.readouterr().err
    assert cli(["proxy-status", "--admin", pf.admin, "--token", "t-admin"]) == 0
    assert capsys.readouterr().out.startswith("NAME")


NEW_RULE = resource("DestinationRule", "csrf", "prod", f"  host: {HOST}\n")


def write(pf: Any, headers: dict[str, str], body: str | bytes = NEW_RULE) -> http.Response:
    return http.request("POST", f"http://{pf.admin}/apis", headers, body)


def test_without_tokens_a_cross_site_write_is_refused(config, pilotfish_factory) -> None:
    pf = pilotfish_factory(config)
    own = f"http://{pf.admin}"
    refused = [
        # A web page's form and fetch() bodies: text/plain, form-encoded, multipart, no type.
        ({"content-type": "text/plain", "origin": "http://evil.example"}, 403),
        ({"content-type": "application/x-www-form-urlencoded", "origin": "http://evil.example"}, 403),
        ({"content-type": "multipart/form-data; boundary=x", "origin": "null"}, 403),
        ({"content-type": "text/plain"}, 415),
        ({}, 415),
        # Same origin but a type a simple request could carry.
        ({"content-type": "text/plain", "origin": own}, 415),
        # JSON/YAML but from another origin, or from a DNS name (rebinding).
        ({"content-type": "application/yaml", "origin": "http://evil.example"}, 403),
        (
            {"content-type": "application/yaml", "origin": f"http://localhost.evil.example:{pf.admin_port}"},
            403,
        ),
    ]
    for headers, status in refused:
        response = write(pf, headers)
        assert response.status == status, (headers, response)
        assert "refused" in response.json()["error"] or "must be application/json" in response.json()["error"]
    assert Api(pf.admin).call("GET", "/apis/DestinationRule/prod/csrf").status == 404, "nothing written"

    host_header = http.request(
        "POST",
        f"http://{pf.admin}/apis",
        {
            "content-type": "application/yaml",
            "host": f"rebound.example:{pf.admin_port}",
            "origin": f"http://rebound.example:{pf.admin_port}",
        },
        NEW_RULE,
    )
    assert host_header.status == 403 and "DNS name" in host_header.json()["error"]

    for headers in (
        {"content-type": "application/yaml", "origin": own},
        {"content-type": "application/yaml"},
    ):
        assert write(pf, headers).status == 200, headers
    assert Api(pf.admin).call("GET", "/apis/DestinationRule/prod/csrf").status == 200


def test_every_route_of_the_admin_app_but_healthz_needs_a_token() -> None:
    """Walks the router, so a debug route added later cannot slip past RBAC unnoticed."""
    from pilotfish.admin import rbac

    policy = rbac.parse_policy({"tokens": [{"token": "t", "subject": "s"}]})

    async def main() -> dict[str, int]:
        runner, port = await admin_http.start(StubAdminBackend(), "127.0.0.1", 0, policy=policy)
        try:
            paths = {r.resource.canonical for r in runner.app.router.routes() if r.resource is not None}
            return {
                path: (await asyncio.to_thread(http.get, f"http://127.0.0.1:{port}{path}")).status
                for path in sorted(paths)
            }
        finally:
            await runner.cleanup()

    statuses = asyncio.run(main())
    assert statuses.pop("/healthz") == 200
    assert len(statuses) >= 6 and set(statuses.values()) == {401}, statuses


def _closed_after(port: int, send: bytes, drip: bytes, limit: float) -> float:
    """Seconds until the server closes a connection that sends ``send`` and then ``drip`` every
    50 ms (never completing a request head)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.05)
        sock.sendall(send)
        while time.monotonic() - started < limit:
            try:
                if sock.recv(1024) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                pass
            except ConnectionResetError:  # closed with our unread drip in its buffer: a reset
                return time.monotonic() - started
            try:
                if drip:
                    sock.sendall(drip)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
    raise AssertionError(f"still open after {limit}s")


def test_idle_and_slow_header_connections_are_closed() -> None:
    assert admin_http.IDLE_TIMEOUT_SECONDS == 15.0, "the documented default"

    async def main() -> tuple[float, float, int]:
        runner, port = await admin_http.start(StubAdminBackend(), "127.0.0.1", 0, idle_timeout=0.5)
        try:
            idle = asyncio.to_thread(_closed_after, port, b"", b"", 5.0)
            slow = asyncio.to_thread(_closed_after, port, b"GET /healthz HTTP/1.1\r\n", b"X-A: b\r\n", 5.0)
            idle_s, slow_s = await asyncio.gather(idle, slow)
            answered = await asyncio.to_thread(http.get, f"http://127.0.0.1:{port}/healthz")
            return idle_s, slow_s, answered.status
        finally:
            await runner.cleanup()

    idle_s, slow_s, status = asyncio.run(main())
    print(f"\nidle connection closed after {idle_s:.2f}s, slow headers after {slow_s:.2f}s (timeout 0.5s)")
    assert idle_s < 2.5 and slow_s < 2.5
    assert status == 200, "a prompt request is served"
