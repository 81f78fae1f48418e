"""MeshSnapshot: one frozen view of everything the translators need — the validated resources,
the mesh config, and the services and endpoints derived from them. Every push is computed from
exactly one snapshot, so a proxy never sees half of a change.

Values that translation derives from the snapshot alone (the DestinationRule index), or from the
snapshot and an immutable key (what a proxy of one namespace and labels sees), are computed once
per snapshot through ``derived`` / ``derived_for``: the snapshot never changes, so such a value
cannot go stale, and it dies with the snapshot."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pilotfish.config.mesh import DEFAULT_MESH, MeshConfig
from pilotfish.config.resource import Resource
from pilotfish.registry.from_config import build_registry
from pilotfish.registry.model import Endpoint, RegisteredWorkload, Service

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class MeshSnapshot:
    resources: tuple[Resource[Any], ...] = ()
    mesh: MeshConfig = DEFAULT_MESH
    services: tuple[Service, ...] = ()
    endpoints: Mapping[tuple[str, int], tuple[Endpoint, ...]] = field(default_factory=dict)
    by_kind: Mapping[str, tuple[Resource[Any], ...]] = field(default_factory=dict)
    # Registered workloads (registrations, auto-registered proxies), kept only when a
    # NetworkPolicy exists: then they are pods whether or not a service selects them.
    registered: tuple[RegisteredWorkload, ...] = ()
    # With a NetworkPolicy, a digest of every workload it sees (WorkloadEntries and ``registered``);
    # "" without. Inbound listeners enforce by workload address, so a workload that appears or
    # moves changes them even when no config changed: anything that compares snapshots field by
    # field (a cache keeping listeners across snapshots) sees that here.
    workloads_digest: str = ""
    # Where proxies reach pilotfish's ext_authz Check server ("host", port); None: not served.
    authz_address: tuple[str, int] | None = None
    # How policies are enforced unless a workload says otherwise: "ext_authz" or "native".
    authz_mode: str = "ext_authz"
    # Not a constructor argument, so ``dataclasses.replace`` starts a new snapshot with an empty memo.
    _derived: dict[tuple[Callable[..., Any], Hashable], Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def build(
        cls,
        resources: Iterable[Resource[Any]],
        mesh: MeshConfig = DEFAULT_MESH,
        extra_endpoints: Iterable[Endpoint] = (),
        authz_address: tuple[str, int] | None = None,
        authz_mode: str = "ext_authz",
        registered: Iterable[RegisteredWorkload] = (),
    ) -> MeshSnapshot:
        """Derive services and endpoints. ``extra_endpoints`` come from registrations and
        auto-registered proxies; they join services that config declares. ``registered`` (their
        workloads) is kept only when a NetworkPolicy exists, the one thing that reads it, so
        workload churn changes nothing else of a mesh without NetworkPolicy."""
        resources = tuple(sorted(resources, key=lambda r: r.key))
        services, endpoints = build_registry(resources)
        merged: dict[tuple[str, int], list[Endpoint]] = {k: list(v) for k, v in endpoints.items()}
        for endpoint in extra_endpoints:
            merged.setdefault(endpoint.key, []).append(endpoint)
        by_kind: dict[str, list[Resource[Any]]] = {}
        for resource in resources:
            by_kind.setdefault(resource.kind, []).append(resource)
        netpol = "NetworkPolicy" in by_kind
        kept = tuple(registered) if netpol else ()
        return cls(
            resources=resources,
            mesh=mesh,
            services=services,
            endpoints={k: tuple(v) for k, v in merged.items()},
            by_kind={k: tuple(v) for k, v in by_kind.items()},
            authz_address=authz_address,
            authz_mode=authz_mode,
            registered=kept,
            workloads_digest=_workloads_digest(by_kind.get("WorkloadEntry", ()), kept) if netpol else "",
        )

    def derived(self, compute: Callable[[MeshSnapshot], T]) -> T:
        """``compute(self)``, computed on first use and then shared by every caller. ``compute``
        must be a pure function of the snapshot. Two threads may both compute it; one result wins."""
        return self._memo((compute, None), lambda: compute(self))

    def derived_for(self, compute: Callable[[MeshSnapshot, K], T], key: K) -> T:
        """``compute(self, key)``, likewise once per ``key``, an immutable value (a proxy's
        namespace and labels, say). One entry per distinct key lives as long as the snapshot."""
        return self._memo((compute, key), lambda: compute(self, key))

    def _memo(self, key: tuple[Callable[..., Any], Hashable], compute: Callable[[], T]) -> T:
        try:
            return cast(T, self._derived[key])
        except KeyError:
            return cast(T, self._derived.setdefault(key, compute()))

    def of_kind(self, kind: str) -> tuple[Resource[Any], ...]:
        return self.by_kind.get(kind, ())

    def endpoints_for(self, hostname: str, port: int) -> tuple[Endpoint, ...]:
        return self.endpoints.get((hostname, port), ())


def _workloads_digest(entries: Iterable[Resource[Any]], registered: Iterable[RegisteredWorkload]) -> str:
    parts = [repr((e.namespace, e.name, e.spec)) for e in entries]
    parts += [
        repr((w.id, w.namespace, w.address, sorted(w.labels.items()), sorted(w.ports.items())))
        for w in registered
    ]
    parts.append(repr([(w.id, w.service_account) for w in registered]))
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=12).hexdigest()
