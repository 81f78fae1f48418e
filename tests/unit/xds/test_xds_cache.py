"""The snapshot cache: content-hash versions, bytes shared across proxies, consistency, watchers."""

from __future__ import annotations

import gc

import pytest
import xds_unit_builders as b
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilotfish.xds import resources as rt
from pilotfish.xds.cache import InconsistentSnapshot, ResourceInterner, ResourceSet, Snapshot, SnapshotCache


def test_identical_rebuilds_give_identical_versions() -> None:
    cache = SnapshotCache()
    first, again = cache.build(b.mesh()), cache.build(list(reversed(b.mesh())))
    assert first.versions == again.versions
    assert set(first.versions) == set(rt.ADS_ORDER)
    changed = cache.build(b.mesh(port=9999))
    assert changed.version(rt.ENDPOINT) != first.version(rt.ENDPOINT)
    assert changed.version(rt.CLUSTER) == first.version(rt.CLUSTER)


def test_a_renamed_resource_changes_the_type_version() -> None:
    cache = SnapshotCache()
    one = cache.build([b.cluster("a", eds=False)])
    other = cache.build([b.cluster("b", eds=False)])
    assert one.version(rt.CLUSTER) != other.version(rt.CLUSTER)


def test_bytes_are_shared_across_proxies() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("p1", cache.build(b.mesh()))
    cache.set_snapshot("p2", cache.build(b.mesh()))  # equal content, distinct message objects
    one, two = cache.get("p1"), cache.get("p2")
    assert one is not None and two is not None
    for type_url in rt.ADS_ORDER:
        for name, resource in one.named(type_url).items():
            shared = two.named(type_url)[name]
            assert shared is resource
            assert shared.body is resource.body and shared.any_bytes is resource.any_bytes


def test_resource_bytes_are_the_message_and_its_any() -> None:
    message = b.cluster("a")
    resource = ResourceInterner().resource(message)
    assert resource.body == message.SerializeToString(deterministic=True)
    packed = any_pb2.Any.FromString(resource.any_bytes)
    assert (packed.type_url, packed.value) == (rt.CLUSTER, resource.body)
    assert (resource.type_url, resource.name, resource.references) == (rt.CLUSTER, "a", frozenset({"a"}))


def test_unused_resources_are_released() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("p1", cache.build(b.mesh()))
    cache.set_snapshot("p1", cache.build(b.mesh(port=1234)))
    gc.collect()
    assert len(cache.interner) == len(b.mesh())  # the old endpoints of "a" are gone


def test_an_eds_cluster_without_endpoints_is_inconsistent() -> None:
    with pytest.raises(InconsistentSnapshot) as caught:
        SnapshotCache().build([b.cluster("a"), b.cluster("s", service_name="svc"), b.cla("a")])
    assert caught.value.problems == ("CDS 's' references EDS 'svc', which is not in the snapshot",)


def test_a_listener_without_its_route_is_inconsistent() -> None:
    messages = [
        b.listener("http", "r"),
        b.listener("fallback", "other", port=1, default_chain=True),
        b.route("r", "x"),
    ]
    with pytest.raises(InconsistentSnapshot, match="LDS 'fallback' references RDS 'other'"):
        SnapshotCache().build(messages)


def test_duplicate_names_are_inconsistent() -> None:
    with pytest.raises(InconsistentSnapshot, match="CDS 'a' appears twice"):
        SnapshotCache().build([b.cluster("a", eds=False), b.cluster("a", eds=False, timeout=2)])


def test_static_clusters_and_orphan_children_are_fine() -> None:
    snapshot = SnapshotCache().build([b.cluster("s", eds=False), b.cla("unused"), b.route("unused", "s")])
    assert set(snapshot.named(rt.CLUSTER)) == {"s"}
    assert snapshot.children(rt.CLUSTER, ["s"]) == set()


def test_children_lists_referenced_names() -> None:
    snapshot = SnapshotCache().build([*b.mesh(), b.cluster("c", service_name="svc"), b.cla("svc")])
    assert snapshot.children(rt.CLUSTER, ["a", "c", "missing"]) == {"a", "svc"}
    assert snapshot.children(rt.LISTENER, ["http"]) == {"r"}


def test_a_non_ads_message_is_rejected() -> None:
    with pytest.raises(ValueError, match="not an ADS resource type"):
        SnapshotCache().build([base_pb2.Node(id="x")])


def test_watchers_see_changes_only_until_cancelled() -> None:
    cache = SnapshotCache()
    seen: list[Snapshot] = []
    cancel = cache.watch("p1", seen.append)
    first = cache.build(b.mesh())
    assert cache.set_snapshot("p1", first)
    assert not cache.set_snapshot("p1", cache.build(b.mesh()))
    assert cache.set_snapshot("p2", cache.build(b.mesh()))  # another proxy: not our watcher
    assert seen == [first]
    cancel()
    assert cache.set_snapshot("p1", cache.build(b.mesh(port=1)))
    assert seen == [first]
    assert cache.proxy_ids() == ("p1", "p2")
    cache.clear("p1")
    assert cache.get("p1") is None


def _part(
    interner: ResourceInterner, messages: list[object], previous: ResourceSet | None = None
) -> ResourceSet:
    return ResourceSet.of([interner.resource(m) for m in messages], local_children=False, previous=previous)


def test_a_part_rebuilt_with_the_same_resources_of_a_type_keeps_that_types_mapping_and_entries() -> None:
    interner = ResourceInterner()
    before = _part(interner, [b.cluster("a"), b.cluster("b"), b.cla("a"), b.cla("b")])
    entries = before.sotw_entries(rt.CLUSTER)
    after = _part(interner, [b.cluster("a"), b.cluster("b"), b.cla("a", 9090), b.cla("b")], before)
    assert after.named[rt.CLUSTER] is before.named[rt.CLUSTER]
    assert after.sotw_entries(rt.CLUSTER) is entries  # encoded once for both builds
    assert after.named[rt.ENDPOINT] is not before.named[rt.ENDPOINT]
    assert after.changes[rt.ENDPOINT].names == {"a"}
    assert after.changes[rt.CLUSTER].names == frozenset()


def test_a_snapshot_keeps_its_merged_mapping_while_the_parts_mappings_are_the_same() -> None:
    interner = ResourceInterner()
    local = _part(interner, [b.cluster("inbound", eds=False)])
    outbound = _part(interner, [b.cluster("a"), b.cla("a")])
    first = Snapshot.compose([outbound, local])
    moved = _part(interner, [b.cluster("a"), b.cla("a", 9090)], outbound)
    second = Snapshot.compose([moved, local], first)
    assert second.named(rt.CLUSTER) is first.named(rt.CLUSTER)  # not merged again
    assert set(second.named(rt.CLUSTER)) == {"a", "inbound"}
    assert second.changes[rt.ENDPOINT].names == {"a"}
    renamed = _part(interner, [b.cluster("c"), b.cla("c")], moved)
    third = Snapshot.compose([renamed, local], second)
    assert set(third.named(rt.CLUSTER)) == {"c", "inbound"}
    assert third.changes[rt.CLUSTER].names == {"a", "c"}
    entries = b"".join(third.sotw_entries(rt.CLUSTER))
    decoded = discovery_pb2.DiscoveryResponse.FromString(entries)
    assert sorted(r.value for r in decoded.resources) == sorted(
        r.body for r in third.named(rt.CLUSTER).values()
    )


def _same_part(a: ResourceSet, b: ResourceSet) -> None:
    """Two parts hold the same resources, sums, external references and change records."""
    assert {t: dict(m) for t, m in a.named.items()} == {t: dict(m) for t, m in b.named.items()}
    assert dict(a.sums) == dict(b.sums)
    assert dict(a.external) == dict(b.external)
    assert dict(a.changes) == dict(b.changes)


REVISIONS = {
    # name: (removed, added) against the part of clusters a, b with their assignments
    "an assignment changed": ([b.cla("a")], [b.cla("a", 9090)]),
    "a cluster and its assignment changed": (
        [b.cluster("a"), b.cla("a")],
        [b.cluster("a", timeout=5), b.cla("a", 9090)],
    ),
    "the same resources again": ([b.cluster("a"), b.cla("a")], [b.cluster("a"), b.cla("a")]),
    "a new service": ([], [b.cluster("c"), b.cla("c")]),
    "a cluster gone, its assignment kept": ([b.cluster("b")], []),
}


@pytest.mark.parametrize("case", REVISIONS)
def test_a_revised_part_is_the_part_built_from_all_its_resources(case: str) -> None:
    interner = ResourceInterner()
    held = [b.cluster("a"), b.cluster("b"), b.cla("a"), b.cla("b")]
    before = ResourceSet.of([interner.resource(m) for m in held])
    before.sotw_entries(rt.CLUSTER)
    removed, added = ([interner.resource(m) for m in ms] for ms in REVISIONS[case])
    revised = ResourceSet.revised(before, removed, added)
    assert revised is not None
    gone = {(r.type_url, r.name) for r in removed}
    kept = [r for t in before.named.values() for r in t.values() if (r.type_url, r.name) not in gone]
    _same_part(revised, ResourceSet.of([*kept, *added], previous=before))
    for type_url in rt.ADS_ORDER:  # an untouched type keeps its mapping and encoded entries
        if type_url in before.named and not any(r.type_url == type_url for r in [*removed, *added]):
            assert revised.named[type_url] is before.named[type_url]
    if not any(r.type_url == rt.CLUSTER for r in [*removed, *added]):
        assert revised.sotw_entries(rt.CLUSTER) is before.sotw_entries(rt.CLUSTER)


DECLINED = {
    # name: (removed, added): what only ``of`` may decide (and report)
    "an assignment removed for good": ([b.cla("b")], []),
    "a cluster whose assignment is missing": ([], [b.cluster("c")]),
    "a name twice": ([], [b.cla("c"), b.cla("c", 9090)]),
    "a name another resource holds": ([], [b.cla("b", 9090)]),
    "removing what the part does not hold": ([b.cla("a", 9090)], []),
}


@pytest.mark.parametrize("case", DECLINED)
def test_a_revision_the_shortcut_cannot_vouch_for_is_left_to_of(case: str) -> None:
    interner = ResourceInterner()
    held = [b.cluster("a"), b.cluster("b"), b.cla("a"), b.cla("b")]
    before = ResourceSet.of([interner.resource(m) for m in held])
    removed, added = ([interner.resource(m) for m in ms] for ms in DECLINED[case])
    assert ResourceSet.revised(before, removed, added) is None
