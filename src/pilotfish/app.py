"""The composition root: config directory → MeshSnapshot → per-proxy xDS snapshots → ADS, plus
the admin HTTP API. All the logic lives in the pure modules; this file only wires them and owns
the I/O (sockets, file watching, signals).

Flow: a file change (or a proxy connecting) triggers the debouncer; a push re-reads the config
directory (files with errors keep their last good content), builds one ``MeshSnapshot``, and
publishes a translated snapshot for every connected proxy. Proxies of the same class (type,
namespace, labels) share one translation; the cache shares resource bytes across all of them.
Versions are content hashes, so a push that changes nothing for a proxy sends it nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import watchfiles
from google.protobuf import json_format

from pilotfish.admin import http as admin_http
from pilotfish.config.mesh import DEFAULT_MESH, MeshConfig, load_mesh_config
from pilotfish.configdir import ConfigDirectory
from pilotfish.debounce import Debouncer
from pilotfish.errors import Problem
from pilotfish.metrics import Metrics
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds import resources as rt
from pilotfish.xds.cache import InconsistentSnapshot, Snapshot, SnapshotCache
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.server import AggregatedDiscoveryService
from pilotfish.xds.status import PushStatus, StatusHooks
from pilotfish.xds.translate.clusters import translate_clusters
from pilotfish.xds.translate.endpoints import translate_endpoints

log = logging.getLogger(__name__)

GRPC_OPTIONS = (
    # The 4 MiB default breaks large SotW responses and delta reconnects (envoyproxy/envoy#36169).
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
)


@dataclass(frozen=True, slots=True)
class ServeOptions:
    config_dir: Path | None = None
    mesh_file: Path | None = None
    host: str = "127.0.0.1"
    xds_port: int = 15010
    admin_port: int = 15014
    debounce_quiet: float = 0.1
    debounce_max: float = 10.0


ProxyClass = tuple[str, str, tuple[tuple[str, str], ...]]


def proxy_class(proxy: Proxy) -> ProxyClass:
    """Proxies that get identical config: same type, namespace and labels."""
    return (str(proxy.type), proxy.namespace, tuple(sorted(proxy.labels.items())))


def translate(mesh: MeshSnapshot, proxy: Proxy) -> list[Any]:
    """Every Envoy resource for one proxy (pure)."""
    clusters = translate_clusters(mesh, proxy)
    return [*clusters, *translate_endpoints(mesh, proxy, clusters)]


class ControlPlane:
    """One pilotfish server: xDS + admin. ``start()`` binds (port 0 works), ``stop()`` drains."""

    def __init__(self, opts: ServeOptions, metrics: Metrics | None = None) -> None:
        self.opts = opts
        self.metrics = metrics or Metrics()
        self.mesh_config: MeshConfig = load_mesh_config(opts.mesh_file) if opts.mesh_file else DEFAULT_MESH
        self.source = ConfigDirectory(opts.config_dir, self._on_problems) if opts.config_dir else None
        self.problems: tuple[Problem, ...] = ()
        self.mesh = MeshSnapshot(mesh=self.mesh_config)
        self.cache = SnapshotCache()
        self.status = PushStatus(
            StatusHooks(
                pushed=lambda t: self.metrics.on_push(rt.short_name(t)),
                nacked=lambda t: self.metrics.on_nack(rt.short_name(t)),
                acked=self._on_ack,
            )
        )
        self.ads = AggregatedDiscoveryService(
            self.cache, self.status, on_connect=self._on_connect, on_disconnect=self._on_disconnect
        )
        self.proxies: dict[str, Proxy] = {}
        self._streams: dict[str, int] = {}
        self.debouncer = Debouncer(self.push, opts.debounce_quiet, opts.debounce_max)
        self._tasks: list[asyncio.Task[None]] = []
        self._grpc: grpc.aio.Server | None = None
        self._admin: Any = None
        self._stop_watch = asyncio.Event()
        self.xds_port = 0
        self.admin_port = 0
        self.pushes = 0
        self._last_change: float | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._reload()
        self._grpc = grpc.aio.server(options=GRPC_OPTIONS)
        self.ads.register(self._grpc)
        self.xds_port = self._grpc.add_insecure_port(f"{self.opts.host}:{self.opts.xds_port}")
        await self._grpc.start()
        self._admin, self.admin_port = await admin_http.start(
            AdminBackend(self), self.opts.host, self.opts.admin_port
        )
        self._tasks.append(asyncio.create_task(self.debouncer.run()))
        if self.opts.config_dir:
            self._tasks.append(asyncio.create_task(self._watch(self.opts.config_dir)))
        log.info(
            "pilotfish serving: xds=%s:%d admin=%s:%d",
            self.opts.host,
            self.xds_port,
            self.opts.host,
            self.admin_port,
        )

    async def stop(self, grace: float = 1.0) -> None:
        self._stop_watch.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._admin is not None:
            await self._admin.cleanup()

    async def _watch(self, root: Path) -> None:
        async for _changes in watchfiles.awatch(root, stop_event=self._stop_watch, debounce=20, step=10):
            self._last_change = self._last_change or time.monotonic()
            self.debouncer.trigger()

    # ---- config → snapshots -----------------------------------------------------------------

    def _on_problems(self, problems: tuple[Problem, ...]) -> None:
        self.problems = problems
        errors = sum(1 for p in problems if p.severity == "error")
        self.metrics.on_config_problems(errors)

    def _reload(self) -> None:
        resources = self.source.load() if self.source else ()
        self.mesh = MeshSnapshot.build(resources, self.mesh_config)

    async def push(self) -> None:
        """Debounced: rebuild the mesh and publish every connected proxy's snapshot."""
        self._reload()
        self.pushes += 1
        self.publish_all()

    def publish_all(self) -> None:
        memo: dict[ProxyClass, Snapshot] = {}
        for proxy in list(self.proxies.values()):
            self.publish(proxy, memo)

    def publish(self, proxy: Proxy, memo: dict[ProxyClass, Snapshot] | None = None) -> None:
        key = proxy_class(proxy)
        snapshot = memo.get(key) if memo is not None else None
        if snapshot is None:
            try:
                snapshot = self.cache.build(translate(self.mesh, proxy))
            except InconsistentSnapshot as exc:  # a translation bug: keep the last good snapshot
                log.error("not publishing an inconsistent snapshot for %s: %s", proxy.id, exc)
                return
            if memo is not None:
                memo[key] = snapshot
        self.cache.set_snapshot(proxy.id, snapshot)

    # ---- ADS hooks ---------------------------------------------------------------------------

    def _on_connect(self, proxy: Proxy) -> None:
        self.proxies[proxy.id] = proxy
        self._streams[proxy.id] = self._streams.get(proxy.id, 0) + 1
        self.metrics.on_connect(str(proxy.type))
        self.publish(proxy)

    def _on_disconnect(self, proxy: Proxy) -> None:
        self.metrics.on_disconnect(str(proxy.type))
        remaining = self._streams.get(proxy.id, 1) - 1
        if remaining > 0:
            self._streams[proxy.id] = remaining
            return
        self._streams.pop(proxy.id, None)
        self.proxies.pop(proxy.id, None)
        self.cache.clear(proxy.id)

    def _on_ack(self, type_name: str, push_to_ack: float) -> None:
        started = self.debouncer.first_change_of_last_push
        latency = time.monotonic() - started if started is not None else push_to_ack
        self.metrics.on_ack_latency(rt.short_name(type_name), max(latency, push_to_ack))


class AdminBackend:
    """What the admin HTTP API may see of the control plane (``admin.http.AdminBackend``)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def health(self) -> tuple[bool, list[str]]:
        return True, []

    def metrics(self) -> bytes:
        return self.cp.metrics.exposition()

    def syncz(self) -> list[dict[str, Any]]:
        out = []
        for connection in self.cp.status.connections():
            types = {
                rt.short_name(t): {**dataclasses.asdict(s), "state": str(s.state)}
                for t, s in connection.types.items()
            }
            out.append(
                {
                    "proxy": connection.proxy.id,
                    "namespace": connection.proxy.namespace,
                    "kind": str(connection.kind),
                    "connected_at": connection.connected_at,
                    "types": types,
                }
            )
        return out

    def config_dump(self, proxy_id: str, type_name: str | None) -> dict[str, Any] | None:
        snapshot = self.cp.cache.get(proxy_id)
        if snapshot is None:
            return None
        wanted = [t for t in rt.ADS_ORDER if type_name is None or _matches_type(t, type_name)]
        return {
            rt.short_name(t): {
                "version": snapshot.version(t),
                "resources": [_to_json(t, r.body) for r in snapshot.named(t).values()],
            }
            for t in wanted
        }

    def configz(self) -> list[dict[str, Any]]:
        return [
            {
                "kind": r.kind,
                "namespace": r.namespace,
                "name": r.name,
                "apiVersion": r.api_version,
                "origin": f"{r.origin.file}:{r.origin.line}",
                "spec": json.loads(json.dumps(dataclasses.asdict(r.spec), default=str)),
            }
            for r in self.cp.mesh.resources
        ]


_TYPE_ALIASES: dict[str, Callable[[str], bool]] = {
    "cluster": lambda t: t == rt.CLUSTER,
    "endpoint": lambda t: t == rt.ENDPOINT,
    "listener": lambda t: t == rt.LISTENER,
    "route": lambda t: t == rt.ROUTE,
    "secret": lambda t: t == rt.SECRET,
}


def _matches_type(type_url: str, name: str) -> bool:
    alias = _TYPE_ALIASES.get(name.lower().rstrip("s"))
    return alias(type_url) if alias else rt.short_name(type_url).lower() == name.lower()


def _message_classes() -> dict[str, Any]:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2
    from envoy.config.listener.v3 import listener_pb2
    from envoy.config.route.v3 import route_pb2
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    return {
        rt.CLUSTER: cluster_pb2.Cluster,
        rt.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        rt.LISTENER: listener_pb2.Listener,
        rt.ROUTE: route_pb2.RouteConfiguration,
        rt.SECRET: secret_pb2.Secret,
    }


def _to_json(type_url: str, body: bytes) -> Any:
    message = _message_classes()[type_url].FromString(body)
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


async def serve_forever(opts: ServeOptions, ready: Callable[[ControlPlane], None] | None = None) -> None:
    """Run until cancelled (SIGINT/SIGTERM in the CLI)."""
    cp = ControlPlane(opts)
    await cp.start()
    if ready:
        ready(cp)
    try:
        await asyncio.Event().wait()
    finally:
        await cp.stop()
