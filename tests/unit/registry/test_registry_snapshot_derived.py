"""MeshSnapshot's derived values: computed once per snapshot (and key), never carried over."""

from __future__ import annotations

import dataclasses

from pilotfish.registry.snapshot import MeshSnapshot


def test_a_derived_value_is_computed_once_per_snapshot() -> None:
    calls: list[MeshSnapshot] = []

    def count(snapshot: MeshSnapshot) -> int:
        calls.append(snapshot)
        return len(calls)

    snapshot = MeshSnapshot()
    assert snapshot.derived(count) == 1
    assert snapshot.derived(count) == 1
    assert MeshSnapshot().derived(count) == 2  # another snapshot, its own value


def test_derived_for_keys_by_value() -> None:
    seen: list[tuple[str, frozenset[str]]] = []

    def remember(snapshot: MeshSnapshot, key: tuple[str, frozenset[str]]) -> int:
        seen.append(key)
        return len(seen)

    snapshot = MeshSnapshot()
    first = snapshot.derived_for(remember, ("ns", frozenset({"a"})))
    assert (
        snapshot.derived_for(remember, ("ns", frozenset({"a"}))) == first
    )  # an equal key, not the same object
    assert snapshot.derived_for(remember, ("ns", frozenset({"b"}))) != first


def test_a_replaced_snapshot_starts_without_derived_values() -> None:
    calls: list[MeshSnapshot] = []

    def count(snapshot: MeshSnapshot) -> int:
        calls.append(snapshot)
        return len(calls)

    snapshot = MeshSnapshot()
    assert snapshot.derived(count) == 1
    replaced = dataclasses.replace(snapshot)
    assert replaced.derived(count) == 2
    assert replaced == snapshot  # the memo takes no part in equality
