"""Consumer and Plugin documents: decoding, validation with field paths, sealing of secrets."""

from __future__ import annotations

import textwrap

from pilotfish.config.loader import load_text
from pilotfish.kong import credentials

CONSUMER = """
apiVersion: pilotfish.io/v1alpha1
kind: Consumer
metadata: {name: alice, namespace: default}
spec:
  username: alice
  custom_id: "4200"
  tags: [team-a]
  keyAuth: [{key: alice-key}]
  basicAuth: [{username: alice, password: s3cret}]
  jwt: [{key: alice-issuer, algorithm: HS256, secret: jwt-secret}]
  acls: [{group: gold}]
"""


def load(text: str):  # type: ignore[no-untyped-def]
    return load_text(textwrap.dedent(text))


def test_consumer_loads_with_snake_and_camel_names() -> None:
    result = load(CONSUMER)
    assert not result.errors, result.errors
    (consumer,) = result.resources
    assert consumer.spec.custom_id == "4200"
    assert consumer.spec.key_auth[0].key == "alice-key"
    assert consumer.spec.acls[0].group == "gold"


def test_consumer_errors_carry_field_paths() -> None:
    result = load(
        """
        apiVersion: pilotfish.io/v1alpha1
        kind: Consumer
        metadata: {name: bob}
        spec:
          keyAuth: [{}]
          jwt: [{key: k, algorithm: RS256}, {key: k, secret: x}]
          acls: [{group: a}, {group: a}]
        """
    )
    texts = {(p.path, p.message) for p in result.errors}
    paths = {p for p, _ in texts}
    assert "spec" in paths  # neither username nor custom_id
    assert "spec.keyAuth[0]" in paths
    assert "spec.jwt[0].rsaPublicKey" in paths
    assert "spec.jwt[1]" in paths  # duplicate key
    assert "spec.acls[1]" in paths


def test_plugin_config_is_checked_against_the_plugin_schema() -> None:
    result = load(
        """
        apiVersion: pilotfish.io/v1alpha1
        kind: Plugin
        metadata: {name: rl}
        spec:
          plugin: rate-limiting
          config: {minute: 10, hour: 5, policy: redis, limit_by: header, bogus: 1}
        """
    )
    paths = {p.path for p in result.errors}
    assert "spec.config.bogus" in paths
    result = load(
        """
        apiVersion: pilotfish.io/v1alpha1
        kind: Plugin
        metadata: {name: rl}
        spec:
          plugin: rate-limiting
          config: {minute: 10, hour: 5, policy: redis, limit_by: header}
        """
    )
    paths = {p.path for p in result.errors}
    assert {"spec.config", "spec.config.header_name", "spec.config.redis_host"} <= paths
    unknown = load(
        "apiVersion: pilotfish.io/v1alpha1\nkind: Plugin\nmetadata: {name: x}\nspec: {plugin: oauth2}\n"
    )
    assert [p.path for p in unknown.errors] == ["spec.plugin"]
    body = load(
        "apiVersion: pilotfish.io/v1alpha1\nkind: Plugin\nmetadata: {name: x}\n"
        "spec: {plugin: key-auth, config: {key_in_body: true}}\n"
    )
    assert [p.path for p in body.errors] == ["spec.config.key_in_body"]


def test_seal_consumer_hashes_and_seals_every_secret() -> None:
    key = b"k" * 32
    doc = {
        "apiVersion": "pilotfish.io/v1alpha1",
        "kind": "Consumer",
        "metadata": {"name": "alice"},
        "spec": {
            "username": "alice",
            "key_auth": [{"key": "alice-key"}],
            "basicAuth": [{"username": "alice", "password": "s3cret"}],
            "jwt": [{"key": "iss-a", "secret": "jwt-secret"}],
        },
    }
    sealed = credentials.seal_consumer(doc, key)
    text = repr(sealed)
    assert "alice-key" not in text and "s3cret" not in text and "jwt-secret" not in text
    spec = sealed["spec"]
    assert spec["keyAuth"][0]["keyHash"] == credentials.hash_api_key("alice-key", key)
    assert credentials.verify_password("s3cret", spec["basicAuth"][0]["passwordHash"])
    assert not credentials.verify_password("wrong", spec["basicAuth"][0]["passwordHash"])
    assert credentials.open_secret(spec["jwt"][0]["secretSealed"], key) == "jwt-secret"
    assert credentials.open_secret(spec["jwt"][0]["secretSealed"], b"x" * 32) is None
    assert all(item["id"] for item in spec["keyAuth"] + spec["basicAuth"] + spec["jwt"])
    # the stored form loads, and sealing it again changes nothing but keeps the ids
    import yaml

    result = load_text(yaml.safe_dump(sealed))
    assert not result.errors, result.errors
    assert credentials.seal_consumer(sealed, key) == sealed
