"""The translation tables' keys are complete: change one input a resource depends on and a builder
whose tables hold the previous mesh (warm) builds exactly what a fresh builder (cold) builds — a
key that missed the input would serve the stale resource — and only the resources that depend
on the input change. Also: the builder equals the reference ``app.translate`` resource for
resource, and proxies of one scope share their outbound part."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from listeners_builders import client, sidecar
from test_listeners_golden import proxy_of as listeners_proxy_of
from test_translate_golden import proxy_of as translate_proxy_of
from translate_builders import destination_rule, service_entry, snapshot, workload

from pilotfish.app import translate
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds import resources as rt
from pilotfish.xds.builder import SnapshotBuilder, rule_hosts
from pilotfish.xds.cache import ResourceSet, Snapshot, SnapshotCache
from pilotfish.xds.proxy import Proxy

REVIEWS = "reviews.prod.svc.cluster.local"
RATINGS = "ratings.prod.svc.cluster.local"
SIDECAR_LABELS = {"security.istio.io/tlsMode": "istio"}


def peer_authentication(mode: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: prod}}
spec: {{mtls: {{mode: {mode}}}}}
"""


def mesh(
    reviews_v2_version: str = "v2",
    lb: str = "ROUND_ROBIN",
    egress: str = "*/*",
    mode: str = "PERMISSIVE",
) -> MeshSnapshot:
    return snapshot(
        service_entry(REVIEWS, extra="  workloadSelector: {labels: {app: reviews}}"),
        service_entry(RATINGS, extra="  workloadSelector: {labels: {app: ratings}}"),
        workload("reviews-1", "prod", "10.1.0.1", {"app": "reviews", "version": "v1", **SIDECAR_LABELS}),
        workload(
            "reviews-2",
            "prod",
            "10.1.0.2",
            {"app": "reviews", "version": reviews_v2_version, **SIDECAR_LABELS},
        ),
        workload("ratings-1", "prod", "10.1.0.3", {"app": "ratings", **SIDECAR_LABELS}),
        workload("me", "prod", "10.0.0.1", {"app": "client", **SIDECAR_LABELS}),
        destination_rule(
            "reviews",
            "prod",
            f"""
            host: {REVIEWS}
            trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}
            subsets:
            - {{name: v1, labels: {{version: v1}}}}
            - {{name: v2, labels: {{version: v2}}}}
            """,
        ),
        sidecar("default", "prod", f"egress: [{{hosts: ['{egress}']}}]"),
        peer_authentication(mode),
    )


PROXY = client(labels={"app": "client"}, app_ports={9080: 19080})


def secrets_of(certificate: bytes) -> Callable[[MeshSnapshot, Proxy], list[Any]]:
    def secrets(mesh: MeshSnapshot, proxy: Proxy) -> list[Any]:
        secret = secret_pb2.Secret(name="default")
        secret.tls_certificate.certificate_chain.inline_bytes = certificate
        return [secret]

    return secrets


def built(builder: SnapshotBuilder, mesh_snapshot: MeshSnapshot, proxy: Proxy = PROXY) -> Snapshot:
    builder.use(mesh_snapshot)
    return builder.build(proxy)


def contents(snapshot: Snapshot) -> dict[tuple[str, str], bytes]:
    return {
        (rt.short_name(t), name): resource.body
        for t in rt.ADS_ORDER
        for name, resource in snapshot.named(t).items()
    }


def changed(before: Snapshot, after: Snapshot) -> set[tuple[str, str]]:
    old, new = contents(before), contents(after)
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


def subset_clusters(kind: str, subsets: Iterable[str] = ("", "v1", "v2")) -> set[tuple[str, str]]:
    return {(kind, f"outbound|9080|{s}|{REVIEWS}") for s in subsets}


CASES = {
    # A workload label: the v2 subset loses its endpoint; the default cluster keeps both.
    "label": (
        dict(reviews_v2_version="v3"),
        subset_clusters("EDS", ["v2"]),
    ),
    # A DestinationRule field: the reviews clusters (default and subsets) and nothing else.
    "destination rule": (dict(lb="RANDOM"), subset_clusters("CDS")),
    # A Sidecar egress host: what the proxy's routes import.
    "sidecar egress": (dict(egress=f"prod/{RATINGS}"), {("RDS", "9080")}),
    # A PeerAuthentication mode: auto mTLS of every service in the namespace and the endpoints'
    # tlsMode metadata.
    "peer authentication": (
        dict(mode="DISABLE"),
        subset_clusters("CDS")
        | subset_clusters("EDS")
        | {("CDS", f"outbound|9080||{RATINGS}"), ("EDS", f"outbound|9080||{RATINGS}")},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_changed_input_changes_exactly_its_resources(case: str) -> None:
    change, expected = CASES[case]
    secrets = secrets_of(b"certificate one")
    warm = SnapshotBuilder(secrets=secrets)
    before = built(warm, mesh())
    after = built(warm, mesh(**change))
    cold = built(SnapshotBuilder(secrets=secrets), mesh(**change))
    assert contents(after) == contents(cold)  # no stale table entry was served
    assert changed(before, after) == expected


def test_a_new_certificate_changes_only_the_secret() -> None:
    certificate = [b"certificate one"]
    builder = SnapshotBuilder(secrets=lambda m, p: secrets_of(certificate[0])(m, p))
    first = built(builder, mesh())
    certificate[0] = b"certificate two"
    builder.use(mesh())  # a new mesh snapshot of the same config, as a rotation publishes
    second = builder.build(PROXY)
    assert changed(first, second) == {("SDS", "default")}


def test_shared_secret_messages_reuse_the_part_and_a_new_one_replaces_it() -> None:
    """A source that hands out one message per certificate (as ``xds/secrets.py`` does): the same
    objects give the part built before, with no secret serialized and interned again; a rotated
    certificate is a new object, and only the secret changes."""
    kept = secrets_of(b"certificate one")(mesh(), PROXY)
    builder = SnapshotBuilder(secrets=lambda m, p: kept)
    interned: list[str] = []
    intern = builder.interner.resource

    def counting(message: Any) -> Any:
        interned.append(rt.type_url_of(message))
        return intern(message)

    builder.interner.resource = counting  # type: ignore[method-assign]
    first = built(builder, mesh())
    assert interned.count(rt.SECRET) == 1
    builder.use(mesh())
    assert builder.build(PROXY).named(rt.SECRET) == first.named(rt.SECRET)
    assert interned.count(rt.SECRET) == 1  # the same messages: the same part
    kept = secrets_of(b"certificate two")(mesh(), PROXY)
    builder.use(mesh())
    rotated = builder.build(PROXY)
    assert interned.count(rt.SECRET) == 2
    assert changed(first, rotated) == {("SDS", "default")}


def test_the_builder_equals_the_reference_translation() -> None:
    current = mesh()
    for proxy in (PROXY, client(namespace="other"), client(labels={"app": "x"}, ip="10.0.0.9")):
        reference = SnapshotCache().build(translate(current, proxy))
        assert contents(built(SnapshotBuilder(), current, proxy)) == contents(reference)


def test_proxies_of_one_scope_share_their_outbound_part() -> None:
    builder = SnapshotBuilder()
    first = built(builder, mesh(), client(ip="10.0.0.7"))
    second = builder.build(client(ip="10.0.0.8"))
    assert second.named(rt.ENDPOINT) is first.named(rt.ENDPOINT)
    assert second.named(rt.CLUSTER) is first.named(rt.CLUSTER)
    assert builder.stats.scopes_built == 1


def test_an_endpoint_change_rebuilds_only_its_assignment_and_says_so() -> None:
    builder = SnapshotBuilder()
    before = built(builder, mesh())
    misses = builder.clusters.misses + builder.assignments.misses
    after = built(builder, mesh(reviews_v2_version="v3"))
    assert builder.assignments.misses + builder.clusters.misses - misses == 1
    change = after.changes[rt.ENDPOINT]
    assert change.since == before.version(rt.ENDPOINT)
    assert change.names == {f"outbound|9080|v2|{REVIEWS}"}
    assert after.changes[rt.CLUSTER].names == frozenset()
    assert builder.stats.routes_built == 0  # the config epoch held: routes were not rebuilt


def test_an_endpoint_change_revises_the_scopes_part_instead_of_regrouping_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The outbound part after an endpoint change is the previous one with the changed service's
    resources replaced (``ResourceSet.revised``), and holds what a cold builder builds."""
    revisions: list[ResourceSet | None] = []
    real = ResourceSet.revised.__func__  # type: ignore[attr-defined]

    def revised(cls: type[ResourceSet], *args: Any) -> ResourceSet | None:
        revisions.append(real(cls, *args))
        return revisions[-1]

    monkeypatch.setattr(ResourceSet, "revised", classmethod(revised))
    builder = SnapshotBuilder()
    built(builder, mesh())
    assert revisions == []  # the first build has nothing to revise
    after = built(builder, mesh(reviews_v2_version="v3"))
    assert len(revisions) == 1 and revisions[0] is not None
    assert builder.outbound(PROXY) is revisions[0]
    assert contents(after) == contents(built(SnapshotBuilder(), mesh(reviews_v2_version="v3")))


def test_an_endpoint_change_after_a_push_that_changed_nothing_is_still_incremental() -> None:
    """An editor's atomic save (a temporary file, then a rename) reloads twice: the first reload
    changes nothing, and the change after it must still rebuild and look up only what it touches,
    as much as without the reload before it."""

    def lookups_of_the_change(noop_first: bool) -> tuple[int, int]:
        builder = SnapshotBuilder()
        built(builder, mesh())
        builder.finish([PROXY.id])
        if noop_first:
            built(builder, mesh())  # a new mesh object with the same content: nothing to rebuild
            builder.finish([PROXY.id])
        tables = (builder.clusters, builder.assignments)
        misses, hits = sum(t.misses for t in tables), sum(t.hits for t in tables)
        built(builder, mesh(reviews_v2_version="v3"))
        return sum(t.misses for t in tables) - misses, sum(t.hits for t in tables) - hits

    assert lookups_of_the_change(noop_first=True) == lookups_of_the_change(noop_first=False)
    assert lookups_of_the_change(noop_first=True)[0] == 1


VIRTUAL_SERVICE = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: prod}}
spec:
  hosts: [{REVIEWS}]
  http: [{{route: [{{destination: {{host: {REVIEWS}, subset: v1}}}}]}}]
"""
DR_STEPS = (
    # (the rule's body, whether routes and listeners must be rebuilt)
    ("subsets: [{name: v1, labels: {version: v1}}]", False),
    ("subsets: [{name: v1, labels: {version: v2}}, {name: v9, labels: {version: v1}}]", False),
    (
        "subsets: [{name: v1, labels: {version: v2}, trafficPolicy: {loadBalancer: {consistentHash: "
        "{httpHeaderName: x-user}}}}]",
        True,
    ),  # the route to v1 hashes by header
    (
        "subsets: [{name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {consistentHash: "
        "{httpHeaderName: x-user}}}}]",
        False,
    ),  # only the subset's labels moved
    (
        "trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-other}}}\n"
        "subsets: [{name: v1, labels: {version: v1}}]",
        True,
    ),
    ("trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\nsubsets: [{name: v1, labels: {version: v1}}]", True),
    ("trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\nsubsets: [{name: v2, labels: {version: v1}}]", False),
)


def test_destination_rule_changes_rebuild_routes_and_listeners_only_when_they_read_the_change() -> None:
    """A warm builder through DestinationRule changes equals a cold build at every step; routes
    and listeners are rebuilt only when what they read of a rule moved (its traffic policies)."""
    warm = SnapshotBuilder()
    base = [d for d in _reviews_mesh_documents()]
    lookups_before = 0
    for step, (body, rebuilds) in enumerate(DR_STEPS):
        rule = destination_rule("reviews", "prod", f"host: {REVIEWS}\n" + body)
        current = snapshot(*base, VIRTUAL_SERVICE, rule)
        warm.use(current)
        got = warm.build(PROXY)
        cold = SnapshotBuilder()
        cold.use(current)
        assert contents(got) == contents(cold.build(PROXY)), body
        lookups = warm.clusters.hits + warm.clusters.misses
        if step > 0:
            # Only the ruled host's clusters were looked up again: ratings' group was kept.
            assert lookups - lookups_before == 1, body
            assert warm.stats.epoch_changed
            assert (warm.stats.routes_built, warm.stats.locals_built) == ((1, 1) if rebuilds else (0, 0)), (
                body
            )
        warm.finish([PROXY.id])
        lookups_before = warm.clusters.hits + warm.clusters.misses


def test_a_destination_rule_applies_to_its_host_or_every_host_under_its_wildcard() -> None:
    mesh_snapshot = snapshot(*_reviews_mesh_documents(), service_entry("api.example.com"))
    rule = destination_rule("reviews", "prod", "host: reviews")  # a short name, in its namespace
    wildcard = destination_rule("all", "prod", "host: '*.svc.cluster.local'")
    everything = destination_rule("all", "prod", "host: '*'")
    hosts = {s.hostname for s in mesh_snapshot.services}
    assert rule_hosts(snapshot(rule).resources, mesh_snapshot) == {REVIEWS}
    assert rule_hosts(snapshot(wildcard).resources, mesh_snapshot) == {REVIEWS, RATINGS}
    assert rule_hosts(snapshot(everything).resources, mesh_snapshot) == hosts


def _reviews_mesh_documents() -> list[str]:
    return [
        service_entry(REVIEWS, extra="  workloadSelector: {labels: {app: reviews}}"),
        service_entry(RATINGS, extra="  workloadSelector: {labels: {app: ratings}}"),
        workload("ratings-1", "prod", "10.1.0.3", {"app": "ratings", **SIDECAR_LABELS}),
        workload("reviews-1", "prod", "10.1.0.1", {"app": "reviews", "version": "v1", **SIDECAR_LABELS}),
        workload("reviews-2", "prod", "10.1.0.2", {"app": "reviews", "version": "v2", **SIDECAR_LABELS}),
        workload("me", "prod", "10.0.0.1", {"app": "client", **SIDECAR_LABELS}),
    ]


GOLDEN_DIRS = ("golden", "listeners_golden", "routes_golden", "netpol_golden")
GOLDEN_INPUTS = sorted(
    str(p.relative_to(Path(__file__).parent))
    for d in GOLDEN_DIRS
    for p in (Path(__file__).parent / d).glob("*.in.yaml")
)


@pytest.mark.parametrize("name", GOLDEN_INPUTS)
def test_the_builder_equals_the_reference_on_every_golden_input(name: str) -> None:
    """Whatever a translate function reads, the builder's parts and tables give the same bytes:
    the golden inputs cover every feature the translators have (and ``test_translate_golden``
    and friends pin the reference itself)."""
    text = (Path(__file__).parent / name).read_text()
    current = snapshot(text)
    proxy = listeners_proxy_of(text) if "# proxy: " in text and _has_ip(text) else translate_proxy_of(text)
    reference = SnapshotCache().build(translate(current, proxy))
    warm = SnapshotBuilder()
    built(warm, snapshot(text), proxy)  # an equal mesh first: the second build reads the tables
    assert contents(built(warm, current, proxy)) == contents(reference)


def _has_ip(text: str) -> bool:
    line = next(line for line in text.splitlines() if line.startswith("# proxy: "))
    parts = line.split()
    return len(parts) > 4 and parts[4].count(".") == 3


LOCALITY_MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews.prod.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.2.0.1, locality: r1/z1, labels: {version: v1}}
  - {address: 10.2.0.2, locality: r1/z2, labels: {version: v1}}
  - {address: 10.2.0.3, locality: r2/z1, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: prod}
spec:
  host: reviews.prod.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: {enabled: true, SETTING}
  subsets: [{name: v1, labels: {version: v1}}]
"""


@pytest.mark.parametrize("setting", ["failoverPriority: [version]", "failover: []"])
def test_assignments_follow_the_proxys_locality_and_labels(setting: str) -> None:
    """Proxies that differ only in locality, or in a label failoverPriority reads, get their own
    priorities from a warm builder, exactly as the reference computes them."""
    current = snapshot(LOCALITY_MESH.replace("SETTING", setting))
    builder = SnapshotBuilder()
    builder.use(current)
    proxies = [
        dataclasses.replace(client(labels={"version": "v1"}), locality="r1/z1"),
        dataclasses.replace(client(labels={"version": "v1"}), locality="r2/z1"),
        dataclasses.replace(client(labels={"version": "v2"}), locality="r2/z1"),
    ]
    built_ones = [contents(builder.build(p)) for p in proxies]
    for proxy, got in zip(proxies, built_ones, strict=True):
        assert got == contents(SnapshotCache().build(translate(current, proxy)))
    differing = 2 if setting.startswith("failoverPriority") else 1
    assert built_ones[differing - 1] != built_ones[differing]


@pytest.mark.parametrize("name", GOLDEN_INPUTS)
def test_proxies_that_share_a_scope_get_their_own_config(name: str) -> None:
    """Proxies whose labels differ share outbound and route parts only when no selector tells
    them apart (``keys.label_view``): each, built after the others by one builder, still equals
    the reference for its own labels."""
    text = (Path(__file__).parent / name).read_text()
    current = snapshot(text)
    proxy = listeners_proxy_of(text) if "# proxy: " in text and _has_ip(text) else translate_proxy_of(text)
    labels = dict(proxy.labels)
    variants = [
        {},
        {**labels, "unselected": "x"},
        *({k: v for k, v in labels.items() if k != key} for key in labels),
    ]
    builder = SnapshotBuilder()
    builder.use(current)
    for variant in [*variants, labels]:
        other = dataclasses.replace(proxy, labels=variant)
        reference = SnapshotCache().build(translate(current, other))
        assert contents(builder.build(other)) == contents(reference), variant


def _workloads(version_of_2: str, reviews_port: int, ratings_sa: str, extra: bool) -> str:
    docs = [
        workload("reviews-1", "prod", "10.1.0.1", {"app": "reviews", "version": "v1", **SIDECAR_LABELS}),
        workload(
            "reviews-2",
            "prod",
            "10.1.0.2",
            {"app": "reviews", "version": version_of_2, **SIDECAR_LABELS},
            ports=f"{{p9080: {reviews_port}}}",
        ),
        workload("ratings-1", "prod", "10.1.0.3", {"app": "ratings"}, serviceAccount=ratings_sa),
    ]
    if extra:
        docs.append(workload("ratings-2", "prod", "10.1.0.4", {"app": "ratings", **SIDECAR_LABELS}))
    return "\n---\n".join(docs)


def test_a_sequence_of_endpoint_changes_keeps_every_scope_exact() -> None:
    """Endpoint-only changes take the incremental path (a scope's previous part with the changed
    hosts rebuilt): after each step, every proxy's snapshot equals a cold build's."""
    base = [
        service_entry(REVIEWS, extra="  workloadSelector: {labels: {app: reviews}}"),
        service_entry(RATINGS, resolution="STATIC", extra="  workloadSelector: {labels: {app: ratings}}"),
        service_entry(
            "db.prod.svc.cluster.local", resolution="DNS", extra="  endpoints: [{address: db.example}]"
        ),
        destination_rule(
            "reviews",
            "prod",
            f"""
            host: {REVIEWS}
            subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
            """,
        ),
    ]
    steps = [
        ("v2", 9080, "ratings", False),
        ("v3", 9080, "ratings", False),  # a label moves an endpoint out of a subset
        ("v3", 9191, "ratings", False),  # a port
        ("v3", 9191, "ratings-new", False),  # a service account: the clusters' SANs
        ("v2", 9191, "ratings-new", True),  # an endpoint added, with a sidecar
        ("v2", 9080, "ratings", False),  # and everything back
    ]
    proxies = [client(ip="10.0.0.7"), client(namespace="other", ip="10.0.0.8"), client(ip="10.1.0.3")]
    warm = SnapshotBuilder()
    for step in steps:
        current = snapshot(*base, _workloads(*step))
        warm.use(current)
        cold = SnapshotBuilder()
        cold.use(current)
        for proxy in proxies:
            assert contents(warm.build(proxy)) == contents(cold.build(proxy)), (step, proxy.id)
        warm.finish(p.id for p in proxies)
    assert not warm.stats.epoch_changed  # the steps after the first changed endpoints only
