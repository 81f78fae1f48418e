"""The store's pure parts: registration validation, document preparation, URL dispatch."""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotfish.config.source import parse_documents
from pilotfish.errors import ConfigError
from pilotfish.store import Registration, open_store, sqlite_path
from pilotfish.store.documents import canonical_json, load, prepare
from pilotfish.store.postgres import PostgresStore
from pilotfish.store.sqlite import SqliteStore

VALID: dict[str, Any] = {"id": "r1", "service": "ratings.prod.svc", "address": "10.0.0.1", "port": 8080}


def test_a_valid_registration_has_sensible_defaults() -> None:
    reg = Registration(**VALID)
    assert (reg.weight, reg.ttl_seconds, reg.draining, reg.expires_at, dict(reg.labels)) == (
        1,
        30.0,
        False,
        0.0,
        {},
    )


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("id", "", "id"),
        ("id", "x" * 254, "id"),
        ("service", "", "service"),
        ("address", "", "address"),
        ("port", 0, "port"),
        ("port", 65536, "port"),
        ("weight", 0, "weight"),
        ("weight", 2**32, "weight"),
        ("ttl_seconds", 0.0, "ttlSeconds"),
        ("ttl_seconds", float("nan"), "ttlSeconds"),
        ("ttl_seconds", float("inf"), "ttlSeconds"),
        ("ttl_seconds", 1e308, "ttlSeconds"),
        ("ttl_seconds", 0.5, "ttlSeconds"),
        ("ttl_seconds", 86_401.0, "ttlSeconds"),
        ("address", "not-an-ip!", "address"),
        ("address", "unix:///tmp/sock", "address"),
        ("address", "10.0.0.300", "address"),
        ("labels", {"app": 1}, "labels"),
    ],
)
def test_an_invalid_registration_names_the_field(field: str, value: Any, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Registration(**(VALID | {field: value}))
    assert [p.path for p in caught.value.problems] == [path]
    assert caught.value.problems[0].ref == f"Registration/{VALID['id'] if field != 'id' else value}"


@pytest.mark.parametrize("address", ["10.0.0.1", "2001:db8::1", "ratings.example.com", "localhost"])
def test_addresses_a_workload_entry_takes_are_accepted(address: str) -> None:
    assert Registration(**(VALID | {"address": address})).address == address


def test_same_endpoint_ignores_only_the_lease() -> None:
    reg = Registration(**VALID)
    assert reg.same_endpoint(replace(reg, expires_at=99.0))
    assert not reg.same_endpoint(replace(reg, draining=True))
    assert not reg.same_endpoint(replace(reg, labels={"v": "2"}))


WE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "WorkloadEntry",
    "metadata": {"name": "a"},
    "spec": {"address": "10.0.0.1"},
}


def test_prepare_fills_in_the_namespace_and_is_canonical() -> None:
    prepared = prepare(WE)
    assert prepared.key == ("WorkloadEntry", "default", "a")
    assert json.loads(prepared.text)["metadata"] == {"name": "a", "namespace": "default"}
    assert prepare(dict(reversed(list(WE.items())))).text == prepared.text
    assert WE["metadata"] == {"name": "a"}, "the caller's document is not modified"


def test_prepare_strips_yaml_positions_and_keeps_dates_as_text() -> None:
    text = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: a\n"
    text += "  creationTimestamp: 2024-01-02\nspec:\n  address: 10.0.0.1\n"
    (doc,) = parse_documents(text)
    stored = load(prepare(doc.data).text, revision=7)
    assert type(stored.doc["metadata"]) is dict
    assert stored.doc["metadata"]["creationTimestamp"] == "2024-01-02"
    assert (stored.revision, stored.resource.origin.file) == (7, "<store>")


def test_a_value_json_cannot_hold_is_a_config_error() -> None:
    for value in ({"x": float("nan")}, {"x": {1, 2}}, {"x": datetime.time(1, 2)}):
        with pytest.raises(ConfigError):
            canonical_json(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["networking.istio.io/v1", "v1"]) | st.text(max_size=5),
        "kind": st.sampled_from(["WorkloadEntry", "ServiceEntry", "Gateway"]) | st.text(max_size=5),
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["a", "B", ""])}) | json_values,
        "spec": st.fixed_dictionaries({"address": st.sampled_from(["10.0.0.1", ""])}) | json_values,
    },
)


@given(documents | json_values)
def test_prepare_either_succeeds_or_raises_config_error(doc: Any) -> None:
    try:
        prepared = prepare(doc)
    except ConfigError:
        return
    assert load(prepared.text, revision=1).resource.key == prepared.key


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/pilotfish/store.db", "/var/lib/pilotfish/store.db"),
        ("sqlite:state/store.db", "state/store.db"),
    ],
)
def test_sqlite_urls_name_a_file(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:", "sqlite:///x.db?mode=ro"])
def test_bad_sqlite_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        sqlite_path(url)


@pytest.mark.parametrize("url", ["mysql://localhost/db", "/var/lib/store.db", "etcd://x"])
def test_an_unknown_scheme_is_a_config_error_that_lists_the_known_ones(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///.*postgresql://"):
        open_store(url)


def test_open_store_picks_the_implementation_and_connects_lazily(tmp_path: Any) -> None:
    sqlite = open_store(f"sqlite://{tmp_path}/s.db")
    started = time.monotonic()
    postgres = open_store("postgres://nobody@192.0.2.1:5432/unroutable")  # TEST-NET-1: would hang if dialled
    try:
        assert isinstance(sqlite, SqliteStore) and isinstance(postgres, PostgresStore)
        assert time.monotonic() - started < 0.5
        assert not (tmp_path / "s.db").exists()
    finally:
        sqlite.close()
        postgres.close()
