"""Versioned, per-proxy snapshots of Envoy resources, serialized once and shared by every proxy.

Theory of operation
-------------------
The producer (translate) hands the cache protobuf messages. ``ResourceInterner.resource``
serializes a message deterministically, hashes the bytes and, if any live snapshot already holds a
resource with those bytes, returns that very ``Resource``: N proxies that receive the same cluster
share one ``bytes`` body and one pre-encoded ``google.protobuf.Any``, built once. (Keying by content
rather than by object identity costs one upb serialization per hand-off, about a microsecond per
KB, and stays correct if a producer reuses and mutates message objects.)

A resource's version is the hash of its bytes; a type's version is a hash of the set of
``(name, version)`` pairs: the sum, modulo 2**96, of one 96-bit hash per pair (``Resource.digest``,
computed once per distinct resource). An identical rebuild therefore yields identical versions, and
the server, which compares versions, pushes nothing (xds_protocol.rst "When to send an update").
The sum needs no sorting and composes: the version of a union of disjoint sets is the sum of their
sums, so a snapshot assembled from shared parts (``Snapshot.compose``) gets its versions in
O(parts), and a stream that holds all of a type knows its version without hashing anything.

A snapshot may record, per type, what changed since an earlier snapshot (``Snapshot.changes``:
the earlier type version and the names whose resource differs or went away). A stream whose
client holds exactly that earlier version then diffs only those names ("work proportional to the
change": an endpoint change touches one ClusterLoadAssignment, not every proxy's thousands).

``Snapshot.of`` groups resources by type URL and checks consistency before anything is published,
like go-control-plane's ``Snapshot.Consistent``: every EDS name referenced by an EDS cluster and
every RDS name referenced by a listener must be in the same snapshot, and no name may appear twice
(xds_protocol.rst "Duplicate Resource Names"). References are read from the messages themselves
(once per distinct resource, when it is interned) instead of being declared by the producer, so
they cannot drift from what Envoy will actually subscribe to. The server also uses them to resend
the ClusterLoadAssignments of updated clusters (xds_protocol.rst "Resource warming").

Parts are shared, so what is derived from a part is kept with it: a full-state SotW response's
encoded entries (``ResourceSet.sotw_entries``, encoded on first use), a type's mapping when a
rebuilt part holds the same resources of it (so an endpoint change keeps every part's clusters),
and a snapshot's view of a type several parts hold (``Merged``: read through, not copied; kept
from the proxy's previous snapshot while the parts' mappings are the same).

``SnapshotCache`` maps a proxy id to its latest snapshot. ``watch(proxy_id, callback)`` calls
``callback(snapshot)`` on every change, on the thread that called ``set_snapshot``; a watcher that
lives on an event loop hops onto it itself (the server's ``Handover`` batches the hops). There is no
grpc here: the server is the only xDS module that touches the network.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import any_pb2

from pilotfish.xds import resources as rt
from pilotfish.xds import wire

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
    digest: int = -1  # pair_digest(name, version), for type versions; computed when left out
    # The resource as a delta response's ``resources`` entry, encoded on first use (``wire``):
    # every delta stream that receives it sends these very bytes.
    delta_entry: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.digest < 0:
            object.__setattr__(self, "digest", pair_digest(self.name, self.version))


class InconsistentSnapshot(ValueError):
    """A snapshot would make Envoy wait for a resource that is not there; ``problems`` lists each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("inconsistent snapshot: " + "; ".join(self.problems))


_VERSION_BITS = 96
_VERSION_MASK = (1 << _VERSION_BITS) - 1


def pair_digest(name: str, version: str) -> int:
    """The 96-bit hash of one ``(name, version)`` pair."""
    digest = hashlib.blake2b(f"{name}\0{version}".encode(), digest_size=_VERSION_BITS // 8).digest()
    return int.from_bytes(digest, "big")


def version_of_sum(total: int) -> str:
    """The version text of a sum of pair digests."""
    return f"{total & _VERSION_MASK:024x}"


def content_version(pairs: Iterable[tuple[str, str]]) -> str:
    """A version for a set of ``(name, version)`` pairs: equal sets give equal versions, whatever
    their order (a sum of per-pair hashes, see the module doc)."""
    return version_of_sum(sum(pair_digest(name, version) for name, version in pairs))


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
_CHILD_TYPES = frozenset(rt.CHILD_TYPE.values())  # types a parent references by name


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
class TypeChange:
    """What changed in one type since the snapshot whose version of it was ``since``: the names
    whose resource differs, appeared or went away. Anything not named is identical."""

    since: str
    names: frozenset[str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Immutable: for each type URL, name -> Resource, and the type's content version.
    ``changes`` optionally says, per type, what differs from an earlier snapshot (a hint the
    server may use to diff less; a type without one is diffed in full)."""

    resources: Mapping[str, Mapping[str, Resource]]
    versions: Mapping[str, str]
    changes: Mapping[str, TypeChange] = field(default_factory=dict)
    # Per type, the parts that hold it (``compose``); empty for a snapshot made by ``of``.
    parts: Mapping[str, tuple[ResourceSet, ...]] = field(default_factory=dict)
    _entries: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

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

    @classmethod
    def compose(cls, parts: Iterable[ResourceSet], previous: Snapshot | None = None) -> Snapshot:
        """The snapshot made of ``parts`` (disjoint by name; each consistent on its own but for
        references to other parts, which are checked here). A type held by one part shares that
        part's mapping (no copy); versions are sums of the parts'. With ``previous`` (this proxy's
        last snapshot), each type records what changed since it (``TypeChange``)."""
        parts = [p for p in parts if p.named]
        by_type: dict[str, list[ResourceSet]] = {t: [] for t in rt.ADS_ORDER}
        for part in parts:
            for type_url in part.named:
                by_type.setdefault(type_url, []).append(part)
        resources: dict[str, Mapping[str, Resource]] = {}
        versions: dict[str, str] = {}
        problems: list[str] = []
        for type_url, holders in by_type.items():
            if len(holders) == 1:
                resources[type_url] = holders[0].named[type_url]
            elif previous is not None and _same_holdings(previous.parts.get(type_url), holders, type_url):
                resources[type_url] = previous.named(type_url)  # checked when it was merged
            else:
                maps = tuple(h.named[type_url] for h in holders)
                for i, earlier in enumerate(maps):
                    for later in maps[i + 1 :]:
                        if not earlier.keys().isdisjoint(later.keys()):
                            twice = sorted(earlier.keys() & later.keys())
                            problems.extend(f"{rt.short_name(type_url)} {n!r} appears twice" for n in twice)
                resources[type_url] = Merged(maps)
            versions[type_url] = version_of_sum(sum(h.sums.get(type_url, 0) for h in holders))
        for part in parts:
            problems.extend(_unresolved(part, resources))
        if problems:
            raise InconsistentSnapshot(problems)
        changes = _changes(previous, by_type, resources, versions) if previous is not None else {}
        held = {t: tuple(h) for t, h in by_type.items() if h}
        return cls(
            MappingProxyType(resources),
            MappingProxyType(versions),
            MappingProxyType(changes),
            MappingProxyType(held),
        )

    def named(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, _EMPTY)

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, _EMPTY_VERSION)

    def sotw_entries(self, type_url: str) -> tuple[bytes, ...]:
        """Every resource of ``type_url`` as ``DiscoveryResponse`` entries (``wire.sotw_entries``):
        one blob per part, each encoded once and shared by every snapshot holding the part, so
        a full-state response costs a stream one join however many resources it carries."""
        holders = self.parts.get(type_url)
        if holders:
            return tuple(h.sotw_entries(type_url) for h in holders)
        found = self._entries.get(type_url)
        if found is None:
            found = self._entries[type_url] = _encode_entries(self.named(type_url))
        return (found,)

    def children(self, type_url: str, names: Iterable[str]) -> set[str]:
        """Names of the child resources (EDS of clusters, RDS of listeners) referenced by ``names``."""
        named = self.named(type_url)
        return {child for name in names if name in named for child in named[name].references}


_EMPTY: Mapping[str, Resource] = MappingProxyType({})


class Merged(Mapping[str, Resource]):
    """The union of disjoint name -> resource mappings, read through rather than copied: a
    proxy's clusters are its scope's shared outbound ones plus its own inbound ones, and a copy
    of a thousand entries per proxy per push is memory, time and garbage-collector work (the
    young collections of a push walked a million such entries). ``pairs`` iterates at C speed."""

    __slots__ = ("maps", "_length")

    def __init__(self, maps: tuple[Mapping[str, Resource], ...]) -> None:
        self.maps = maps
        self._length = sum(len(m) for m in maps)

    def __getitem__(self, name: str) -> Resource:
        found: Resource | None = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def get(self, name: str, default: Any = None) -> Any:
        for named in self.maps:
            found = named.get(name)
            if found is not None:
                return found
        return default

    def __contains__(self, name: object) -> bool:
        return any(name in named for named in self.maps)

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self.maps)

    def __len__(self) -> int:
        return self._length


def pairs(named: Mapping[str, Resource]) -> Iterable[tuple[str, Resource]]:
    """``named.items()``, without a Python-level lookup per entry for a ``Merged`` mapping."""
    if isinstance(named, Merged):
        return itertools.chain.from_iterable(m.items() for m in named.maps)
    return named.items()


def as_dict(named: Mapping[str, Resource]) -> dict[str, Resource]:
    """A dict copy of ``named`` (C-level merges for a ``Merged`` mapping)."""
    if isinstance(named, Merged):
        out: dict[str, Resource] = {}
        for part in named.maps:
            out.update(part)
        return out
    return dict(named)


_EMPTY_VERSION = content_version(())


def _type_version(named: Mapping[str, Resource]) -> str:
    return version_of_sum(sum(r.digest for r in named.values()))


@dataclass(frozen=True, slots=True, eq=False)
class ResourceSet:
    """A consistent-but-for-``external`` group of resources, shared by every snapshot built from
    it (``Snapshot.compose``): the outbound clusters and endpoints of one scope, say. ``sums``
    are the types' digest sums; ``external`` the child names its parents reference that another
    part must supply."""

    named: Mapping[str, Mapping[str, Resource]]
    sums: Mapping[str, int]
    external: Mapping[str, frozenset[tuple[str, str]]]
    changes: Mapping[str, TypeChange] = field(default_factory=dict)
    _entries: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def version(self, type_url: str) -> str:
        return version_of_sum(self.sums.get(type_url, 0))

    def sotw_entries(self, type_url: str) -> bytes:
        """This part's resources of ``type_url`` as joined ``DiscoveryResponse`` entries, by name,
        encoded on first use (by the server, on its event loop) and kept with the part."""
        found = self._entries.get(type_url)
        if found is None:
            found = self._entries[type_url] = _encode_entries(self.named.get(type_url, _EMPTY))
        return found

    @classmethod
    def of(
        cls, resources: Iterable[Resource], local_children: bool = True, previous: ResourceSet | None = None
    ) -> ResourceSet:
        """Group ``resources``; duplicate names raise ``InconsistentSnapshot``. With
        ``local_children`` a reference to a child type held here must resolve here. With
        ``previous`` (the same part's last build) each type records what changed since it, once
        for every snapshot that shares this part."""
        by_type: dict[str, dict[str, Resource]] = {}
        problems: list[str] = []
        for resource in resources:
            of_type = by_type.setdefault(resource.type_url, {})
            if resource.name in of_type:
                problems.append(f"{rt.short_name(resource.type_url)} {resource.name!r} appears twice")
            of_type[resource.name] = resource
        external: dict[str, frozenset[tuple[str, str]]] = {}
        for parent, child in rt.CHILD_TYPE.items():
            children = by_type.get(child, {})
            refs = [
                (name, ref)
                for name, resource in by_type.get(parent, {}).items()
                for ref in resource.references
                if ref not in children
            ]
            if refs and local_children and child in by_type:
                problems.extend(
                    f"{rt.short_name(parent)} {name!r} references {rt.short_name(child)} {ref!r}, "
                    "which is not in the snapshot"
                    for name, ref in sorted(refs)
                )
            elif refs:
                external[parent] = frozenset(refs)
        if problems:
            raise InconsistentSnapshot(problems)
        named: dict[str, Mapping[str, Resource]] = {t: MappingProxyType(n) for t, n in by_type.items()}
        sums = {t: sum(r.digest for r in n.values()) for t, n in by_type.items()}
        changes: dict[str, TypeChange] = {}
        kept: list[str] = []
        if previous is not None:
            for type_url, now in named.items():
                old = previous.named.get(type_url, _EMPTY)
                if sums[type_url] == previous.sums.get(type_url, 0) and type_url in previous.named:
                    changes[type_url] = TypeChange(previous.version(type_url), frozenset())
                    # The same resources (interned: the same objects): keep the previous mapping,
                    # so snapshots composed from it can keep what they built on it (their merged
                    # mapping, ``Snapshot.compose``; the encoded entries, below).
                    named[type_url] = old
                    kept.append(type_url)
                else:
                    changes[type_url] = TypeChange(previous.version(type_url), _differing(old, now))
        part = cls(MappingProxyType(named), MappingProxyType(sums), MappingProxyType(external), changes)
        if previous is not None:
            for type_url in kept:
                if type_url in previous._entries:
                    part._entries[type_url] = previous._entries[type_url]
        return part

    @classmethod
    def revised(
        cls, previous: ResourceSet, removed: Iterable[Resource], added: Iterable[Resource]
    ) -> ResourceSet | None:
        """``of(<previous's resources> - removed + added, previous=previous)`` worked out from the
        change alone: an endpoint change rebuilds one service's resources of a scope's thousands,
        and ``of`` would group, sum and compare all of them again, once per scope. A type the
        change does not touch keeps the previous mapping (and its encoded entries). None when
        the shortcut does not apply and ``of`` must decide (a child removed for good, which a
        parent elsewhere in the part may reference; a reference to another part; any problem,
        so that ``of`` reports it as always)."""
        if previous.external:
            return None
        old_by_type: dict[str, dict[str, Resource]] = {}
        for resource in removed:
            old_by_type.setdefault(resource.type_url, {})[resource.name] = resource
        new_by_type: dict[str, dict[str, Resource]] = {}
        for resource in added:
            of_type = new_by_type.setdefault(resource.type_url, {})
            if resource.name in of_type:
                return None  # twice: ``of`` says so
            of_type[resource.name] = resource
        named = dict(previous.named)
        sums = dict(previous.sums)
        changes = {t: TypeChange(previous.version(t), frozenset()) for t in named}
        for type_url in old_by_type.keys() | new_by_type.keys():
            old, new = old_by_type.get(type_url, {}), new_by_type.get(type_url, {})
            before = previous.named.get(type_url, _EMPTY)
            if any(before.get(n) is not r for n, r in old.items()):
                return None  # "removed" is not what the part holds
            gone = old.keys() - new.keys()
            if gone and type_url in _CHILD_TYPES:
                return None
            current = dict(before)
            for name in gone:
                del current[name]
            for name, resource in new.items():
                if name in current and name not in old:
                    return None  # a name another resource of the part holds
                current[name] = resource
            if not current:
                return None
            differing = frozenset(n for n in old.keys() | new.keys() if current.get(n) is not before.get(n))
            if differing:
                named[type_url] = MappingProxyType(current)
                digests = sum(r.digest for r in new.values()) - sum(r.digest for r in old.values())
                sums[type_url] = previous.sums.get(type_url, 0) + digests
            changes[type_url] = TypeChange(previous.version(type_url), differing)
        for parent, child in rt.CHILD_TYPE.items():
            parents = new_by_type.get(parent)
            if not parents:
                continue
            children = named.get(child)
            if children is None:
                return None  # references to another part: ``of`` works out ``external``
            if any(ref not in children for r in parents.values() for ref in r.references):
                return None
        part = cls(MappingProxyType(named), MappingProxyType(sums), MappingProxyType({}), changes)
        for type_url, mapping in named.items():
            if mapping is previous.named.get(type_url) and type_url in previous._entries:
                part._entries[type_url] = previous._entries[type_url]
        return part


def _same_holdings(before: tuple[ResourceSet, ...] | None, holders: list[ResourceSet], type_url: str) -> bool:
    """Whether the previous snapshot merged ``type_url`` from the very same mappings: then its
    merged mapping is this one (an endpoint change keeps every part's CDS mapping, so a
    thousand proxies do not each merge a thousand clusters again)."""
    return (
        before is not None
        and len(before) == len(holders)
        and all(b.named.get(type_url) is h.named[type_url] for b, h in zip(before, holders, strict=True))
    )


def _encode_entries(named: Mapping[str, Resource]) -> bytes:
    return wire.sotw_entries(r for _, r in sorted(named.items()))


def _differing(old: Mapping[str, Resource], new: Mapping[str, Resource]) -> frozenset[str]:
    """Names whose resource is not the same object (the interner makes equal bytes one object)."""
    changed = {n for n, r in new.items() if old.get(n) is not r}
    changed.update(n for n in old if n not in new)
    return frozenset(changed)


def _unresolved(part: ResourceSet, resources: Mapping[str, Mapping[str, Resource]]) -> Iterator[str]:
    for parent, refs in part.external.items():
        children = resources.get(rt.CHILD_TYPE[parent], _EMPTY)
        missing = [(name, reference) for name, reference in refs if reference not in children]
        for name, reference in sorted(missing):  # only the missing ones: most parts have none
            if reference not in children:
                yield (
                    f"{rt.short_name(parent)} {name!r} references {rt.short_name(rt.CHILD_TYPE[parent])} "
                    f"{reference!r}, which is not in the snapshot"
                )


def _changes(
    previous: Snapshot,
    holders: Mapping[str, list[ResourceSet]],
    resources: Mapping[str, Mapping[str, Resource]],
    versions: Mapping[str, str],
) -> dict[str, TypeChange]:
    """Per type, the names that differ from ``previous``. A type whose version did not move
    changed nothing; a type held by one part that knows its change since ``previous``'s version
    reuses it (computed once per part, not per proxy); otherwise names are compared by identity."""
    out: dict[str, TypeChange] = {}
    for type_url, named in resources.items():
        since = previous.version(type_url)
        if versions[type_url] == since:
            out[type_url] = TypeChange(since, frozenset())
            continue
        parts = holders.get(type_url, [])
        known = parts[0].changes.get(type_url) if len(parts) == 1 else None
        if known is not None and known.since == since:
            out[type_url] = known
            continue
        by_part = _change_by_part(previous.parts.get(type_url), parts, type_url)
        if by_part is not None:
            out[type_url] = TypeChange(since, by_part)
        else:
            out[type_url] = TypeChange(since, _differing(previous.named(type_url), named))
    return out


def _change_by_part(
    before: tuple[ResourceSet, ...] | None, parts: list[ResourceSet], type_url: str
) -> frozenset[str] | None:
    """What changed in a type merged from several parts, part by part against the parts the
    previous snapshot merged (a part's own record of its change where it has one): a proxy's
    thousand outbound clusters are not compared one by one when its local part's changed.
    None when the parts do not line up (compare the whole type)."""
    if before is None or len(before) != len(parts):
        return None
    names: set[str] = set()
    for old, new in zip(before, parts, strict=True):
        old_named, new_named = old.named.get(type_url, _EMPTY), new.named.get(type_url, _EMPTY)
        if old_named is new_named:
            continue
        change = new.changes.get(type_url)
        if change is not None and change.since == old.version(type_url):
            names.update(change.names)
        else:
            names.update(_differing(old_named, new_named))
    return frozenset(names)


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
        self.interner = interner if interner is not None else ResourceInterner()
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
