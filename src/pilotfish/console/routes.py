"""The web console on the admin port: static files under ``/ui/`` and the JSON it polls.

    GET /ui/                      the console (static HTML/JS/CSS shipped in the package; no CDN)
    GET /ui/api/whoami            who the token says the caller is
    GET /ui/api/mesh              the graph, every proxy's push status, the services
    GET /ui/api/service?host=H    one service's page (404 when unknown or not visible)
    GET /ui/api/stats             counters for the live charts, certificates, the latest denials

The page polls the ``/ui/api`` endpoints every second (``fetch`` can send the bearer token;
``EventSource`` cannot) and computes rates from consecutive counter readings.

The data endpoints honour the admin API's RBAC exactly as ``/apis`` does (``admin.api``): 401
without a valid token when ``--admin-tokens`` is in use, and every item is filtered through
``list`` on its kind in its namespace (resources; denials as ``AuthorizationPolicy`` in the
workload's namespace), or through ``get`` on the kind the admin API guards the same data by
(``rbac.ENDPOINT_KINDS``): proxies as ``ProxyStatus``, counters as ``Metrics`` (so the built-in
``metrics-reader`` role sees the charts), certificates as ``Certificate``. The static files
carry no data and need no token: the page asks for one.
Nothing served here holds a key or a token (``model.redact``; certificates are public facts).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources as package_files
from typing import Any

from aiohttp import web

from pilotfish.admin import api, rbac
from pilotfish.console import model
from pilotfish.registry.snapshot import MeshSnapshot

# The kinds the admin API guards the same data by (``/debug/syncz``, ``/metrics``, ``/debug/certs``).
PROXY_KIND = rbac.ENDPOINT_KINDS["/debug/syncz"]
METRICS_KIND = rbac.ENDPOINT_KINDS["/metrics"]
CERTIFICATE_KIND = rbac.ENDPOINT_KINDS["/debug/certs"]
ENDPOINT_KINDS = frozenset(rbac.ENDPOINT_KINDS.values())
DENIAL_KIND = "AuthorizationPolicy"
STATIC_TYPES: Mapping[str, str] = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
}
# Counters the charts need, by metric name (their labels go along).
CHART_SERIES = (
    "pilotfish_xds_pushes_total",
    "pilotfish_xds_rejects_total",
    "pilotfish_proxy_convergence_time_seconds_sum",
    "pilotfish_proxy_convergence_time_seconds_count",
    "pilotfish_authz_checks_total",
    "pilotfish_xds_proxies",
    "pilotfish_store_up",
)


@dataclass(frozen=True, slots=True)
class ConsoleSource:
    """What the console reads of the running server (``app.py`` wires it)."""

    mesh: Callable[[], MeshSnapshot]
    syncz: Callable[[], list[dict[str, Any]]]
    samples: Callable[[], list[tuple[str, dict[str, str], float]]]  # blocking: asks the Check workers
    certs: Callable[[], dict[str, Any]]
    authz_stats: Callable[[], Sequence[Mapping[str, Any]]]  # blocking: asks the Check workers


SOURCE: web.AppKey[ConsoleSource] = web.AppKey("console_source")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, sort_keys=True))


def _visible(request: web.Request, caller: api.Caller) -> model.Visible:
    decided: dict[tuple[str, str], bool] = {}  # one request: a few kinds × namespaces, asked per item

    def visible(kind: str, namespace: str) -> bool:
        found = decided.get((kind, namespace))
        if found is None:
            # Endpoint kinds are granted with ``get`` (as their endpoints are), resources with ``list``.
            verb = "get" if kind in ENDPOINT_KINDS else "list"
            found = decided[(kind, namespace)] = api.decide(request, caller, verb, kind, namespace).allowed
        return found

    return visible


async def index(request: web.Request) -> web.StreamResponse:
    return _static("index.html")


async def redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound()
    return _static(name)


def _static(name: str) -> web.Response:
    body = package_files.files("pilotfish.console").joinpath("static", name).read_bytes()
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return web.Response(body=body, content_type=STATIC_TYPES[name], headers=headers)


@api.endpoint
async def whoami(request: web.Request) -> web.Response:
    caller = api.authenticate(request)
    writes = api.decide(request, caller, "apply", "VirtualService", "default").allowed
    return _json({"subject": caller.name, "tokens": request.app[api.POLICY].uses_tokens, "canWrite": writes})


@api.endpoint
async def mesh(request: web.Request) -> web.Response:
    caller = api.authenticate(request)
    visible = _visible(request, caller)
    source = request.app[SOURCE]
    snapshot = source.mesh()
    services = [
        {"host": s.hostname, "namespace": s.namespace, "label": model.short_host(s.hostname)}
        for s in snapshot.services
        if visible(model.SERVICE_KIND, s.namespace)
    ]
    # The first poll after a change computes the whole graph (hundreds of ms for thousands of
    # endpoints): in a thread, so the event loop keeps serving xDS meanwhile.
    graph = await asyncio.to_thread(model.graph, snapshot, visible)
    return _json(
        {
            "graph": graph,
            "proxies": model.proxies(source.syncz(), visible, PROXY_KIND),
            "services": sorted(services, key=lambda s: s["host"]),
        }
    )


@api.endpoint
async def service(request: web.Request) -> web.Response:
    caller = api.authenticate(request)
    host, snapshot = request.query.get("host", ""), request.app[SOURCE].mesh()
    page = await asyncio.to_thread(model.service_page, snapshot, host, _visible(request, caller))
    if page is None:
        raise api.ApiError(404, {"error": f"no service {request.query.get('host', '')!r} you may see"})
    return _json(page)


@api.endpoint
async def stats(request: web.Request) -> web.Response:
    caller = api.authenticate(request)
    visible = _visible(request, caller)
    source = request.app[SOURCE]
    out: dict[str, Any] = {"series": [], "certificates": None, "denials": []}
    if visible(METRICS_KIND, ""):
        samples = await asyncio.to_thread(source.samples)
        out["series"] = [
            {"name": name, "labels": labels, "value": value}
            for name, labels, value in samples
            if name in CHART_SERIES
        ]
    if visible(CERTIFICATE_KIND, ""):
        certs = source.certs()
        out["certificates"] = {
            "trustDomain": certs.get("trustDomain"),
            "items": certs.get("certificates", []),
        }
    workers = await asyncio.to_thread(source.authz_stats)
    denials = [
        d for w in workers for d in w.get("denials", ()) if visible(DENIAL_KIND, d.get("namespace", ""))
    ]
    out["denials"] = sorted(denials, key=lambda d: -float(d["at"]))[:50]
    return _json(out)


def add_routes(app: web.Application, source: ConsoleSource, policy: rbac.Policy) -> None:
    app[SOURCE] = source
    if api.POLICY not in app:
        app[api.POLICY] = policy
    app.router.add_get("/ui", redirect)
    app.router.add_get("/ui/", index)
    app.router.add_get("/ui/api/whoami", whoami)
    app.router.add_get("/ui/api/mesh", mesh)
    app.router.add_get("/ui/api/service", service)
    app.router.add_get("/ui/api/stats", stats)
    app.router.add_get("/ui/{name}", static)
