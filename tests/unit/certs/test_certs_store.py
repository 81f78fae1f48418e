"""Key material on disk (0600 files, 0700 directories, atomic writes), opening the CA, DNS
certificates that survive a restart, and the inventory that never holds a private key."""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import timedelta

import pytest
from certs_support import NOW, TRUST_DOMAIN, RecordingHooks, intermediate_ca, root_ca

from pilotfish.certs import ca as ca_mod
from pilotfish.certs.cache import DnsCertCache
from pilotfish.certs.config import DnsCertificate
from pilotfish.certs.store import (
    DirectoryStorage,
    Inventory,
    OperatorCa,
    StoredPair,
    open_ca,
    report_ca,
    write_private_file,
)
from pilotfish.errors import ConfigError

SHOP = DnsCertificate(secret_name="shop-gateway", dns_names=("shop.example.com",), ttl=timedelta(days=10))


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_private_files_are_0600_in_0700_directories_even_with_a_lax_umask(tmp_path):
    old = os.umask(0o000)
    try:
        target = tmp_path / "a" / "b" / "key.pem"
        write_private_file(target, b"secret")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"secret"
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["key.pem"]  # no temporary left behind


def test_rewriting_replaces_the_whole_file(tmp_path):
    target = tmp_path / "key.pem"
    write_private_file(target, b"a much longer first version")
    write_private_file(target, b"short")
    assert target.read_bytes() == b"short"
    assert mode(target) == 0o600


def test_first_use_generates_a_root_and_later_opens_reuse_it(tmp_path):
    storage = DirectoryStorage(tmp_path / "ca")
    first = open_ca(storage, TRUST_DOMAIN, NOW)
    for path in (storage.ca_cert_path, storage.ca_key_path, storage.root_cert_path):
        assert mode(path) == 0o600
    assert b"PRIVATE KEY" in storage.ca_key_path.read_bytes()
    assert b"PRIVATE KEY" not in storage.ca_cert_path.read_bytes() + storage.root_cert_path.read_bytes()
    again = open_ca(storage, TRUST_DOMAIN, NOW + timedelta(days=1))
    assert again.fingerprint == first.fingerprint
    assert ca_mod.key_matches(again.root, again.key)


def test_a_directory_written_by_pilotfish_serves_as_operator_files(tmp_path):
    storage = DirectoryStorage(tmp_path / "ca")
    generated = open_ca(storage, TRUST_DOMAIN, NOW)
    operator = OperatorCa(storage.ca_cert_path, storage.ca_key_path)
    assert open_ca(DirectoryStorage(tmp_path / "unused"), TRUST_DOMAIN, NOW, operator).fingerprint == (
        generated.fingerprint
    )
    assert not (tmp_path / "unused").exists()  # an operator CA is never copied into storage


def test_operator_files_with_an_intermediate(tmp_path, caplog):
    authority = intermediate_ca()
    cert_file, key_file = tmp_path / "ca-cert.pem", tmp_path / "ca-key.pem"
    cert_file.write_bytes(ca_mod.certificates_pem(authority.chain))
    key_file.write_bytes(ca_mod.private_key_pem(authority.key))
    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        loaded = open_ca(DirectoryStorage(tmp_path / "s"), TRUST_DOMAIN, NOW, OperatorCa(cert_file, key_file))
    assert loaded.chain == authority.chain
    assert "should be 0600" in caplog.text


def test_unreadable_operator_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError) as err:
        open_ca(
            DirectoryStorage(tmp_path), TRUST_DOMAIN, NOW, OperatorCa(tmp_path / "no.pem", tmp_path / "k")
        )
    assert str(err.value).startswith(f"{tmp_path / 'no.pem'}:0: cannot read")


def test_a_stored_ca_whose_key_does_not_match_is_refused(tmp_path):
    storage = DirectoryStorage(tmp_path)
    open_ca(storage, TRUST_DOMAIN, NOW)
    write_private_file(storage.ca_key_path, ca_mod.private_key_pem(ca_mod.new_private_key()))
    with pytest.raises(ConfigError, match="does not belong"):
        open_ca(storage, TRUST_DOMAIN, NOW)


def test_secret_names_cannot_escape_the_directory(tmp_path):
    storage = DirectoryStorage(tmp_path)
    for name in ("../ca", "a/b", "", "UPPER"):
        with pytest.raises(ValueError):
            storage.write_dns(name, StoredPair(b"c", b"k"))


def test_dns_certificates_are_stored_and_survive_a_restart(tmp_path):
    storage = DirectoryStorage(tmp_path)
    hooks = RecordingHooks()
    first = DnsCertCache(storage, hooks).get(root_ca(), SHOP, NOW)
    folder = tmp_path / "dns" / "shop-gateway"
    assert mode(folder / "key.pem") == 0o600 and mode(folder / "cert-chain.pem") == 0o600
    assert ca_mod.all_sans(first.certificate) == ["shop.example.com"]
    restarted_hooks = RecordingHooks()
    restarted = DnsCertCache(storage, restarted_hooks).get(root_ca(), SHOP, NOW + timedelta(days=4))
    assert restarted.certificate == first.certificate
    assert hooks.issued == {"dns": 1} and not restarted_hooks.issued
    assert restarted_hooks.expiry["shop-gateway"] == (NOW + timedelta(days=10)).timestamp()


def test_dns_certificates_are_reissued_at_half_life_on_new_names_and_on_bad_files(tmp_path):
    storage = DirectoryStorage(tmp_path)
    hooks = RecordingHooks()
    cache = DnsCertCache(storage, hooks)
    first = cache.get(root_ca(), SHOP, NOW)
    rotated = cache.get(root_ca(), SHOP, NOW + timedelta(days=5))
    assert rotated.certificate != first.certificate
    assert hooks.rotated == {"dns": 1}
    renamed = DnsCertificate("shop-gateway", ("shop.example.com", "www.shop.example.com"), timedelta(days=10))
    assert ca_mod.all_sans(cache.get(root_ca(), renamed, NOW + timedelta(days=5)).certificate) == list(
        renamed.dns_names
    )
    write_private_file(tmp_path / "dns" / "shop-gateway" / "key.pem", b"garbage")
    fresh = DnsCertCache(storage).get(root_ca(), renamed, NOW + timedelta(days=5))
    assert ca_mod.key_matches(fresh.certificate, fresh.private_key)
    assert ca_mod.load_private_key((tmp_path / "dns" / "shop-gateway" / "key.pem").read_bytes())


def test_inventory_lists_public_facts_only(tmp_path):
    inventory = Inventory()
    DnsCertCache(DirectoryStorage(tmp_path), inventory=inventory).get(root_ca(), SHOP, NOW)
    [record] = inventory.to_json()
    assert record["kind"] == "dns" and record["name"] == "shop-gateway"
    assert record["sans"] == ["shop.example.com"]
    assert record["notAfter"] == (NOW + timedelta(days=10)).isoformat()
    assert int(record["serial"], 16) > 0
    assert "PRIVATE" not in json.dumps(inventory.to_json())


def test_report_ca_lists_the_root_and_the_signing_intermediate():
    hooks, inventory = RecordingHooks(), Inventory()
    report_ca(intermediate_ca(), hooks, inventory)
    assert [(r.kind, r.name) for r in inventory.records()] == [("ca", "ROOTCA"), ("ca", "ca-signing")]
    assert hooks.expiry == {
        "ROOTCA": intermediate_ca().root.not_valid_after_utc.timestamp(),
        "ca-signing": intermediate_ca().signing_cert.not_valid_after_utc.timestamp(),
    }
    only_root = Inventory()
    report_ca(root_ca(), RecordingHooks(), only_root)
    assert [r.name for r in only_root.records()] == ["ROOTCA"]
