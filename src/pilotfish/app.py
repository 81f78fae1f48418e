"""The composition root: config directory → MeshSnapshot → per-proxy xDS snapshots → ADS, plus
the admin HTTP API. All the logic lives in the pure modules; this file only wires them and owns
the I/O (sockets, file watching, signals).

Flow: a file change triggers the debouncer; a push re-reads the config directory (files with
errors keep their last good content), builds one ``MeshSnapshot``, and publishes a snapshot for
every connected proxy — all of it on the translation worker thread (``xds.publisher``), never on
the event loop. Snapshots are assembled from parts shared by scope and cached by their inputs
(``xds.builder``), so a change costs what it touches. A proxy that connects gets its first
snapshot from the same worker. Versions are content hashes, so a push that changes nothing for
a proxy sends it nothing.

With a store (``--store``), the mesh is the store's resources plus the config directory's (which
wins a key both define: the directory is read-only through the API), and the store's
registrations add endpoints. Store events reach the debouncer from the store's thread through
``call_soon_threadsafe``; a lease loop reaps expired registrations and renews the leases of
connected auto-registered proxies. When the store is unreachable, the last state read keeps
serving — proxies keep their config, ``/healthz`` says why it is 503, ``pilotfish_store_up`` is
0 — and the first successful call brings everything back without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from pilotfish.admin import http as admin_http
from pilotfish.admin import rbac
from pilotfish.admin.frontdoor import tune_switch_interval
from pilotfish.config.mesh import DEFAULT_MESH, MeshConfig, load_mesh_config
from pilotfish.config.resource import Resource
from pilotfish.configdir import ConfigDirectory, watch_directory
from pilotfish.console import routes as console_routes
from pilotfish.console.routes import ConsoleSource
from pilotfish.debounce import Debouncer
from pilotfish.errors import Problem, StoreUnavailable
from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.workers import AuthzWorkers
from pilotfish.kong import admin_api as kong_admin
from pilotfish.kong.credentials import load_key, seal_consumer
from pilotfish.memory import release_free_memory, tune_gc
from pilotfish.mesh_ca import CaOptions, MeshCa
from pilotfish.metrics import Metrics
from pilotfish.registry.from_registrations import (
    auto_registration,
    registered_workloads,
    registration_endpoints,
    registration_namespace,
)
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.store import Registration, ResourceKey, Store, Subscription, open_store
from pilotfish.supervise import Backoff, Supervisor
from pilotfish.xds import resources as rt
from pilotfish.xds.builder import ProxyClass, proxy_class
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.publisher import Publisher, PublishHooks
from pilotfish.xds.server import AggregatedDiscoveryService, PushGate
from pilotfish.xds.status import PushStatus, StatusHooks, TypeStatus, proxy_states
from pilotfish.xds.translate.authz import authz_clusters, enforcement
from pilotfish.xds.translate.clusters import translate_clusters
from pilotfish.xds.translate.endpoint_checks import DroppedEndpoint, dropped_endpoints
from pilotfish.xds.translate.endpoints import translate_endpoints
from pilotfish.xds.translate.gateway_l4 import sni_dnat_clusters
from pilotfish.xds.translate.inbound import translate_inbound_clusters
from pilotfish.xds.translate.listeners import route_names, translate_listeners
from pilotfish.xds.translate.routes import translate_routes

log = logging.getLogger(__name__)
T = TypeVar("T")

# A proxy whose LABELS carry this names the WorkloadGroup (in its namespace) it joins while it is
# connected — Istio's AUTO_REGISTER_GROUP node metadata, carried as a label because that is what
# ``pilotfish bootstrap --labels`` and every Envoy bootstrap can already say.
AUTO_REGISTER_LABEL = "pilotfish.io/auto-register-group"

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
    ca: CaOptions = CaOptions()  # the workload CA, its files and TLS ports (mesh_ca.py)
    debounce_quiet: float = 0.1
    debounce_max: float = 10.0
    store_url: str | None = None  # None: no store, no resource or registration API
    admin_tokens: Path | None = None  # RBAC tokens file (admin.rbac); None: loopback may write
    lease_interval: float = 0.25  # how often expired leases are reaped
    auto_register_grace: float = 10.0  # Istio's PILOT_WORKLOAD_ENTRY_GRACE_PERIOD
    # After a store outage or while the server was down no heartbeat could land; give
    # workloads this long to renew before reaping leases that lapsed meanwhile.
    lease_recovery_grace: float = 10.0
    # ext_authz: the Check server's port (0: any free port) and worker processes on it (0: the
    # Check server runs elsewhere at that port; proxies still point at it and fail closed).
    authz_port: int = 9191
    authz_workers: int = 1
    # How RequestAuthentication/AuthorizationPolicy are enforced: "ext_authz" or "native".
    authz_mode: str = "ext_authz"
    supervision: Backoff = Backoff()  # restart delays of failed background tasks (supervise.py)
    # Consumer credentials' key (kong/credentials.py); None: credential.key in the CA directory,
    # or a key in memory when the CA is in memory too.
    credential_key_file: Path | None = None
    kong_admin_port: int | None = None  # Kong's Admin API (kong/admin_api.py); None: off


__all__ = ["ProxyClass", "proxy_class", "translate"]


def translate(mesh: MeshSnapshot, proxy: Proxy) -> list[Any]:
    """Every Envoy resource for one proxy (pure): outbound and inbound clusters, their endpoints,
    the listeners, and the route configurations the listeners name over RDS. The reference
    ``xds.builder`` must equal (it builds the same from shared, cached parts)."""
    clusters = [*translate_clusters(mesh, proxy), *translate_inbound_clusters(mesh, proxy)]
    listeners = translate_listeners(mesh, proxy)
    routes = translate_routes(mesh, proxy, route_names(listeners))
    endpoints = translate_endpoints(mesh, proxy, clusters)
    sni_dnat = sni_dnat_clusters(mesh, proxy, clusters)  # AUTO_PASSTHROUGH gateways only
    return [*clusters, *sni_dnat, *authz_clusters(mesh, listeners), *endpoints, *listeners, *routes]


class ControlPlane:
    """One pilotfish server: xDS + admin. ``start()`` binds (port 0 works), ``stop()`` drains."""

    def __init__(self, opts: ServeOptions, metrics: Metrics | None = None) -> None:
        self.opts = opts
        self.metrics = metrics or Metrics()
        self.mesh_config: MeshConfig = load_mesh_config(opts.mesh_file) if opts.mesh_file else DEFAULT_MESH
        self.ca = MeshCa(opts.ca, self.mesh_config, self.metrics, host=opts.host)
        self.secure_xds_port = 0  # mTLS: ADS + the CSR service (Istio's 15012)
        self.ca_token_port = 0  # server TLS: CSRs with bootstrap tokens (optional)
        self._published = asyncio.Event()  # wakes the rotation task: a new certificate may be kept
        self.source = ConfigDirectory(opts.config_dir, self._on_problems) if opts.config_dir else None
        self.problems: tuple[Problem, ...] = ()
        self.mesh = MeshSnapshot(mesh=self.mesh_config)
        self.cache = SnapshotCache()
        self.publisher = Publisher(
            self.cache,
            self.ca.secrets,
            PublishHooks(
                translated=self.metrics.on_translate,
                skipped=self.metrics.on_pushes_skipped,
                pass_done=self.metrics.on_push_pass,
            ),
        )
        self.status = PushStatus(
            StatusHooks(
                pushed=lambda t: self.metrics.on_push(rt.short_name(t)),
                nacked=lambda t: self.metrics.on_nack(rt.short_name(t)),
                acked=self._on_ack,
            )
        )
        self.metrics.use_rejected_counts(self.status.rejected_counts)
        self.dropped: tuple[DroppedEndpoint, ...] = ()  # endpoints Envoy would reject, left out
        self.metrics.use_proxy_states(lambda: proxy_states(self.status))
        self.ads = AggregatedDiscoveryService(
            self.cache,
            self.status,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            authorize=self.ca.authorize_stream,
            gate=PushGate(on_length=self.metrics.on_push_queue),
        )
        self.proxies: dict[str, Proxy] = {}
        self.debouncer = Debouncer(
            self.push,
            opts.debounce_quiet,
            opts.debounce_max,
            on_failure=lambda exc: self.supervisor.report("push", f"{type(exc).__name__}: {exc}"),
        )
        self.supervisor = Supervisor(opts.supervision, self.metrics.on_task_failure)
        self._grpc: grpc.aio.Server | None = None
        self._admin: Any = None
        self._stop_watch = asyncio.Event()
        self.xds_port = 0
        self.authz: AuthzWorkers | None = None
        self._kong_admin: Any = None
        self._kong_conflicts: set[str] = set()
        self.kong_admin_port = 0
        self.credential_key = credential_key(opts)
        self.authz_port = 0
        self.admin_port = 0
        self.pushes = 0
        self._last_change: float | None = None
        self.store: Store | None = open_store(opts.store_url) if opts.store_url else None
        self.policy = rbac.load_policy(opts.admin_tokens) if opts.admin_tokens else rbac.Policy()
        self.stored = StoreState()
        self.store_error: str | None = None
        self._recovered_at: float | None = None  # when the store last came back from an outage
        self._started_at: float | None = None  # wall clock (as leases are) when start() began
        self._subscription: Subscription | None = None
        self.file_origins: dict[ResourceKey, str] = {}
        self._auto: dict[str, Registration] = {}  # proxy id → the lease its connection holds
        self._auto_renewed = 0.0
        self._background: set[asyncio.Task[None]] = set()

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._started_at = time.time()
        await self._refresh_store()
        await self._start_authz()  # before the first snapshot: it carries the Check server's port
        await self.publisher.run(self._reload_for_publisher)
        self._grpc = grpc.aio.server(options=GRPC_OPTIONS)
        self.ads.register(self._grpc)
        self.xds_port = self._grpc.add_insecure_port(f"{self.opts.host}:{self.opts.xds_port}")
        self.secure_xds_port, self.ca_token_port = self.ca.serve(self._grpc, self.opts.host)
        await self._grpc.start()
        registry = StoreApi(self) if self.store is not None else None
        admin = AdminBackend(self)
        console = ConsoleSource(
            mesh=lambda: self.mesh,
            syncz=admin.syncz,
            samples=self.metrics.samples,
            certs=self.ca.debug,
            authz_stats=lambda: self.authz.stats() if self.authz is not None else [],
        )
        self._admin, self.admin_port = await admin_http.start(
            admin,
            self.opts.host,
            self.opts.admin_port,
            registry,
            self.policy,
            extra_routes=partial(console_routes.add_routes, source=console, policy=self.policy),
            on_failure=self._reporter("admin-front-door"),
        )
        if registry is not None and self.opts.kong_admin_port is not None:
            await self._start_kong_admin(registry)
        self.supervisor.start("push-debounce", self.debouncer.run)
        self.supervisor.start("certificate-rotation", self._rotate_certificates)
        self.supervisor.start("memory-release", self._release_memory)
        if self.store is not None:
            await self._watch_store(self.store)
        if self.opts.config_dir:
            self.supervisor.start("config-watch", partial(self._watch, self.opts.config_dir))
        log.info(
            "pilotfish serving: xds=%s:%d admin=%s:%d",
            self.opts.host,
            self.xds_port,
            self.opts.host,
            self.admin_port,
        )

    async def stop(self, grace: float = 1.0) -> None:
        self._stop_watch.set()
        await self.supervisor.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._admin is not None:
            await self._admin.cleanup()
        if self._kong_admin is not None:
            await self._kong_admin.cleanup()
        if self._subscription is not None:
            await asyncio.to_thread(self._subscription.close)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        if self.authz is not None:
            await asyncio.to_thread(self.authz.stop)
        await asyncio.to_thread(self.publisher.close)

    async def _start_kong_admin(self, registry: StoreApi) -> None:
        """Kong's Admin API on its own port; the default port (8001) being taken is logged and
        the rest of the server runs on (the port is only Kong compatibility)."""
        assert self.opts.kong_admin_port is not None
        try:
            self._kong_admin, self.kong_admin_port = await kong_admin.start(
                registry, self.policy, self.opts.host, self.opts.kong_admin_port
            )
        except OSError as exc:
            log.error("Kong Admin API not started on port %d: %s", self.opts.kong_admin_port, exc)
            return
        self.supervisor.start("kong-targets", partial(kong_admin.renew_targets, registry))

    def _reporter(self, name: str) -> Callable[[str], None]:
        """For a thread that heals itself (a monitor, the admin port's front door): report each
        failure to the supervisor on the loop (counted, shown by ``/healthz``) as task ``name``."""
        loop = asyncio.get_running_loop()

        def report(error: str) -> None:  # on that thread
            with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
                loop.call_soon_threadsafe(self.supervisor.report, name, error)

        return report

    async def _start_authz(self) -> None:
        """The ext_authz Check server: worker processes sharing one port (SO_REUSEPORT), fed with
        compiled policy bundles after every reload — never by re-reading files."""
        self.authz_port = self.opts.authz_port
        if self.opts.authz_workers > 0:
            self.authz = AuthzWorkers(
                self.opts.authz_port,
                self.opts.authz_workers,
                host=self.opts.host,
                on_failure=self._reporter("authz-workers"),
            )
            self.authz_port = await asyncio.to_thread(self.authz.start)
            self.metrics.use_authz_workers(self.authz.stats)

    async def _rotate_certificates(self) -> None:
        """Sleep until the earliest certificate reaches half-life (1 s to 60 s, sooner after a
        publish, which may have issued one); then publish every proxy: new certificates, new SDS
        versions, and Envoy uses them for new handshakes without dropping connections (Istio's
        agent rotates at half-life too)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), self.ca.seconds_to_next_rotation())
            self._published.clear()
            proxies = list(self.proxies.values())
            await self.publisher.run(partial(self.ca.retain, self.mesh, proxies))
            if self.ca.due():
                await self.publish_all()

    async def _release_memory(self) -> None:
        """After pushes, hand the heap the responses passed through back to the OS (``memory``):
        checked every 2 s, trimmed only when something was published since the last time."""
        published = self.publisher.passes + self.publisher.batches
        while True:
            await asyncio.sleep(2.0)
            now = self.publisher.passes + self.publisher.batches
            if now != published:
                published = now
                await asyncio.to_thread(release_free_memory)

    async def _watch(self, root: Path) -> None:
        """Survives the directory being removed or replaced (``configdir.watch_directory``)."""
        await watch_directory(root, self._config_changed, self._stop_watch)

    def _config_changed(self) -> None:
        self._last_change = self._last_change or time.monotonic()
        self.debouncer.trigger()

    # ---- config → snapshots -----------------------------------------------------------------

    def _on_problems(self, problems: tuple[Problem, ...]) -> None:
        self.problems = problems
        errors = sum(1 for p in problems if p.severity == "error")
        self.metrics.on_config_problems(errors)

    def _reload(self) -> None:
        files = self.source.load() if self.source else ()
        self.file_origins = {r.key: f"{r.origin.file}:{r.origin.line}" for r in files}
        resources = merge_resources(files, self.stored.resources)
        extra = registration_endpoints(self.stored.registrations, resources)
        authz_address = (self.opts.host, self.authz_port) if self.authz_port else None
        self.mesh = MeshSnapshot.build(
            resources,
            self.mesh_config,
            extra,
            authz_address=authz_address,
            authz_mode=self.opts.authz_mode,
            # NetworkPolicy pods; the snapshot keeps them only when a NetworkPolicy exists
            registered=registered_workloads(self.stored.registrations, resources)
            if any(r.kind == "NetworkPolicy" for r in resources)
            else (),
        )
        self._note_dropped(tuple(dropped_endpoints(self.mesh).values()))
        if self.authz is not None:
            bundle = AuthzBundle.build(
                self.mesh.resources, self.mesh_config, self.credential_key, self.opts.store_url or ""
            )
            self.authz.publish(bundle)  # no-op if unchanged
            for conflict in set(bundle.kong.conflicts if bundle.kong else ()) - self._kong_conflicts:
                log.warning("Kong consumers/plugins: %s", conflict)  # ambiguous credential, unknown consumer
            self._kong_conflicts = set(bundle.kong.conflicts if bundle.kong else ())

    def _note_dropped(self, dropped: tuple[DroppedEndpoint, ...]) -> None:
        """Log each endpoint newly left out of xDS once (not on every push), count them all."""
        before = set(self.dropped)
        for endpoint in dropped:
            if endpoint not in before:
                log.warning("%s", endpoint)
        self.dropped = dropped
        self.metrics.on_dropped_endpoints(len(dropped))

    def _reload_for_publisher(self) -> None:
        """Worker thread: reload and make the new mesh the one snapshots are built from."""
        self._reload()
        self.publisher.use(self.mesh)

    async def push(self) -> None:
        """Debounced: rebuild the mesh and publish every connected proxy's snapshot, on the
        translation worker (the loop keeps serving streams and /healthz meanwhile)."""
        await self._refresh_store()
        proxies = list(self.proxies.values())

        def job() -> None:
            self._reload_for_publisher()
            self.publisher.publish_all(proxies, self._alive)

        await self.publisher.run(job)
        self.pushes += 1
        self._published.set()

    async def publish_all(self) -> None:
        """Rebuild every connected proxy's snapshot from the current mesh (new certificates)."""
        proxies = list(self.proxies.values())
        await self.publisher.run(partial(self.publisher.publish_all, proxies, self._alive))
        self._published.set()

    def _alive(self, proxy_id: str) -> bool:
        return proxy_id in self.proxies

    # ---- ADS hooks ---------------------------------------------------------------------------

    def _on_connect(self, proxy: Proxy) -> None:
        """A stream became the proxy's live one (an older stream of the id was closed): its
        metadata decides the proxy's config from now on."""
        replaced = self.proxies.get(proxy.id)
        if replaced is not None:
            self.metrics.on_disconnect(str(replaced.type))
        self.proxies[proxy.id] = proxy
        self.metrics.on_connect(str(proxy.type))
        self.publisher.connected(proxy, self._alive)
        self._published.set()
        self._auto_register(proxy)

    def _on_disconnect(self, proxy: Proxy) -> None:
        """The proxy's live stream ended (a replaced stream's end is not reported)."""
        self.metrics.on_disconnect(str(proxy.type))
        self.proxies.pop(proxy.id, None)
        self.publisher.forget(proxy.id)
        self._auto_unregister(proxy)

    def _on_ack(self, type_name: str, push_to_ack: float) -> None:
        started = self.debouncer.first_change_of_last_push
        latency = time.monotonic() - started if started is not None else push_to_ack
        self.metrics.on_ack_latency(rt.short_name(type_name), max(latency, push_to_ack))

    # ---- the store ---------------------------------------------------------------------------

    async def run_store(self, call: Callable[[], T]) -> T:
        """A blocking store call in a thread; every outcome updates the store's health."""
        try:
            result = await asyncio.to_thread(call)
        except StoreUnavailable as exc:
            self._store_health(str(exc))
            raise
        self._store_health(None)
        return result

    def _store_health(self, error: str | None) -> None:
        was_down = self.store_error is not None
        self.store_error = error
        self.metrics.on_store_up(error is None)
        if error is not None and not was_down:
            log.error("store unavailable, serving the last state read: %s", error)
        elif error is None and was_down:
            log.warning("store is back")
            self._recovered_at = time.monotonic()
            self.debouncer.trigger()  # changes made meanwhile elsewhere were not heard

    async def _refresh_store(self) -> None:
        if self.store is None:
            return
        with contextlib.suppress(StoreUnavailable):  # keep the last state; health says why
            self.stored = await self.run_store(partial(read_store, self.store, self.stored))

    async def _watch_store(self, store: Store) -> None:
        loop = asyncio.get_running_loop()

        def changed(revision: int) -> None:  # on a store thread
            loop.call_soon_threadsafe(self.debouncer.trigger)

        self._subscription = await asyncio.to_thread(store.watch, changed)
        self.supervisor.start("lease-expiry", partial(self._lease_loop, store))

    async def _lease_loop(self, store: Store) -> None:
        while True:
            await asyncio.sleep(self.opts.lease_interval)
            with contextlib.suppress(StoreUnavailable):
                await self._lease_tick(store, time.time())

    async def _lease_tick(self, store: Store, now: float) -> None:
        """Renew connected proxies' leases, then reap expired ones (or, during an outage, probe)."""
        if self._auto and now - self._auto_renewed >= self.opts.auto_register_grace / 3:
            await self.run_store(partial(renew, store, tuple(self._auto.values()), now))
            self._auto_renewed = now
        if self.store_error is not None:
            await self.run_store(store.revision)
            return
        if self._may_reap():
            reaped = await self.run_store(partial(store.expire, now, self._reap_floor(now)))
            if reaped:
                # One line per tick that removed something: a lapsed lease takes a workload out
                # of the mesh, which an operator needs to see (its client stopped renewing).
                log.info("leases expired, endpoints removed: %s", _listed(reaped))
                self.debouncer.trigger()

    def _may_reap(self) -> bool:
        """Not within ``lease_recovery_grace`` of the store coming back."""
        since = self._recovered_at
        return since is None or time.monotonic() - since >= self.opts.lease_recovery_grace

    def _reap_floor(self, now: float) -> float | None:
        """A lease that lapsed before this server started could not be renewed (nothing
        answered its heartbeats): for ``lease_recovery_grace`` after the start only leases that
        lapsed since are reaped, so a restart longer than a TTL does not take every registered
        workload out of the mesh until its next heartbeat. Consul resets session TTLs on leader
        failover for the same reason (its sessions' TTL is a lower bound on invalidation)."""
        started = self._started_at
        if started is None or now - started >= self.opts.lease_recovery_grace:
            return None
        return started

    # ---- auto-registration (Istio: WorkloadEntry auto-registration) ---------------------------

    def _auto_register(self, proxy: Proxy) -> None:
        group = proxy.labels.get(AUTO_REGISTER_LABEL)
        if self.store is None or not group or proxy.id in self._auto:
            return
        labels = {k: v for k, v in proxy.labels.items() if k != AUTO_REGISTER_LABEL}
        lease = auto_registration(
            group,
            proxy.namespace,
            proxy.ip,
            labels,
            proxy.service_account,
            self.opts.auto_register_grace,
            proxy.locality,
        )
        self._auto[proxy.id] = lease
        self._in_background(partial(self.store.register, lease, time.time()), f"auto-register {lease.id}")

    def _auto_unregister(self, proxy: Proxy) -> None:
        """Stop renewing; one last renewal starts the grace period now."""
        lease = self._auto.pop(proxy.id, None)
        if lease is not None and self.store is not None:
            self._in_background(partial(self.store.heartbeat, lease.id, time.time()), f"release {lease.id}")

    def _in_background(self, call: Callable[[], object], what: str) -> None:
        async def run() -> None:
            try:
                await self.run_store(call)
            except StoreUnavailable as exc:  # the lease loop renews it once the store is back
                log.warning("%s: %s", what, exc)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(partial(_log_failure, what))


def _log_failure(what: str, task: asyncio.Task[None]) -> None:
    """A one-off background call that failed in a way its own handler did not expect."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", what, exc_info=task.exception())


class AdminBackend:
    """What the admin HTTP API may see of the control plane (``admin.http.AdminBackend``)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def health(self) -> tuple[bool, list[str]]:
        reasons = self.cp.supervisor.problems()
        if self.cp.store_error is not None:
            reasons.insert(0, f"store unavailable (serving the last state read): {self.cp.store_error}")
        return not reasons, reasons

    def metrics(self) -> bytes:
        return self.cp.metrics.exposition()

    def syncz(self) -> list[dict[str, Any]]:
        out = []
        for connection in self.cp.status.connections():
            types = {
                rt.short_name(t): {**_type_status(s), "state": str(s.state)}
                for t, s in connection.types.items()
            }
            out.append(
                {
                    "proxy": connection.proxy.id,
                    "namespace": connection.proxy.namespace,
                    "kind": str(connection.kind),
                    "connected_at": connection.connected_at,
                    "state": str(connection.state),
                    "types": types,
                    "authz": dict(
                        zip(("mode", "fallback"), enforcement(self.cp.mesh, connection.proxy), strict=True)
                    ),
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
                "resources": [redact_keys(_to_json(t, r.body)) for r in snapshot.named(t).values()],
            }
            for t in wanted
        }

    def certs(self) -> dict[str, Any]:
        return self.cp.ca.debug()

    def problemz(self) -> dict[str, Any]:
        """What is not served as written, and why: config problems, endpoints left out of xDS,
        resources proxies rejected."""
        source = self.cp.source
        return {
            "config": [str(p) for p in self.cp.problems],
            "config_dir": source.debug() if source is not None else None,
            "dropped_endpoints": [{**dataclasses.asdict(d), "message": str(d)} for d in self.cp.dropped],
            "rejected": [
                {"proxy": c.proxy.id, "type": rt.short_name(t), "resource": name, "message": nack.message}
                for c in self.cp.status.connections()
                for t, s in c.types.items()
                for name, nack in s.rejected.items()
            ],
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


def _type_status(status: TypeStatus) -> dict[str, Any]:
    """A type's push status as JSON, without the names of the last response (thousands, on a
    large mesh; ``rejected`` names what matters)."""
    out = dataclasses.asdict(dataclasses.replace(status, sent_names=None, sent_changed=None))
    del out["sent_names"], out["sent_changed"]
    return out


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


def redact_keys(resource: Any) -> Any:
    """A resource as JSON with every ``private_key`` replaced: /debug never shows a key."""
    if isinstance(resource, dict):
        return {k: "[redacted]" if k == "private_key" else redact_keys(v) for k, v in resource.items()}
    if isinstance(resource, list):
        return [redact_keys(v) for v in resource]
    return resource


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


@dataclass(frozen=True, slots=True)
class StoreState:
    """The store as last read: what the mesh keeps serving while the store is unreachable."""

    revision: int = -1
    resources: tuple[Resource[Any], ...] = ()
    registrations: tuple[Registration, ...] = ()


def _listed(ids: list[str], shown: int = 20) -> str:
    """``ids`` for a log line: the first ``shown`` and how many more (a mass expiry is one line)."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


def read_store(store: Store, last: StoreState) -> StoreState:
    """Blocking. The revision first, then the state (the store's contract): a write in between
    is read now and heard again later, never missed. Unchanged revision: nothing to read."""
    revision = store.revision()
    if revision == last.revision:
        return last
    resources = tuple(stored.resource for stored in store.list())
    return StoreState(revision, resources, tuple(store.registrations()))


def merge_resources(
    files: tuple[Resource[Any], ...], stored: tuple[Resource[Any], ...]
) -> tuple[Resource[Any], ...]:
    """The config directory wins a key both define: the API refuses to write it, so a stored
    copy can only predate the file, and the file is what the operator sees."""
    keys = {r.key for r in files}
    return (*files, *(r for r in stored if r.key not in keys))


def renew(store: Store, leases: tuple[Registration, ...], now: float) -> None:
    """Blocking: renew each lease, registering again one that lapsed (the store was down)."""
    for lease in leases:
        if store.heartbeat(lease.id, now) is None:
            store.register(lease, now)


def credential_key(opts: ServeOptions) -> bytes:
    path = opts.credential_key_file or (opts.ca.ca_dir / "credential.key" if opts.ca.ca_dir else None)
    if path is None:
        log.warning("no --credential-key or --ca-dir: Consumer credentials are keyed for this process only")
        return secrets.token_bytes(32)
    return load_key(path)


class StoreApi:
    """What the resource and registration API may use (``admin.api.RegistryBackend``)."""

    def __init__(self, cp: ControlPlane) -> None:
        assert cp.store is not None
        self.cp = cp
        self.store: Store = cp.store

    async def run(self, call: Callable[[], T]) -> T:
        return await self.cp.run_store(call)

    def file_origin(self, key: ResourceKey) -> str | None:
        return self.cp.file_origins.get(key)

    def registration_namespace(self, service: str) -> str:
        return registration_namespace(service, self.cp.mesh.resources)

    def now(self) -> float:
        return time.time()

    def seal(self, doc: dict[str, Any]) -> dict[str, Any]:
        return seal_consumer(doc, self.cp.credential_key)

    @property
    def credential_key(self) -> bytes:
        return self.cp.credential_key


async def serve_forever(opts: ServeOptions, ready: Callable[[ControlPlane], None] | None = None) -> None:
    """Run until cancelled (SIGINT/SIGTERM in the CLI)."""
    tune_gc()  # a long-running server with a large heap (memory.py)
    tune_switch_interval()  # /healthz from the admin port's thread while the loop is busy
    cp = ControlPlane(opts)
    await cp.start()
    if ready:
        ready(cp)
    try:
        await asyncio.Event().wait()
    finally:
        await cp.stop()
