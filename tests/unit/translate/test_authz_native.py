"""Native enforcement: which mode a workload gets, the filters and clusters it brings, and why a
workload falls back to ext_authz. (That both modes decide alike is proven through real Envoy in
``tests/e2e/test_authz_differential_e2e.py``.)"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from types import MappingProxyType
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import json_format, struct_pb2
from harness.envoy import envoy_binary
from test_authz_wiring import BOOKINFO, REVIEWS

from pilotfish.app import translate
from pilotfish.config.loader import load_text
from pilotfish.config.security.enforcement import MODE_ANNOTATION
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, parse_node
from pilotfish.xds.translate.authz import authz_clusters, authz_plan, enforcement, uses_authz
from pilotfish.xds.translate.jwt_authn import JWKS_CLUSTER_PREFIX

JWT = """---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: "https://b.example"
    jwksUri: "https://b.example:8443/jwks"
    fromHeaders: [{name: x-jwt, prefix: "T "}]
  - {issuer: "a-issuer", jwksUri: "http://127.0.0.1:9999/jwks"}
"""
POLICIES = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - to: [{operation: {methods: [GET], notPaths: ["/private*"]}}]
    from: [{source: {requestPrincipals: ["*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: AUDIT
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shadow, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{when: [{key: "request.auth.claims[groups]", values: [admin]}]}]
"""
CUSTOM = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: custom, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
"""
DISCOVERY = """---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: discovery, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: "https://accounts.example"}]
"""


def snapshot(extra: str, mode: str = "native") -> MeshSnapshot:
    loaded = load_text(BOOKINFO + extra)
    assert not loaded.errors, loaded.errors
    return MeshSnapshot.build(loaded.resources, authz_address=("127.0.0.1", 9191), authz_mode=mode)


def with_mode(proxy: Proxy, mode: str) -> Proxy:
    return dataclasses.replace(proxy, metadata=MappingProxyType({**proxy.metadata, MODE_ANNOTATION: mode}))


def test_native_filters_come_in_istios_order() -> None:
    plan = authz_plan(snapshot(JWT + POLICIES), REVIEWS)
    assert plan.mode == "native" and plan.fallback is None
    assert [f.name for f in plan.filters] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",  # DENY (with the dry-run DENY as shadow rules)
        "envoy.filters.http.rbac",  # ALLOW
        "envoy.filters.http.rbac",  # AUDIT (LOG)
    ]
    actions = []
    for f in plan.filters[1:]:
        config = http_rbac_pb2.RBAC()
        assert f.typed_config.Unpack(config)
        actions.append(
            (config.rules.action, sorted(config.rules.policies), sorted(config.shadow_rules.policies))
        )
    assert actions == [
        (
            rbac_pb2.RBAC.DENY,
            ["ns[default]-policy[deny-admin]-rule[0]"],
            ["ns[default]-policy[shadow]-rule[0]"],
        ),
        (rbac_pb2.RBAC.ALLOW, ["ns[default]-policy[allow-get]-rule[0]"], []),
        (rbac_pb2.RBAC.LOG, ["ns[default]-policy[audit]-rule[0]"], []),
    ]


def test_jwt_providers_sorted_by_issuer_with_istios_requirement_and_jwks_clusters() -> None:
    mesh = snapshot(JWT + POLICIES)
    jwt = config_pb2.JwtAuthentication()
    assert authz_plan(mesh, REVIEWS).filters[0].typed_config.Unpack(jwt)
    providers = [jwt.providers[name] for name in sorted(jwt.providers)]
    assert [p.issuer for p in providers] == ["a-issuer", "https://b.example"]
    assert providers[1].from_headers[0].name == "x-jwt" and providers[1].from_headers[0].value_prefix == "T "
    assert all(p.payload_in_metadata == "payload" for p in providers)
    requirement = json_format.MessageToDict(jwt.rules[0].requires)
    # requires_any: [P1, P2, requires_all: [any(P1, allow_missing), any(P2, allow_missing)]]
    assert [r.get("providerName") for r in requirement["requiresAny"]["requirements"][:2]] == [
        "origins-0",
        "origins-1",
    ]
    assert jwt.bypass_cors_preflight
    clusters = [
        n for r in translate(mesh, REVIEWS) if (n := getattr(r, "name", "")).startswith(JWKS_CLUSTER_PREFIX)
    ]
    assert set(clusters) == {
        f"{JWKS_CLUSTER_PREFIX}|http|127.0.0.1|9999",
        f"{JWKS_CLUSTER_PREFIX}|https|b.example|8443",
    }


def test_ext_authz_is_the_default_and_a_proxy_annotation_overrides_the_mesh_mode() -> None:
    assert enforcement(snapshot(POLICIES, mode="ext_authz"), REVIEWS) == ("ext_authz", None)
    assert enforcement(snapshot(POLICIES, mode="ext_authz"), with_mode(REVIEWS, "native")) == ("native", None)
    assert enforcement(snapshot(POLICIES, mode="native"), with_mode(REVIEWS, "ext_authz")) == (
        "ext_authz",
        None,
    )
    listeners = [
        r for r in translate(snapshot(POLICIES, mode="ext_authz"), REVIEWS) if "Listener" in type(r).__name__
    ]
    assert uses_authz(listeners)


def test_custom_and_discovery_fall_back_to_ext_authz_and_say_why() -> None:
    for extra, why in ((CUSTOM, "CUSTOM"), (DISCOVERY, "OpenID discovery")):
        mode, fallback = enforcement(snapshot(extra), REVIEWS)
        assert mode == "ext_authz" and fallback is not None and why in fallback
        plan = authz_plan(snapshot(extra), REVIEWS)
        assert [f.name for f in plan.filters] == ["envoy.filters.http.ext_authz"]


def test_a_workload_no_policy_selects_gets_no_filter() -> None:
    assert authz_plan(snapshot(""), REVIEWS).mode == "none"


def test_the_annotation_comes_from_node_metadata_annotations() -> None:
    from envoy.config.core.v3 import base_pb2

    metadata = struct_pb2.Struct()
    metadata.update({"NAMESPACE": "default", "ANNOTATIONS": {MODE_ANNOTATION: "native", "other": "x"}})
    node = base_pb2.Node(
        id="sidecar~127.0.0.21~reviews-v1.default~default.svc.cluster.local", metadata=metadata
    )
    assert dict(parse_node(node).metadata) == {MODE_ANNOTATION: "native"}


def test_uri_templates_become_regexes_envoy_accepts() -> None:
    extra = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: templates, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{to: [{operation: {paths: ["/api/{*}/items", "/files/{**}"]}}]}]
"""
    dump = json.dumps(json_format.MessageToDict(authz_plan(snapshot(extra), REVIEWS).filters[0]))
    assert "uriTemplate" not in dump and "safeRegex" in dump


def test_envoy_accepts_the_native_filters_and_jwks_clusters(tmp_path: Path) -> None:
    """``envoy --mode validate`` on a static listener carrying every native filter of a rich policy
    set (each field and when key of the differential suite) and the JWKS clusters."""
    mesh = snapshot(JWT + POLICIES + EVERY_FIELD)
    plan = authz_plan(mesh, REVIEWS)
    manager = hcm.HttpConnectionManager(
        stat_prefix="native",
        route_config=route_pb2.RouteConfiguration(
            virtual_hosts=[
                route_components_pb2.VirtualHost(
                    name="all",
                    domains=["*"],
                    routes=[
                        route_components_pb2.Route(
                            match=route_components_pb2.RouteMatch(prefix="/"),
                            direct_response=route_components_pb2.DirectResponseAction(status=200),
                        )
                    ],
                )
            ]
        ),
        http_filters=[*plan.filters, http_filter("envoy.filters.http.router", router_pb2.Router())],
    )
    boot = bootstrap_pb2.Bootstrap()
    chain = boot.static_resources.listeners.add(name="native").filter_chains.add()
    boot.static_resources.listeners[0].address.socket_address.address = "127.0.0.1"
    boot.static_resources.listeners[0].address.socket_address.port_value = 1
    chain.filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(manager)
    listeners = [r for r in translate(mesh, REVIEWS) if type(r).__name__ == "Listener"]
    boot.static_resources.clusters.extend(authz_clusters(mesh, listeners))
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(json_format.MessageToDict(boot)))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def http_filter(name: str, config: Any) -> hcm.HttpFilter:
    out = hcm.HttpFilter(name=name)
    out.typed_config.Pack(config)
    return out


EVERY_FIELD = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: every-field, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/a/sa/b", "*/sa/c", "x*", "*"]
        notPrincipals: ["cluster.local/ns/z/sa/z"]
        requestPrincipals: ["iss/sub", "https://a.example/x/*", "*"]
        notRequestPrincipals: ["bad/*"]
        namespaces: ["a", "b*"]
        notNamespaces: ["*z"]
    - source:
        serviceAccounts: ["a/b", "c"]
        ipBlocks: ["10.0.0.0/8", "192.168.1.1", "::1"]
        notIpBlocks: ["10.1.0.0/16"]
        remoteIpBlocks: ["1.2.3.4"]
        notRemoteIpBlocks: ["5.6.7.8/32"]
        trustDomains: ["cluster.local", "td*", "*td", "*"]
    to:
    - operation:
        hosts: ["a.example", "*.b.example", "c*"]
        notHosts: ["evil.example"]
        ports: ["8080"]
        notPorts: ["9090"]
        methods: ["GET", "P*"]
        notMethods: ["DELETE"]
        paths: ["/a", "/b*", "*/c", "/d/{*}/e", "/f/{**}"]
        notPaths: ["/x*"]
    when:
    - {key: "request.headers[x-a]", values: ["a", "b*", "*"]}
    - {key: "request.auth.claims[groups]", values: ["g"]}
    - {key: "request.auth.claims[org][team]", notValues: ["red"]}
    - {key: "request.auth.audiences", values: ["aud"]}
    - {key: "request.auth.presenter", values: ["azp"]}
    - {key: "request.auth.principal", values: ["iss/sub"]}
    - {key: "source.ip", values: ["10.0.0.1"]}
    - {key: "remote.ip", values: ["10.0.0.0/24"]}
    - {key: "source.namespace", values: ["a"]}
    - {key: "source.principal", values: ["cluster.local/ns/a/sa/b"]}
    - {key: "source.serviceAccount", values: ["a/b"]}
    - {key: "source.trustDomain", values: ["cluster.local"]}
    - {key: "destination.ip", values: ["10.0.0.2"]}
    - {key: "destination.port", values: ["8080"]}
    - {key: "connection.sni", values: ["a.example"]}
"""


def test_the_native_tables_cover_exactly_the_evaluators_fields_and_keys() -> None:
    """Both modes read one field or ``when`` key through two tables (Envoy matchers here, Python
    predicates in ``extauthz.matchers``): a key added to one and not the other fails here."""
    from pilotfish.extauthz import matchers
    from pilotfish.xds.translate import rbac

    assert set(rbac.SOURCE_FIELDS) == set(matchers.SOURCE_FIELDS)
    assert set(rbac.OPERATION_FIELDS) == set(matchers.OPERATION_FIELDS)
    assert set(rbac.WHEN_PRINCIPALS) | set(rbac.WHEN_PERMISSIONS) == set(matchers.WHEN_KEYS)
    assert set(rbac.BRACKETED_WHEN_PRINCIPALS) == set(matchers.BRACKETED_WHEN_KEYS)
