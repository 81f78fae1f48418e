"""aiohttp application for the admin port (Istio's monitoring port, 15014).

The handlers see the running server only through ``AdminBackend``, a protocol the composition
root (``app.py``) implements, so this module imports neither grpc nor the xDS internals.

Routes (Istio's debug names where Istio has one, pilot/pkg/xds/debug.go):
  GET /healthz                 200 "ok" when serving, 503 with reasons otherwise
  GET /metrics                 Prometheus exposition
  GET /debug/syncz             push status per proxy and type (JSON)
  GET /debug/config_dump       ?proxyID=ID[&type=cluster|endpoint|listener|route|secret] the config sent
  GET /debug/configz           the Istio resources in force (JSON)
  GET /debug/certs             the CA's root and every current certificate: serial, SANs, validity,
                               issuance and rotation counts (never a private key)
  GET /ui/                     the web console (``pilotfish.console``, wired in by app.py)

and, when the server has a store, the resource and registration API of ``admin.api``
(``/apis/...``, ``/registrations``, ``/openapi.yaml``), guarded by ``admin.rbac``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from pilotfish.admin import api, rbac


class AdminBackend(Protocol):
    def health(self) -> tuple[bool, list[str]]: ...
    def metrics(self) -> bytes: ...
    def syncz(self) -> list[dict[str, Any]]: ...
    def config_dump(self, proxy_id: str, type_name: str | None) -> dict[str, Any] | None: ...
    def configz(self) -> list[dict[str, Any]]: ...
    def certs(self) -> dict[str, Any]: ...


BACKEND: web.AppKey[AdminBackend] = web.AppKey("backend")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=2, sort_keys=True), status=status, content_type="application/json"
    )


async def healthz(request: web.Request) -> web.Response:
    ok, reasons = request.app[BACKEND].health()
    return web.Response(text="ok\n" if ok else "\n".join(reasons) + "\n", status=200 if ok else 503)


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
    return _json(request.app[BACKEND].configz())


async def certs(request: web.Request) -> web.Response:
    return _json(request.app[BACKEND].certs())


Routes = Callable[[web.Application], None]  # adds more routes (the web console: ``console.routes``)


def build_app(
    backend: AdminBackend,
    registry: api.RegistryBackend | None = None,
    policy: rbac.Policy | None = None,
    extra_routes: Routes | None = None,
) -> web.Application:
    app = web.Application()
    app[BACKEND] = backend
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/debug/syncz", syncz)
    app.router.add_get("/debug/config_dump", config_dump)
    app.router.add_get("/debug/configz", configz)
    app.router.add_get("/debug/certs", certs)
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
    extra_routes: Routes | None = None,
) -> tuple[web.AppRunner, int]:
    """Start the admin server; returns the runner (for cleanup) and the bound port (port 0 works)."""
    runner = web.AppRunner(build_app(backend, registry, policy, extra_routes), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
