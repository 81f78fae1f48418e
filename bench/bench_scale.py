"""xDS at scale: N simulated Envoys on ADS (SotW) against a real ``pilotfish serve`` (issue 11).

The mesh: a ``serve --config DIR`` directory of M STATIC ServiceEntries (``svc-I.ns-(I%20)``, one
HTTP port, E endpoints each, 100 per file), plus two small files the bench rewrites: ``we.yaml``,
the E WorkloadEntries of ``svc-0`` (an endpoint change), and ``dr.yaml``, a DestinationRule of
``svc-1`` whose subset is renamed (a DestinationRule change). SQLite store and CA in a temporary
directory, free ports, the default 100 ms debounce.

The proxies: N sidecars with the node ``pilotfish bootstrap`` writes (``sidecar~IP~NAME.NS~NS...``,
NAMESPACE/LABELS/SERVICE_ACCOUNT/WORKLOAD_NAME metadata, distinct IPs), spread over a few client
processes (grpc.aio, one channel and one ADS stream each), so the load generator does not share
pilotfish's process. Each follows Envoy's SotW flow: CDS (wildcard), then EDS for the clusters'
EDS names, LDS once the clusters are warm, RDS for the listeners' route names, SDS for the
secrets clusters and listeners name; every response is ACKed with its version_info and nonce and
the current resource names (a subscription change rides on the ACK or on a request of its own,
as Envoy's mux does). With ``--delta`` the same flow runs on incremental ADS (wildcard CDS/LDS,
subscribe/unsubscribe for the rest, ACK by nonce). A stream that fails is retried with Envoy's
backoff, and the failures are reported. Only what that needs is parsed, memoized per response
body and per resource in each client process (proxies of one scope receive the same bytes).

Measured in one run:
  * initial sync: from "connect" until the last proxy has ACKed CDS, EDS, LDS, RDS and SDS with
    every name it wants received;
  * RSS of the pilotfish process (and of the baseline server: grpc's own per-stream cost)
    before the clients connect and after they are synced;
  * ``GET /healthz`` every 20 ms from a thread (a new connection each time): latency by phase
    (initial sync, endpoint changes, DestinationRule changes);
  * endpoint-change fan-out: from the rename of ``we.yaml`` until each proxy receives the
    ClusterLoadAssignment carrying the new address (p50/p99/max over proxies × trials);
  * DestinationRule-change fan-out: from the rename of ``dr.yaml`` until each proxy receives the
    CDS response with the renamed subset's cluster;
  * BASELINE, same run, same client processes and N streams: a minimal grpc.aio ADS server in
    its own process that answers each subscription with the pre-serialized state pilotfish
    served (as one proxy saw it) and, per trial, writes the exact response bytes pilotfish sent
    for that change to every stream: the floor of grpc + clients on this machine. Ratios are
    pilotfish/baseline.

    .venv/bin/python bench/bench_scale.py [--proxies 200] [--services 100] [--endpoints 5] [--trials 5]
    .venv/bin/python bench/bench_scale.py --proxies 1000 --services 1000 --trials 3   # the aim
    .venv/bin/python bench/bench_scale.py --proxies 1000 --services 1000 --trials 3 --delta
    .venv/bin/python bench/bench_scale.py --proxies 1000 --services 1000 --trials 3 --replicas 2

``--replicas R`` runs R ``serve`` processes on the same config directory (sharing the first one's
CA directory, as replicas share a CA) and connects proxy P to replica P mod R; RSS and CPU are
summed over the replicas, ``/healthz`` is probed on the first.

Aims (issue 11, 1,000 × 1,000 × 5 on 2 cores): endpoint change p99 <= 500 ms, DestinationRule
change p99 <= 2 s, initial sync <= 15 s, <= 0.3 MB RSS per connected proxy, /healthz <= 50 ms
while pushing. ``--no-baseline`` skips the baseline; progress lines on stderr name the serve pid
for a profiler (``py-spy record --pid PID``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import math
import multiprocessing
import os
import random
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
# gRPC core logs every GOAWAY at INFO; with 1,000 connections that buries the report.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402
from envoy.config.cluster.v3 import cluster_pb2  # noqa: E402
from envoy.config.core.v3 import base_pb2  # noqa: E402
from envoy.config.listener.v3 import listener_pb2  # noqa: E402
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: E402
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: E402
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from harness.pilotfish import PilotfishProcess  # noqa: E402

from pilotfish.bootstrap import BootstrapOptions, node  # noqa: E402
from pilotfish.xds import resources as rt  # noqa: E402

CDS, EDS, LDS, RDS, SDS = rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE, rt.SECRET
ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
METHOD = f"/{ADS_SERVICE}/StreamAggregatedResources"
DELTA_METHOD = f"/{ADS_SERVICE}/DeltaAggregatedResources"
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # one connection per proxy, as N Envoys would have
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
]
NAMESPACES = 20
PORT = 9080
CHANGED_SERVICE, RULED_SERVICE = 0, 1
SERVICES_PER_FILE = 100
RETRY_INITIAL, RETRY_MAX = 0.5, 30.0  # Envoy's ADS stream retry backoff (seconds)
WORKER_SETTLE = 0.3  # quiet time between arming the clients and triggering a change


# ---- the mesh -----------------------------------------------------------------------------------


def namespace(i: int) -> str:
    return f"ns-{i % NAMESPACES}"


def host(i: int) -> str:
    return f"svc-{i}.{namespace(i)}.svc.cluster.local"


def endpoint_ip(service: int, endpoint: int, endpoints: int) -> str:
    n = service * endpoints + endpoint
    return f"10.{1 + n // 62500}.{n // 250 % 250}.{n % 250 + 1}"


def proxy_ip(p: int) -> str:
    return f"10.200.{p // 250}.{p % 250 + 1}"


def changed_ip(trial: int) -> str:
    return f"10.254.{trial // 250}.{trial % 250 + 1}"


def service_entry(i: int, endpoints: int) -> str:
    if i == CHANGED_SERVICE:
        where = f"workloadSelector: {{labels: {{app: svc-{i}}}}}"
    else:
        eps = ", ".join(
            f"{{address: {endpoint_ip(i, e, endpoints)}, labels: {{version: v1}}}}" for e in range(endpoints)
        )
        where = f"endpoints: [{eps}]"
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}, namespace: {namespace(i)}}}
spec:
  hosts: [{host(i)}]
  location: MESH_INTERNAL
  ports: [{{number: {PORT}, name: http, protocol: HTTP}}]
  resolution: STATIC
  {where}
"""


def workload_entries(endpoints: int, trial: int | None) -> str:
    """The WorkloadEntries of the changed service; trial k moves the first one to ``changed_ip(k)``."""
    docs = []
    for e in range(endpoints):
        address = changed_ip(trial) if (trial is not None and e == 0) else endpoint_ip(0, e, endpoints)
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: svc-0-{e}, namespace: {namespace(CHANGED_SERVICE)}}}
spec: {{address: {address}, labels: {{app: svc-0, version: v1}}}}
""")
    return "---\n".join(docs)


def subset(trial: int | None) -> str:
    return "base" if trial is None else f"t{trial}"


def destination_rule(trial: int | None) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{RULED_SERVICE}, namespace: {namespace(RULED_SERVICE)}}}
spec:
  host: {host(RULED_SERVICE)}
  trafficPolicy: {{loadBalancer: {{simple: LEAST_REQUEST}}}}
  subsets: [{{name: {subset(trial)}, labels: {{version: v1}}}}]
"""


def eds_marker(trial: int) -> bytes:
    """The new address as it sits in a ClusterLoadAssignment: length-prefixed, so 10.254.0.1 does
    not match inside 10.254.0.12."""
    ip = changed_ip(trial).encode()
    return bytes([len(ip)]) + ip


def cds_marker(trial: int) -> bytes:
    return f"outbound|{PORT}|{subset(trial)}|{host(RULED_SERVICE)}".encode()


def write_atomically(path: Path, text: str) -> Callable[[], None]:
    """Write ``text`` next to ``path``; the returned function renames it into place (the change)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    return lambda: tmp.rename(path)


def write_config(config: Path, services: int, endpoints: int) -> None:
    config.mkdir(parents=True)
    for first in range(0, services, SERVICES_PER_FILE):  # files stay well inside pilotfish.limits
        docs = (service_entry(i, endpoints) for i in range(first, min(services, first + SERVICES_PER_FILE)))
        (config / f"services-{first // SERVICES_PER_FILE:03d}.yaml").write_text("---\n".join(docs))
    (config / "we.yaml").write_text(workload_entries(endpoints, None))
    (config / "dr.yaml").write_text(destination_rule(None))


# ---- wire helpers -------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, value: str) -> bytes:
    return _field(number, value.encode()) if value else b""


def encode_request(
    type_url: str, names_blob: bytes, version: str = "", nonce: str = "", node: bytes = b""
) -> bytes:
    """A DiscoveryRequest (version_info 1, node 2, resource_names 3, type_url 4, response_nonce 5);
    ``names_blob`` is the resource_names fields, encoded once per distinct name set."""
    node_field = _field(2, node) if node else b""
    return _text(1, version) + node_field + names_blob + _text(4, type_url) + _text(5, nonce)


def encode_response(type_url: str, anys: Iterable[bytes], version: str = "1", nonce: str = "1") -> bytes:
    return _text(1, version) + b"".join(_field(2, a) for a in anys) + _text(4, type_url) + _text(5, nonce)


def first_string(message: bytes) -> str:
    """Field 1 of a message when it is a string written first (``name``/``cluster_name`` of every
    ADS resource type: protobuf writes fields in number order)."""
    if not message or message[0] != 0x0A:
        return ""
    length, shift, i = 0, 0, 1
    while True:
        byte = message[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            break
        shift += 7
    return message[i : i + length].decode()


# ---- what a proxy reads from clusters and listeners (memoized by bytes) -------------------------

_UPSTREAM_TLS = "UpstreamTlsContext"
_DOWNSTREAM_TLS = "DownstreamTlsContext"
_HCM = "HttpConnectionManager"


def _tls_secret_names(context: Any) -> set[str]:
    common = context.common_tls_context
    names = {c.name for c in common.tls_certificate_sds_secret_configs}
    if common.HasField("validation_context_sds_secret_config"):
        names.add(common.validation_context_sds_secret_config.name)
    if common.HasField("combined_validation_context"):
        names.add(common.combined_validation_context.validation_context_sds_secret_config.name)
    return {n for n in names if n}


def _socket_secrets(socket: Any, kind: str) -> set[str]:
    typed = socket.typed_config
    if not typed.type_url.endswith(kind):
        return set()
    context = tls_pb2.UpstreamTlsContext() if kind == _UPSTREAM_TLS else tls_pb2.DownstreamTlsContext()
    context.ParseFromString(typed.value)
    return _tls_secret_names(context)


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    eds_name: str | None
    secrets: frozenset[str]


def cluster_facts(raw: bytes) -> ClusterFacts:
    cluster = cluster_pb2.Cluster.FromString(raw)
    eds = None
    if cluster.type == cluster_pb2.Cluster.EDS:
        eds = cluster.eds_cluster_config.service_name or cluster.name
    secrets: set[str] = set()
    sockets = [m.transport_socket for m in cluster.transport_socket_matches]
    if cluster.HasField("transport_socket"):
        sockets.append(cluster.transport_socket)
    for socket in sockets:
        secrets |= _socket_secrets(socket, _UPSTREAM_TLS)
    return ClusterFacts(eds, frozenset(secrets))


@dataclass(frozen=True, slots=True)
class ListenerFacts:
    routes: frozenset[str]
    secrets: frozenset[str]


def listener_facts(raw: bytes) -> ListenerFacts:
    listener = listener_pb2.Listener.FromString(raw)
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    routes: set[str] = set()
    secrets: set[str] = set()
    for chain in chains:
        if chain.HasField("transport_socket"):
            secrets |= _socket_secrets(chain.transport_socket, _DOWNSTREAM_TLS)
        for f in chain.filters:
            if f.typed_config.type_url.endswith(_HCM):
                hcm = http_connection_manager_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                if hcm.HasField("rds"):
                    routes.add(hcm.rds.route_config_name)
    return ListenerFacts(frozenset(routes), frozenset(secrets))


# ---- a simulated Envoy --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseFacts:
    names: frozenset[str]  # the resources in the response
    children: frozenset[str]  # CDS: the clusters' EDS names; LDS: the listeners' route names
    secrets: frozenset[str]  # the SDS names they reference


@dataclass(slots=True)
class TypeState:
    names: frozenset[str] = frozenset()
    requested: bool = False
    version: str = ""
    nonce: str = ""
    received: set[str] = field(default_factory=set)
    got_response: bool = False


class SimProxy:
    """One Envoy's ADS SotW client: subscribes, follows references, ACKs every response."""

    method = METHOD

    def __init__(self, client: Client, index: int, node_bytes: bytes, record: bool) -> None:
        self.client, self.index, self.node_bytes, self.record = client, index, node_bytes, record
        self.types = {t: TypeState() for t in (CDS, EDS, LDS, RDS, SDS)}
        self.cluster_secrets: frozenset[str] = frozenset()
        self.listener_secrets: frozenset[str] = frozenset()
        self.synced_at: float | None = None
        self.hit_at: float | None = None
        self.failures: list[str] = []  # why each stream ended; the proxy reconnected after each
        self.state: dict[str, dict[str, bytes]] = {}  # only when recording: type -> name -> Any bytes
        self.call: Any = None
        self.sent_node = False

    def phase(self) -> str:
        """Where an unsynced proxy stands, for the error report."""
        got = [rt.short_name(t) for t, s in self.types.items() if s.got_response]
        missing = [
            f"{rt.short_name(t)} {len(s.names - s.received)}"
            for t, s in self.types.items()
            if s.names - s.received
        ]
        return f"received {'+'.join(got) or 'nothing'}; missing names: {', '.join(missing) or 'none'}"

    async def run(self, channel: grpc.aio.Channel) -> None:
        """Keep an ADS stream up: when it fails or the server ends it, start a new one after a
        jittered exponential backoff, as Envoy's GrpcStream does (0.5 s doubling, at most 30 s),
        with a fresh subscription state (SotW: a new stream starts from nothing)."""
        backoff = RETRY_INITIAL
        while True:
            started = time.monotonic()
            try:
                await self._stream(channel)
                failure = "the server ended the stream"
            except asyncio.CancelledError:
                raise
            except Exception as error:
                detail = f"{error.code()}" if isinstance(error, grpc.aio.AioRpcError) else repr(error)
                failure = f"{type(error).__name__} {detail}"[:200]
            self.failures.append(failure)
            if time.monotonic() - started > RETRY_MAX:
                backoff = RETRY_INITIAL  # the stream had been healthy: start the backoff over
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, RETRY_MAX)

    async def _stream(self, channel: grpc.aio.Channel) -> None:
        self.types = {t: TypeState() for t in (CDS, EDS, LDS, RDS, SDS)}
        self.cluster_secrets = self.listener_secrets = frozenset()
        self.sent_node = False
        self.call = channel.stream_stream(self.method)()
        await self._subscribe(CDS, frozenset())
        while (raw := await self.call.read()) is not grpc.aio.EOF:
            await self._on_response(raw, time.monotonic())

    async def _send(self, type_url: str) -> None:
        state = self.types[type_url]
        node_bytes = b"" if self.sent_node else self.node_bytes
        self.sent_node = True
        blob = self.client.names_blob(state.names)
        await self.call.write(encode_request(type_url, blob, state.version, state.nonce, node_bytes))

    async def _subscribe(self, type_url: str, names: frozenset[str]) -> None:
        """Start a watch, or change its names (Envoy sends the last version/nonce along)."""
        state = self.types[type_url]
        if state.requested and state.names == names:
            return
        state.names, state.requested = names, True
        await self._send(type_url)

    async def _on_response(self, raw: bytes, now: float) -> None:
        client = self.client
        response = discovery_pb2.DiscoveryResponse.FromString(raw)
        type_url = response.type_url
        self._note_arrival(raw, type_url, now)
        state = self.types[type_url]
        state.version, state.nonce, state.got_response = response.version_info, response.nonce, True
        facts = client.response_facts(raw, response)
        if self.record:
            held = self.state.setdefault(type_url, {})
            if type_url in rt.FULL_STATE_TYPES:
                held.clear()
            for a in response.resources:
                held[first_string(a.value)] = a.SerializeToString()
        if type_url == CDS:
            self.cluster_secrets = facts.secrets
            await self._subscribe(EDS, facts.children)
            await self._follow_secrets()
        elif type_url == LDS:
            self.listener_secrets = facts.secrets
            await self._subscribe(RDS, facts.children)
            await self._follow_secrets()
        else:
            state.received |= facts.names
        await self._send(type_url)  # the ACK: same version_info and response_nonce
        await self._after_update()

    def _note_arrival(self, raw: bytes, type_url: str, now: float) -> None:
        """The armed change arrived when its marker is in a response of the armed type."""
        client = self.client
        armed = client.armed
        if armed is not None and self.hit_at is None and type_url == armed[0] and armed[1] in raw:
            self.hit_at = now
            if client.hit_payload is None:
                client.hit_payload = raw  # what the baseline replays: the first arrival's bytes
            client.note_hit()

    async def _follow_secrets(self) -> None:
        names = self.cluster_secrets | self.listener_secrets
        if names or self.types[SDS].requested:
            await self._subscribe(SDS, names)

    async def _after_update(self) -> None:
        cds, eds, lds = self.types[CDS], self.types[EDS], self.types[LDS]
        clusters_warm = cds.got_response and eds.names <= eds.received
        if clusters_warm and not lds.requested:
            await self._subscribe(LDS, frozenset())  # Envoy starts LDS once CDS has initialized
        children_held = all(self.types[t].names <= self.types[t].received for t in (RDS, SDS))
        if self.synced_at is None and clusters_warm and lds.got_response and children_held:
            self.synced_at = time.monotonic()
            self.client.note_synced()


class DeltaProxy(SimProxy):
    """The same Envoy on incremental ADS (``DeltaAggregatedResources``): wildcard CDS and LDS,
    explicit subscribe/unsubscribe for EDS, RDS and SDS, every response ACKed by its nonce; what it
    holds is kept per resource, updated by ``resources`` and ``removed_resources``."""

    method = DELTA_METHOD

    def __init__(self, client: Client, index: int, node_bytes: bytes, record: bool) -> None:
        super().__init__(client, index, node_bytes, record)
        self.node = base_pb2.Node.FromString(node_bytes)
        self.clusters: dict[str, ClusterFacts] = {}
        self.listeners: dict[str, ListenerFacts] = {}

    async def _stream(self, channel: grpc.aio.Channel) -> None:
        self.clusters, self.listeners = {}, {}
        await super()._stream(channel)

    async def _request(self, **fields: Any) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(**fields)
        if not self.sent_node:
            request.node.CopyFrom(self.node)
            self.sent_node = True
        await self.call.write(request.SerializeToString())

    async def _subscribe(self, type_url: str, names: frozenset[str]) -> None:
        state = self.types[type_url]
        if state.requested and state.names == names:
            return
        added, gone = sorted(names - state.names), sorted(state.names - names)
        first = not state.requested
        state.names, state.requested = names, True
        if first or added or gone:  # the first request of a type with no names: the wildcard
            await self._request(
                type_url=type_url, resource_names_subscribe=added, resource_names_unsubscribe=gone
            )

    async def _on_response(self, raw: bytes, now: float) -> None:
        client = self.client
        response = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
        type_url = response.type_url
        self._note_arrival(raw, type_url, now)
        state = self.types[type_url]
        state.nonce, state.got_response = response.nonce, True
        removed = set(response.removed_resources)
        if self.record:
            held = self.state.setdefault(type_url, {})
            for name in removed:
                held.pop(name, None)
            for resource in response.resources:
                held[resource.name] = resource.SerializeToString()
        if type_url == CDS:
            for name in removed:
                self.clusters.pop(name, None)
            self.clusters.update((r.name, client.cluster(r.resource.value)) for r in response.resources)
            self.cluster_secrets = frozenset().union(*(f.secrets for f in self.clusters.values()))
            await self._subscribe(EDS, frozenset(f.eds_name for f in self.clusters.values() if f.eds_name))
            await self._follow_secrets()
        elif type_url == LDS:
            for name in removed:
                self.listeners.pop(name, None)
            self.listeners.update((r.name, client.listener(r.resource.value)) for r in response.resources)
            self.listener_secrets = frozenset().union(*(f.secrets for f in self.listeners.values()))
            await self._subscribe(RDS, frozenset().union(*(f.routes for f in self.listeners.values())))
            await self._follow_secrets()
        else:  # a subscribed name reported removed does not exist: answered all the same
            state.received |= {sys.intern(r.name) for r in response.resources} | removed
        await self._request(type_url=type_url, response_nonce=response.nonce)  # the ACK
        await self._after_update()


class Client:
    """One client process: its share of the proxies, commanded over a pipe by the bench."""

    def __init__(self, conn: Connection, indices: Sequence[int]) -> None:
        self.conn, self.indices = conn, list(indices)
        self.proxies: list[SimProxy] = []
        self.channels: list[grpc.aio.Channel] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.armed: tuple[str, bytes] | None = None
        self.hit_payload: bytes | None = None
        self._responses: dict[bytes, ResponseFacts] = {}
        self._clusters: dict[bytes, ClusterFacts] = {}
        self._listeners: dict[bytes, ListenerFacts] = {}
        self._blobs: dict[frozenset[str], bytes] = {}
        self._hits = 0
        self._synced = 0
        self._all_hit = asyncio.Event()
        self._all_synced = asyncio.Event()
        self.nodes = [node_bytes(p) for p in self.indices]

    def response_facts(self, raw: bytes, response: Any) -> ResponseFacts:
        """What a proxy needs from a response, memoized by the response's resources: proxies of one
        scope get the same bytes, with only version_info and nonce of their own around them."""
        head = _text(1, response.version_info)
        tail = _text(4, response.type_url) + _text(5, response.nonce)
        key = raw[len(head) : len(raw) - len(tail)] if raw.startswith(head) and raw.endswith(tail) else None
        facts = self._responses.get(key) if key is not None else None
        if facts is None:
            facts = self._read_response(response)
            if key is not None:
                self._responses[key] = facts
        return facts

    def _read_response(self, response: Any) -> ResponseFacts:
        anys = [a.value for a in response.resources]
        names = frozenset(sys.intern(first_string(a)) for a in anys)
        if response.type_url == CDS:
            clusters = [self.cluster(a) for a in anys]
            eds = frozenset(f.eds_name for f in clusters if f.eds_name)
            return ResponseFacts(names, eds, frozenset().union(*(f.secrets for f in clusters)))
        if response.type_url == LDS:
            listeners = [self.listener(a) for a in anys]
            routes = frozenset().union(*(f.routes for f in listeners))
            return ResponseFacts(names, routes, frozenset().union(*(f.secrets for f in listeners)))
        return ResponseFacts(names, frozenset(), frozenset())

    def cluster(self, raw: bytes) -> ClusterFacts:
        facts = self._clusters.get(raw)
        if facts is None:
            facts = self._clusters[raw] = cluster_facts(raw)
        return facts

    def listener(self, raw: bytes) -> ListenerFacts:
        facts = self._listeners.get(raw)
        if facts is None:
            facts = self._listeners[raw] = listener_facts(raw)
        return facts

    def names_blob(self, names: frozenset[str]) -> bytes:
        blob = self._blobs.get(names)
        if blob is None:
            blob = self._blobs[names] = b"".join(_field(3, n.encode()) for n in sorted(names))
        return blob

    def note_hit(self) -> None:
        self._hits += 1
        if self._hits == len(self.proxies):
            self._all_hit.set()

    def note_synced(self) -> None:
        self._synced += 1
        if self._synced == len(self.proxies):
            self._all_synced.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.conn.send(("ready",))
        while True:
            try:
                command, *args = await loop.run_in_executor(None, self.conn.recv)
            except EOFError:  # the bench is gone
                command, args = "exit", []
            if command == "exit":
                await self.disconnect()
                return
            self.conn.send(await getattr(self, command)(*args))

    async def connect(self, targets: Sequence[str], delta: bool) -> tuple[str]:
        """Proxy P connects to ``targets[P % len(targets)]`` (replicas behind a balancer)."""
        self._synced, self._all_synced = 0, asyncio.Event()
        self._responses.clear()
        self._clusters.clear()
        self._listeners.clear()
        kind = DeltaProxy if delta else SimProxy
        self.proxies = [
            kind(self, p, n, record=(p == 0)) for p, n in zip(self.indices, self.nodes, strict=True)
        ]
        self.channels = [
            grpc.aio.insecure_channel(targets[p % len(targets)], options=CHANNEL_OPTIONS)
            for p in self.indices
        ]
        self.tasks = [asyncio.create_task(p.run(c)) for p, c in zip(self.proxies, self.channels, strict=True)]
        return ("connected",)

    async def wait_synced(self, seconds: float) -> tuple[list[float | None], Counter[str], dict[str, Any]]:
        await self._wait(self._all_synced, seconds)
        recorded = next((p.state for p in self.proxies if p.record), {})
        notes = self._failures()
        notes.update(f"proxies not synced: {p.phase()}" for p in self.proxies if p.synced_at is None)
        return [p.synced_at for p in self.proxies], notes, recorded

    async def arm(self, type_url: str, marker: bytes) -> tuple[str]:
        self.armed = (type_url, marker)
        self._hits, self._all_hit = 0, asyncio.Event()
        for p in self.proxies:
            p.hit_at = None
        self.hit_payload = None
        return ("armed",)

    async def collect(self, seconds: float) -> tuple[list[float | None], Counter[str], bytes | None]:
        await self._wait(self._all_hit, seconds)
        self.armed = None
        payload = self.hit_payload
        return [p.hit_at for p in self.proxies], self._failures(), payload

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        if not self.proxies:
            return
        with contextlib.suppress(TimeoutError):  # the caller reports who is missing
            await asyncio.wait_for(event.wait(), seconds)

    def _failures(self) -> Counter[str]:
        """Stream failures since connect, each followed by a reconnect, by cause."""
        return Counter(
            f"stream failures ({why}), each retried as Envoy does" for p in self.proxies for why in p.failures
        )

    async def disconnect(self) -> tuple[str]:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.channels), return_exceptions=True)
        self.tasks, self.channels, self.proxies = [], [], []
        return ("disconnected",)


def node_bytes(p: int) -> bytes:
    """The Node ``pilotfish bootstrap`` would write for sidecar ``client-P`` (distinct IPs)."""
    opts = BootstrapOptions(
        f"client-{p}",
        namespace(p),
        {"app": f"client-{p % 50}", "version": "v1"},
        ip=proxy_ip(p),
    )
    message = json_format.ParseDict(node(opts), base_pb2.Node())
    return bytes(message.SerializeToString())


def raise_nofile() -> None:
    """Each proxy is a connection (two file descriptors in the bench, one in pilotfish)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else max(soft, hard)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def client_main(conn: Connection, indices: Sequence[int]) -> None:
    raise_nofile()
    asyncio.run(_client_main(conn, indices))


async def _client_main(conn: Connection, indices: Sequence[int]) -> None:
    await Client(conn, indices).serve()


# ---- the baseline: pre-serialized bytes on the same streams -------------------------------------


class Baseline:
    """A minimal ADS server: answers a new watch with the pre-serialized resources it asks for
    (all of the type for a wildcard), a subscription change with only the names it adds (what
    pilotfish does too), ignores ACKs, and on ``push`` writes the given bytes to every stream."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.initial: dict[str, dict[str, bytes]] = {}  # type -> name -> Any (SotW) / Resource (delta)
        self.everything: dict[str, bytes] = {}  # type -> the response with all of it, built once
        self.queues: set[asyncio.Queue[bytes | None]] = set()

    def payload(self, type_url: str, names: set[str] | None) -> bytes | None:
        """The response carrying ``names`` of ``type_url`` (all of them for None), if any exist."""
        held = self.initial.get(type_url, {})
        if names is None or names >= held.keys():
            return self.everything.get(type_url)
        found = [held[n] for n in sorted(names) if n in held]
        return encode_response(type_url, found) if found else None

    async def serve(self) -> None:
        server = grpc.aio.server(options=CHANNEL_OPTIONS[1:])
        sotw = grpc.stream_stream_rpc_method_handler(
            self.sotw,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=bytes,
        )
        delta = grpc.stream_stream_rpc_method_handler(
            self.delta,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=bytes,
        )
        service = grpc.method_handlers_generic_handler(
            ADS_SERVICE, {"StreamAggregatedResources": sotw, "DeltaAggregatedResources": delta}
        )
        server.add_generic_rpc_handlers((service,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self.conn.send(port)
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    command, *args = await loop.run_in_executor(None, self.conn.recv)
                except EOFError:
                    return
                if command == "exit":
                    return
                if command == "state":
                    self.initial = args[0]
                    self.everything = {
                        t: encode_response(t, held.values()) for t, held in self.initial.items()
                    }
                elif command == "push":
                    for queue in self.queues:
                        queue.put_nowait(args[0])
                self.conn.send(("ok",))
        finally:
            await server.stop(0)

    async def sotw(self, requests: Any, context: Any) -> None:
        """SotW: a new watch gets what it names (empty: the wildcard), a names change only the
        added names; an ACK repeats the names and gets nothing."""
        known: dict[str, set[str]] = {}

        def answer(request: Any) -> bytes | None:
            names = set(request.resource_names)
            if not request.response_nonce or request.type_url not in known:
                known[request.type_url] = names
                return self.payload(request.type_url, names or None)
            added = names - known[request.type_url]
            known[request.type_url] = names
            return self.payload(request.type_url, added) if added else None

        await self.stream(requests, context, answer)

    async def delta(self, requests: Any, context: Any) -> None:
        """Delta: a new watch gets what it subscribes to (nothing named: the wildcard), later
        subscriptions only those names; an ACK subscribes to nothing."""
        seen: set[str] = set()

        def answer(request: Any) -> bytes | None:
            names = set(request.resource_names_subscribe)
            if request.type_url not in seen:
                seen.add(request.type_url)
                return self.payload(request.type_url, names or None)
            return self.payload(request.type_url, names) if names else None

        await self.stream(requests, context, answer)

    async def stream(self, requests: Any, context: Any, answer: Callable[[Any], bytes | None]) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queues.add(queue)

        async def read() -> None:
            try:
                async for request in requests:
                    payload = answer(request)
                    if payload is not None:
                        queue.put_nowait(payload)
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (payload := await queue.get()) is not None:
                await context.write(payload)
        finally:
            self.queues.discard(queue)
            reader.cancel()


def baseline_main(conn: Connection) -> None:
    raise_nofile()
    asyncio.run(Baseline(conn).serve())


# ---- the bench ----------------------------------------------------------------------------------


class Peer:
    """A child process and its command pipe; ``call`` waits for the reply with a deadline."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")  # no grpc state forked into children
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        child.close()

    def send(self, *command: Any) -> None:
        self.conn.send(command)

    def reply(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"client process {self.process.pid} did not answer within {timeout:.0f} s")
        return self.conn.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(("exit",))
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class Clients:
    """The client processes; proxy P lives in process P mod procs."""

    def __init__(self, proxies: int, procs: int, timeout: float) -> None:
        self.proxies, self.timeout = proxies, timeout
        self.peers: list[Peer] = []
        for w in range(procs):
            self.peers.append(Peer(client_main, list(range(w, proxies, procs))))
        for peer in self.peers:
            assert peer.reply(60)[0] == "ready"

    def call(self, *command: Any, timeout: float | None = None) -> list[Any]:
        for peer in self.peers:
            peer.send(*command)
        return [peer.reply((timeout or self.timeout) + 30) for peer in self.peers]

    def merged(self, replies: list[Any]) -> tuple[list[float | None], list[str]]:
        """Per-proxy values in proxy order, and the notes (failures, stragglers) of every process."""
        values: list[float | None] = [None] * self.proxies
        notes: Counter[str] = Counter()
        for w, reply in enumerate(replies):
            for k, value in enumerate(reply[0]):
                values[w + k * len(self.peers)] = value
            notes.update(reply[1])
        return values, [f"{count} {note}" for note, count in sorted(notes.items())]

    def stop(self) -> None:
        for peer in self.peers:
            peer.stop()


@dataclass(slots=True)
class Run:
    """What one server (pilotfish or the baseline) measured."""

    name: str
    sync: list[float | None] = field(default_factory=list)
    eds: list[float | None] = field(default_factory=list)
    cds: list[float | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # stream failures (reconnected), stragglers
    state: dict[str, dict[str, bytes]] = field(default_factory=dict)
    eds_payloads: dict[int, bytes] = field(default_factory=dict)  # trial -> the change's response
    cds_payloads: dict[int, bytes] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # pilotfish CPU seconds per phase
    rss: tuple[float, float] = (0.0, 0.0)  # MB before the clients connect, and once they are synced
    health: dict[str, list[float]] = field(default_factory=dict)  # /healthz latencies by phase


def connect_and_sync(clients: Clients, targets: Sequence[str], run: Run, delta: bool) -> None:
    started = time.monotonic()
    clients.call("connect", list(targets), delta)
    replies = clients.call("wait_synced", clients.timeout)
    synced, errors = clients.merged(replies)
    run.sync = [None if t is None else t - started for t in synced]
    run.notes = errors
    run.state = next((r[2] for r in replies if r[2]), {})


class HealthProbe:
    """``GET /healthz`` every 20 ms on a thread of the bench process (a new connection each time,
    as a kubelet or load balancer probe makes), each latency filed under the phase it ran in
    (``during``): does the admin API stay responsive while a push fans out?"""

    INTERVAL = 0.02

    def __init__(self, port: int) -> None:
        self.port = port
        self.phase: str | None = None
        self.samples: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)

    def start(self) -> HealthProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[None]:
        self.phase = phase
        try:
            yield
        finally:
            self.phase = None

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            phase = self.phase
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("GET", "/healthz")
                connection.getresponse().read()
                connection.close()
            except OSError:
                continue  # counted as missing; a restart is not what this measures
            if phase is not None and phase == self.phase:
                self.samples.setdefault(phase, []).append(time.perf_counter() - started)


def trial(
    clients: Clients,
    run: Run,
    type_url: str,
    marker: bytes,
    trigger: Callable[[], None],
    during: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> tuple[list[float | None], bytes | None]:
    """Arm the clients for ``marker``, make the change, collect each proxy's arrival time."""
    clients.call("arm", type_url, marker)
    time.sleep(WORKER_SETTLE)
    started = time.monotonic()
    with during():
        trigger()
        replies = clients.call("collect", clients.timeout)
    hits, run.notes = clients.merged(replies)
    payload = next((r[2] for r in replies if r[2] is not None), None)
    return [None if t is None else t - started for t in hits], payload


def progress(what: str, pid: int | None = None) -> None:
    """A progress line on stderr (a profiler can be attached to ``pid`` for one phase)."""
    print(
        f"[{time.strftime('%H:%M:%S')}] {what}" + (f" (pid {pid})" if pid else ""),
        file=sys.stderr,
        flush=True,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (``/proc/PID/stat`` utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def measure_pilotfish(args: argparse.Namespace, clients: Clients, workdir: Path) -> tuple[Run, float, float]:
    config = workdir / "config"
    write_config(config, args.services, args.endpoints)
    # Replicas watch the same directory and share the first one's CA directory (one root, as
    # replicas on one store or one CA volume do); proxy P connects to replica P mod R.
    replicas = [PilotfishProcess(config, workdir / "pf0")]
    shared_ca = ["--ca-dir", str(replicas[0].ca_dir)]
    replicas += [
        PilotfishProcess(config, workdir / f"pf{k}", extra_args=shared_ca) for k in range(1, args.replicas)
    ]
    pf = replicas[0]
    run = Run("pilotfish" if args.replicas == 1 else f"pilotfish ({args.replicas} replicas)")
    probe: HealthProbe | None = None
    started: list[PilotfishProcess] = []

    def rss() -> float:
        return sum(rss_mb(r.pid) for r in replicas)

    def cpu_now() -> float:
        return sum(cpu_seconds(r.pid) for r in replicas)

    try:
        for replica in replicas:  # one at a time: the first creates the CA the others load
            started.append(replica)
            replica.start(timeout=300)
        probe = HealthProbe(pf.admin_port).start()
        time.sleep(args.settle)  # loaded, translated, idle
        before = rss()
        cpu = cpu_now()
        progress("pilotfish: initial sync", pf.pid)
        with probe.during("initial sync"):
            targets = [f"127.0.0.1:{r.xds_port}" for r in replicas]
            connect_and_sync(clients, targets, run, args.delta)
        run.cpu["initial sync"] = cpu_now() - cpu
        if None in run.sync:
            missing = run.sync.count(None)
            raise RuntimeError(f"initial sync: {missing} proxies not synced: {run.notes}")
        time.sleep(args.settle)
        after = rss()
        cpu = cpu_now()
        progress("pilotfish: endpoint changes", pf.pid)
        for k in range(args.trials):
            trigger = write_atomically(config / "we.yaml", workload_entries(args.endpoints, k))
            hits, payload = trial(clients, run, EDS, eds_marker(k), trigger, lambda: probe.during("endpoint"))
            run.eds.extend(hits)
            if payload is not None:
                run.eds_payloads[k] = payload
            time.sleep(args.settle)
        run.cpu["endpoint change"] = (cpu_now() - cpu) / args.trials
        cpu = cpu_now()
        progress("pilotfish: DestinationRule changes", pf.pid)
        for k in range(args.trials):
            trigger = write_atomically(config / "dr.yaml", destination_rule(k))
            hits, payload = trial(
                clients, run, CDS, cds_marker(k), trigger, lambda: probe.during("DestinationRule")
            )
            run.cds.extend(hits)
            if payload is not None:
                run.cds_payloads[k] = payload
            time.sleep(args.settle)
        run.cpu["DestinationRule change"] = (cpu_now() - cpu) / args.trials
        progress("pilotfish: done", pf.pid)
        clients.call("disconnect")
    except BaseException:
        for replica in started:
            print(
                f"pilotfish log tail ({replica.workdir.name}):\n{replica.log_text()[-3000:]}", file=sys.stderr
            )
        raise
    finally:
        if probe is not None:
            probe.stop()
            run.health = probe.samples
        for replica in started:
            replica.stop()
    return run, before, after


def measure_baseline(args: argparse.Namespace, clients: Clients, ours: Run) -> Run:
    peer = Peer(baseline_main)
    run = Run("baseline")
    try:
        port = peer.reply(60)
        # SotW holds Any bytes, delta Resource entries: the same field numbers in either response.
        peer.send("state", ours.state)
        peer.reply(60)
        time.sleep(args.settle)
        assert peer.process.pid is not None
        run.rss = (rss_mb(peer.process.pid), 0.0)
        connect_and_sync(clients, [f"127.0.0.1:{port}"], run, args.delta)
        time.sleep(args.settle)
        run.rss = (run.rss[0], rss_mb(peer.process.pid))
        phases = (
            ("endpoint change", EDS, ours.eds_payloads, run.eds),
            ("DestinationRule change", CDS, ours.cds_payloads, run.cds),
        )
        for phase, kind, payloads, out in phases:
            cpu = cpu_seconds(peer.process.pid)
            for k, payload in payloads.items():
                marker = eds_marker(k) if kind == EDS else cds_marker(k)

                def push(payload: bytes = payload) -> None:
                    peer.send("push", payload)

                hits, _ = trial(clients, run, kind, marker, push)
                peer.reply(60)
                out.extend(hits)
                time.sleep(0.2)
            run.cpu[phase] = (cpu_seconds(peer.process.pid) - cpu) / max(1, len(payloads))
        clients.call("disconnect")
    finally:
        peer.stop()
    return run


# ---- report -------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summary(samples: Sequence[float | None]) -> tuple[float, float, float, int]:
    """p50, p99, max (seconds) of the delivered samples, and how many never arrived."""
    got = sorted(s for s in samples if s is not None)
    if not got:
        return math.nan, math.nan, math.nan, len(samples)
    return statistics.median(got), percentile(got, 0.99), got[-1], len(samples) - len(got)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def describe(samples: Sequence[float | None]) -> str:
    p50, p99, worst, missing = summary(samples)
    extra = f", {missing} never arrived" if missing else ""
    first = min((s for s in samples if s is not None), default=math.nan)
    return f"first {ms(first)}, p50 {ms(p50)}, p99 {ms(p99)}, max {ms(worst)} (n={len(samples)}{extra})"


def report(args: argparse.Namespace, ours: Run, floor: Run, before: float, after: float) -> None:
    n = args.proxies
    load = os.getloadavg()
    print(
        f"mesh: {n} proxies × {args.services} services × {args.endpoints} endpoints, "
        f"{args.trials} trials, {'delta' if args.delta else 'SotW'} ADS, "
        f"{args.replicas} pilotfish process{'es' if args.replicas > 1 else ''}, "
        f"{args.client_procs} client processes, "
        f"load average at start {args.load_at_start}, at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    held = ", ".join(f"{len(ours.state.get(t, {}))} {rt.short_name(t)}" for t in (CDS, EDS, LDS, RDS, SDS))
    print(f"each proxy holds: {held}")
    for run in (ours, floor) if floor.sync else (ours,):
        sync = max((s for s in run.sync if s is not None), default=math.nan)
        print(f"{run.name}:")
        print(f"  initial sync, all {n} proxies ACKed everything: {sync:.2f} s")
        print(f"  endpoint change → each proxy: {describe(run.eds)}")
        print(f"  DestinationRule change → each proxy: {describe(run.cds)}")
        for note in run.notes:
            print(f"  {note}")
    print(
        f"pilotfish RSS{' (all replicas)' if args.replicas > 1 else ''}: "
        f"{before:.1f} MB before the clients, {after:.1f} MB after; "
        f"{(after - before) / n:.3f} MB per connected proxy"
    )
    if floor.sync:
        print(
            f"baseline RSS: {floor.rss[0]:.1f} MB before the clients, {floor.rss[1]:.1f} MB after; "
            f"{(floor.rss[1] - floor.rss[0]) / n:.3f} MB per connected proxy (grpc's own per-stream cost)"
        )
    for phase, latencies in ours.health.items():
        got = sorted(latencies)
        slow = sum(1 for t in got if t > 0.05)
        print(
            f"pilotfish{' replica 0' if args.replicas > 1 else ''} /healthz during {phase}: "
            f"p50 {ms(statistics.median(got))}, "
            f"p99 {ms(percentile(got, 0.99))}, max {ms(got[-1])} ({slow} of {len(got)} over 50 ms)"
        )
    spent = ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in ours.cpu.items())
    print(f"pilotfish CPU (user + system): {spent} (per change: from arming to settled)")
    if floor.cpu:
        spent = ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in floor.cpu.items())
        print(f"baseline CPU (user + system): {spent} (per change: writing the bytes and reading the ACKs)")
    ratios = []
    for label, a, b in (
        ()
        if not floor.sync
        else (
            (
                "initial sync",
                [max(s for s in ours.sync if s is not None)],
                [max(s for s in floor.sync if s is not None)],
            ),
            ("endpoint p50", [summary(ours.eds)[0]], [summary(floor.eds)[0]]),
            ("endpoint p99", [summary(ours.eds)[1]], [summary(floor.eds)[1]]),
            ("DestinationRule p50", [summary(ours.cds)[0]], [summary(floor.cds)[0]]),
            ("DestinationRule p99", [summary(ours.cds)[1]], [summary(floor.cds)[1]]),
        )
    ):
        ratios.append(f"{label} {a[0] / b[0]:.1f}" if b[0] else f"{label} n/a")
    print("ratio pilotfish/baseline: " + ", ".join(ratios))
    sync = max(s for s in ours.sync if s is not None)
    aims = [
        ("endpoint change p99 <= 500 ms", summary(ours.eds)[1] <= 0.5),
        ("DestinationRule change p99 <= 2 s", summary(ours.cds)[1] <= 2.0),
        ("initial sync <= 15 s", sync <= 15.0),
        ("<= 0.3 MB RSS per proxy", (after - before) / n <= 0.3),
        (
            "/healthz p99 <= 50 ms during changes",
            all(percentile(sorted(v), 0.99) <= 0.05 for k, v in ours.health.items() if k != "initial sync"),
        ),
    ]
    print(
        "aims (for 1,000 × 1,000 × 5): " + ", ".join(f"{a}: {'met' if ok else 'NOT met'}" for a, ok in aims)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxies", type=int, default=200)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument(
        "--client-procs", type=int, default=0, help="client processes (0: one per 500 proxies)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for a sync or a change")
    parser.add_argument("--delta", action="store_true", help="incremental ADS instead of SotW")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="pilotfish processes watching the same config directory; proxy P connects to replica P mod R",
    )
    parser.add_argument("--settle", type=float, default=1.0, help="quiet seconds between phases")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the baseline (for profiling runs; no ratios)"
    )
    args = parser.parse_args(argv)
    if args.services < 2 or args.endpoints < 1 or args.proxies < 1 or args.trials < 1 or args.replicas < 1:
        parser.error("need --services >= 2, --endpoints >= 1, --proxies >= 1, --trials >= 1, --replicas >= 1")
    args.client_procs = args.client_procs or min(4, math.ceil(args.proxies / 500))
    args.client_procs = min(args.client_procs, args.proxies)
    args.load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    raise_nofile()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop pilotfish and the client processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    clients = Clients(args.proxies, args.client_procs, args.timeout)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            ours, before, after = measure_pilotfish(args, clients, Path(tmp))
        floor = Run("baseline (skipped)") if args.no_baseline else measure_baseline(args, clients, ours)
    finally:
        clients.stop()
    report(args, ours, floor, before, after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
