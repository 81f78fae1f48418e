"""Half-life rotation with an injected clock: the pure decision, and the caches that act on it."""

from __future__ import annotations

from datetime import timedelta

from certs_support import DB, NOW, WEB, RecordingHooks, intermediate_ca, root_ca
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.cache import WorkloadCertCache
from pilotfish.certs.rotation import needs_rotation, next_rotation
from pilotfish.certs.store import Inventory

SECOND = timedelta(seconds=1)


def workload_cert(ttl=timedelta(hours=24)):
    return ca_mod.issue_workload(root_ca(), WEB, ca_mod.new_private_key().public_key(), NOW, ttl)


def test_a_24h_certificate_rotates_after_12h():
    cert = workload_cert()
    assert next_rotation(cert) == NOW + timedelta(hours=12)
    assert not needs_rotation(cert, NOW)
    assert not needs_rotation(cert, NOW + timedelta(hours=12) - SECOND)
    assert needs_rotation(cert, NOW + timedelta(hours=12))
    assert needs_rotation(cert, NOW + timedelta(days=2))  # long expired


def test_a_certificate_from_the_future_is_replaced():
    """The clock went backwards (or the issuer's ran ahead): don't serve a not-yet-valid cert."""
    assert needs_rotation(workload_cert(), NOW - SECOND)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=2, max_value=90 * 24 * 3600))
def test_rotation_is_at_half_of_any_lifetime(seconds):
    cert = workload_cert(timedelta(seconds=seconds))
    half = cert.not_valid_before_utc + (cert.not_valid_after_utc - cert.not_valid_before_utc) / 2
    assert next_rotation(cert) == half
    assert not needs_rotation(cert, half - timedelta(microseconds=1))
    assert needs_rotation(cert, half)


def test_the_cache_reuses_until_half_life_then_rotates():
    hooks = RecordingHooks()
    inventory = Inventory()
    cache = WorkloadCertCache(hooks, inventory)
    first = cache.get(root_ca(), WEB, NOW)
    assert cache.get(root_ca(), WEB, NOW + timedelta(hours=11)) is first
    assert hooks.issued == {"workload": 1} and not hooks.rotated
    assert cache.next_rotation() == NOW + timedelta(hours=12)
    assert cache.due(NOW + timedelta(hours=11)) == []
    assert cache.due(NOW + timedelta(hours=12)) == [WEB.uri]

    later = NOW + timedelta(hours=12)
    second = cache.get(root_ca(), WEB, later)
    assert second is not first
    assert second.certificate.not_valid_before_utc == later
    assert hooks.issued == {"workload": 2} and hooks.rotated == {"workload": 1}
    assert hooks.expiry[WEB.uri] == (later + timedelta(hours=24)).timestamp()
    [record] = inventory.records()
    assert record.serial == f"{second.certificate.serial_number:x}"


def test_identities_are_kept_apart_and_ttl_is_configurable():
    cache = WorkloadCertCache(ttl=timedelta(hours=2))
    web, db = cache.get(root_ca(), WEB, NOW), cache.get(root_ca(), DB, NOW)
    assert ca_mod.uri_sans(web.certificate) == [WEB.uri]
    assert ca_mod.uri_sans(db.certificate) == [DB.uri]
    assert web.certificate.not_valid_after_utc == NOW + timedelta(hours=2)


def test_a_new_ca_replaces_every_certificate():
    hooks = RecordingHooks()
    cache = WorkloadCertCache(hooks)
    old = cache.get(root_ca(), WEB, NOW)
    new = cache.get(intermediate_ca(), WEB, NOW)
    assert new is not old
    assert ca_mod.signed_by(new.certificate, intermediate_ca())
    assert hooks.rotated == {"workload": 1}


def test_retain_forgets_identities_no_proxy_uses():
    hooks = RecordingHooks()
    inventory = Inventory()
    cache = WorkloadCertCache(hooks, inventory)
    cache.get(root_ca(), WEB, NOW)
    cache.get(root_ca(), DB, NOW)
    cache.retain([WEB])
    assert hooks.forgotten == [DB.uri]
    assert [r.name for r in inventory.records()] == [WEB.uri]
    assert cache.due(NOW + timedelta(days=1)) == [WEB.uri]
    cache.retain([])
    assert cache.next_rotation() is None
