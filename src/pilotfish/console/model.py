"""What the web console shows, as JSON-ready dicts (pure: a mesh snapshot and status rows in,
views out). ``routes`` serves them; ``static/console.js`` draws them.

* ``graph``: gateways, services and workloads as nodes; edges from routes (VirtualService
  destinations, to the workloads of a subset when the route names one) and from services to
  their endpoints' workloads; each edge says how its traffic is protected (``edge_tls``).
* ``proxies``: one row per connected proxy, its state per xDS type and one overall word
  (SYNCED / STALE / NACKED, as ``proxy-status``) with Envoy's NACK text.
* ``service_page``: a service's endpoints, subsets, DestinationRule, VirtualServices and the
  policies that apply to its workloads.

``visible(kind, namespace)`` is the caller's RBAC: what it may not list is left out, never
greyed out. Nothing here carries a key: resources pass through ``redact``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pilotfish.config.hosts import resolve_gateway_name, resolve_host
from pilotfish.config.resource import Resource
from pilotfish.config.security.targeting import resource_in_scope
from pilotfish.registry.model import Endpoint, Service
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.translate.destination_rules import destination_rule_for, destination_rule_index
from pilotfish.xds.translate.mtls import has_sidecar, peer_authn, service_mode

Visible = Callable[[str, str], bool]  # (kind, namespace) → may the caller list it?

SERVICE_KIND, WORKLOAD_KIND = "ServiceEntry", "WorkloadEntry"
POLICY_KINDS = ("AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication")
# Field names whose values are never shown, whatever the caller may read (file paths today; a
# future inline key must not leak through a generic dump either).
REDACTED_FIELDS = frozenset({"private_key", "privateKey", "client_certificate", "credential_name"})
MESH_GATEWAY = "mesh"


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[redacted]" if k in REDACTED_FIELDS and v else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def resource_json(resource: Resource[Any]) -> dict[str, Any]:
    spec = json.loads(json.dumps(dataclasses.asdict(resource.spec), default=str))
    return {
        "kind": resource.kind,
        "namespace": resource.namespace,
        "name": resource.name,
        "origin": f"{resource.origin.file}:{resource.origin.line}",
        "spec": redact(spec),
    }


def short_host(host: str) -> str:
    return host.removesuffix(".svc.cluster.local")


def _named_workload(endpoint: Endpoint) -> bool:
    """A WorkloadEntry or a registration names one workload; a ServiceEntry's inline endpoints
    all carry the ServiceEntry's name, so they are told apart by address."""
    return bool(endpoint.workload) and not endpoint.workload.startswith("ServiceEntry/")


def _workload_id(endpoint: Endpoint) -> str:
    if _named_workload(endpoint):
        return f"wl:{endpoint.workload}"
    return f"wl:{endpoint.namespace}/{endpoint.address}"


# ---- graph ------------------------------------------------------------------------------------


def edge_tls(mesh: MeshSnapshot, service: Service, endpoint: Endpoint | None = None) -> str:
    """How traffic to ``service`` (an ``endpoint`` of it, if given) is protected: the
    DestinationRule's TLS mode when it sets one, else auto mTLS (ISTIO_MUTUAL to workloads with
    a sidecar), followed by the server side's PeerAuthentication mode."""
    rule = destination_rule_for(
        destination_rule_index(mesh), service.namespace, {}, service.hostname, service.namespace
    )
    tls = rule.spec.traffic_policy.tls if rule and rule.spec.traffic_policy else None
    if endpoint is not None:
        server = peer_authn(mesh, endpoint.namespace, endpoint.labels).port_mode(endpoint.port)
        sidecar = has_sidecar(endpoint)
    else:
        server, sidecar = service_mode(mesh, service), service.location == "MESH_INTERNAL"
    client: str
    if tls is not None:
        client = tls.mode
    elif mesh.mesh.enable_auto_mtls and sidecar and server != "DISABLE":
        client = "ISTIO_MUTUAL (auto)"
    else:
        client = "plaintext"
    return f"{client} · {server}"


NODE_KINDS = {"service": SERVICE_KIND, "workload": WORKLOAD_KIND, "gateway": "Gateway"}  # node → RBAC kind


def graph(mesh: MeshSnapshot, visible: Visible) -> dict[str, Any]:
    """The graph as ``visible`` may see it: nodes whose resource kind it may list in their
    namespace, endpoint edges between visible nodes, route edges labelled only by the
    VirtualServices it may list (an edge no visible VirtualService makes is left out). The
    whole graph is computed once per snapshot (``_full_graph``); each poll only filters it."""
    full = mesh.derived(_full_graph)
    nodes = [n for n in full["nodes"] if visible(NODE_KINDS[n["kind"]], n["namespace"])]
    shown = {n["id"] for n in nodes}
    edges = []
    for edge in full["edges"]:
        if edge["source"] not in shown or edge["target"] not in shown:
            continue
        labels = [label for namespace, label in edge["routes"] if visible("VirtualService", namespace)]
        if edge["kind"] == "route" and not labels:
            continue
        public = {k: v for k, v in edge.items() if k != "routes"}
        edges.append({**public, "label": "; ".join(dict.fromkeys(labels))})
    return {"nodes": nodes, "edges": edges}


def _full_graph(mesh: MeshSnapshot) -> dict[str, Any]:
    """Every node and edge (pure, per snapshot). A route edge keeps ``routes``: the
    (namespace, label) of each VirtualService route that makes it."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: Edges = {}
    services = {s.hostname: s for s in mesh.services}
    for service in services.values():
        nodes[f"svc:{service.hostname}"] = {
            "id": f"svc:{service.hostname}",
            "kind": "service",
            "label": short_host(service.hostname),
            "namespace": service.namespace,
            "host": service.hostname,
        }
        for endpoint in _endpoints(mesh, service):
            wid = _workload_id(endpoint)
            named = _named_workload(endpoint)
            nodes.setdefault(
                wid,
                {
                    "id": wid,
                    "kind": "workload",
                    "label": endpoint.workload.rsplit("/", 1)[-1] if named else endpoint.address,
                    "namespace": endpoint.namespace,
                    "address": endpoint.address,
                },
            )
            tls = edge_tls(mesh, service, endpoint)
            _add_edge(edges, f"svc:{service.hostname}", wid, "endpoint", None, tls)
    for gateway in mesh.of_kind("Gateway"):
        gid = f"gw:{gateway.namespace}/{gateway.name}"
        nodes[gid] = {"id": gid, "kind": "gateway", "label": gateway.name, "namespace": gateway.namespace}
    for vs in mesh.of_kind("VirtualService"):
        _route_edges(mesh, vs, services, nodes, edges)
    return {
        "nodes": sorted(nodes.values(), key=lambda n: (n["kind"], n["id"])),
        "edges": list(edges.values()),
    }


def _endpoints(mesh: MeshSnapshot, service: Service) -> list[Endpoint]:
    return [e for port in service.ports for e in mesh.endpoints_for(service.hostname, port.number)]


Edges = dict[tuple[str, str, str], dict[str, Any]]  # (source, target, kind) → edge, in insertion order


def _add_edge(
    edges: Edges, source: str, target: str, kind: str, route: tuple[str, str] | None, tls: str
) -> None:
    """One edge per (source, target, kind); the routes that share it are all listed."""
    edge = edges.setdefault(
        (source, target, kind), {"source": source, "target": target, "kind": kind, "mtls": tls, "routes": []}
    )
    if route is not None and route not in edge["routes"]:
        edge["routes"].append(route)


def _route_edges(
    mesh: MeshSnapshot,
    vs: Resource[Any],
    services: Mapping[str, Service],
    nodes: Mapping[str, Any],
    edges: Edges,
) -> None:
    """Edges from where a VirtualService applies (its gateways, or its hosts inside the mesh) to
    each route destination: the subset's workloads when a subset is named, else the service."""
    spec = vs.spec
    sources = []
    for name in spec.gateways or (MESH_GATEWAY,):
        if name == MESH_GATEWAY:
            hosts = (resolve_host(h, vs.namespace) for h in spec.hosts)
            sources += [f"svc:{h}" for h in hosts if f"svc:{h}" in nodes]
        else:
            sources.append(f"gw:{resolve_gateway_name(name, vs.namespace)}")
    for destination, weight in _destinations(spec):
        host = resolve_host(destination.host, vs.namespace)
        service = services.get(host)
        if service is None:
            continue
        label = f"{vs.name}: {destination.subset or short_host(host)}" + (f" {weight}%" if weight else "")
        route = (vs.namespace, label)
        targets = _subset_workloads(mesh, service, destination.subset) if destination.subset else []
        for source in sources:
            if not targets or source != f"svc:{host}":
                _add_edge(edges, source, f"svc:{host}", "route", route, edge_tls(mesh, service))
            else:  # a service routing to its own subsets: straight to those workloads
                for endpoint in targets:
                    tls = edge_tls(mesh, service, endpoint)
                    _add_edge(edges, source, _workload_id(endpoint), "route", route, tls)


def _destinations(spec: Any) -> Iterable[tuple[Any, int]]:
    for route in (*spec.http, *spec.tcp, *spec.tls):
        for destination in route.route:
            yield destination.destination, destination.weight


def _subset_workloads(mesh: MeshSnapshot, service: Service, subset: str) -> list[Endpoint]:
    rule = destination_rule_for(
        destination_rule_index(mesh), service.namespace, {}, service.hostname, service.namespace
    )
    found = rule.spec.subset(subset) if rule else None
    if found is None:
        return []
    return [
        e for e in _endpoints(mesh, service) if all(e.labels.get(k) == v for k, v in found.labels.items())
    ]


# ---- proxies ----------------------------------------------------------------------------------

_WORST = ("NACKED", "STALE", "SYNCED")


def proxies(rows: Iterable[Mapping[str, Any]], visible: Visible, kind: str) -> list[dict[str, Any]]:
    """``/debug/syncz`` rows as the console lists them (``kind``: the RBAC kind of a proxy)."""
    out = []
    for row in rows:
        if not visible(kind, row["namespace"]):
            continue
        states = {t: s["state"] for t, s in sorted(row["types"].items())}
        nacks = {t: s["nack"]["message"] for t, s in row["types"].items() if s["state"] == "NACKED"}
        overall = next((w for w in _WORST if w in states.values()), "SYNCED")
        out.append(
            {
                "id": row["proxy"],
                "namespace": row["namespace"],
                "stream": row["kind"],
                "connectedAt": row["connected_at"],
                "state": overall,
                "types": states,
                "nacks": nacks,
            }
        )
    return sorted(out, key=lambda p: p["id"])


# ---- the service page -------------------------------------------------------------------------


def service_page(mesh: MeshSnapshot, host: str, visible: Visible) -> dict[str, Any] | None:
    service = next((s for s in mesh.services if s.hostname == host), None)
    if service is None or not visible(SERVICE_KIND, service.namespace):
        return None
    endpoints = _endpoints(mesh, service)
    rule = destination_rule_for(
        destination_rule_index(mesh), service.namespace, {}, service.hostname, service.namespace
    )
    rules = [
        r
        for r in mesh.of_kind("DestinationRule")
        if rule is not None and f"{r.namespace}/{r.name}" in rule.sources
    ]
    virtual_services = [
        vs
        for vs in mesh.of_kind("VirtualService")
        if any(resolve_host(h, vs.namespace) == host for h in vs.spec.hosts)
        or any(resolve_host(d.host, vs.namespace) == host for d, _ in _destinations(vs.spec))
    ]
    workloads = {(e.namespace, tuple(sorted(e.labels.items()))) for e in endpoints}
    root = mesh.mesh.root_namespace
    policies = [
        p
        for kind in POLICY_KINDS
        for p in mesh.of_kind(kind)
        if any(_applies(p, ns, dict(labels), root) for ns, labels in workloads)
    ]
    return {
        "host": host,
        "namespace": service.namespace,
        "location": service.location,
        "resolution": service.resolution,
        "ports": [{"number": p.number, "name": p.name, "protocol": p.protocol} for p in service.ports],
        "mtls": edge_tls(mesh, service),
        "endpoints": [
            {
                "address": e.address,
                "port": e.port,
                "servicePort": e.service_port,
                "labels": dict(e.labels),
                "workload": e.workload,
                "health": e.health,
                "mtls": edge_tls(mesh, service, e),
            }
            for e in endpoints
        ],
        "subsets": [
            {
                "name": s.name,
                "labels": dict(s.labels),
                "endpoints": len(_subset_workloads(mesh, service, s.name)),
            }
            for s in (rule.spec.subsets if rule else ())
        ],
        "destinationRules": [resource_json(r) for r in rules if visible(r.kind, r.namespace)],
        "virtualServices": [resource_json(r) for r in virtual_services if visible(r.kind, r.namespace)],
        "policies": [resource_json(p) for p in policies if visible(p.kind, p.namespace)],
    }


def _applies(policy: Resource[Any], namespace: str, labels: Mapping[str, str], root: str) -> bool:
    if policy.kind == "PeerAuthentication":
        selector = policy.spec.selector
        same = policy.namespace in (namespace, root)
        return same and (selector is None or selector.matches(labels))
    return resource_in_scope(policy, namespace, labels, root)
