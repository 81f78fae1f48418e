"""Cross-resource checks that per-document validation cannot make (Istio's ``istioctl analyze``,
``pkg/config/analysis/analyzers``). Every finding is a warning: the config is accepted, and the
operator is told what will not work as written.

- a VirtualService destination names a subset that no DestinationRule defines for its host
  (``virtualservice/destinationrules.go``, IST0101) — Envoy answers 503 for that route;
- a VirtualService destination host that no ServiceEntry declares (``virtualservice/
  destinationhosts.go``) — no cluster exists for it;
- a VirtualService names a Gateway that does not exist (``virtualservice/gateways.go``);
- two Sidecars without a workloadSelector in one namespace (``sidecar/selector.go``, IST0109).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pilotfish.config.decode import Path, format_path
from pilotfish.config.hosts import MESH_GATEWAY, resolve_gateway_name, resolve_host
from pilotfish.config.resource import Resource
from pilotfish.errors import Problem


@dataclass(frozen=True, slots=True)
class Index:
    """What the resources declare: service hosts, subsets per host, gateway names."""

    hosts: frozenset[str]
    subsets: dict[str, set[str]]
    gateways: frozenset[str]

    @classmethod
    def of(cls, resources: Iterable[Resource[Any]]) -> Index:
        hosts: set[str] = set()
        subsets: dict[str, set[str]] = {}
        gateways: set[str] = set()
        for r in resources:
            if r.kind == "ServiceEntry":
                hosts.update(resolve_host(h, r.namespace) for h in r.spec.hosts)
            elif r.kind == "DestinationRule":
                subsets.setdefault(resolve_host(r.spec.host, r.namespace), set()).update(
                    s.name for s in r.spec.subsets
                )
            elif r.kind == "Gateway":
                gateways.add(f"{r.namespace}/{r.name}")
        return cls(frozenset(hosts), subsets, frozenset(gateways))

    def knows_host(self, host: str) -> bool:
        # A ServiceEntry host may be a wildcard (*.example.com) covering the destination.
        return host in self.hosts or any(h.startswith("*") and fnmatchcase(host, h) for h in self.hosts)

    def has_subset(self, host: str, subset: str) -> bool:
        return any(subset in names for h, names in self.subsets.items() if h == host or fnmatchcase(host, h))


def analyze(resources: Iterable[Resource[Any]]) -> list[Problem]:
    """Warnings about how the resources refer to each other."""
    resources = tuple(resources)
    index = Index.of(resources)
    problems: list[Problem] = []
    for r in resources:
        if r.kind == "VirtualService":
            problems.extend(_warn(r, path, msg) for path, msg in _virtual_service(r, index))
    problems.extend(_sidecars_without_selector(resources))
    return problems


def _warn(resource: Resource[Any], path: Path, message: str) -> Problem:
    return Problem(
        message,
        format_path(("spec", *path)),
        resource.origin.file,
        resource.origin.line,
        resource.ref,
        "warning",
    )


def _virtual_service(vs: Resource[Any], index: Index) -> Iterator[tuple[Path, str]]:
    for path, destination in _destinations(vs.spec):
        host = resolve_host(destination.host, vs.namespace)
        if not index.knows_host(host):
            yield (*path, "host"), f"no ServiceEntry declares host {host!r}: there is no cluster to route to"
        elif destination.subset and not index.has_subset(host, destination.subset):
            yield (*path, "subset"), f"no DestinationRule for {host!r} defines subset {destination.subset!r}"
    for i, name in enumerate(vs.spec.gateways):
        gateway = resolve_gateway_name(name, vs.namespace)
        if gateway != MESH_GATEWAY and gateway not in index.gateways:
            yield ("gateways", i), f"gateway {gateway!r} does not exist"


def _destinations(spec: Any) -> Iterator[tuple[Path, Any]]:
    for kind in ("http", "tcp", "tls"):
        for i, route in enumerate(getattr(spec, kind)):
            for j, weighted in enumerate(route.route):
                yield (kind, i, "route", j, "destination"), weighted.destination
    for i, route in enumerate(spec.http):
        if route.mirror is not None:
            yield ("http", i, "mirror"), route.mirror
        for j, mirror in enumerate(route.mirrors):
            yield ("http", i, "mirrors", j, "destination"), mirror.destination


def _sidecars_without_selector(resources: tuple[Resource[Any], ...]) -> Iterator[Problem]:
    open_sidecars = [r for r in resources if r.kind == "Sidecar" and r.spec.workload_selector is None]
    counts = Counter(r.namespace for r in open_sidecars)
    for r in open_sidecars:
        if counts[r.namespace] > 1:
            yield Problem(
                f"{counts[r.namespace]} Sidecars without a workloadSelector in namespace {r.namespace!r}: "
                "which one applies is undefined",
                "spec.workloadSelector",
                r.origin.file,
                r.origin.line,
                r.ref,
                "warning",
            )
