"""aiohttp application for the admin port (Istio's monitoring port, 15014).

The handlers see the running server only through ``AdminBackend``, a protocol the composition
root (``app.py``) implements, so this module imports neither grpc nor the xDS internals.

Routes (Istio's debug names where Istio has one, pilot/pkg/xds/debug.go):
  GET /healthz                 200 "ok" when serving, 503 with one line per reason otherwise (the
                               store is unreachable; a background task failed and is recovering)
  GET /metrics                 Prometheus exposition
  GET /debug/syncz             push status per proxy and type (JSON)
  GET /debug/config_dump       ?proxyID=ID[&type=cluster|endpoint|listener|route|secret] the config sent
  GET /debug/configz           the Istio resources in force (JSON)
  GET /debug/certs             the CA's root and every current certificate: serial, SANs, validity,
                               issuance and rotation counts (never a private key)
  GET /ui/                     the web console (``pilotfish.console``, wired in by app.py)
  GET /debug/problemz          what is not served as written: config problems (and a config
                               directory kept at its last good content), endpoints left out of
                               xDS, resources proxies rejected (JSON)

and, when the server has a store, the resource and registration API of ``admin.api``
(``/apis/...``, ``/registrations``, ``/openapi.yaml``), guarded by ``admin.rbac``.

With ``--admin-tokens`` every route but ``/healthz`` (open for probes) needs a token whose roles
allow it: ``/metrics`` and the debug routes are the kinds of ``rbac.ENDPOINT_KINDS`` (verb get),
and ``/debug/configz`` shows only the resources the caller may ``get`` through ``/apis``.
Writes are guarded against cross-site forgery (``admin.csrf``). A connection that sends no
complete request head within ``IDLE_TIMEOUT_SECONDS`` — idle, or trickling its headers — is
closed (aiohttp's keep-alive timer runs from the connection's start and is only reset by a
complete request).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from pilotfish.admin import api, csrf, frontdoor, rbac
from pilotfish.limits import MAX_TEXT_BYTES

IDLE_TIMEOUT_SECONDS = 15.0


class AdminBackend(Protocol):
    def health(self) -> tuple[bool, list[str]]: ...
    def metrics(self) -> bytes: ...
    def syncz(self) -> list[dict[str, Any]]: ...
    def config_dump(self, proxy_id: str, type_name: str | None) -> dict[str, Any] | None: ...
    def configz(self) -> list[dict[str, Any]]: ...
    def certs(self) -> dict[str, Any]: ...
    def problemz(self) -> dict[str, Any]: ...


BACKEND: web.AppKey[AdminBackend] = web.AppKey("backend")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=2, sort_keys=True), status=status, content_type="application/json"
    )


async def healthz(request: web.Request) -> web.Response:
    ok, reasons = request.app[BACKEND].health()
    return web.Response(text=frontdoor.health_text(ok, reasons), status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[BACKEND].metrics()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def syncz(request: web.Request) -> web.Response:
    return _json(request.app[BACKEND].syncz())


async def config_dump(request: web.Request) -> web.Response:
    proxy_id = request.query.get("proxyID", "")
    if not proxy_id:
        return _json({"error": "proxyID is required"}, 400)
    dump = request.app[BACKEND].config_dump(proxy_id, request.query.get("type"))
    if dump is None:
        return _json({"error": f"no proxy {proxy_id!r} (connected proxies: see /debug/syncz)"}, 404)
    return _json(dump)


async def configz(request: web.Request) -> web.Response:
    """The resources in force that the caller could read through ``/apis``, and no others."""
    guard = api.Guard(request, "get")
    caller = await guard.authenticate("configz")
    items = request.app[BACKEND].configz()
    return _json([r for r in items if api.decide(request, caller, "get", r["kind"], r["namespace"]).allowed])


async def certs(request: web.Request) -> web.Response:
    return _json(request.app[BACKEND].certs())


async def problemz(request: web.Request) -> web.Response:
    return _json(request.app[BACKEND].problemz())


Routes = Callable[[web.Application], None]  # adds more routes (the web console: ``console.routes``)


def guarded(path: str, handler: Callable[[web.Request], Awaitable[web.Response]]) -> api.Handler:
    """``handler`` behind RBAC as the kind ``rbac.ENDPOINT_KINDS[path]`` (verb get)."""
    kind = rbac.ENDPOINT_KINDS[path]

    async def allowed(request: web.Request) -> web.Response:
        await api.Guard(request, "get").allow(kind, "", kind)
        return await handler(request)

    return api.endpoint(allowed)


def build_app(
    backend: AdminBackend,
    registry: api.RegistryBackend | None = None,
    policy: rbac.Policy | None = None,
    extra_routes: Routes | None = None,
) -> web.Application:
    app = web.Application(middlewares=[csrf.refuse_forgery], client_max_size=MAX_TEXT_BYTES)
    app[BACKEND] = backend
    app[api.POLICY] = policy or rbac.Policy()
    app.router.add_get("/healthz", healthz)
    for path, handler in (
        ("/metrics", metrics),
        ("/debug/syncz", syncz),
        ("/debug/config_dump", config_dump),
        ("/debug/certs", certs),
        ("/debug/problemz", problemz),
    ):
        app.router.add_get(path, guarded(path, handler))
    app.router.add_get("/debug/configz", api.endpoint(configz))
    if registry is not None:
        api.add_routes(app, registry, policy or rbac.Policy())
    if extra_routes is not None:
        extra_routes(app)
    return app


async def start(
    backend: AdminBackend,
    host: str,
    port: int,
    registry: api.RegistryBackend | None = None,
    policy: rbac.Policy | None = None,
    idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    extra_routes: Routes | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> tuple[web.AppRunner, int]:
    """Start the admin server; returns the runner (for cleanup) and the bound port (port 0 works).
    Connections are accepted by the front door's thread (``frontdoor``): it answers ``/healthz``
    probes itself, whatever the event loop is busy with, and hands the rest to aiohttp;
    ``on_failure`` hears of its errors (called on its thread)."""
    app = build_app(backend, registry, policy, extra_routes)
    runner = _Runner(app, access_log=None, keepalive_timeout=idle_timeout)
    await runner.setup()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    door = frontdoor.FrontDoor(
        frontdoor.listen(host, port),
        backend.health,
        frontdoor.hand_over_to(loop, runner.server),
        on_failure=on_failure,
    )
    runner.front_door = door
    door.start(loop)
    return runner, door.port


class _Runner(web.AppRunner):
    """aiohttp's runner, which also stops the front door on cleanup."""

    front_door: frontdoor.FrontDoor | None = None

    async def cleanup(self) -> None:
        if self.front_door is not None:
            await asyncio.to_thread(self.front_door.stop)  # no new connections from here on
        await super().cleanup()
