"""The console's JSON (``/ui/api``) under the admin API's RBAC, against ``pilotfish serve``: no
token no data, each item filtered by what the caller may read, the built-in ``metrics-reader``
sees the counters and nothing else, and the static page needs no token (it holds no data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry_api_support import Api

pytestmark = pytest.mark.integration

HOST = "ratings.prod.svc.cluster.local"
CONFIG = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: prod}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-1, namespace: prod}}
spec: {{address: 127.0.0.1, ports: {{http: 19999}}, labels: {{app: ratings, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: prod}}
spec:
  host: {HOST}
  subsets: [{{name: v1, labels: {{version: v1}}}}]
  trafficPolicy: {{tls: {{mode: MUTUAL, clientCertificate: /etc/c.pem, privateKey: /etc/k.pem}}}}
"""
TOKENS = """tokens:
  - {token: t-admin, subject: admin}
  - {token: t-viewer, subject: viewer}
  - {token: t-dev, subject: dev}
  - {token: t-prometheus, subject: prometheus}
roles:
  - {name: all, rules: [{verbs: ["*"], kinds: ["*"]}]}
  - {name: read, rules: [{verbs: [get, list], kinds: ["*"]}]}
  - {name: dev-reader, namespace: dev, rules: [{verbs: [get, list], kinds: ["*"]}]}
bindings:
  - {subject: admin, role: all}
  - {subject: viewer, role: read}
  - {subject: dev, role: dev-reader}
  - {subject: prometheus, role: metrics-reader}
"""
API = ("/ui/api/whoami", "/ui/api/mesh", "/ui/api/stats", f"/ui/api/service?host={HOST}")


@pytest.fixture
def admin(tmp_path: Path, pilotfish_factory) -> str:
    config = tmp_path / "config"
    config.mkdir()
    (config / "ratings.yaml").write_text(CONFIG)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    return str(pilotfish_factory(config, extra_args=["--admin-tokens", str(tokens)]).admin)


def get(admin: str, token: str | None, path: str) -> tuple[int, dict]:
    response = Api(admin, token).call("GET", path)
    return response.status, (response.json() if response.status == 200 else {})


def test_no_token_no_data_but_the_page_loads(admin: str) -> None:
    for path in API:
        assert Api(admin).call("GET", path).status == 401, path
        assert Api(admin, "t-wrong").call("GET", path).status == 401, path
    page = Api(admin).call("GET", "/ui/")
    assert page.status == 200 and "console.js" in page.body
    assert Api(admin).call("GET", "/ui/console.js").status == 200
    assert Api(admin).call("GET", "/ui/..%2Fapi.py").status == 404


def test_a_read_only_token_sees_everything_readable_and_no_key(admin: str) -> None:
    assert get(admin, "t-viewer", "/ui/api/whoami")[1] == {
        "subject": "viewer",
        "tokens": True,
        "canWrite": False,
    }
    _, mesh = get(admin, "t-viewer", "/ui/api/mesh")
    ids = {n["id"] for n in mesh["graph"]["nodes"]}
    assert ids == {f"svc:{HOST}", "wl:WorkloadEntry/prod/ratings-1"}
    (edge,) = mesh["graph"]["edges"]
    assert edge["mtls"] == "MUTUAL · PERMISSIVE"  # the DestinationRule's TLS mode wins over auto mTLS
    status, page = get(admin, "t-viewer", f"/ui/api/service?host={HOST}")
    assert status == 200 and [s["name"] for s in page["subsets"]] == ["v1"]
    tls = page["destinationRules"][0]["spec"]["traffic_policy"]["tls"]
    assert tls["private_key"] == "[redacted]" and tls["client_certificate"] == "[redacted]"
    _, stats = get(admin, "t-viewer", "/ui/api/stats")
    assert {s["name"] for s in stats["series"]} >= {"pilotfish_store_up", "pilotfish_xds_proxies"}
    assert stats["certificates"]["items"]
    everything = json.dumps([mesh, page, stats])
    assert "PRIVATE KEY" not in everything and "/etc/k.pem" not in everything


def test_a_namespaced_reader_sees_only_its_namespace(admin: str) -> None:
    _, mesh = get(admin, "t-dev", "/ui/api/mesh")
    assert mesh["graph"] == {"nodes": [], "edges": []} and mesh["services"] == []
    assert get(admin, "t-dev", f"/ui/api/service?host={HOST}")[0] == 404
    _, stats = get(admin, "t-dev", "/ui/api/stats")
    assert stats["series"] == [] and stats["certificates"] is None  # cluster-wide: not for a Role


def test_metrics_reader_sees_the_counters_only(admin: str) -> None:
    _, stats = get(admin, "t-prometheus", "/ui/api/stats")
    assert stats["series"] and stats["certificates"] is None
    _, mesh = get(admin, "t-prometheus", "/ui/api/mesh")
    assert mesh["graph"]["nodes"] == [] and mesh["proxies"] == []
