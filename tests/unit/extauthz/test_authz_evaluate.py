"""evaluate(): Istio's action order, every source/operation field, when keys and the traps
(reference istio-security.md §4 and §8)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from authz_support import SLEEP, attrs, compiled, decide, load, policy_doc

from pilotfish.config.mesh import DEFAULT_MESH, EnvoyExtAuthzGrpcProvider, ExtensionProvider, MeshConfig
from pilotfish.config.resource import Resource
from pilotfish.config.security.authorization_policy import (
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    RuleFrom,
    RuleTo,
    Source,
)
from pilotfish.extauthz.evaluate import RBAC_DENIED, DryRunFinding, PolicyMatch, evaluate
from pilotfish.extauthz.jwt import AuthnResult
from pilotfish.extauthz.policy import compile_policy, policies_for_workload


def allow(*rules: Any, name: str = "p", **kw: Any) -> str:
    return policy_doc({"action": "ALLOW", "rules": list(rules)}, name=name, **kw)


def deny(*rules: Any, name: str = "d", **kw: Any) -> str:
    return policy_doc({"action": "DENY", "rules": list(rules)}, name=name, **kw)


def allowed(doc: str, claims: dict[str, Any] | None = None, **kw: Any) -> bool:
    return decide(compiled(doc), claims, **kw).allow


# ---- actions and their order ---------------------------------------------------------------------


def test_no_policy_allows():
    d = decide(())
    assert (d.allow, d.status, d.policy, d.rule) == (True, 200, None, None)


def test_empty_spec_denies_everything():
    d = decide(compiled(policy_doc({}, name="allow-nothing")))
    assert (d.allow, d.status, d.policy, d.body) == (False, 403, None, RBAC_DENIED)


def test_empty_spec_is_additive_with_other_allow_policies():
    policies = compiled(
        policy_doc({}, name="allow-nothing"), allow({"to": [{"operation": {"paths": ["/ok"]}}]})
    )
    assert decide(policies, path="/ok").allow
    assert not decide(policies, path="/other").allow


def test_empty_rule_allows_everything():
    d = decide(compiled(allow({})))
    assert (d.allow, d.policy, d.rule) == (True, "foo/p", 0)


def test_deny_beats_allow_and_names_policy_and_rule():
    policies = compiled(allow({}), deny({"to": [{"operation": {"paths": ["/x"]}}]}, {}))
    d = decide(policies, path="/admin")
    assert (d.allow, d.status, d.policy, d.rule) == (False, 403, "foo/d", 1)


def test_rule_index_is_the_first_matching_rule():
    policies = compiled(
        allow({"to": [{"operation": {"paths": ["/a"]}}]}, {"to": [{"operation": {"paths": ["/b"]}}]})
    )
    assert decide(policies, path="/b").rule == 1
    assert decide(policies, path="/a").rule == 0


def test_audit_is_reported_and_never_decides():
    policies = compiled(policy_doc({"action": "AUDIT", "rules": [{}]}, name="audit"))
    d = decide(policies)
    assert d.allow and d.audit == (PolicyMatch("foo/audit", 0),)
    with_allow = compiled(policy_doc({"action": "AUDIT", "rules": [{}]}, name="audit"), policy_doc({}))
    assert not decide(with_allow).allow


def test_authn_failure_comes_before_deny_and_allow():
    failed = AuthnResult(
        status=401, reason="Jwt is expired", response_headers=(("www-authenticate", "Bearer x"),)
    )
    d = evaluate(compiled(allow({})), attrs(), failed)
    assert (d.allow, d.status, d.body, d.response_headers) == (
        False,
        401,
        "Jwt is expired",
        failed.response_headers,
    )
    d403 = evaluate((), attrs(), AuthnResult(status=403, reason="Audiences in Jwt are not allowed"))
    assert (d403.allow, d403.status) == (False, 403)


def test_allow_passes_authn_headers_upstream():
    authn = AuthnResult(
        claims={"iss": "i", "sub": "s"}, headers_to_set=(("x-p", "v"),), headers_to_remove=("authorization",)
    )
    d = evaluate(compiled(allow({})), attrs(), authn)
    assert d.headers_to_set == (("x-p", "v"),) and d.headers_to_remove == ("authorization",)


MESH = MeshConfig(
    extension_providers=(
        ExtensionProvider(
            name="ext", envoy_ext_authz_grpc=EnvoyExtAuthzGrpcProvider(service="ext.foo", port=9000)
        ),
        ExtensionProvider(
            name="ext2", envoy_ext_authz_grpc=EnvoyExtAuthzGrpcProvider(service="ext2.foo", port=9000)
        ),
    )
)


def custom(provider: str, path: str = "/admin", name: str = "c") -> str:
    return policy_doc(
        {
            "action": "CUSTOM",
            "provider": {"name": provider},
            "rules": [{"to": [{"operation": {"paths": [path]}}]}],
        },
        name=name,
    )


def test_custom_names_the_provider_only_when_a_rule_matches():
    policies = compiled(custom("ext"), mesh=MESH)
    matched = decide(policies, path="/admin")
    assert matched.custom_provider == "ext" and matched.custom_match == PolicyMatch("foo/c", 0)
    assert matched.allow  # what applies if the provider allows: CUSTOM alone is not default-deny
    assert decide(policies, path="/other").custom_provider is None


def test_custom_runs_before_authentication():
    failed = AuthnResult(status=401, reason="Jwt is expired")
    d = evaluate(compiled(custom("ext"), mesh=MESH), attrs(path="/admin"), failed)
    assert d.custom_provider == "ext" and d.status == 401  # the provider is asked first; its deny wins


def test_custom_with_undefined_provider_denies_matching_requests():
    policies = compiled(custom("nope"), mesh=MESH)
    d = evaluate(policies, attrs(path="/admin"), AuthnResult(status=401, reason="bad"))
    assert (d.allow, d.status, d.policy, d.custom_provider) == (False, 403, "foo/c", None)
    assert decide(policies, path="/other").allow


def test_two_custom_providers_on_one_workload_deny():
    policies = compiled(custom("ext", name="c1"), custom("ext2", name="c2"), mesh=MESH)
    assert not decide(policies, path="/admin").allow


# ---- dry run -------------------------------------------------------------------------------------

DRY = {"istio.io/dry-run": "true"}


def test_dry_run_deny_is_reported_not_enforced():
    d = decide(compiled(deny({}, annotations=DRY)))
    assert d.allow and d.dry_run == (DryRunFinding("DENY", "deny", "foo/d", 0),)


def test_all_dry_run_allow_policies_leave_allow_by_default():
    policies = compiled(allow({"to": [{"operation": {"paths": ["/ok"]}}]}, annotations=DRY))
    other = decide(policies, path="/other")
    assert other.allow and other.dry_run == (DryRunFinding("ALLOW", "deny"),)
    ok = decide(policies, path="/ok")
    assert ok.dry_run == (DryRunFinding("ALLOW", "allow", "foo/p", 0),)


def test_unparsable_dry_run_value_enforces():
    (resource,) = load(deny({}))
    yes = dataclasses.replace(resource, annotations={"istio.io/dry-run": "yes"})
    assert not evaluate((compile_policy(yes),), attrs()).allow


# ---- scope ---------------------------------------------------------------------------------------


def test_root_namespace_policy_applies_to_every_namespace():
    policies = compiled(policy_doc({}, namespace="istio-system"), namespace="bar", labels={})
    assert len(policies) == 1


def test_other_namespace_policy_does_not_apply():
    assert compiled(policy_doc({}, namespace="bar")) == ()


def test_selector_needs_a_label_subset():
    sel = {"selector": {"matchLabels": {"app": "httpbin"}}}
    assert len(compiled(policy_doc(sel))) == 1
    assert compiled(policy_doc(sel), labels={"app": "other"}) == ()


def test_target_refs_are_ignored_on_sidecars():
    doc = policy_doc(
        {"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]}
    )
    assert compiled(doc) == ()


# ---- from.source ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "principal", "expected"),
    [
        ("cluster.local/ns/foo/sa/sleep", SLEEP, True),
        ("spiffe://cluster.local/ns/foo/sa/sleep", SLEEP, False),  # written without the scheme
        ("cluster.local/ns/foo/sa/other", SLEEP, False),
        ("cluster.local/ns/foo/*", SLEEP, True),
        ("*/sa/sleep", SLEEP, True),
        ("*", SLEEP, True),
        ("*", None, False),  # plaintext
        ("cluster.local/ns/foo/sa/sleep", None, False),
    ],
)
def test_principals(value, principal, expected):
    assert allowed(allow({"from": [{"source": {"principals": [value]}}]}), principal=principal) is expected


def test_not_principals_match_plaintext():
    doc = deny({"from": [{"source": {"notPrincipals": ["*"]}}]})
    assert not allowed(doc, principal=None)
    assert allowed(doc, principal=SLEEP)


def test_trust_domain_cluster_local_means_the_mesh_domain():
    doc = allow({"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}]})
    mesh = MeshConfig(trust_domain="td1")
    policies = compiled(doc, mesh=mesh)
    assert decide(policies, principal="spiffe://td1/ns/foo/sa/sleep").allow
    assert not decide(policies, principal=SLEEP).allow


def test_trust_domain_aliases():
    doc = allow({"from": [{"source": {"principals": ["old-td/ns/foo/sa/sleep"]}}]})
    # T-TD: after migrating to new-td the client's certificate names new-td.
    migrated = compiled(doc, mesh=MeshConfig(trust_domain="new-td"))
    assert not decide(migrated, principal="spiffe://new-td/ns/foo/sa/sleep").allow
    aliased = compiled(doc, mesh=MeshConfig(trust_domain="new-td", trust_domain_aliases=("old-td",)))
    assert decide(aliased, principal="spiffe://old-td/ns/foo/sa/sleep").allow
    assert decide(aliased, principal="spiffe://new-td/ns/foo/sa/sleep").allow


def test_foreign_trust_domain_is_kept_as_written():
    doc = allow({"from": [{"source": {"principals": ["other.td/ns/foo/sa/sleep"]}}]})
    policies = compiled(doc, mesh=MeshConfig(trust_domain="td1"))
    assert decide(policies, principal="spiffe://other.td/ns/foo/sa/sleep").allow
    assert not decide(policies, principal="spiffe://td1/ns/foo/sa/sleep").allow


@pytest.mark.parametrize(
    ("field", "value", "principal", "expected"),
    [
        ("namespaces", "foo", SLEEP, True),
        ("namespaces", "bar", SLEEP, False),
        ("namespaces", "f*", SLEEP, True),
        ("namespaces", "foo", "spiffe://other.td/ns/foo/sa/x", True),  # trust domain ignored
        ("namespaces", "foo", None, False),
        ("notNamespaces", "bar", SLEEP, True),
        ("notNamespaces", "foo", SLEEP, False),
        ("notNamespaces", "foo", None, True),  # plaintext matches every notNamespaces
        ("serviceAccounts", "foo/sleep", SLEEP, True),
        ("serviceAccounts", "sleep", SLEEP, True),  # the policy's namespace
        ("serviceAccounts", "bar/sleep", SLEEP, False),
        ("notServiceAccounts", "foo/sleep", SLEEP, False),
        ("trustDomains", "cluster.local", SLEEP, True),
        ("trustDomains", "*.local", SLEEP, True),
        ("trustDomains", "other", SLEEP, False),
        ("notTrustDomains", "other", None, True),
    ],
)
def test_identity_fields(field, value, principal, expected):
    assert allowed(allow({"from": [{"source": {field: [value]}}]}), principal=principal) is expected


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("ipBlocks", "10.0.0.5", True),
        ("ipBlocks", "10.0.0.0/24", True),
        ("ipBlocks", "10.0.1.0/24", False),
        ("ipBlocks", "2001:db8::/32", False),
        ("notIpBlocks", "10.0.0.0/8", False),
        ("remoteIpBlocks", "203.0.113.0/24", True),
        ("remoteIpBlocks", "10.0.0.5", False),  # the direct peer is not the remote client
        ("notRemoteIpBlocks", "198.51.100.0/24", True),
    ],
)
def test_ip_blocks(field, value, expected):
    assert allowed(allow({"from": [{"source": {field: [value]}}]})) is expected


REQUEST_CLAIMS = {"iss": "https://issuer.example.com", "sub": "alice"}


@pytest.mark.parametrize(
    ("value", "claims", "expected"),
    [
        ("https://issuer.example.com/alice", REQUEST_CLAIMS, True),  # split at the LAST /
        ("https://issuer.example.com/*", REQUEST_CLAIMS, True),
        ("*/alice", REQUEST_CLAIMS, True),
        ("https://issuer.example.com/al*", REQUEST_CLAIMS, True),
        ("*example.com/alice", REQUEST_CLAIMS, True),
        ("*", REQUEST_CLAIMS, True),
        ("*", {"iss": "https://issuer.example.com"}, False),  # * needs a non-empty sub (#22540)
        ("*", {"iss": "https://issuer.example.com", "sub": ""}, False),
        ("https://issuer.example.com", REQUEST_CLAIMS, False),  # no / : iss plus an empty sub
        ("*", None, False),  # no JWT
        # a sub holding "/" cannot be matched exactly (istio/istio#52217)
        ("https://gh/repo:org/repo:ref", {"iss": "https://gh", "sub": "repo:org/repo:ref"}, False),
    ],
)
def test_request_principals(value, claims, expected):
    assert allowed(allow({"from": [{"source": {"requestPrincipals": [value]}}]}), claims) is expected


def test_not_request_principals_match_requests_without_jwt():
    doc = deny({"from": [{"source": {"notRequestPrincipals": ["*"]}}]})
    assert not allowed(doc, None)
    assert allowed(doc, REQUEST_CLAIMS)


def test_source_fields_are_anded_and_sources_ored():
    anded = allow({"from": [{"source": {"namespaces": ["foo"], "ipBlocks": ["192.168.0.0/16"]}}]})
    assert not allowed(anded)
    ored = allow({"from": [{"source": {"namespaces": ["bar"]}}, {"source": {"ipBlocks": ["10.0.0.0/8"]}}]})
    assert allowed(ored)


def test_values_ored_and_not_values_excluded():
    doc = allow({"to": [{"operation": {"paths": ["/api/*"], "notPaths": ["/api/admin"]}}]})
    assert allowed(doc, path="/api/x")
    assert not allowed(doc, path="/api/admin")


# ---- to.operation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host", "expected"),
    [
        ("httpbin.foo:8000", "HTTPBIN.foo:8000", True),  # case-insensitive (CVE-2021-39155)
        ("httpbin.foo", "httpbin.foo:8000", False),  # the port is part of the host
        ("httpbin.foo:*", "httpbin.foo:8000", True),
        ("httpbin.foo", "Httpbin.Foo", True),
        ("*.foo", "httpbin.FOO", True),
        ("*", "x", True),
        ("other", "httpbin.foo", False),
    ],
)
def test_hosts(value, host, expected):
    assert allowed(allow({"to": [{"operation": {"hosts": [value]}}]}), host=host) is expected


def test_not_hosts_case_insensitive():
    doc = deny({"to": [{"operation": {"notHosts": ["good.example.com"]}}]})
    assert allowed(doc, host="GOOD.example.com")
    assert not allowed(doc, host="evil.example.com")


@pytest.mark.parametrize(
    ("value", "method", "expected"),
    [("GET", "GET", True), ("get", "GET", False), ("*", "POST", True), ("POST", "GET", False)],
)
def test_methods(value, method, expected):
    assert allowed(allow({"to": [{"operation": {"methods": [value]}}]}), method=method) is expected


@pytest.mark.parametrize(
    ("value", "path", "expected"),
    [
        ("/info", "/info?x=1", True),  # the query is not part of the path
        ("/info", "/info#frag", True),
        ("/info", "/INFO", False),  # case-sensitive
        ("/info*", "/information", True),
        ("/info*", "/info/x", True),
        ("*.png", "/img/a.png", True),
        ("*.png", "/img/a.png?size=2", True),
        ("*", "/anything", True),
        ("/a*b", "/axb", False),  # an inner * is literal
        ("/store/{*}/inventory", "/store/s1/inventory", True),
        ("/store/{*}/inventory", "/store/a/b/inventory", False),
        ("/store/{*}/inventory", "/store//inventory", False),
        ("/store/{**}", "/store/a/b/c", True),
        ("/store/{**}", "/store/", True),
        ("/store/{**}", "/other/a", False),
        ("/{*}/x/{**}", "/a/x/b/c?q=1", True),
    ],
)
def test_paths(value, path, expected):
    assert allowed(allow({"to": [{"operation": {"paths": [value]}}]}), path=path) is expected


def test_ports_use_the_workload_port():
    doc = allow({"to": [{"operation": {"ports": ["8000"]}}]})
    assert allowed(doc, port=8000)
    assert not allowed(doc, port=80)
    assert not allowed(deny({"to": [{"operation": {"notPorts": ["9000"]}}]}), port=8000)


# ---- when ----------------------------------------------------------------------------------------


def when(key: str, values: list[str] | None = None, not_values: list[str] | None = None) -> str:
    cond: dict[str, Any] = {"key": key}
    if values:
        cond["values"] = values
    if not_values:
        cond["notValues"] = not_values
    return allow({"when": [cond]})


CLAIMS = {
    "iss": "https://issuer.example.com",
    "sub": "alice",
    "aud": ["api", "web"],
    "azp": "frontend",
    "groups": ["dev", "ops"],
    "scope": ["read", "write"],
    "nested": {"key1": "valueA", "list": ["x", "y"]},
    "admin": True,
    "level": 5,
    "a.b": "dotted",
}


@pytest.mark.parametrize(
    ("key", "values", "not_values", "kw", "expected"),
    [
        ("request.headers[X-Token]", ["abc"], None, {"headers": {"x-token": "abc"}}, True),
        ("request.headers[x-token]", ["ABC"], None, {"headers": {"x-token": "abc"}}, False),
        ("request.headers[x-token]", ["a,b"], None, {"headers": {"x-token": ["a", "b"]}}, True),
        ("request.headers[x-token]", ["*"], None, {"headers": {"x-token": ""}}, True),  # present
        ("request.headers[x-token]", ["*"], None, {}, False),
        ("request.headers[x-token]", None, ["bad"], {}, True),  # missing header: notValues match
        ("request.headers[x-token]", None, ["bad"], {"headers": {"x-token": "bad"}}, False),
        ("source.ip", ["10.0.0.0/24"], None, {}, True),
        ("source.ip", ["10.0.0.5"], None, {"ip": None}, False),
        ("remote.ip", ["203.0.113.7"], None, {}, True),
        ("source.namespace", ["foo"], None, {}, True),
        ("source.namespace", None, ["foo"], {"principal": None}, True),
        ("source.principal", ["cluster.local/ns/foo/sa/sleep"], None, {}, True),
        ("source.principal", None, ["*"], {"principal": None}, True),
        ("source.serviceAccount", ["foo/sleep"], None, {}, True),
        ("source.trustDomain", ["cluster.local"], None, {}, True),
        ("destination.ip", ["10.0.0.9"], None, {}, True),
        ("destination.ip", ["10.0.0.10"], None, {}, False),
        ("destination.port", ["8000"], None, {}, True),
        ("destination.port", ["80"], None, {}, False),
        (
            "connection.sni",
            ["outbound_.8000_._.httpbin.foo.svc.cluster.local"],
            None,
            {"sni": "outbound_.8000_._.httpbin.foo.svc.cluster.local"},
            True,
        ),
        ("connection.sni", ["*"], None, {}, False),
        ("connection.sni", None, ["x"], {}, True),
    ],
)
def test_when_request_keys(key, values, not_values, kw, expected):
    assert allowed(when(key, values, not_values), **kw) is expected


@pytest.mark.parametrize(
    ("key", "values", "not_values", "expected"),
    [
        ("request.auth.principal", ["https://issuer.example.com/alice"], None, True),
        ("request.auth.principal", ["*/bob"], None, False),
        ("request.auth.audiences", ["web"], None, True),  # list claim: any element
        ("request.auth.audiences", ["mobile"], None, False),
        ("request.auth.presenter", ["front*"], None, True),
        ("request.auth.claims[groups]", ["ops"], None, True),
        ("request.auth.claims[groups]", None, ["ops"], False),
        ("request.auth.claims[scope]", ["write"], None, True),
        ("request.auth.claims[nested][key1]", ["valueA"], None, True),  # nested by repeated brackets
        ("request.auth.claims[nested][list]", ["y"], None, True),
        ("request.auth.claims[nested][missing]", None, ["x"], True),
        ("request.auth.claims[nested.key1]", ["valueA"], None, False),  # dot is not nesting
        ("request.auth.claims[a.b]", ["dotted"], None, True),
        ("request.auth.claims[admin]", ["true"], None, False),  # non-string claims never match
        ("request.auth.claims[level]", ["5"], None, False),
        ("request.auth.claims[iss]", ["*"], None, True),
    ],
)
def test_when_jwt_keys(key, values, not_values, expected):
    assert allowed(when(key, values, not_values), CLAIMS) is expected


@pytest.mark.parametrize(
    ("key", "values", "not_values", "expected"),
    [
        ("request.auth.claims[groups]", ["dev"], None, False),
        ("request.auth.claims[groups]", None, ["dev"], True),  # no JWT: notValues match
        ("request.auth.principal", None, ["*"], True),
        ("request.auth.audiences", ["*"], None, False),
    ],
)
def test_when_jwt_keys_without_jwt(key, values, not_values, expected):
    assert allowed(when(key, values, not_values), None) is expected


def test_when_conditions_are_anded():
    doc = allow(
        {
            "when": [
                {"key": "source.namespace", "values": ["foo"]},
                {"key": "request.headers[x]", "values": ["1"]},
            ]
        }
    )
    assert allowed(doc, headers={"x": "1"})
    assert not allowed(doc)


def test_custom_policies_do_not_see_jwt_claims():
    # CUSTOM runs before jwt_authn; validation rejects request.auth.* there, so build it directly.
    spec = AuthorizationPolicySpec(
        action="CUSTOM",
        rules=(Rule(when=(Condition(key="request.headers[x]", values=("1",)),)),),
    )
    from pilotfish.config.security.authorization_policy import Provider

    spec = dataclasses.replace(spec, provider=Provider(name="ext"))
    policy = compile_policy(Resource("security.istio.io/v1", "AuthorizationPolicy", "c", "foo", spec), MESH)
    assert evaluate((policy,), attrs(headers={"x": "1"})).custom_provider == "ext"


# ---- fail closed ---------------------------------------------------------------------------------


def raw_policy(action: str, rule: Rule, name: str = "raw") -> Any:
    spec = AuthorizationPolicySpec(action=action, rules=(rule,))  # type: ignore[arg-type]
    return compile_policy(Resource("security.istio.io/v1", "AuthorizationPolicy", name, "foo", spec))


UNDERSTOOD_NOT = [
    Rule(when=(Condition(key="destination.labels[app]", values=("x",)),)),
    Rule(when=(Condition(key="no.such.key", values=("x",)),)),
    Rule(
        when=(
            Condition(key="experimental.envoy.filters.network.mysql_proxy[db.table]", values=("[update]",)),
        )
    ),
    Rule(from_=(RuleFrom(source=Source(ip_blocks=("not-an-ip",))),)),
    Rule(to=(RuleTo(operation=Operation(ports=("99999",))),)),
    Rule(to=(RuleTo(operation=Operation(paths=("/a/{**}/{*}",))),)),
    Rule(from_=(RuleFrom(source=None),)),
]


@pytest.mark.parametrize("rule", UNDERSTOOD_NOT)
def test_rule_not_understood_allow_matches_nothing(rule):
    assert not evaluate((raw_policy("ALLOW", rule),), attrs()).allow


@pytest.mark.parametrize("rule", UNDERSTOOD_NOT)
def test_rule_not_understood_deny_matches_everything(rule):
    policies = (raw_policy("DENY", rule), compile_policy(load(allow({}))[0]))
    d = evaluate(policies, attrs())
    assert (d.allow, d.policy, d.rule) == (False, "foo/raw", 0)


def test_policies_for_workload_keeps_compiled_policies():
    (resource,) = load(allow({}))
    policy = compile_policy(resource, DEFAULT_MESH)
    assert policies_for_workload((policy,), "foo", {}, "istio-system") == (policy,)
    assert policies_for_workload((policy,), "bar", {}, "istio-system") == ()
