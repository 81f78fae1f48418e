"""Consumer and Plugin through the resource API of a real ``pilotfish serve``: secrets are
stored hashed or sealed and never come back; apply/get/history/delete as for every kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from registry_api_support import Api

from pilotfish.kong import credentials

pytestmark = pytest.mark.integration

CONSUMER = """
apiVersion: pilotfish.io/v1alpha1
kind: Consumer
metadata: {name: alice, namespace: default}
spec:
  username: alice
  keyAuth: [{key: alice-secret-key}]
  basicAuth: [{username: alice, password: wonderland-password}]
  jwt: [{key: alice-iss, secret: alice-jwt-secret}]
  acls: [{group: gold}]
"""

PLUGIN = """
apiVersion: pilotfish.io/v1alpha1
kind: Plugin
metadata: {name: limit, namespace: default}
spec: {plugin: rate-limiting, config: {minute: 5, policy: local}}
"""


@pytest.fixture
def api(tmp_path: Path, pilotfish_factory) -> Api:  # type: ignore[no-untyped-def]
    config = tmp_path / "config"
    config.mkdir()
    return Api(pilotfish_factory(config).admin)


def test_consumer_secrets_are_never_stored_or_returned_in_the_clear(api: Api, tmp_path: Path) -> None:
    applied = api.call("POST", "/apis", CONSUMER)
    assert applied.status == 200, applied
    again = api.call("POST", "/apis", CONSUMER).json()["applied"][0]
    assert again["result"] in ("configured", "unchanged")  # a password is salted afresh

    got = api.call("GET", "/apis/Consumer/default/alice")
    text = str(got.body)
    for secret in ("alice-secret-key", "wonderland-password", "alice-jwt-secret"):
        assert secret not in text
        assert secret not in str(api.call("GET", "/apis/Consumer/default/alice/history").body)
        assert secret not in str(api.call("GET", "/apis/Consumer?namespace=default").body)
    spec = got.json()["spec"]
    assert spec["keyAuth"][0]["keyHash"].startswith("hmac-sha256:")
    assert credentials.verify_password("wonderland-password", spec["basicAuth"][0]["passwordHash"])
    assert spec["jwt"][0]["secretSealed"].startswith("fernet:")
    assert all(c["id"] for c in spec["keyAuth"] + spec["basicAuth"] + spec["jwt"] + spec["acls"])

    # get → apply is a no-op: the stored form is valid input
    stored = got.json()
    assert api.call("POST", "/apis", yaml.safe_dump(stored)).json()["applied"][0]["result"] == "unchanged"

    # nothing in the clear in the database file either
    databases = list(tmp_path.rglob("pilotfish.db"))
    assert databases
    for db in databases:
        raw = db.read_bytes()
        assert b"alice-secret-key" not in raw and b"wonderland-password" not in raw


def test_plugin_apply_validate_history_delete(api: Api) -> None:
    bad = api.call("POST", "/apis", PLUGIN.replace("minute: 5", "minute: 5, limit_by: header"))
    assert bad.status == 400
    assert "spec.config.header_name" in bad.json()["problems"][0]["text"]
    assert api.call("POST", "/apis", PLUGIN).status == 200
    assert api.call("POST", "/apis", PLUGIN.replace("minute: 5", "minute: 6")).status == 200
    history = api.call("GET", "/apis/Plugin/default/limit/history").json()["history"]
    assert [h["action"] for h in history] == ["create", "update"]
    assert api.call("DELETE", "/apis/Plugin/default/limit").status == 200
    assert api.call("GET", "/apis/Plugin/default/limit").status == 404


TOKENS = """tokens:
  - {token: t-admin, subject: admin}
  - {token: t-viewer, subject: viewer}
roles:
  - {name: all, rules: [{verbs: ["*"], kinds: ["*"]}]}
  - {name: view, rules: [{verbs: [get, list], kinds: ["*"]}]}
bindings:
  - {subject: admin, role: all}
  - {subject: viewer, role: view}
"""


def test_the_kong_admin_api_has_the_admin_apis_rbac(tmp_path: Path, pilotfish_factory) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config"
    config.mkdir()
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    pf = pilotfish_factory(config, extra_args=["--admin-tokens", str(tokens)])
    kong = f"127.0.0.1:{pf.kong_admin_port}"
    anonymous, admin, viewer = (Api(kong, t) for t in (None, "t-admin", "t-viewer"))
    assert anonymous.call("GET", "/consumers").status == 401
    assert anonymous.call("POST", "/consumers", {"username": "x"}).status == 401
    created = admin.call("POST", "/consumers", {"username": "carol"})
    assert created.status == 201 and created.json()["username"] == "carol"
    assert viewer.call("GET", "/consumers/carol").status == 200
    denied = viewer.call("POST", "/consumers/carol/key-auth", {"key": "k"})
    assert denied.status == 403 and denied.json()["message"].startswith("RBAC: access denied")
    assert viewer.call("DELETE", "/consumers/carol").status == 403
    assert admin.call("DELETE", "/consumers/carol").status == 204
