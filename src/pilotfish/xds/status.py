"""Push status per connected proxy and type: what was sent, ACKed, NACKed, and when.

The ADS streams report every send, ACK and NACK here; ``status_rows()`` renders the
``proxy-status`` table with istioctl's words: SYNCED (the last response was ACKed), STALE (sent,
not ACKed yet), NACKED (the last response was rejected) and NOT SENT. Metrics are wired in through
``StatusHooks`` (plain callables) so that only ``pilotfish.metrics`` imports prometheus.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
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
    """Envoy rejected ``version`` (sent with ``nonce``) saying ``message``."""

    version: str
    nonce: str
    message: str
    at: float


@dataclass(slots=True)
class TypeStatus:
    """One type on one stream. Times are wall-clock seconds from the injected clock."""

    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float | None = None
    acked_version: str = ""
    acked_nonce: str = ""
    acked_at: float | None = None
    nack: Nack | None = None
    pushes: int = 0

    @property
    def state(self) -> SyncState:
        if not self.sent_nonce:
            return SyncState.NOT_SENT
        if self.nack is not None and self.nack.nonce == self.sent_nonce:
            return SyncState.NACKED
        if self.acked_nonce == self.sent_nonce:
            return SyncState.SYNCED
        return SyncState.STALE


@dataclass(slots=True, eq=False)
class ConnectionStatus:
    """The status of one ADS stream of one proxy."""

    proxy: Proxy
    kind: StreamKind
    connected_at: float
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def of(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())


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
    """The registry of connected streams, keyed by proxy id (the newest stream wins)."""

    def __init__(self, hooks: StatusHooks | None = None, clock: Callable[[], float] = time.time) -> None:
        self.hooks = hooks or StatusHooks()
        self._clock = clock
        self._connections: dict[str, ConnectionStatus] = {}
        self._lock = threading.Lock()

    def connect(self, proxy: Proxy, kind: StreamKind) -> ConnectionStatus:
        connection = ConnectionStatus(proxy, kind, self._clock())
        with self._lock:
            self._connections[proxy.id] = connection
        return connection

    def disconnect(self, connection: ConnectionStatus) -> None:
        """Forget ``connection`` unless a newer stream of the same proxy replaced it."""
        with self._lock:
            if self._connections.get(connection.proxy.id) is connection:
                del self._connections[connection.proxy.id]

    def get(self, proxy_id: str) -> ConnectionStatus | None:
        with self._lock:
            return self._connections.get(proxy_id)

    def connections(self) -> tuple[ConnectionStatus, ...]:
        with self._lock:
            return tuple(self._connections.values())

    def sent(self, connection: ConnectionStatus, type_url: str, version: str, nonce: str) -> None:
        status = connection.of(type_url)
        status.sent_version, status.sent_nonce, status.sent_at = version, nonce, self._clock()
        status.pushes += 1
        if self.hooks.pushed is not None:
            self.hooks.pushed(type_url)

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

    def acked(self, connection: ConnectionStatus, type_url: str, nonce: str) -> None:
        """Envoy accepted the response sent with ``nonce`` (ignored unless it is the latest)."""
        status = connection.of(type_url)
        if nonce != status.sent_nonce or status.acked_nonce == nonce:
            return
        status.acked_version, status.acked_nonce, status.acked_at = status.sent_version, nonce, self._clock()
        if self.hooks.acked is not None and status.sent_at is not None:
            self.hooks.acked(type_url, status.acked_at - status.sent_at)

    def nacked(self, connection: ConnectionStatus, type_url: str, nonce: str, message: str) -> None:
        """Envoy rejected the response sent with ``nonce`` (recorded only if it is the latest)."""
        status = connection.of(type_url)
        if nonce != status.sent_nonce:
            return
        status.nack = Nack(status.sent_version, nonce, message, self._clock())
        if self.hooks.nacked is not None:
            self.hooks.nacked(type_url)

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
        nacks={rt.short_name(t): nack.message for t, nack in _current_nacks(types)},
    )


def _current_nacks(types: Mapping[str, TypeStatus]) -> list[tuple[str, Nack]]:
    """The NACKs of the latest response of each type (older ones were superseded)."""
    return [(t, s.nack) for t, s in types.items() if s.nack is not None and s.state is SyncState.NACKED]


# Worst first: a proxy counts under the worst state of its types (NOT SENT: nothing asked yet).
_SEVERITY = (SyncState.NACKED, SyncState.STALE, SyncState.SYNCED)


def proxy_state(connection: ConnectionStatus) -> SyncState:
    """One word for a proxy: NACKED if its latest response of any type was rejected, else STALE
    if one is not ACKed yet, else SYNCED (also when nothing was sent yet: nothing is pending)."""
    states = {status.state for status in connection.types.values()}
    return next((s for s in _SEVERITY if s in states), SyncState.SYNCED)


def proxy_states(status: PushStatus) -> dict[str, int]:
    """Connected proxies per state, every state present (a zero is a series Prometheus keeps)."""
    counts = {str(s): 0 for s in _SEVERITY}
    for connection in status.connections():
        counts[str(proxy_state(connection))] += 1
    return counts
