"""The console's views of the examples' mesh: graph edges from routes and endpoints with their
TLS, the service page, RBAC filtering, and nothing secret in a resource dump."""

from __future__ import annotations

from pathlib import Path

from pilotfish.config.loader import load_paths
from pilotfish.console import model
from pilotfish.registry.snapshot import MeshSnapshot

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
MESH = MeshSnapshot.build(load_paths([EXAMPLES]).resources)
REVIEWS = "reviews.default.svc.cluster.local"


def everything(kind: str, namespace: str) -> bool:
    return True


def edges(graph: dict) -> dict[tuple[str, str, str], dict]:
    return {(e["source"], e["target"], e["kind"]): e for e in graph["edges"]}


def test_graph_has_gateways_services_workloads_and_route_edges() -> None:
    graph = model.graph(MESH, everything)
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds["gw:default/bookinfo-gateway"] == "gateway"
    assert kinds[f"svc:{REVIEWS}"] == "service"
    assert kinds["wl:WorkloadEntry/foo/httpbin-v1"] == "workload"
    found = edges(graph)
    # The gateway's VirtualService routes to productpage; reviews routes to its subsets' workloads.
    assert ("gw:default/bookinfo-gateway", "svc:productpage.default.svc.cluster.local", "route") in found
    v2 = found[(f"svc:{REVIEWS}", "wl:WorkloadEntry/default/reviews-v2", "route")]
    assert v2["label"] == "reviews: v2" and v2["mtls"] == "ISTIO_MUTUAL (auto) · PERMISSIVE"
    assert (f"svc:{REVIEWS}", "wl:WorkloadEntry/default/reviews-v3", "route") not in found
    # Workloads without a sidecar (the ratings example on 127.0.0.1) are reached in plaintext.
    prod = [e for e in graph["edges"] if e["source"] == "svc:ratings.prod.svc.cluster.local"]
    assert prod and all(e["mtls"].startswith("plaintext") for e in prod)


def test_rbac_leaves_out_what_the_caller_may_not_list() -> None:
    def only_foo(kind: str, namespace: str) -> bool:
        return namespace == "foo"

    graph = model.graph(MESH, only_foo)
    assert {n["namespace"] for n in graph["nodes"]} == {"foo"}
    assert model.service_page(MESH, REVIEWS, only_foo) is None
    rows = [{"proxy": "a", "namespace": "default", "kind": "sotw", "connected_at": 0, "types": {}}]
    assert model.proxies(rows, only_foo, "Proxy") == []


def test_service_page_lists_endpoints_subsets_rules_and_policies() -> None:
    page = model.service_page(MESH, "httpbin.foo.svc.cluster.local", everything)
    assert page is not None
    assert [e["address"] for e in page["endpoints"]] == ["127.0.16.10"]
    assert {(p["kind"], p["name"]) for p in page["policies"]} == {
        ("AuthorizationPolicy", "httpbin"),
        ("RequestAuthentication", "httpbin"),
    }
    reviews = model.service_page(MESH, REVIEWS, everything)
    assert reviews is not None
    assert [s["name"] for s in reviews["subsets"]] == ["v1", "v2", "v3"]
    assert [r["name"] for r in reviews["destinationRules"]] == ["reviews"]
    assert [r["name"] for r in reviews["virtualServices"]] == ["reviews"]


def test_proxy_state_is_the_worst_of_its_types_with_envoys_text() -> None:
    nack = {"state": "NACKED", "nack": {"message": "Proto constraint validation failed"}}
    rows = [
        {
            "proxy": "sidecar~1~a.ns~ns.svc.cluster.local",
            "namespace": "ns",
            "kind": "delta",
            "connected_at": 1.0,
            "types": {"CDS": {"state": "SYNCED"}, "LDS": nack, "RDS": {"state": "STALE"}},
        }
    ]
    (row,) = model.proxies(rows, everything, "Proxy")
    assert row["state"] == "NACKED" and row["nacks"] == {"LDS": "Proto constraint validation failed"}


def test_resource_dumps_redact_key_material() -> None:
    assert model.redact(
        {"tls": {"private_key": "/etc/key.pem", "mode": "MUTUAL"}, "x": [{"privateKey": "k"}]}
    ) == {
        "tls": {"private_key": "[redacted]", "mode": "MUTUAL"},
        "x": [{"privateKey": "[redacted]"}],
    }
