"""The resource and registration API of a real ``pilotfish serve`` (subprocess, SQLite store):
validation like ``pilotfish validate``, kubectl-like verbs, read-only config files, RBAC with
bearer tokens and the audit log, the OpenAPI document, and the ``pilotfish`` CLI over it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from harness import http
from registry_api_support import Api

from pilotfish.cli import main as cli
from pilotfish.config.loader import load_text
from pilotfish.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

HOST = "ratings.prod.svc.cluster.local"


def destination_rule(name: str = "ratings", lb: str = "ROUND_ROBIN", namespace: str = "prod") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {name}
  namespace: {namespace}
spec:
  host: {HOST}
  trafficPolicy:
    loadBalancer: {{simple: {lb}}}
"""


SERVICE = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
"""

TOKENS = """tokens:
  - {token: t-admin, subject: admin}
  - {token: t-alice, subject: alice}
  - {token: t-viewer, subject: viewer}
  - {token: t-agent, subject: agent}
roles:
  - {name: all, rules: [{verbs: ["*"], kinds: ["*"]}]}
  - name: prod-rules
    namespace: prod
    rules: [{verbs: [get, list, apply, delete], kinds: [DestinationRule]}]
  - {name: view, rules: [{verbs: [get, list], kinds: ["*"]}]}
  - {name: registrar, rules: [{verbs: [register], kinds: [Registration], namespaces: [prod]}]}
bindings:
  - {subject: admin, role: all}
  - {subject: alice, role: prod-rules}
  - {subject: viewer, role: view}
  - {subject: agent, role: registrar}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "service.yaml").write_text(SERVICE)
    return config


@pytest.fixture
def api(config, pilotfish_factory) -> Api:
    return Api(pilotfish_factory(config).admin)


def test_an_invalid_document_gets_the_problems_validate_prints_and_nothing_is_written(api: Api) -> None:
    text = destination_rule(lb="FASTEST") + "---\n" + destination_rule("second")
    response = api.call("POST", "/apis/DestinationRule?file=rules.yaml", text)
    assert response.status == 400, response
    expected = [str(p) for p in load_text(text, "rules.yaml").problems]
    assert [p["text"] for p in response.json()["problems"]] == expected
    assert expected[0].startswith(
        "rules.yaml:9: DestinationRule/prod/ratings: spec.trafficPolicy.loadBalancer.simple:"
    )
    assert api.call("GET", "/apis/DestinationRule/prod/second").status == 404, (
        "the valid one was not written either"
    )
    wrong_kind = api.call("POST", "/apis/ServiceEntry", destination_rule())
    assert (
        wrong_kind.status == 400
        and "this endpoint takes ServiceEntry" in wrong_kind.body["problems"][0]["text"]
    )
    assert api.call("POST", "/apis/Nonsense", destination_rule()).status == 404


def test_apply_get_history_rollback_delete(api: Api) -> None:
    created = api.call("PUT", "/apis/DestinationRule", destination_rule()).json()["applied"]
    assert [(a["name"], a["result"]) for a in created] == [("ratings", "created")]
    first = created[0]["revision"]
    changed = api.call("POST", "/apis", destination_rule(lb="LEAST_REQUEST")).json()["applied"][0]
    assert changed["result"] == "configured" and changed["revision"] > first

    stored = api.call("GET", "/apis/DestinationRule/prod/ratings").json()
    assert stored["metadata"]["resourceVersion"] == str(changed["revision"])
    again = api.call("POST", "/apis", yaml.safe_dump(stored)).json()["applied"][0]
    assert again["result"] == "unchanged", "get → apply writes nothing"
    listed = api.call("GET", "/apis/DestinationRule?namespace=prod").json()
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["ratings"]

    history = api.call("GET", "/apis/DestinationRule/prod/ratings/history").json()["history"]
    assert [(h["revision"], h["action"], h["actor"]) for h in history] == [
        (first, "create", "system:loopback"),
        (changed["revision"], "update", "system:loopback"),
    ]
    rolled = api.call("POST", "/apis/DestinationRule/prod/ratings/rollback", {"revision": first}).json()
    assert rolled["rolledBack"]["to"] == first
    lb = api.call("GET", "/apis/DestinationRule/prod/ratings").json()["spec"]["trafficPolicy"]["loadBalancer"]
    assert lb == {"simple": "ROUND_ROBIN"}
    assert api.call("POST", "/apis/DestinationRule/prod/ratings/rollback", {"revision": 999}).status == 400

    assert api.call("DELETE", "/apis/DestinationRule/prod/ratings").status == 200
    assert api.call("DELETE", "/apis/DestinationRule/prod/ratings").status == 404
    assert api.call("GET", "/apis/DestinationRule/prod/ratings").status == 404


def test_resources_from_the_config_directory_are_read_only(api: Api) -> None:
    response = api.call("POST", "/apis", SERVICE)
    assert response.status == 409 and "service.yaml:1" in response.json()["error"], response
    assert api.call("DELETE", "/apis/ServiceEntry/prod/ratings").status == 409


def test_registrations_validate_their_body_and_live_until_deregistered(api: Api) -> None:
    bad = api.call("POST", "/registrations", {"service": HOST, "port": "80", "colour": "red"})
    assert bad.status == 400
    assert {(p["path"], p["message"].split(" ")[0]) for p in bad.json()["problems"]} == {
        ("colour", "unknown"),
        ("address", "required"),
        ("port", "must"),
    }
    out_of_range = api.call("POST", "/registrations", {"service": HOST, "address": "10.0.0.1", "port": 0})
    assert out_of_range.status == 400 and out_of_range.json()["problems"][0]["path"] == "port"

    lease = api.call(
        "POST", "/registrations", {"service": HOST, "address": "10.0.0.1", "port": 80, "weight": 5}
    )
    assert lease.status == 201 and lease.json()["lease"]["ttlSeconds"] == 30
    id = lease.json()["id"]
    assert api.call("PUT", f"/registrations/{id}/heartbeat").status == 200
    items = api.call("GET", f"/registrations?service={HOST}").json()["items"]
    assert [(i["id"], i["weight"]) for i in items] == [(id, 5)]
    assert api.call("DELETE", f"/registrations/{id}").status == 200
    assert api.call("PUT", f"/registrations/{id}/heartbeat").status == 404
    assert api.call("GET", "/registrations").json()["items"] == []


def test_a_registration_carries_its_locality_as_the_istio_locality_label(api: Api) -> None:
    body = {"service": HOST, "address": "10.0.0.2", "port": 80, "locality": "eu/west-1/a"}
    lease = api.call("POST", "/registrations", body)
    assert lease.status == 201, lease
    (item,) = api.call("GET", f"/registrations?service={HOST}").json()["items"]
    assert item["labels"]["istio-locality"] == "eu.west-1.a" and item["locality"] == "eu/west-1/a"
    assert api.call("DELETE", f"/registrations/{lease.json()['id']}").status == 200
    for bad in ("eu//a", "eu/west.1", 7):
        refused = api.call("POST", "/registrations", {**body, "locality": bad})
        assert refused.status == 400 and refused.json()["problems"][0]["path"] == "locality", bad


def test_the_openapi_document_describes_every_route(api: Api) -> None:
    response = api.call("GET", "/openapi.yaml")
    assert response.status == 200 and response.headers["content-type"].startswith("application/yaml")
    paths = yaml.safe_load(response.body)["paths"]
    assert set(paths) == {
        "/apis",
        "/apis/{kind}",
        "/apis/{kind}/{namespace}/{name}",
        "/apis/{kind}/{namespace}/{name}/history",
        "/apis/{kind}/{namespace}/{name}/rollback",
        "/registrations",
        "/registrations/{id}/heartbeat",
        "/registrations/{id}",
        "/openapi.yaml",
    }


def test_rbac_with_tokens_and_every_mutating_request_in_the_audit_log(
    config, tmp_path, pilotfish_factory
) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    pf = pilotfish_factory(config, extra_args=["--admin-tokens", str(tokens)])
    anonymous, alice, viewer, agent = (Api(pf.admin, t) for t in (None, "t-alice", "t-viewer", "t-agent"))

    no_token = anonymous.call("POST", "/apis", destination_rule())
    assert no_token.status == 401 and no_token.headers["www-authenticate"].startswith("Bearer")
    assert Api(pf.admin, "t-wrong").call("GET", "/apis/DestinationRule?namespace=prod").status == 401
    assert anonymous.call("GET", "/healthz").status == 200, "health and metrics stay open"

    assert alice.call("POST", "/apis", destination_rule()).status == 200
    denied = alice.call("POST", "/apis", destination_rule(namespace="dev"))
    assert denied.status == 403 and denied.json()["error"].startswith(
        "RBAC: access denied: alice may not apply"
    )
    assert alice.call("GET", "/apis/DestinationRule?namespace=prod").status == 200
    assert alice.call("GET", "/apis/DestinationRule").status == 403, "all namespaces need a cluster-wide rule"
    assert viewer.call("GET", "/apis/DestinationRule/prod/ratings").status == 200
    assert viewer.call("DELETE", "/apis/DestinationRule/prod/ratings").status == 403
    assert viewer.call("GET", "/apis/Secret?namespace=prod").status == 403, "never readable"

    registered = agent.call("POST", "/registrations", {"service": HOST, "address": "10.0.0.1", "port": 80})
    assert registered.status == 201
    elsewhere = agent.call(
        "POST", "/registrations", {"service": "unknown.example", "address": "10.0.0.1", "port": 80}
    )
    assert elsewhere.status == 403
    id = registered.json()["id"]
    assert agent.call("PUT", f"/registrations/{id}/heartbeat").status == 200
    assert alice.call("DELETE", f"/registrations/{id}").status == 403
    assert agent.call("DELETE", f"/registrations/{id}").status == 200

    with SqliteStore(pf.workdir / "pilotfish.db") as store:
        audit = [(e.actor, e.verb, e.target, e.result.split(" ")[0]) for e in reversed(store.audit_entries())]
    assert audit == [
        ("system:anonymous", "apply", "apis", "401"),
        ("alice", "apply", "DestinationRule/prod/ratings", "200"),
        ("alice", "apply", "DestinationRule/dev/ratings", "403"),
        ("viewer", "delete", "DestinationRule/prod/ratings", "403"),
        ("agent", "register", f"Registration/{id}", "201"),
        ("agent", "register", "Registration/10.0.0.1:80@unknown.example", "403"),
        ("alice", "register", f"Registration/{id}", "403"),
        ("agent", "register", f"Registration/{id}", "200"),
    ], "the renewal is not audited; everything else is"


def test_the_cli_over_the_api(config, tmp_path, pilotfish_factory, capsys, monkeypatch) -> None:
    pf = pilotfish_factory(config)
    admin = ["--admin", pf.admin]
    rules = tmp_path / "rules.yaml"
    rules.write_text(destination_rule() + "---\n" + destination_rule("reviews"))
    assert cli(["apply", "-f", str(rules), *admin]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "DestinationRule/prod/ratings created",
        "DestinationRule/prod/reviews created",
    ]
    assert cli(["get", "DestinationRule", "-n", "prod", *admin]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "REVISION"] and [r.split()[1] for r in table[1:]] == [
        "ratings",
        "reviews",
    ]
    assert cli(["get", "DestinationRule", "ratings", "-n", "prod", "-o", "yaml", *admin]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["host"] == HOST

    rules.write_text(destination_rule(lb="RANDOM"))
    assert cli(["apply", "-f", str(rules), *admin]) == 0
    assert capsys.readouterr().out == "DestinationRule/prod/ratings configured\n"
    assert cli(["history", "DestinationRule/prod/ratings", *admin]) == 0
    history = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [row[:3] for row in history] == [
        ["REVISION", "ACTION", "ACTOR"],
        ["1", "create", "system:loopback"],
        ["3", "update", "system:loopback"],
    ]
    assert cli(["rollback", "DestinationRule/prod/ratings", "--to", "1", *admin]) == 0
    assert "rolled back to revision 1" in capsys.readouterr().out
    assert cli(["rollback", "not-a-ref", "--to", "1", *admin]) == 2
    assert "'not-a-ref' is not KIND/NAMESPACE/NAME" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text(destination_rule(lb="FASTEST"))
    assert cli(["apply", "-f", str(bad), *admin]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("Error from server (BadRequest): invalid")
        and f"{bad}:9: DestinationRule/prod/ratings" in err
    )

    assert cli(["delete", "-f", str(rules), *admin]) == 0
    assert capsys.readouterr().out == "DestinationRule/prod/ratings deleted\n"
    assert cli(["delete", "-f", str(rules), *admin]) == 1
    assert "Error from server (NotFound)" in capsys.readouterr().err

    assert (
        cli(
            [
                "register",
                "--service",
                HOST,
                "--address",
                "10.0.0.8",
                "--port",
                "80",
                "--labels",
                "v=1",
                *admin,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == f"registered 10.0.0.8:80@{HOST} (ttl 30s)\n"
    monkeypatch.setenv("PILOTFISH_TOKEN", "anything")  # sent, and ignored without --admin-tokens
    assert cli(["get", "DestinationRule", "-A", *admin]) == 0
    assert cli(["get", "DestinationRule", "--admin", "127.0.0.1:1"]) == 1
    assert "cannot reach the pilotfish admin API" in capsys.readouterr().err


def test_the_cli_reports_401_and_403(config, tmp_path, pilotfish_factory, capsys) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    pf = pilotfish_factory(config, extra_args=["--admin-tokens", str(tokens)])
    rules = tmp_path / "rules.yaml"
    rules.write_text(destination_rule())
    assert cli(["apply", "-f", str(rules), "--admin", pf.admin]) == 1
    assert "Error from server (Unauthorized)" in capsys.readouterr().err
    assert cli(["apply", "-f", str(rules), "--admin", pf.admin, "--token", "t-viewer"]) == 1
    assert "Error from server (Forbidden): RBAC: access denied" in capsys.readouterr().err
    assert cli(["apply", "-f", str(rules), "--admin", pf.admin, "--token", "t-alice"]) == 0
    assert http.get(f"http://{pf.admin}/healthz").status == 200


def test_register_keepalive_renews_until_interrupted_then_deregisters(config, pilotfish_factory) -> None:
    pf = pilotfish_factory(config)
    api = Api(pf.admin)
    command = [sys.executable, "-m", "pilotfish", "register", "--service", HOST, "--address", "10.0.0.9"]
    command += ["--port", "80", "--ttl", "1", "--keepalive", "--admin", pf.admin]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == f"registered 10.0.0.9:80@{HOST} (ttl 1s)\n"
        time.sleep(2.5)  # two and a half TTLs: only renewals keep it
        assert [i["address"] for i in api.call("GET", "/registrations").json()["items"]] == ["10.0.0.9"]
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
        assert process.stdout.readline() == f"deregistered 10.0.0.9:80@{HOST}\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert api.call("GET", "/registrations").json()["items"] == []
