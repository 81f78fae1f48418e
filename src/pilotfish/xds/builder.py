"""Per-proxy snapshots assembled from shared, cached parts: work proportional to the change.

Theory of operation
-------------------
A proxy's snapshot is the union of four parts (``cache.ResourceSet``), each built once for every
proxy that shares what it depends on, and composed in O(parts) (``Snapshot.compose``):

- **outbound** (CDS + EDS of the mesh's services): one per *outbound scope* — proxy type,
  namespace, what its labels select (``keys.label_view``: DestinationRule, Sidecar, policy
  selectors), locality and IP family (DNS clusters). Not per IP: a thousand sidecars of one
  namespace share one part, its bytes and its versions. Inside, every service port's clusters
  and every ClusterLoadAssignment come from tables keyed by their inputs (``translate.keys``,
  Istio's XDS cache) that outlive snapshots and scopes, so a change rebuilds only the resources
  whose inputs changed: one endpoint change, one assignment.
- **routes** (RDS): one per route scope — type, namespace, label view, DNS domain and the route
  names the listeners ask for; kept across snapshots while the *config epoch* holds.
- **local** (LDS, inbound clusters, the ext_authz cluster): per proxy class (``proxy_class``:
  these bind the proxy's IP), kept across snapshots while the config epoch holds and the
  endpoints at the proxy's IP (its inbound ports) are the same.
- **secrets** (SDS): per proxy, from the CA.

The *config epoch* changes when anything but endpoints changes: resources other than
WorkloadEntries, the services, the mesh config, the ext_authz address. Routes and listeners do
not read endpoints (but for the proxy's own inbound ports, which the local part's key holds), so
an endpoint change rebuilds none of them: it costs the registry, the changed hosts' assignments
in each scope (the other service ports' groups are taken over as they are), and an O(parts)
compose per proxy. Each part remembers what changed since its previous build, so the server
diffs only those names (``cache.TypeChange``).

Routes and listeners are kept per *routes epoch*: the config epoch with each DestinationRule
reduced to the traffic policies they read (``_Epoch._route_view``), so a subset added or
relabelled rebuilds no route. A change of DestinationRules alone is incremental like an
endpoint change: only the hosts the changed rules apply to (``rule_hosts``) are rebuilt.

Not thread-safe: one worker thread owns a builder (``app.ControlPlane`` runs it off the event
loop). Tables are swept at the end of each full pass over the proxies (``finish``): an entry no
proxy used in the last two passes is dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Generic, TypeVar

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

from pilotfish.config.hosts import resolve_host
from pilotfish.registry.model import Endpoint, Service, ServicePort
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds import resources as rt
from pilotfish.xds.cache import Resource, ResourceInterner, ResourceSet, Snapshot
from pilotfish.xds.proxy import Proxy
from pilotfish.xds.translate.authz import authz_clusters
from pilotfish.xds.translate.clusters import ClusterTemplates, service_port_clusters
from pilotfish.xds.translate.destination_rules import is_wildcard
from pilotfish.xds.translate.endpoints import (
    Destination,
    LbEndpointWriter,
    by_locality,
    cluster_endpoints,
    load_assignment,
    locality_policy,
    visible_destinations,
)
from pilotfish.xds.translate.gateway_l4 import has_auto_passthrough, sni_dnat_clusters
from pilotfish.xds.translate.inbound import translate_inbound_clusters
from pilotfish.xds.translate.keys import (
    Reprs,
    assignment_key,
    endpoints_fingerprint,
    has_network_policies,
    is_ipv6,
    label_view,
    netpol_scope,
    outbound_clusters_key,
)
from pilotfish.xds.translate.listeners import route_names, translate_listeners
from pilotfish.xds.translate.locality import locality_groups
from pilotfish.xds.translate.mtls import endpoint_mtls
from pilotfish.xds.translate.netpol import admitted, bind_source, egress_admission
from pilotfish.xds.translate.routes import translate_routes

log = logging.getLogger(__name__)
V = TypeVar("V")

# Kinds that only add endpoints: a change to them alone keeps the config epoch.
ENDPOINT_KINDS = frozenset({"WorkloadEntry"})

ProxyClass = tuple[str, str, tuple[tuple[str, str], ...], str, tuple[tuple[str, str], ...], str, str]
SecretSource = Callable[[MeshSnapshot, Proxy], Iterable[Any]]
# Seconds spent per part; wired to metrics by the caller.
Timing = Callable[[str, float], None]


def proxy_class(proxy: Proxy) -> ProxyClass:
    """Proxies that get identical config: same type, namespace and labels, and — since inbound
    and gateway listeners bind the proxy's own IP — same IP and listener metadata, and — since
    the snapshot carries the workload's key (SDS ``default``) — the same service account: two
    identities never share a key."""
    metadata = {**proxy.metadata, **{f"APP_PORTS.{k}": str(v) for k, v in proxy.app_ports.items()}}
    return (
        str(proxy.type),
        proxy.namespace,
        tuple(sorted(proxy.labels.items())),
        proxy.ip,
        tuple(sorted(metadata.items())),
        proxy.service_account,
        proxy.locality,  # EDS priorities and weights follow it
    )


def outbound_scope(mesh: MeshSnapshot, proxy: Proxy) -> Hashable:
    """What the outbound clusters and endpoints of a proxy depend on (see ``keys``): its type,
    namespace, labels, locality and IP family, and the workload itself only under NetworkPolicy."""
    labels = label_view(mesh, proxy)
    family = is_ipv6(proxy.ip)
    return (str(proxy.type), proxy.namespace, labels, proxy.locality, family, netpol_scope(mesh, proxy))


def route_scope(mesh: MeshSnapshot, proxy: Proxy) -> Hashable:
    """What a proxy's route configurations depend on besides their names."""
    return (str(proxy.type), proxy.namespace, label_view(mesh, proxy), proxy.dns_domain)


class KeyedTable(Generic[V]):
    """Values by key, each remembering the last pass that used it (``sweep`` drops the rest)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[int, V]] = {}
        self.generation = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            if found[0] != self.generation:
                self._entries[key] = (self.generation, found[1])
            return found[1]
        self.misses += 1
        value = build()
        self._entries[key] = (self.generation, value)
        return value

    def sweep(self) -> None:
        """Drop what neither this pass nor the previous one used; start a new pass."""
        oldest = self.generation - 1
        self._entries = {k: e for k, e in self._entries.items() if e[0] >= oldest}
        self.generation += 1

    def __len__(self) -> int:
        return len(self._entries)


# MeshSnapshot fields that are not config: the endpoints (an epoch ignores them), derived indexes.
_NOT_EPOCH = frozenset({"resources", "endpoints", "by_kind", "_derived"})


@dataclass(slots=True)
class _Epoch:
    """The non-endpoint config a snapshot was built from, to tell whether it moved: its
    resources but WorkloadEntries (and ServiceEntries' inline endpoints), and every other field
    of the ``MeshSnapshot`` (services, mesh config, ext_authz address and mode, and whatever is
    added later) but the endpoints.

    ``routes_number`` is the epoch of what routes and listeners read: the same config with each
    DestinationRule reduced to what they take from it (``_route_view``), so a subset added,
    renamed or relabelled, or a cluster setting changed, rebuilds clusters but no route or
    listener."""

    config: tuple[Any, ...] = ()
    number: int = 0
    # When the last advance changed only DestinationRules: each changed rule, before and after
    # (None where absent); else None.
    changed_rules: tuple[Any, ...] | None = None
    routes_config: tuple[Any, ...] = ()
    routes_number: int = 0
    _stripped: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    _viewed: dict[int, tuple[Any, Any]] = field(default_factory=dict)

    def advance(self, mesh: MeshSnapshot) -> bool:
        """Adopt ``mesh``'s config; True if it differs from the last one (a new epoch)."""
        stripped: dict[int, tuple[Any, Any]] = {}
        resources = tuple(
            self._config_of(r, stripped) for r in mesh.resources if r.kind not in ENDPOINT_KINDS
        )
        self._stripped = stripped
        rest = tuple(getattr(mesh, f.name) for f in fields(mesh) if f.name not in _NOT_EPOCH)
        config = (resources, rest)
        same = self.number > 0 and config == self.config
        self.changed_rules = None if same or self.number == 0 else _changed_rules(self.config, config)
        self.config = config
        if not same:
            self.number += 1
            viewed: dict[int, tuple[Any, Any]] = {}
            routes_config = (tuple(self._route_view(r, viewed) for r in resources), rest)
            self._viewed = viewed
            if self.routes_number == 0 or routes_config != self.routes_config:
                self.routes_number += 1
            self.routes_config = routes_config
        return not same

    def _config_of(self, resource: Any, stripped: dict[int, tuple[Any, Any]]) -> Any:
        """A ServiceEntry without its inline endpoints (they are endpoints, like WorkloadEntries),
        remembered per resource object; any other resource as it is."""
        if resource.kind != "ServiceEntry" or not resource.spec.endpoints:
            return resource
        found = self._stripped.get(id(resource))
        if found is None or found[0] is not resource:
            spec = dataclasses.replace(resource.spec, endpoints=())
            found = (resource, dataclasses.replace(resource, spec=spec))
        stripped[id(resource)] = found
        return found[1]

    def _route_view(self, resource: Any, viewed: dict[int, tuple[Any, Any]]) -> Any:
        """What routes and listeners read of a DestinationRule: everything but its subsets'
        labels and the subsets without a traffic policy. They read a rule only for traffic
        policies (route hash policies, ``route_hash``; TCP proxy settings, ``tcp_routes``), and a
        subset without one yields its destination's policy exactly as a missing subset does
        (``traffic_policy.cluster_policy``). Any other resource as it is."""
        if resource.kind != "DestinationRule":
            return resource
        found = self._viewed.get(id(resource))
        if found is None or found[0] is not resource:
            spec = resource.spec
            kept = tuple(
                dataclasses.replace(s, labels={}) for s in spec.subsets if s.traffic_policy is not None
            )
            found = (resource, dataclasses.replace(resource, spec=dataclasses.replace(spec, subsets=kept)))
        viewed[id(resource)] = found
        return found[1]


def _changed_rules(before: tuple[Any, ...], after: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The DestinationRules (old and new versions) that differ between two configs, if nothing
    else differs; None otherwise."""
    if before[1] != after[1]:
        return None
    old = {r.key: r for r in before[0]}
    new = {r.key: r for r in after[0]}
    changed = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]
    if any(kind != "DestinationRule" for kind, _, _ in changed):
        return None
    return tuple(r for k in changed for r in (old.get(k), new.get(k)) if r is not None)


def rule_hosts(rules: Iterable[Any], mesh: MeshSnapshot) -> frozenset[str]:
    """The service hosts whose DestinationRule can change when ``rules`` change: a rule's host
    itself, and for a wildcard host every host under it (``destination_rules``' most specific
    match looks up exact hosts, then wildcard suffixes)."""
    patterns = {resolve_host(r.spec.host, r.namespace) for r in rules}
    exact = {p for p in patterns if not is_wildcard(p)}
    suffixes = tuple(p[1:] for p in patterns if is_wildcard(p))
    return frozenset(
        s.hostname
        for s in mesh.services
        if s.hostname in exact or (suffixes and s.hostname.lstrip("*").endswith(suffixes))
    )


@dataclass(slots=True)
class BuildStats:
    """What the last pass did, for logs and metrics."""

    epoch_changed: bool = False
    scopes_built: int = 0
    routes_built: int = 0
    locals_built: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class SnapshotBuilder:
    """Builds proxies' snapshots from one ``MeshSnapshot`` at a time (see the module doc)."""

    def __init__(
        self,
        interner: ResourceInterner | None = None,
        secrets: SecretSource | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.interner = interner if interner is not None else ResourceInterner()
        self._secrets = secrets
        self._timing = timing
        self.clusters: KeyedTable[tuple[Resource, ...]] = KeyedTable()
        self.assignments: KeyedTable[Resource] = KeyedTable()
        self.reprs = Reprs()
        self._epoch = _Epoch()
        self.mesh: MeshSnapshot | None = None
        self._outbound: dict[Hashable, ResourceSet] = {}  # this mesh's parts, by scope
        self._outbound_before: dict[Hashable, ResourceSet] = {}  # the previous mesh's
        # Per scope, per service port: its clusters and assignments (this mesh's, the previous).
        self._groups: dict[Hashable, dict[tuple[str, int], _Group]] = {}
        self._groups_before: dict[Hashable, dict[tuple[str, int], _Group]] = {}
        self._changed_hosts: frozenset[str] | None = None
        self._destination_memo: dict[
            tuple[int, str, frozenset[tuple[str, str]]], Mapping[str, Destination]
        ] = {}
        self._routes: dict[Hashable, ResourceSet] = {}  # this routes epoch's
        self._routes_epoch = 0
        # proxy id -> (key, part, the route names its listeners use)
        self._local: dict[str, tuple[Hashable, ResourceSet, tuple[str, ...]]] = {}
        # proxy id -> (the secret messages it was built from, the part); see _secrets_part
        self._secret_parts: dict[str, tuple[tuple[Any, ...], ResourceSet]] = {}
        self._last: dict[str, Snapshot] = {}
        self.stats = BuildStats()

    # ---- passes ------------------------------------------------------------------------------

    def use(self, mesh: MeshSnapshot) -> bool:
        """Build from ``mesh`` from now on; True if its config epoch differs from the last."""
        if mesh is self.mesh:
            return False
        before = self.mesh
        self.mesh = mesh
        changed = self._epoch.advance(mesh)
        self._outbound_before, self._outbound = self._outbound, {}
        self._groups_before, self._groups = self._groups, {}
        # An endpoint-only change: a scope's part is the previous one with the changed hosts'
        # resources rebuilt (NetworkPolicy makes every endpoint a fact of every admission). A
        # change of DestinationRules alone is one too, with the hosts they apply to added: a
        # cluster reads no other host's rule.
        rules = self._epoch.changed_rules
        incremental = (not changed or rules is not None) and not has_network_policies(mesh)
        self._changed_hosts = None
        if incremental and before is not None:
            hosts = changed_hosts(before, mesh)
            self._changed_hosts = hosts | rule_hosts(rules, mesh) if rules is not None else hosts
        if self._epoch.routes_number != self._routes_epoch:
            self._routes_epoch = self._epoch.routes_number
            self._routes = {}
            self._local = {}
        self.stats = BuildStats(epoch_changed=changed)
        return changed

    def finish(self, connected: Iterable[str]) -> None:
        """End of a pass over every connected proxy: drop what nothing uses any more."""
        self.clusters.sweep()
        self.assignments.sweep()
        self.reprs.sweep()
        keep = set(connected)
        self._last = {k: v for k, v in self._last.items() if k in keep}
        self._local = {k: v for k, v in self._local.items() if k in keep}
        self._secret_parts = {k: v for k, v in self._secret_parts.items() if k in keep}

    def forget(self, proxy_id: str) -> None:
        self._last.pop(proxy_id, None)
        self._local.pop(proxy_id, None)
        self._secret_parts.pop(proxy_id, None)

    def build(self, proxy: Proxy) -> Snapshot:
        """The proxy's snapshot from the current mesh; ``InconsistentSnapshot`` on a bug."""
        mesh = self.mesh
        assert mesh is not None, "use() a mesh first"
        outbound = self._outbound_part(mesh, proxy)
        local, names = self._timed("LDS", lambda: self._local_part(mesh, proxy, outbound))
        routes = self._timed("RDS", lambda: self._routes_part(mesh, proxy, names))
        secrets = self._timed("SDS", lambda: self._secrets_part(mesh, proxy))
        snapshot = Snapshot.compose((outbound, local, routes, secrets), self._last.get(proxy.id))
        self._last[proxy.id] = snapshot
        return snapshot

    def outbound(self, proxy: Proxy) -> ResourceSet:
        """The proxy's outbound part alone (CDS + EDS of the mesh's services), as ``build`` uses it."""
        assert self.mesh is not None, "use() a mesh first"
        return self._outbound_part(self.mesh, proxy)

    def _timed(self, part: str, run: Callable[[], V]) -> V:
        started = time.perf_counter()
        try:
            return run()
        finally:
            self._spent(part, time.perf_counter() - started)

    def _spent(self, part: str, seconds: float) -> None:
        self.stats.seconds[part] = self.stats.seconds.get(part, 0.0) + seconds

    def report_timing(self) -> None:
        """Hand the time spent per type since the last report to the timing hook (once per pass,
        not per proxy: a hook call per proxy and type would cost more than the work it times)."""
        if self._timing is not None:
            for part, seconds in self.stats.seconds.items():
                self._timing(part, seconds)
        self.stats.seconds = {}

    # ---- parts -------------------------------------------------------------------------------

    def _outbound_part(self, mesh: MeshSnapshot, proxy: Proxy) -> ResourceSet:
        scope = outbound_scope(mesh, proxy)
        part = self._outbound.get(scope)
        if part is not None:
            return part
        previous = self._outbound_before.get(scope)
        if previous is not None and self._changed_hosts is not None and not self._changed_hosts:
            part = previous  # nothing this scope holds changed: the very same part
            groups_before = self._groups_before.get(scope)
            if groups_before is not None:  # and its groups, for the next change to reuse
                self._groups[scope] = groups_before
        else:
            reuse = self._groups_before.get(scope) if self._changed_hosts is not None else None
            groups, rebuilt = self._outbound_groups(mesh, proxy, reuse, self._changed_hosts or frozenset())
            self._groups[scope] = groups
            revised = None
            if previous is not None and reuse is not None and rebuilt is not None:
                # ``previous`` was built from ``reuse`` (the two are kept together): only the
                # rebuilt service ports' resources are new.
                removed = [r for k in rebuilt if k in reuse for r in _resources_of(reuse[k])]
                added = [r for k in rebuilt for r in _resources_of(groups[k])]
                revised = ResourceSet.revised(previous, removed, added)
            if revised is not None:
                part = revised
            else:
                resources = [r for group in groups.values() for r in _resources_of(group)]
                part = ResourceSet.of(resources, previous=previous)
            self.stats.scopes_built += 1
        self._outbound[scope] = part
        return part

    def _destinations(self, mesh: MeshSnapshot, proxy: Proxy) -> Mapping[str, Destination]:
        """``visible_destinations``, kept for the config epoch: services and DestinationRules
        are config, so an endpoint change does not redo every scope's rule lookups."""
        key = (self._epoch.number, proxy.namespace, frozenset(proxy.labels.items()))
        found = self._destination_memo.get(key)
        if found is None:
            found = visible_destinations(mesh, proxy)
            if len(self._destination_memo) > 4096 or any(k[0] != key[0] for k in self._destination_memo):
                self._destination_memo = {}
            self._destination_memo[key] = found
        return found

    def _outbound_groups(
        self,
        mesh: MeshSnapshot,
        proxy: Proxy,
        reuse: dict[tuple[str, int], _Group] | None,
        changed: frozenset[str],
    ) -> tuple[dict[tuple[str, int], _Group], list[tuple[str, int]] | None]:
        """``translate_clusters`` + ``translate_endpoints`` by service port, each resource
        through its table; with ``reuse`` (the scope's groups from the previous mesh of the same
        config), the ports of hosts not in ``changed`` are taken from it as they are. Also the
        service ports that were built, when all others were reused (else None).

        Within one config epoch (an endpoint change) a scope sees the same services as when
        ``reuse`` was built, so only the changed hosts are visited, not every visible service."""
        started = time.perf_counter()
        intern = self.interner.resource
        templates = ClusterTemplates(proxy)
        destinations = self._destinations(mesh, proxy)
        writer: list[LbEndpointWriter] = []
        admit = egress_admission(mesh, proxy)  # NetworkPolicy egress: denied endpoints are left out

        def build_assignment(name: str) -> Resource:
            """``translate_endpoints`` for one name."""
            if not writer:
                writer.append(LbEndpointWriter(endpoint_mtls(mesh)))
            endpoints = admitted(admit, cluster_endpoints(mesh, destinations, name))
            policy = locality_policy(destinations, name)
            if policy is None:
                return intern(load_assignment(name, endpoints, writer[0]))
            assignment = ClusterLoadAssignment(cluster_name=name)
            groups = locality_groups(by_locality(endpoints), policy, proxy.locality, proxy.labels)
            writer[0].add_groups(assignment.endpoints, groups)
            return intern(assignment)

        # A cluster name seen twice keeps the first (translate_clusters). Names embed the host and
        # port, so only a service port's own clusters can repeat one: a reused group needs no check.
        seen: set[str] = set()

        def build_port(service: Service, port: ServicePort, rule: Any) -> _Group:
            def build_group() -> tuple[Resource, ...]:
                built = list(service_port_clusters(mesh, templates, service, port, rule))
                bind_source(mesh, proxy, built)  # NetworkPolicy: connect from the workload's IP
                return tuple(intern(c) for c in built)

            key = outbound_clusters_key(mesh, proxy, service, port, rule, self.reprs)
            group = [r for r in self.clusters.get(key, build_group) if r.name not in seen]
            seen.update(r.name for r in group)
            names = sorted({name for cluster in group for name in cluster.references})
            assignments = tuple(
                self.assignments.get(
                    assignment_key(mesh, destinations, name, proxy, self.reprs),
                    partial(build_assignment, name),
                )
                for name in names
            )
            return (tuple(group), assignments)

        out: dict[tuple[str, int], _Group]
        built: list[tuple[str, int]] = []
        if reuse is not None and not self.stats.epoch_changed:
            out = dict(reuse)
            for hostname in [h for h in destinations if h in changed]:  # in the order of the full pass
                service, rule = destinations[hostname]
                for port in service.ports:
                    where = (hostname, port.number)
                    out[where] = build_port(service, port, rule)
                    built.append(where)
        else:
            out = {}
            for service, rule in destinations.values():
                for port in service.ports:
                    where = (service.hostname, port.number)
                    if reuse is not None and service.hostname not in changed and where in reuse:
                        out[where] = reuse[where]
                        continue
                    out[where] = build_port(service, port, rule)
                    built.append(where)
        self._spent("CDS+EDS", time.perf_counter() - started)
        # Ports that came or went: not a revision of the reused groups.
        revision = reuse is not None and out.keys() == reuse.keys()
        return out, built if revision else None

    def _local_part(
        self, mesh: MeshSnapshot, proxy: Proxy, outbound: ResourceSet
    ) -> tuple[ResourceSet, tuple[str, ...]]:
        """Listeners, inbound clusters, the ext_authz cluster and an AUTO_PASSTHROUGH gateway's
        SNI-named copies of the outbound clusters, with the route names the listeners use."""
        passthrough = has_auto_passthrough(mesh, proxy)
        copied = outbound.version(rt.CLUSTER) if passthrough else None  # the copies follow CDS
        key = (proxy_class(proxy), self._epoch.routes_number, _endpoints_at(mesh, proxy.ip), copied)
        found = self._local.get(proxy.id)
        if found is not None and found[0] == key:
            return found[1], found[2]
        listeners = translate_listeners(mesh, proxy)
        clusters = translate_inbound_clusters(mesh, proxy)
        clusters.extend(authz_clusters(mesh, listeners))
        if passthrough:
            originals = [Cluster.FromString(r.body) for r in outbound.named.get(rt.CLUSTER, {}).values()]
            clusters.extend(sni_dnat_clusters(mesh, proxy, [*originals, *clusters]))
        intern = self.interner.resource
        resources = [intern(m) for m in [*clusters, *listeners]]
        part = ResourceSet.of(resources, local_children=False)
        names = _route_names_of(part)
        self._local[proxy.id] = (key, part, names)
        self.stats.locals_built += 1
        assert set(names) == set(route_names(listeners))
        return part, names

    def _routes_part(self, mesh: MeshSnapshot, proxy: Proxy, names: tuple[str, ...]) -> ResourceSet:
        key = (route_scope(mesh, proxy), names, _inbound_names(names) and proxy_class(proxy))
        part = self._routes.get(key)
        if part is None:
            intern = self.interner.resource
            part = ResourceSet.of([intern(r) for r in translate_routes(mesh, proxy, names)])
            self._routes[key] = part
            self.stats.routes_built += 1
        return part

    def _secrets_part(self, mesh: MeshSnapshot, proxy: Proxy) -> ResourceSet:
        if self._secrets is None:
            return ResourceSet.of(())
        messages = tuple(self._secrets(mesh, proxy))
        found = self._secret_parts.get(proxy.id)
        # The source hands out shared messages, one per certificate (``xds/secrets.py``): the very
        # same objects mean the same certificates, so the part is the one built last time, with
        # no serializing and hashing of keys per proxy per push. Kept with the part, the messages
        # stay alive, so their identities cannot be reused by others meanwhile.
        if (
            found is not None
            and len(found[0]) == len(messages)
            and all(map(operator.is_, found[0], messages))
        ):
            return found[1]
        intern = self.interner.resource
        part = ResourceSet.of([intern(s) for s in messages])
        self._secret_parts[proxy.id] = (messages, part)
        return part


# (config epoch, namespace, labels): what visible_destinations depends on.
_ScopeKey = tuple[int, str, frozenset[tuple[str, str]]]
# One service port of a scope: its clusters and their ClusterLoadAssignments.
_Group = tuple[tuple[Resource, ...], tuple[Resource, ...]]


def _resources_of(group: _Group) -> tuple[Resource, ...]:
    clusters, assignments = group
    return (*clusters, *assignments)


def changed_hosts(before: MeshSnapshot, after: MeshSnapshot) -> frozenset[str]:
    """Hosts with a service port whose endpoints differ between two meshes of one config."""
    old, new = before.endpoints, after.endpoints
    return frozenset(key[0] for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def _route_names_of(part: ResourceSet) -> tuple[str, ...]:
    """The RDS names the part's listeners reference, in a stable order."""
    names: dict[str, None] = {}
    for name in sorted(part.named.get(rt.LISTENER, {})):
        for reference in sorted(part.named[rt.LISTENER][name].references):
            names.setdefault(reference)
    return tuple(names)


def _inbound_names(names: tuple[str, ...]) -> bool:
    """Inbound route configurations depend on the proxy's own ports, so not shareable by scope."""
    return any(n.startswith("inbound|") for n in names)


def _endpoints_at(mesh: MeshSnapshot, ip: str) -> Hashable:
    """What the proxy's inbound ports are read from: the endpoints whose address is its IP."""
    index = mesh.derived(_by_address)
    return tuple(
        (e.hostname, e.service_port, endpoints_fingerprint(mesh, e.hostname, e.service_port))
        for e in index.get(ip, ())
    )


def _by_address(mesh: MeshSnapshot) -> dict[str, list[Endpoint]]:
    out: dict[str, list[Endpoint]] = {}
    for endpoints in mesh.endpoints.values():
        for endpoint in endpoints:
            out.setdefault(endpoint.address, []).append(endpoint)
    return out
