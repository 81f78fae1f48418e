"""Versioned, per-proxy snapshots of Envoy resources, serialized once and shared by every proxy.

Theory of operation
-------------------
The producer (translate) hands the cache protobuf messages. ``ResourceInterner.resource``
serializes a message deterministically, hashes the bytes and, if any live snapshot already holds a
resource with those bytes, returns that very ``Resource``: N proxies that receive the same cluster
share one ``bytes`` body and one pre-encoded ``google.protobuf.Any``, built once. (Keying by content
rather than by object identity costs one upb serialization per hand-off, about a microsecond per
KB, and stays correct if a producer reuses and mutates message objects.)

A resource's version is the hash of its bytes; a type's version is a hash of the sorted
``(name, version)`` pairs. An identical rebuild therefore yields identical versions, and the server,
which compares versions, pushes nothing (xds_protocol.rst "When to send an update").

``Snapshot.of`` groups resources by type URL and checks consistency before anything is published,
like go-control-plane's ``Snapshot.Consistent``: every EDS name referenced by an EDS cluster and
every RDS name referenced by a listener must be in the same snapshot, and no name may appear twice
(xds_protocol.rst "Duplicate Resource Names"). References are read from the messages themselves
(once per distinct resource, when it is interned) instead of being declared by the producer, so
they cannot drift from what Envoy will actually subscribe to. The server also uses them to resend
the ClusterLoadAssignments of updated clusters (xds_protocol.rst "Resource warming").

``SnapshotCache`` maps a proxy id to its latest snapshot. ``watch(proxy_id, callback)`` calls
``callback(snapshot)`` on every change, on the thread that called ``set_snapshot``; a watcher that
lives on an event loop hops onto it itself (the server uses ``call_soon_threadsafe``). There is no
grpc here: the server is the only xDS module that touches the network.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import any_pb2

from pilotfish.xds import resources as rt

_HCM = http_connection_manager_pb2.HttpConnectionManager
_HCM_TYPE_URL = "type.googleapis.com/" + _HCM.DESCRIPTOR.full_name


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Resource:
    """One named Envoy resource at one version. ``references`` are child names (EDS or RDS)."""

    type_url: str
    name: str
    version: str
    body: bytes
    any_bytes: bytes
    references: frozenset[str] = frozenset()


class InconsistentSnapshot(ValueError):
    """A snapshot would make Envoy wait for a resource that is not there; ``problems`` lists each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("inconsistent snapshot: " + "; ".join(self.problems))


def content_version(pairs: Iterable[tuple[str, str]]) -> str:
    """A version for a set of ``(name, version)`` pairs: equal sets give equal versions."""
    # One update with the joined text hashes exactly what one update per pair would.
    text = "".join(f"{name}\0{version}\n" for name, version in sorted(pairs))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class ResourceInterner:
    """Turns messages into shared ``Resource`` objects, one per distinct (type, bytes).

    The table holds each resource weakly: an entry lives as long as some snapshot holds its
    resource. It is a plain dict of ``_KeyedRef`` rather than a ``WeakValueDictionary``, whose
    Python-level ``get`` (a ``KeyError`` raised and caught per miss) and ``KeyedRef`` constructor
    cost about as much as serializing the resource."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, bytes], _KeyedRef] = {}
        self._lock = threading.Lock()

    def resource(self, message: Any) -> Resource:
        type_url = rt.type_url_of(message)
        body = message.SerializeToString(deterministic=True)
        key = (type_url, hashlib.blake2b(body, digest_size=12).digest())
        with self._lock:
            ref = self._live.get(key)
            found = ref() if ref is not None else None
            if found is None:
                found = _new_resource(type_url, message, body, key[1].hex())
                ref = self._live[key] = _KeyedRef(found, self._forget)
                ref.key = key
        return found

    def _forget(self, ref: _KeyedRef) -> None:
        """Called when a resource dies. Takes no lock: it may run inside ``resource`` (a garbage
        collection there), and an entry already replaced by a newer resource is left alone."""
        if self._live.get(ref.key) is ref:
            self._live.pop(ref.key, None)

    def __len__(self) -> int:
        return len(self._live)


class _KeyedRef(weakref.ref[Resource]):
    """A weak reference that knows its table key. Unlike ``weakref.KeyedRef`` it has no
    Python-level constructor: the key is set after the C one returns."""

    __slots__ = ("key",)
    key: tuple[str, bytes]


def _new_resource(type_url: str, message: Any, body: bytes, version: str) -> Resource:
    finder = _REFERENCE_FINDERS.get(type_url)
    references = frozenset(finder(message)) if finder is not None else _NO_REFERENCES
    return Resource(
        type_url, rt.name_of(type_url, message), version, body, any_bytes(type_url, body), references
    )


_NO_REFERENCES: frozenset[str] = frozenset()


def any_bytes(type_url: str, body: bytes) -> bytes:
    """The serialized ``google.protobuf.Any`` of ``body``, written around the body we already hold
    rather than copied into an ``Any`` message and serialized a second time. Byte for byte what
    ``Any(type_url=..., value=body).SerializeToString()`` gives: both fields length-delimited, in
    number order, an empty value left off the wire (proto3)."""
    head = _ANY_HEADS.get(type_url) or _any_head(type_url)
    return head + _ANY_VALUE_TAG + _varint(len(body)) + body if body else head


def _any_head(type_url: str) -> bytes:
    """The ``type_url`` field of an ``Any``."""
    url = type_url.encode()
    return _ANY_TYPE_URL_TAG + _varint(len(url)) + url


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_LENGTH_DELIMITED = 2
_ANY_FIELDS = {f.name: f.number for f in any_pb2.Any.DESCRIPTOR.fields}
_ANY_TYPE_URL_TAG = _varint(_ANY_FIELDS["type_url"] << 3 | _LENGTH_DELIMITED)
_ANY_VALUE_TAG = _varint(_ANY_FIELDS["value"] << 3 | _LENGTH_DELIMITED)
_ANY_HEADS: Mapping[str, bytes] = MappingProxyType({t: _any_head(t) for t in rt.ADS_ORDER})


def _eds_names(cluster: Any) -> Iterator[str]:
    """An EDS cluster subscribes to ``eds_cluster_config.service_name``, else its own name."""
    if cluster.WhichOneof("cluster_discovery_type") == "type" and cluster.type == cluster_pb2.Cluster.EDS:
        yield cluster.eds_cluster_config.service_name or cluster.name


def _rds_names(listener: Any) -> Iterator[str]:
    """Route names of every HTTP connection manager that uses RDS, in any filter chain."""
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url != _HCM_TYPE_URL:
                continue
            manager = _HCM.FromString(network_filter.typed_config.value)
            if manager.HasField("rds"):
                yield manager.rds.route_config_name


_REFERENCE_FINDERS: Mapping[str, Callable[[Any], Iterator[str]]] = MappingProxyType(
    {rt.CLUSTER: _eds_names, rt.LISTENER: _rds_names}
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Immutable: for each type URL, name -> Resource, and the type's content version."""

    resources: Mapping[str, Mapping[str, Resource]]
    versions: Mapping[str, str]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Snapshot:
        """Group ``resources`` by type and check consistency; raises ``InconsistentSnapshot``."""
        by_type: dict[str, dict[str, Resource]] = {t: {} for t in rt.ADS_ORDER}
        problems: list[str] = []
        for resource in resources:
            named = by_type.setdefault(resource.type_url, {})
            if resource.name in named:
                problems.append(f"{rt.short_name(resource.type_url)} {resource.name!r} appears twice")
            named[resource.name] = resource
        problems.extend(_dangling_references(by_type))
        if problems:
            raise InconsistentSnapshot(problems)
        return cls(
            resources=MappingProxyType({t: MappingProxyType(n) for t, n in by_type.items()}),
            versions=MappingProxyType({t: _type_version(n) for t, n in by_type.items()}),
        )

    def named(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, _EMPTY)

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, _EMPTY_VERSION)

    def children(self, type_url: str, names: Iterable[str]) -> set[str]:
        """Names of the child resources (EDS of clusters, RDS of listeners) referenced by ``names``."""
        named = self.named(type_url)
        return {child for name in names if name in named for child in named[name].references}


_EMPTY: Mapping[str, Resource] = MappingProxyType({})
_EMPTY_VERSION = content_version(())


def _type_version(named: Mapping[str, Resource]) -> str:
    return content_version((name, r.version) for name, r in named.items())


def _dangling_references(by_type: Mapping[str, Mapping[str, Resource]]) -> Iterator[str]:
    for parent, child in rt.CHILD_TYPE.items():
        children = by_type.get(child, _EMPTY)
        # Not ``references - children.keys()``: that walks every key of ``children`` for each
        # parent (CPython builds the difference from the keys view), O(n²) over a snapshot. Only
        # the missing references are sorted, not every parent: most snapshots have none.
        missing = [
            (name, reference)
            for name, resource in by_type.get(parent, _EMPTY).items()
            for reference in resource.references
            if reference not in children
        ]
        for name, reference in sorted(missing):
            yield (
                f"{rt.short_name(parent)} {name!r} references {rt.short_name(child)} "
                f"{reference!r}, which is not in the snapshot"
            )


SnapshotCallback = Callable[[Snapshot], None]


class SnapshotCache:
    """The latest snapshot per proxy id, with change callbacks. Thread-safe."""

    def __init__(self, interner: ResourceInterner | None = None) -> None:
        self.interner = interner or ResourceInterner()
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, list[SnapshotCallback]] = {}
        self._lock = threading.Lock()

    def build(self, messages: Iterable[Any]) -> Snapshot:
        """Intern ``messages`` and assemble a consistent ``Snapshot`` (not yet published)."""
        return Snapshot.of(self.interner.resource(m) for m in messages)

    def set_snapshot(self, proxy_id: str, snapshot: Snapshot) -> bool:
        """Publish ``snapshot``; watchers are called only if some type version changed."""
        with self._lock:
            previous = self._snapshots.get(proxy_id)
            self._snapshots[proxy_id] = snapshot
            watchers = list(self._watchers.get(proxy_id, ()))
        if previous is not None and previous.versions == snapshot.versions:
            return False
        for callback in watchers:
            callback(snapshot)
        return True

    def get(self, proxy_id: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(proxy_id)

    def clear(self, proxy_id: str) -> None:
        """Forget the snapshot of ``proxy_id`` (connected streams keep what they have)."""
        with self._lock:
            self._snapshots.pop(proxy_id, None)

    def proxy_ids(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._snapshots)

    def watch(self, proxy_id: str, callback: SnapshotCallback) -> Callable[[], None]:
        """Call ``callback`` with each new snapshot of ``proxy_id``; returns the cancel function."""
        with self._lock:
            self._watchers.setdefault(proxy_id, []).append(callback)

        def cancel() -> None:
            with self._lock:
                callbacks = self._watchers.get(proxy_id, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._watchers.pop(proxy_id, None)

        return cancel
