"""Push status per connected proxy and type: what was sent, ACKed, NACKed, and when.

The ADS streams report every send, ACK and NACK here; ``status_rows()`` renders the
``proxy-status`` table with istioctl's words: SYNCED (the last response was ACKed), STALE (sent,
not ACKed yet), NACKED (a resource the client should hold was rejected) and NOT SENT. Metrics are
wired in through ``StatusHooks`` (plain callables) so that only ``pilotfish.metrics`` imports
prometheus.

An ACK vouches only for the resources of the response it acknowledges. For the per-resource
types (EDS, RDS, SDS in SotW; every type in delta) a later response carries only what changed, so
its ACK says nothing about a resource an earlier response carried and Envoy rejected
(xds_protocol.rst "ACK and NACK semantics summary"). Each type therefore keeps ``rejected``:
resource name -> the NACK that covered it, until a response carrying that name again is ACKed or
the name leaves the client's view. A type with a rejected resource is NACKED, never SYNCED, and
the NACK names the resource with Envoy's text: of the resources new in the rejected response
(the others were accepted before), those Envoy's text mentions, else all of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, KeysView, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pilotfish.xds import resources as rt
from pilotfish.xds.proxy import Proxy


class StreamKind(StrEnum):
    SOTW = "sotw"
    DELTA = "delta"


class SyncState(StrEnum):
    SYNCED = "SYNCED"
    STALE = "STALE"
    NACKED = "NACKED"
    NOT_SENT = "NOT SENT"


@dataclass(frozen=True, slots=True)
class StatusHooks:
    """Optional metric callbacks: a push of a type, a NACK of a type, push-to-ACK seconds."""

    pushed: Callable[[str], None] | None = None
    nacked: Callable[[str], None] | None = None
    acked: Callable[[str, float], None] | None = None


@dataclass(frozen=True, slots=True)
class Nack:
    """Envoy rejected ``version`` (sent with ``nonce``) saying ``message``; ``resources`` are the
    names held responsible (see ``culprits``)."""

    version: str
    nonce: str
    message: str
    at: float
    resources: tuple[str, ...] = ()


def culprits(names: Iterable[str], message: str) -> tuple[str, ...]:
    """The resources of a rejected response that Envoy's text names (Envoy says which listener
    or cluster it could not add); if it names none, every resource of the response, since any of
    them may be the one."""
    carried = tuple(sorted(set(names)))
    named = tuple(n for n in carried if _mentions(message, n))
    return named or carried


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.|~/:")


def _mentions(message: str, name: str) -> bool:
    """``name`` occurs in ``message`` as a whole word: not inside a longer name (a ``:`` or
    ``.`` right after it counts as punctuation when a space or the end follows)."""
    start = message.find(name) if name else -1
    while start >= 0:
        end = start + len(name)
        before = message[start - 1] if start else " "
        after = message[end : end + 2]
        if before not in _NAME_CHARS and (not after or after[0] not in _NAME_CHARS or _punctuation(after)):
            return True
        start = message.find(name, start + 1)
    return False


def _punctuation(after: str) -> bool:
    return after[0] in ":." and (len(after) == 1 or after[1].isspace())


@dataclass(slots=True)
class TypeStatus:
    """One type on one stream. Times are wall-clock seconds from the injected clock.
    ``sent_names`` are the resources the last response carried (``None``: the whole state, as a
    SotW CDS/LDS response does); ``rejected`` the resources Envoy refused and was not given
    again since."""

    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float | None = None
    acked_version: str = ""
    acked_nonce: str = ""
    acked_at: float | None = None
    nack: Nack | None = None
    pushes: int = 0
    sent_names: Collection[str] | None = None
    sent_changed: Collection[str] | None = None
    rejected: dict[str, Nack] = field(default_factory=dict)

    @property
    def state(self) -> SyncState:
        if not self.sent_nonce:
            return SyncState.NOT_SENT
        if self.rejected or (self.nack is not None and self.nack.nonce == self.sent_nonce):
            return SyncState.NACKED
        if self.acked_nonce == self.sent_nonce:
            return SyncState.SYNCED
        return SyncState.STALE

    def current_nacks(self) -> tuple[Nack, ...]:
        """The NACKs that still hold: one per distinct rejection of a resource still in view."""
        found = {id(n): n for n in self.rejected.values()}
        if self.nack is not None and self.nack.nonce == self.sent_nonce:
            found.setdefault(id(self.nack), self.nack)
        return tuple(found.values())


@dataclass(slots=True, eq=False)
class ConnectionStatus:
    """The status of one ADS stream of one proxy."""

    proxy: Proxy
    kind: StreamKind
    connected_at: float
    types: dict[str, TypeStatus] = field(default_factory=dict)
    # Ends the stream; called when a newer stream of the same proxy id replaces this one.
    close: Callable[[], None] | None = field(default=None, repr=False)

    def of(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())

    @property
    def state(self) -> SyncState:
        """The proxy as a whole (``proxy_state``): SYNCED only when every type sent is."""
        return proxy_state(self)


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One line of ``proxy-status``: ``states`` maps CDS/EDS/LDS/RDS/SDS to a SyncState."""

    proxy_id: str
    cluster_id: str
    kind: StreamKind
    connected_at: float
    states: Mapping[str, SyncState]
    nacks: Mapping[str, str]

    def as_dict(self) -> dict[str, str]:
        """Columns in istioctl's spirit: NAME, CLUSTER, one per type in ADS order, KIND, NACK."""
        row = {"NAME": self.proxy_id, "CLUSTER": self.cluster_id}
        row.update({name: str(state) for name, state in self.states.items()})
        row["KIND"] = str(self.kind)
        row["NACK"] = "; ".join(f"{t}: {m}" for t, m in self.nacks.items())
        return row


class PushStatus:
    """The registry of connected streams, keyed by proxy id (the newest stream wins and the
    older one is closed)."""

    def __init__(self, hooks: StatusHooks | None = None, clock: Callable[[], float] = time.time) -> None:
        self.hooks = hooks or StatusHooks()
        self._clock = clock
        self._connections: dict[str, ConnectionStatus] = {}
        self._lock = threading.Lock()

    def connect(
        self, proxy: Proxy, kind: StreamKind, close: Callable[[], None] | None = None
    ) -> ConnectionStatus:
        """Register a new stream of ``proxy``. A proxy id has one stream at a time: an older
        stream of the same id is closed (``close``), as Istio closes a replaced connection, so
        the status, the metadata and the config always follow the newest stream."""
        connection = ConnectionStatus(proxy, kind, self._clock(), close=close)
        with self._lock:
            previous = self._connections.get(proxy.id)
            self._connections[proxy.id] = connection
        if previous is not None and previous.close is not None:
            previous.close()
        return connection

    def disconnect(self, connection: ConnectionStatus) -> bool:
        """Forget ``connection`` unless a newer stream of the same proxy replaced it; True if
        it was the proxy's live stream (so the proxy is gone now)."""
        with self._lock:
            if self._connections.get(connection.proxy.id) is connection:
                del self._connections[connection.proxy.id]
                return True
        return False

    def get(self, proxy_id: str) -> ConnectionStatus | None:
        with self._lock:
            return self._connections.get(proxy_id)

    def connections(self) -> tuple[ConnectionStatus, ...]:
        with self._lock:
            return tuple(self._connections.values())

    def sent(
        self,
        connection: ConnectionStatus,
        type_url: str,
        version: str,
        nonce: str,
        names: Iterable[str] | None = None,
        changed: Iterable[str] | None = None,
    ) -> None:
        """A response went out carrying ``names`` (``None``: not told, the response stands for
        the whole type), of which ``changed`` are new versions (default: all of them). A changed
        resource is in flight again, so its earlier rejection no longer stands."""
        status = connection.of(type_url)
        status.sent_version, status.sent_nonce, status.sent_at = version, nonce, self._clock()
        status.sent_names = None if names is None else _kept(names)
        status.sent_changed = status.sent_names if changed is None else _kept(changed)
        if status.rejected:  # usually empty: then no walk over a thousand names
            _clear_rejected(status, status.sent_changed)
        status.pushes += 1
        if self.hooks.pushed is not None:
            self.hooks.pushed(type_url)

    def in_view(self, connection: ConnectionStatus, type_url: str, names: Collection[str]) -> None:
        """The client's view of ``type_url`` is now ``names``: a rejected resource that left it
        (removed, unsubscribed) no longer counts against the proxy."""
        status = connection.types.get(type_url)
        if status is None or not status.rejected:
            return
        for name in [n for n in status.rejected if n not in names]:
            del status.rejected[name]

    def already_held(self, connection: ConnectionStatus, type_url: str, version: str) -> None:
        """A delta client reconnected holding exactly the current resources (its
        ``initial_resource_versions``), so nothing was sent: it is in sync at ``version``."""
        status = connection.of(type_url)
        if status.sent_nonce:
            return
        now = self._clock()
        status.sent_version = status.acked_version = version
        status.sent_nonce = status.acked_nonce = "initial"
        status.sent_at = status.acked_at = now

    def acked(
        self, connection: ConnectionStatus, type_url: str, nonce: str, version: str | None = None
    ) -> None:
        """Envoy accepted the response sent with ``nonce`` (ignored unless it is the latest, and,
        when the request says which ``version`` it holds, unless that is the version sent)."""
        status = connection.of(type_url)
        if nonce != status.sent_nonce or status.acked_nonce == nonce:
            return
        if version is not None and version != status.sent_version:
            return
        status.acked_version, status.acked_nonce, status.acked_at = status.sent_version, nonce, self._clock()
        if status.rejected:  # Envoy took every resource of the response
            _clear_rejected(status, status.sent_names)
        if self.hooks.acked is not None and status.sent_at is not None:
            self.hooks.acked(type_url, status.acked_at - status.sent_at)

    def nacked(self, connection: ConnectionStatus, type_url: str, nonce: str, message: str) -> None:
        """Envoy rejected the response sent with ``nonce`` (recorded only if it is the latest):
        the resources it names (or all the response carried) stay rejected until resent."""
        status = connection.of(type_url)
        if nonce != status.sent_nonce:
            return
        # The resources new in this response are the suspects: the others were accepted before.
        blamed = culprits(status.sent_changed or status.sent_names or (), message)
        status.nack = Nack(status.sent_version, nonce, message, self._clock(), blamed)
        for name in blamed:
            status.rejected[name] = status.nack
        if self.hooks.nacked is not None:
            self.hooks.nacked(type_url)

    def rejected_counts(self) -> dict[str, int]:
        """Rejected resources over every connected proxy, by short type name (CDS, EDS...)."""
        counts: dict[str, int] = {}
        for connection in self.connections():
            for type_url, status in connection.types.items():
                if status.rejected:
                    name = rt.short_name(type_url)
                    counts[name] = counts.get(name, 0) + len(status.rejected)
        return counts

    def status_rows(self) -> list[StatusRow]:
        return [_row(c) for c in sorted(self.connections(), key=lambda c: c.proxy.id)]


def _row(connection: ConnectionStatus) -> StatusRow:
    types = {t: connection.types.get(t, TypeStatus()) for t in rt.ADS_ORDER}
    return StatusRow(
        proxy_id=connection.proxy.id,
        cluster_id=connection.proxy.cluster_id,
        kind=connection.kind,
        connected_at=connection.connected_at,
        states={rt.short_name(t): s.state for t, s in types.items()},
        nacks={
            rt.short_name(t): "; ".join(describe(n) for n in s.current_nacks())
            for t, s in types.items()
            if s.state is SyncState.NACKED
        },
    )


def describe(nack: Nack) -> str:
    """``name, name: Envoy's text`` (just the text when no resource could be named)."""
    return f"{', '.join(nack.resources)}: {nack.message}" if nack.resources else nack.message


# Worst first: a proxy counts under the worst state of its types (NOT SENT: nothing asked yet).
_SEVERITY = (SyncState.NACKED, SyncState.STALE, SyncState.SYNCED)


def _clear_rejected(status: TypeStatus, names: Collection[str] | None) -> None:
    """``names`` (None: the whole type) are no longer rejected: sent again, or accepted."""
    if names is None:
        status.rejected.clear()
    else:
        for name in names:
            status.rejected.pop(name, None)


def _kept(names: Iterable[str]) -> Collection[str]:
    """Names as the status keeps them: a tuple or a keys view (of a snapshot's immutable
    mapping, shared with it rather than copied per proxy) as given, anything else as a tuple."""
    return names if isinstance(names, tuple | KeysView) else tuple(names)


def proxy_state(connection: ConnectionStatus) -> SyncState:
    """One word for a proxy: NACKED if any type holds a rejected resource or its latest response
    was rejected, else STALE if one is not ACKed yet, else SYNCED (also when nothing was sent
    yet: nothing is pending)."""
    states = {status.state for status in connection.types.values()}
    return next((s for s in _SEVERITY if s in states), SyncState.SYNCED)


def proxy_states(status: PushStatus) -> dict[str, int]:
    """Connected proxies per state, every state present (a zero is a series Prometheus keeps)."""
    counts = {str(s): 0 for s in _SEVERITY}
    for connection in status.connections():
        counts[str(proxy_state(connection))] += 1
    return counts
