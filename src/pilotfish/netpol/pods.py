"""Workloads as NetworkPolicy pods, from every place the registry knows them.

- a WorkloadEntry: its name, namespace, labels, address, service account; its ``ports`` (service
  port name → workload port) are the pod's named ports, as a container's named ports would be;
- a ServiceEntry's inline endpoint: ``<entry>-<i>`` in the entry's namespace;
- a registration or an auto-registered proxy (``registry/from_registrations.py``
  ``registered_workloads``, kept in the snapshot when a NetworkPolicy exists): its address,
  labels, namespace, service account and named ports, whether or not a service selects it; a
  snapshot built from endpoints alone gets them from the endpoints (the named ports are the
  service ports' names with the endpoint's port).

Only workloads with an IP address are pods: a hostname or a unix socket cannot be the address a
connection comes from. Two sources for one address keep the first (config before registrations).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from pilotfish.config.resource import Resource
from pilotfish.netpol.model import Pod, World, is_ip, normal_ip
from pilotfish.registry.snapshot import MeshSnapshot

CONFIG_SOURCES = ("WorkloadEntry/", "ServiceEntry/")


def config_pods(resources: Iterable[Resource[Any]]) -> Iterator[Pod]:
    for r in resources:
        if r.kind == "WorkloadEntry":
            yield _pod(r.namespace, r.name, r.spec, r.ref)
        elif r.kind == "ServiceEntry" and r.spec.workload_selector is None:
            for i, endpoint in enumerate(r.spec.endpoints):
                yield _pod(r.namespace, f"{r.name}-{i}", endpoint, r.ref)


def _pod(namespace: str, name: str, spec: Any, source: str) -> Pod:
    return Pod(
        namespace,
        name,
        spec.address,
        MappingProxyType(dict(spec.labels)),
        MappingProxyType(dict(spec.ports)),
        spec.service_account,
        source,
    )


def registered_workload_pods(snapshot: MeshSnapshot) -> Iterator[Pod]:
    """Registrations and auto-registered proxies, whether or not a service selects them."""
    for w in snapshot.registered:
        name = w.id.rsplit("/", 1)[-1] if "/" in w.id else w.id
        yield Pod(
            w.namespace,
            name,
            w.address,
            MappingProxyType(dict(w.labels)),
            MappingProxyType(dict(w.ports)),
            w.service_account,
            f"Registration/{w.id}",
        )


def registered_pods(snapshot: MeshSnapshot) -> Iterator[Pod]:
    """One pod per registration (by workload id), named ports from its services' port names."""
    names = {(s.hostname, p.number): p.name for s in snapshot.services for p in s.ports}
    found: dict[str, Pod] = {}
    for endpoints in snapshot.endpoints.values():
        for e in endpoints:
            if e.workload.startswith(CONFIG_SOURCES) or not e.workload:
                continue
            pod = found.get(e.workload) or Pod(
                e.namespace,
                e.workload.split("/", 1)[-1],
                e.address,
                e.labels,
                {},
                e.service_account,
                e.workload,
            )
            ports = {**pod.ports, names.get(e.key, f"port-{e.service_port}"): e.port}
            found[e.workload] = replace(pod, ports=MappingProxyType(ports))
    return iter(found.values())


def addressed(pods: Iterable[Pod]) -> Iterator[Pod]:
    """Pods with an IP address, the first per address."""
    seen: set[str] = set()
    for pod in pods:
        ip = normal_ip(pod.ip)
        if is_ip(ip) and ip not in seen:
            seen.add(ip)
            yield pod


def world_of_resources(resources: Iterable[Resource[Any]]) -> World:
    """The world config alone describes (``validate``, ``netpol check``)."""
    resources = tuple(resources)
    return World.build(resources, addressed(config_pods(resources)))


def world_of(snapshot: MeshSnapshot) -> World:
    """The snapshot's world, built once per snapshot."""
    return snapshot.derived(_world)


def _world(snapshot: MeshSnapshot) -> World:
    pods = addressed(
        [*config_pods(snapshot.resources), *registered_workload_pods(snapshot), *registered_pods(snapshot)]
    )
    return World.build(snapshot.resources, pods)
