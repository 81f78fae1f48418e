"""The Aggregated Discovery Service: SotW and delta ADS over grpc.aio.

Theory of operation
-------------------
grpc is only the transport here. ``AggregatedDiscoveryService`` registers two stream-stream
methods whose responses are already bytes (``wire`` concatenates the cache's pre-encoded
resources), so grpc serializes nothing. Each RPC builds a ``SotwStream`` or ``DeltaStream`` and
calls ``run(requests, send)``: an async iterator of request messages in, an awaitable byte sink
out. That is the seam the unit tests drive without a network.

A stream is one reader task plus the handler loop. The reader appends requests to an inbox; the
cache's watch callback (on the translation thread) hands the newest ``Snapshot`` over through the
server's ``Handover``, which wakes the event loop once per batch of published snapshots, into a
one-slot mailbox (a snapshot that arrives while a push is in flight replaces the pending one; only
the latest counts). Both wake the loop, which (1) applies every queued request to the per-type
``Subscription`` state, (2) adopts the pending snapshot, and (3) if it adopted one or a
subscription changed, makes one pass over the types in ``ADS_ORDER`` (CDS, EDS, LDS, RDS, SDS),
sending a response only where the client's view differs from the snapshot. An ACK against the
same snapshot changes nothing a pass could act on, so it makes none.

The client's view is ``Subscription.known``: name -> version of what the client holds (as far as
this stream has told it, updated when a response is sent, never rolled back). Diffing the
snapshot against it gives every rule of xds_protocol.rst at once:

* an ACK changes nothing, so it is never answered ("When to send an update");
* a NACK (``error_detail`` set, "ACK and NACK semantics summary") is recorded in ``PushStatus``
  with Envoy's text; the rejected version stays in ``known``, so it is not resent, and the next
  snapshot that differs is;
* SotW: a request whose nonce is not the type's latest is stale and ignored ("Resource updates");
  CDS and LDS responses carry the full state ("Grouping Resources into Responses"), other types
  only the resources whose version changed, or that were newly requested ("How the client
  specifies what resources to return", including the legacy wildcard and ``*``);
* delta ("Incremental xDS"): only changed resources are sent, deletions go in
  ``removed_resources``, subscription changes are honoured even with a stale nonce,
  ``initial_resource_versions`` seeds ``known`` on a new stream, a re-subscribed name is resent,
  and a subscribed name that does not exist is reported removed ("Knowing When a Requested
  Resource Does Not Exist");
* a parent that changed forces a resend of the children it references, even if unchanged:
  Envoy finishes warming an updated cluster only on a new ClusterLoadAssignment ("Resource
  warming"), so the EDS names of updated clusters are resent right after the CDS response, and
  the RDS names of updated listeners right after LDS.

Work proportional to the change: after a pass, ``Subscription.synced`` records the type version
the client's view was reconciled against. While the subscription itself does not change (an ACK
changes nothing), the next pass diffs only what can differ: nothing when the version is the same,
and only the names the new snapshot says changed since that version (``Snapshot.changes``) when
there is such a record; anything else is diffed in full. A reconciled client that names
resources (SotW: a longer list; delta: a subscription) has just those names diffed too
(``Subscription.added``). A SotW response of a per-resource type
carries only the changed resources (EDS, RDS, SDS need not be complete in SotW), so an endpoint
change sends one ClusterLoadAssignment to each proxy that watches it. A SotW full-state type
under a wildcard watch (CDS, LDS) is answered with the snapshot's own encoded entries
(``Snapshot.sotw_entries``: one blob per shared part, encoded once for every proxy holding it),
and the client's view of it is then the snapshot's mapping itself (``_Held``), not a copy. So is
any client's view, SotW or delta, once it holds exactly the snapshot's resources of a type.

Pushes are bounded (``PushGate``, Istio's push throttle): at most ``limit`` streams compute and
write a push at once, the rest wait their turn, in order. A write that does not complete within
``slow_after`` seconds (a proxy that stopped reading) gives its slot back and finishes outside
the gate, so a stuck proxy never holds up the others.

A proxy id has one stream at a time (``PushStatus.connect``): a newer stream of the same id
closes the older one, which ends with ABORTED and never reports its proxy gone, so closing either
stream leaves the status, and the metadata the config is built from, those of the live one.

The first SotW request of a type on a stream is always answered once a snapshot exists (Istio's
``ShouldRespond``): Envoy waits for CDS and LDS to initialize, and a reconnecting client's old
nonce and version mean nothing on a new stream. In delta, a new wildcard watch is always answered
(possibly with nothing in it); a new watch of named resources is answered with whatever differs
from ``initial_resource_versions``. Requests wait, unanswered, until the proxy's first snapshot.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import logging
import sys
import weakref
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
)
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.errors import PeerError, PeerUnauthorized
from pilotfish.lograte import RateLimitedLog
from pilotfish.xds import resources as rt
from pilotfish.xds import wire
from pilotfish.xds.cache import Resource, Snapshot, SnapshotCache, as_dict, content_version, pairs
from pilotfish.xds.proxy import Proxy, parse_node
from pilotfish.xds.status import ConnectionStatus, PushStatus, StreamKind

log = logging.getLogger(__name__)
# A proxy can NACK at will: a few lines per proxy and type a minute, the rest summarised (lograte).
nack_log = RateLimitedLog(log)

SERVICE_NAME = "envoy.service.discovery.v3.AggregatedDiscoveryService"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# grpcio's default receive limit is 4 MiB; large delta reconnects and SotW responses exceed it.
GRPC_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)

ProxyHook = Callable[[Proxy], None]
S = TypeVar("S", bound="_Stream")
Send = Callable[[bytes], Awaitable[None]]

# Placeholders in ``Subscription.known`` that never equal a real version.
_ABSENT = "\0absent"  # delta: the client was told the name does not exist
_RESEND = "\0resend"  # the client must get this name again: its resource or its removal


@dataclass(frozen=True, slots=True)
class StreamPeer:
    """The transport facts of one ADS stream: grpc's peer string (``ipv4:127.0.0.1:5555``) and
    the client certificate (PEM) when the port verified one."""

    address: str = ""
    cert_pem: bytes | None = None


# Decides whether the node may be served on this stream; raises PeerUnauthorized if not.
Authorizer = Callable[[Proxy, StreamPeer], None]


class StreamSuperseded(Exception):
    """A newer stream of the same proxy id took over; this one ends (ABORTED)."""


def _ignore(proxy: Proxy) -> None:
    return None


@dataclass(slots=True)
class Subscription:
    """One type on one stream: what the client subscribed to and what it holds."""

    wildcard: bool = False
    names: AbstractSet[str] = frozenset()  # SotW: a shared frozenset (``_shared_names``)
    explicit: bool = False  # the client has named a resource: the legacy wildcard is over
    # What the client holds: name -> version; while it holds exactly the snapshot's resources of
    # the type, a view of them (``_Held``), turned into a dict of its own only if changed.
    known: dict[str, str] | _Held = field(default_factory=dict)
    nonce: str = ""
    must_respond: bool = False
    # The type version the client's view was last reconciled against; None: diff in full next.
    synced: str | None = None
    # SotW: the last request that set ``names``, stripped to what says what is wanted
    # (``_wanted_part``), so that an ACK repeating the names is recognised by one comparison
    # done by the protobuf runtime, without a Python string per name.
    requested: Any = None
    # Names requested since the last pass by a client whose view was reconciled (SotW: added to
    # its list; delta: subscribed, or unsubscribed under "*"); the next pass diffs them with what
    # changed, instead of every name (one renamed EDS name in a list of 1,001 costs its own diff).
    added: frozenset[str] = frozenset()

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def forget_unwanted(self) -> None:
        unwanted = [n for n in self.known if not self.wants(n)]
        if unwanted:
            known = self.own_known()
            for name in unwanted:
                del known[name]

    def own_known(self) -> dict[str, str]:
        """``known`` as a dict this subscription may change."""
        if isinstance(self.known, _Held):
            self.known = {n: r.version for n, r in self.known.named.items()}
        return self.known


class _Held(Mapping[str, str]):
    """Name -> version of exactly the resources of one snapshot mapping, read through to them:
    after a full-state response the client holds all of them, and every proxy of one scope
    would otherwise keep its own copy of the same thousand versions."""

    __slots__ = ("named",)

    def __init__(self, named: Mapping[str, Resource]) -> None:
        self.named = named

    def __getitem__(self, name: str) -> str:
        return self.named[name].version

    def get(self, name: str, default: Any = None) -> Any:
        found = self.named.get(name)
        return default if found is None else found.version

    def __contains__(self, name: object) -> bool:
        return name in self.named

    def __iter__(self) -> Iterator[str]:
        return iter(self.named)

    def __len__(self) -> int:
        return len(self.named)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One response: its type, version, nonce, encoded bytes and the names whose version changed."""

    type_url: str
    version: str
    nonce: str
    payload: bytes
    updated: tuple[str, ...]
    carried: Collection[str] = ()  # every resource in the response (SotW CDS/LDS: the full state)


class PushGate:
    """Bounded push concurrency shared by every stream of a server (see the module doc).
    ``on_length`` is told the number of streams waiting for or holding a slot."""

    def __init__(
        self, limit: int = 16, slow_after: float = 5.0, on_length: Callable[[int], None] | None = None
    ) -> None:
        self.limit, self.slow_after = limit, slow_after
        self._on_length = on_length
        self._slots = asyncio.Semaphore(limit)
        self.length = 0

    def _count(self, delta: int) -> None:
        self.length += delta
        if self._on_length is not None:
            self._on_length(self.length)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[_Slot]:
        self._count(1)
        try:
            await self._slots.acquire()
            slot = _Slot(self)
            try:
                yield slot
            finally:
                slot.release()
        finally:
            self._count(-1)


class _Slot:
    """One held push slot; ``send`` gives it back early when a write is slow."""

    def __init__(self, gate: PushGate) -> None:
        self._gate, self._held = gate, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._gate._slots.release()

    async def send(self, write: Awaitable[None]) -> None:
        """Await ``write``; if it takes longer than ``slow_after`` the slot is given back meanwhile
        (a timer: every push of every stream passes here, and ``asyncio.wait`` cost more than
        the write). The write runs as a task of its own: started inline in the stream's step,
        grpc's write made steps longer and, measured at 1,000 proxies, doubled ``/healthz``
        latency during pushes."""
        if not self._held:
            await write
            return
        timer = asyncio.get_running_loop().call_later(self._gate.slow_after, self._slow)
        try:
            await asyncio.ensure_future(write)
        finally:
            timer.cancel()

    def _slow(self) -> None:
        if self._held:
            log.info("a slow ADS write gave its push slot back")
            self.release()


class Handover:
    """Snapshots handed from the translation thread to the streams on the event loop, in
    batches: the first one of a batch schedules one drain on the loop
    (``call_soon_threadsafe``), and the ones published before it runs join it. One per server:
    a push of 1,000 proxies wakes the loop a few times, not 1,000 times through its self-pipe
    (each a write syscall on the publishing thread, and a GIL hand-over with the loop)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._items: deque[tuple[Callable[[Snapshot], None], Snapshot]] = deque()
        self._scheduled = False
        self.drains = 0  # how many times the loop was woken for deliveries

    def bind(self, loop: asyncio.AbstractEventLoop) -> Handover:
        """The loop the deliveries run on (the server's: every stream runs on one loop)."""
        if self._loop is not loop:
            self._loop, self._scheduled = loop, False
        return self

    def put(self, deliver: Callable[[Snapshot], None], snapshot: Snapshot) -> None:
        """Any thread: call ``deliver(snapshot)`` on the loop soon."""
        loop = self._loop
        assert loop is not None, "bind() first"
        self._items.append((deliver, snapshot))
        if not self._scheduled:  # GIL-atomic reads and writes; a duplicate drain is harmless
            self._scheduled = True
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: the server is gone, so are its streams
                self._items.clear()

    def _drain(self) -> None:
        self._scheduled = False
        self.drains += 1
        items = self._items
        while items:
            deliver, snapshot = items.popleft()
            deliver(snapshot)


class _Stream(abc.ABC):
    """The per-stream loop shared by SotW and delta; subclasses handle requests and diffs."""

    kind: StreamKind

    def __init__(
        self,
        cache: SnapshotCache,
        status: PushStatus,
        on_connect: ProxyHook = _ignore,
        on_disconnect: ProxyHook = _ignore,
        authorize: Authorizer | None = None,
        peer: StreamPeer | None = None,
        gate: PushGate | None = None,
        handover: Handover | None = None,
    ) -> None:
        self._cache, self._status = cache, status
        self._gate = gate or PushGate()
        self._handover = handover or Handover()
        self._on_connect, self._on_disconnect = on_connect, on_disconnect
        self._authorize, self.peer = authorize, peer
        self.subscriptions: dict[str, Subscription] = {}
        self._snapshot: Snapshot | None = None
        self._pending: Snapshot | None = None
        self._inbox: deque[Any] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._nonces = itertools.count(1)
        self._connection: ConnectionStatus | None = None
        self._superseded = False

    async def run(self, requests: AsyncIterable[Any], send: Send) -> None:
        """Serve one stream until the client closes it; ``PeerError`` for a malformed first request."""
        iterator = aiter(requests)
        first = await anext(iterator, None)
        if first is None:
            return
        proxy = parse_node(first.node)
        if self._authorize is not None:
            self._authorize(proxy, self.peer or StreamPeer())  # PeerUnauthorized before anything is served
        self._connection = self._status.connect(proxy, self.kind, self._supersede)
        handover = self._handover.bind(asyncio.get_running_loop())

        def on_snapshot(snapshot: Snapshot) -> None:
            handover.put(self._deliver, snapshot)

        cancel_watch = self._cache.watch(proxy.id, on_snapshot)
        reader = asyncio.create_task(self._read(iterator))
        try:
            self._snapshot = self._cache.get(proxy.id)
            self._on_connect(proxy)
            self._inbox.append(first)
            self._wake.set()
            await self._serve(send)
        finally:
            cancel_watch()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if self._status.disconnect(self._connection):
                self._on_disconnect(proxy)
        if self._superseded:
            raise StreamSuperseded(f"a newer ADS stream of {proxy.id} replaced this one")

    def _supersede(self) -> None:
        self._superseded = self._closed = True
        self._wake.set()

    def _deliver(self, snapshot: Snapshot) -> None:
        self._pending = snapshot  # one slot: only the latest snapshot counts
        self._wake.set()

    async def _read(self, iterator: AsyncIterator[Any]) -> None:
        try:
            async for request in iterator:
                self._inbox.append(request)
                self._wake.set()
        except (grpc.RpcError, grpc.aio.AioRpcError, ConnectionError) as error:
            log.debug("ADS stream read ended: %s", error)
        finally:
            self._closed = True
            self._wake.set()

    async def _serve(self, send: Send) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._superseded:
                return
            while self._inbox:
                self._handle(self._inbox.popleft())
            adopted = self._pending is not None
            if adopted:
                self._snapshot, self._pending = self._pending, None
            if adopted or any(
                s.synced is None or s.must_respond or s.added for s in self.subscriptions.values()
            ):
                await self._push(send)
            # else: only ACKs (or NACKs) since the last pass, against the same snapshot: a pass
            # would find every type reconciled (``_to_diff`` gives nothing), so none is made.
            if self._closed and not self._inbox:
                return

    async def _push(self, send: Send) -> None:
        """One pass, its responses written in order. A method of its own so that the responses
        die with its frame: a loop variable left in ``_serve``'s frame would keep the last
        response (hundreds of KB for a full CDS or EDS) alive for the stream's lifetime."""
        async with self._gate.slot() as slot:
            for outgoing in self._pass():
                await slot.send(send(outgoing.payload))
                assert self._connection is not None
                self._status.sent(
                    self._connection,
                    outgoing.type_url,
                    outgoing.version,
                    outgoing.nonce,
                    outgoing.carried,
                    outgoing.updated,
                )

    def _pass(self) -> list[Outgoing]:
        """Responses for every subscribed type, in ADS order, with children of updated parents forced."""
        snapshot = self._snapshot
        if snapshot is None:
            return []
        extra = sorted(set(self.subscriptions) - set(rt.ADS_ORDER))
        forced: dict[str, set[str]] = {}
        out: list[Outgoing] = []
        for type_url in (*rt.ADS_ORDER, *extra):
            subscription = self.subscriptions.get(type_url)
            if subscription is None:
                continue
            forced_names = forced.get(type_url, set())
            _force(subscription, forced_names)
            if subscription.added:  # newly requested names: diffed like changed ones
                forced_names = forced_names | subscription.added
            names = _to_diff(type_url, subscription, snapshot, forced_names)
            outgoing = self._respond(type_url, subscription, snapshot, names) if names != () else None
            subscription.synced = snapshot.version(type_url)
            subscription.added = frozenset()
            self._prune_rejected(type_url, subscription)
            if outgoing is None:
                if names is None:
                    self._note_held(type_url, subscription, snapshot)
                continue
            out.append(outgoing)
            child = rt.CHILD_TYPE.get(type_url)
            if child is not None:
                forced[child] = snapshot.children(type_url, outgoing.updated)
        return out

    def _prune_rejected(self, type_url: str, subscription: Subscription) -> None:
        """A rejected resource the client no longer holds (removed, unsubscribed) stops counting."""
        assert self._connection is not None
        status = self._connection.types.get(type_url)
        if status is not None and status.rejected:
            held = {n for n, v in subscription.known.items() if v != _ABSENT}
            self._status.in_view(self._connection, type_url, held)

    def _note_held(self, type_url: str, subscription: Subscription, snapshot: Snapshot) -> None:
        """Nothing to send: if the client holds every desired resource at its current version (a
        delta reconnect), push status should say SYNCED, not NOT SENT."""
        assert self._connection is not None
        desired = _desired(subscription, snapshot, type_url)
        if desired and all(subscription.known.get(n) == r.version for n, r in desired.items()):
            self._status.already_held(self._connection, type_url, snapshot.version(type_url))

    def _next_nonce(self, subscription: Subscription) -> str:
        subscription.nonce = str(next(self._nonces))
        return subscription.nonce

    def _record_reply(
        self, type_url: str, subscription: Subscription, nonce: str, error: Any, version: str | None = None
    ) -> None:
        """Book an ACK or NACK of ``nonce``; a NACK is detected by ``error_detail`` alone. A
        SotW ACK also names the ``version`` it holds, which must be the one sent."""
        assert self._connection is not None
        if nonce != subscription.nonce:
            return
        if error is None:
            self._status.acked(self._connection, type_url, nonce, version)
            return
        proxy_id, short = self._connection.proxy.id, rt.short_name(type_url)
        nack_log.log(
            logging.WARNING, (proxy_id, short), "%s NACKed %s (nonce %s): %s", proxy_id, short, nonce, error
        )
        self._status.nacked(self._connection, type_url, nonce, error)

    @abc.abstractmethod
    def _handle(self, request: Any) -> None:
        """Apply one request to ``subscriptions`` (and book its ACK or NACK)."""

    @abc.abstractmethod
    def _respond(
        self, type_url: str, subscription: Subscription, snapshot: Snapshot, names: Collection[str] | None
    ) -> Outgoing | None:
        """The response that brings the client's view of ``type_url`` to ``snapshot``, if any;
        ``names``, when given, are the only ones that can differ (``_to_diff``)."""


def _to_diff(
    type_url: str, subscription: Subscription, snapshot: Snapshot, forced: set[str]
) -> Collection[str] | None:
    """The names whose state can differ from what the client holds: ``None`` when unknown (diff
    every name), else a (possibly empty) collection. Known only while the subscription is
    unchanged since it was reconciled against a version this snapshot knows the changes since."""
    if subscription.synced is None or subscription.must_respond:
        return None
    version = snapshot.version(type_url)
    if subscription.synced == version:
        names: Collection[str] = forced
    else:
        change = snapshot.changes.get(type_url)
        if change is None or change.since != subscription.synced:
            return None
        names = change.names | forced if forced else change.names
    if not names:
        return ()
    return names


def _force(subscription: Subscription, names: Iterable[str]) -> None:
    """Make the client get ``names`` again even if it holds them at the current version."""
    for name in names:
        if name in subscription.known:
            subscription.own_known()[name] = _RESEND


def _desired(
    subscription: Subscription, snapshot: Snapshot, type_url: str, names: Collection[str] | None = None
) -> dict[str, Resource]:
    named = snapshot.named(type_url)
    if names is None:
        if subscription.wildcard:  # every name: a copy, without a Python-level test per name
            return as_dict(named)
        return {n: r for n, r in pairs(named) if n in subscription.names}
    return {n: named[n] for n in names if n in named and subscription.wants(n)}


def _changed(
    subscription: Subscription,
    desired: dict[str, Resource],
    ordered: list[tuple[str, Resource]] | None = None,
) -> list[Resource]:
    """The desired resources the client does not hold at their version, by name; ``ordered`` is
    ``sorted(desired.items())`` when the caller has it already."""
    known = subscription.known
    return [r for n, r in ordered or sorted(desired.items()) if known.get(n) != r.version]


def _error_text(request: Any) -> str | None:
    if not request.HasField("error_detail"):
        return None
    return str(request.error_detail.message) or f"code {request.error_detail.code}"


def _require_type(request: Any) -> str:
    if not request.type_url:
        raise PeerError("an ADS request must carry type_url")
    return str(request.type_url)


class SotwStream(_Stream):
    """State-of-the-world ADS (``StreamAggregatedResources``)."""

    kind = StreamKind.SOTW

    def _handle(self, request: Any) -> None:
        type_url = _require_type(request)
        subscription = self.subscriptions.get(type_url)
        if subscription is None or not request.response_nonce:
            # A new watch (first request of the type on this stream): always answered.
            subscription = self.subscriptions.setdefault(type_url, Subscription())
            subscription.must_respond = True
        elif request.response_nonce != subscription.nonce:
            return  # stale nonce: a newer response supersedes this request ("Resource updates")
        else:
            error = _error_text(request)
            self._record_reply(type_url, subscription, request.response_nonce, error, request.version_info)
        _set_sotw_names(subscription, request)

    def _respond(
        self, type_url: str, subscription: Subscription, snapshot: Snapshot, names: Collection[str] | None
    ) -> Outgoing | None:
        full_state = type_url in rt.FULL_STATE_TYPES
        if full_state and subscription.wildcard:
            return self._respond_whole(type_url, subscription, snapshot, names)
        if full_state:
            names = None  # the response must carry the whole state anyway
        elif names is not None and isinstance(subscription.known, _Held):
            handled, outgoing = self._respond_held(type_url, subscription, snapshot, names)
            if handled:
                return outgoing
        known = subscription.own_known()
        desired = _desired(subscription, snapshot, type_url, names)
        ordered = sorted(desired.items()) if full_state else None  # sorted once per response
        changed = _changed(subscription, desired, ordered)
        candidates = known if names is None else [n for n in names if n in known]
        gone = [n for n in candidates if n not in desired]
        if not (changed or (full_state and gone) or subscription.must_respond):
            for name in gone:  # per-resource types cannot signal removal in SotW ("Deleting Resources")
                del known[name]
            return None
        subscription.must_respond = False
        if names is None:
            known = subscription.known = {n: r.version for n, r in desired.items() if n in known}
        else:
            for name in gone:
                del known[name]
        known.update((r.name, r.version) for r in changed)
        sent = changed if ordered is None else [r for _, r in ordered]
        version = _sotw_version(subscription, snapshot, type_url)
        named = snapshot.named(type_url)
        if len(known) == len(named):
            # The client holds every resource of the type at its version (after a pass, what it
            # holds is a subset of the snapshot): the snapshot's mapping says it, with no copy.
            subscription.known = _Held(named)
        nonce = self._next_nonce(subscription)
        payload = wire.encode_sotw(version, type_url, nonce, sent)
        updated = tuple(r.name for r in changed)
        carried = updated if sent is changed else tuple(r.name for r in sent)  # one tuple, kept by the status
        return Outgoing(type_url, version, nonce, payload, updated, carried)

    def _respond_held(
        self, type_url: str, subscription: Subscription, snapshot: Snapshot, names: Collection[str]
    ) -> tuple[bool, Outgoing | None]:
        """``_respond`` for a per-resource type whose client held a whole earlier snapshot
        (``_Held``), when only ``names`` can differ: if afterwards it holds the whole current
        snapshot again, its view moves to that snapshot's mapping, so an endpoint change costs
        a stream its changed names, not a copy of a thousand versions. ``(False, None)``: it will
        not (a name it does not want appeared), take the general path."""
        held = subscription.known
        assert isinstance(held, _Held)
        named = snapshot.named(type_url)
        desired = _desired(subscription, snapshot, type_url, names)
        changed = [r for _, r in sorted(desired.items()) if held.get(r.name) != r.version]
        gone = sum(1 for n in names if n in held and n not in desired)
        added = sum(1 for r in changed if r.name not in held)
        if len(held) - gone + added != len(named):
            return False, None
        subscription.known = _Held(named)
        if not (changed or subscription.must_respond):
            return True, None  # removals alone are not signalled in SotW ("Deleting Resources")
        subscription.must_respond = False
        version = snapshot.version(type_url)  # the client holds all of the type
        nonce = self._next_nonce(subscription)
        updated = tuple(r.name for r in changed)
        payload = wire.encode_sotw(version, type_url, nonce, changed)
        return True, Outgoing(type_url, version, nonce, payload, updated, updated)

    def _respond_whole(
        self, type_url: str, subscription: Subscription, snapshot: Snapshot, names: Collection[str] | None
    ) -> Outgoing | None:
        """A wildcard watch of a full-state type (CDS, LDS): the response carries every resource,
        so it is the snapshot's own shared entries (``Snapshot.sotw_entries``) and the client
        then holds exactly the snapshot (``_Held``). Only ``names``, when known, are compared
        to find what changed (the resources to resend children of, and whether to send at all)."""
        named = snapshot.named(type_url)
        known = subscription.known
        if names is None:
            changed = [n for n, r in pairs(named) if known.get(n) != r.version]
            gone = any(n not in named for n in known)
        else:
            changed = [n for n in names if n in named and known.get(n) != named[n].version]
            gone = any(n in known and n not in named for n in names)
        if not (changed or gone or subscription.must_respond):
            return None
        subscription.must_respond = False
        subscription.known = _Held(named)
        version = snapshot.version(type_url)
        nonce = self._next_nonce(subscription)
        payload = wire.encode_sotw_entries(version, type_url, nonce, snapshot.sotw_entries(type_url))
        return Outgoing(type_url, version, nonce, payload, tuple(sorted(changed)), named.keys())


def _sotw_version(subscription: Subscription, snapshot: Snapshot, type_url: str) -> str:
    """The version of what the client now holds, ``content_version(known)``. After a response
    the client holds exactly the wanted resources of the snapshot, so when it holds as many as
    the snapshot has, it holds them all and the snapshot's version is that version (no hashing)."""
    if len(subscription.known) == len(snapshot.named(type_url)):
        return snapshot.version(type_url)
    return content_version(subscription.known.items())


def _set_sotw_names(subscription: Subscription, request: Any) -> None:
    """SotW names replace the previous list; empty before any explicit name is the legacy wildcard.
    A client whose view was reconciled and who changes its list of names has the added names
    diffed by the next pass; any other change of what is wanted (the wildcard, a first list)
    makes the next pass diff in full. Every ACK repeats the
    whole list (1,001 names for EDS at 1,000 services), so the request is first compared, as a
    message, with the last one that set the names: equal, nothing the client wants changed.
    ``request`` is consumed (its other fields cleared for that comparison)."""
    wanted = _wanted_part(request)
    if subscription.explicit and wanted == subscription.requested:
        return  # an ACK (or a repeat): nothing the client wants changed
    if not wanted.resource_names and not subscription.explicit:
        if not subscription.wildcard:
            subscription.wildcard, subscription.synced = True, None
        return
    names = _names_of(wanted)
    wildcard = rt.WILDCARD in names
    if wildcard:
        names = _shared_names(n for n in names if n != rt.WILDCARD)
    subscription.requested = wanted
    same = names is subscription.names or names == subscription.names
    if subscription.explicit and wildcard == subscription.wildcard and same:
        return  # the same names in another order
    if (
        subscription.explicit
        and not wildcard
        and not subscription.wildcard
        and subscription.synced is not None
    ):
        # A reconciled client changed its list: what it dropped is forgotten (a name requested
        # again later must be resent), what it added is diffed by the next pass; the rest of
        # its view stands.
        dropped = [n for n in subscription.names - names if n in subscription.known]
        if dropped:
            known = subscription.own_known()
            for name in dropped:
                del known[name]
        subscription.added = subscription.added | (names - subscription.names)
        subscription.names = names
        return
    subscription.explicit = True
    subscription.wildcard = wildcard
    subscription.names = names
    subscription.synced = None
    subscription.forget_unwanted()  # a name requested again later must be resent


# What in a SotW request is not about which resources are wanted: cleared before comparing.
_NOT_WANTED_FIELDS = ("version_info", "response_nonce", "node", "error_detail")


def _wanted_part(request: Any) -> Any:
    for name in _NOT_WANTED_FIELDS:
        request.ClearField(name)
    return request


# Name sets by content, shared while some subscription holds them: proxies of one scope ask for
# the same 1,001 EDS names, and one set of interned strings then serves them all. The table's key
# is an equal set of its own: a value that was its own key would keep itself alive.
class _Names(frozenset[str]):
    """A shared name set (weakly referenced from ``_NAME_SETS`` and ``_NAMES_BY_REQUEST``)."""


_NAME_SETS: weakref.WeakValueDictionary[frozenset[str], _Names] = weakref.WeakValueDictionary()


# Name sets by the request that listed them (serialized as ``_wanted_part`` leaves it): the
# thousand proxies of a scope send the same list when their clusters change, so its strings are
# decoded and interned once, not once per proxy.
_NAMES_BY_REQUEST: weakref.WeakValueDictionary[bytes, _Names] = weakref.WeakValueDictionary()


def _names_of(wanted: Any) -> frozenset[str]:
    key = wanted.SerializeToString(deterministic=True)
    found = _NAMES_BY_REQUEST.get(key)
    if found is None:
        _NAMES_BY_REQUEST[key] = found = _shared_names(wanted.resource_names)
    return found


def _shared_names(names: Iterable[str]) -> _Names:
    wanted = frozenset(map(sys.intern, names))
    shared = _NAME_SETS.get(wanted)
    if shared is None:
        _NAME_SETS[wanted] = shared = _Names(wanted)
    return shared


class DeltaStream(_Stream):
    """Incremental ADS (``DeltaAggregatedResources``)."""

    kind = StreamKind.DELTA

    def _handle(self, request: Any) -> None:
        type_url = _require_type(request)
        subscription = self.subscriptions.get(type_url)
        first = subscription is None
        if subscription is None:
            subscription = self.subscriptions[type_url] = Subscription()
            subscription.known = dict(request.initial_resource_versions)
        elif request.response_nonce:
            self._record_reply(type_url, subscription, request.response_nonce, _error_text(request))
        # Subscription changes count even with a stale nonce ("Incremental xDS").
        _apply_delta_names(subscription, request, first)
        if first and subscription.wildcard:
            subscription.must_respond = True

    def _respond(
        self, type_url: str, subscription: Subscription, snapshot: Snapshot, names: Collection[str] | None
    ) -> Outgoing | None:
        desired = _desired(subscription, snapshot, type_url, names)
        changed = _changed(subscription, desired)
        if names is None:
            missing = {n for n in subscription.names if n not in desired}
            candidates = (subscription.known.keys() | missing) - desired.keys()
        else:
            candidates = {
                n for n in names if n not in desired and (n in subscription.known or n in subscription.names)
            }
        removed = sorted(n for n in candidates if subscription.known.get(n) != _ABSENT)
        if not (changed or removed or subscription.must_respond):
            return None
        subscription.must_respond = False
        _delta_view(subscription, snapshot.named(type_url), changed, removed)
        version = snapshot.version(type_url)
        nonce = self._next_nonce(subscription)
        payload = wire.encode_delta(version, type_url, nonce, changed, removed)
        updated = tuple(r.name for r in changed)
        return Outgoing(type_url, version, nonce, payload, updated, updated)


def _delta_view(
    subscription: Subscription, named: Mapping[str, Resource], changed: list[Resource], removed: list[str]
) -> None:
    """The client's view after a delta response carrying ``changed`` and ``removed``. When it
    then holds exactly the snapshot's resources of the type (wildcard CDS and LDS; EDS, RDS, SDS
    when it names every one there is), the view is the snapshot's mapping itself (``_Held``),
    as in SotW: a thousand proxies of one scope would otherwise each keep the same thousand
    versions. Counting suffices, as in ``_respond_held``: the view is a subset of the snapshot
    after a pass (names not diffed did not change since it was reconciled)."""
    known = subscription.known
    if isinstance(known, _Held) and not any(n in subscription.names for n in removed):
        gone = sum(1 for n in removed if n in known)
        added = sum(1 for r in changed if r.name not in known)
        if len(known) - gone + added == len(named):
            subscription.known = _Held(named)
            return
    known = subscription.own_known()
    known.update((r.name, r.version) for r in changed)
    for name in removed:
        if name in subscription.names:
            known[name] = _ABSENT  # subscribed, and told it does not exist
        else:
            known.pop(name, None)
    if len(known) == len(named) and _ABSENT not in known.values() and _RESEND not in known.values():
        subscription.known = _Held(named)


def _apply_delta_names(subscription: Subscription, request: Any, first: bool) -> None:
    """Apply ``resource_names_subscribe``/``_unsubscribe`` ("Subscribing to Resources").

    A client whose view was reconciled and who names resources has those names diffed by the
    next pass, with whatever else changed (``Subscription.added``), as in SotW: Envoy subscribes
    to a new cluster's EDS name and drops the old one at every DestinationRule change that adds
    a subset, and diffing every one of a thousand names for that cost each stream a copy and a
    comparison of the whole type. Turning the wildcard on or off is diffed in full."""
    subscribe, unsubscribe = list(request.resource_names_subscribe), list(request.resource_names_unsubscribe)
    if first and not subscribe and not unsubscribe:
        subscription.wildcard = True  # legacy wildcard
    named_only = rt.WILDCARD not in subscribe and rt.WILDCARD not in unsubscribe
    reconciled = not first and subscription.synced is not None and named_only
    if (subscribe or unsubscribe) and not reconciled:
        subscription.synced = None  # what the client wants changed: diff in full
    touched: list[str] = []
    for name in subscribe:
        subscription.explicit = True
        if name == rt.WILDCARD:
            subscription.wildcard = True
            continue
        _mutable_names(subscription).add(name)
        if not first:
            subscription.own_known().pop(name, None)  # the client may have forgotten it: resend
        touched.append(name)
    for name in unsubscribe:
        _unsubscribe(subscription, name)
        if subscription.wildcard:
            touched.append(name)  # still wanted under "*": resent or reported removed
    if reconciled and touched:
        subscription.added = subscription.added | frozenset(touched)


def _mutable_names(subscription: Subscription) -> set[str]:
    """Delta changes its names one by one: a set of its own."""
    if not isinstance(subscription.names, set):
        subscription.names = set(subscription.names)
    return subscription.names


def _unsubscribe(subscription: Subscription, name: str) -> None:
    if name == rt.WILDCARD:
        subscription.wildcard = False
        subscription.forget_unwanted()
        return
    _mutable_names(subscription).discard(name)
    if subscription.wildcard:
        # With "*" and the name both subscribed, the client cannot tell whether to keep it: send
        # it again or report it removed ("Unsubscribing from Resources").
        subscription.own_known()[name] = _RESEND
    else:
        subscription.own_known().pop(name, None)


class AggregatedDiscoveryService:
    """The ADS servicer: both RPCs, each a thin shell around ``SotwStream`` / ``DeltaStream``."""

    def __init__(
        self,
        cache: SnapshotCache,
        status: PushStatus | None = None,
        *,
        on_connect: ProxyHook = _ignore,
        on_disconnect: ProxyHook = _ignore,
        authorize: Authorizer | None = None,
        gate: PushGate | None = None,
    ) -> None:
        self.cache = cache
        self.status = status or PushStatus()
        self.gate = gate or PushGate()
        self.handover = Handover()
        self._on_connect, self._on_disconnect = on_connect, on_disconnect
        self._authorize = authorize

    def sotw_stream(self, peer: StreamPeer | None = None) -> SotwStream:
        return self._stream(SotwStream, peer)

    def delta_stream(self, peer: StreamPeer | None = None) -> DeltaStream:
        return self._stream(DeltaStream, peer)

    def _stream(self, kind: type[S], peer: StreamPeer | None) -> S:
        """A stream of ``kind`` sharing this server's cache, status, hooks, gate and hand-over."""
        return kind(
            self.cache,
            self.status,
            self._on_connect,
            self._on_disconnect,
            self._authorize,
            peer,
            self.gate,
            self.handover,
        )

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._stream_aggregated_resources,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=_already_encoded,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._delta_aggregated_resources,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_already_encoded,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))

    async def _stream_aggregated_resources(self, requests: Any, context: Any) -> None:
        await _serve_rpc(self.sotw_stream(stream_peer(context)), requests, context)

    async def _delta_aggregated_resources(self, requests: Any, context: Any) -> None:
        await _serve_rpc(self.delta_stream(stream_peer(context)), requests, context)


def stream_peer(context: Any) -> StreamPeer:
    """Who is on the other end, as grpc tells it: the peer address and, on a TLS port that
    verified it, the client certificate."""
    certificates = (context.auth_context() or {}).get("x509_pem_cert") or [None]
    return StreamPeer(address=context.peer() or "", cert_pem=certificates[0])


def _already_encoded(payload: bytes) -> bytes:
    return payload


async def _serve_rpc(stream: _Stream, requests: Any, context: Any) -> None:
    """Run ``stream`` on a grpc.aio RPC; peer errors become INVALID_ARGUMENT, bugs INTERNAL."""
    try:
        await stream.run(requests, context.write)
    except PeerUnauthorized as error:
        log.warning("ADS stream refused: %s", error)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
    except PeerError as error:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    except StreamSuperseded as error:
        # Two live proxies sharing one node id would replace each other at every reconnect.
        nack_log.log(logging.WARNING, ("superseded", str(error)), "%s (peer %s)", error, context.peer())
        await context.abort(grpc.StatusCode.ABORTED, str(error))
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise
    except Exception:
        log.exception("ADS stream failed")
        await context.abort(grpc.StatusCode.INTERNAL, "internal error in the ADS stream")


async def start_server(
    service: AggregatedDiscoveryService, address: str = "127.0.0.1:0"
) -> tuple[grpc.aio.Server, int]:
    """Start a plaintext grpc.aio server for ``service``; returns it and the bound port."""
    server = grpc.aio.server(options=GRPC_OPTIONS)
    service.register(server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
