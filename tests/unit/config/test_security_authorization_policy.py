"""AuthorizationPolicy: Istio's documented examples decode; every validation rule rejects (or warns)
at the right field path (istio/istio pkg/config/validation ValidateAuthorizationPolicy)."""

from __future__ import annotations

import ipaddress
import textwrap
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pilotfish.config.loader import LoadResult, load_text
from pilotfish.config.resource import Resource
from pilotfish.config.security import authorization_policy as ap
from pilotfish.config.security.annotations import is_dry_run

VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")


def doc(spec: Any, *, version: str = VERSIONS[0], annotations: dict[str, str] | None = None) -> str:
    meta: dict[str, Any] = {"name": "p", "namespace": "foo"}
    if annotations:
        meta["annotations"] = annotations
    return yaml.safe_dump(
        {"apiVersion": version, "kind": "AuthorizationPolicy", "metadata": meta, "spec": spec}
    )


def load(spec: Any, **kw: Any) -> LoadResult:
    return load_text(doc(spec, **kw), "ap.yaml")


def accepted(spec: Any, **kw: Any) -> Resource[ap.AuthorizationPolicySpec]:
    result = load(spec, **kw)
    assert not result.errors, [str(p) for p in result.errors]
    (resource,) = result.resources
    return resource


def errors(spec: Any, **kw: Any) -> list[tuple[str, str]]:
    result = load(spec, **kw)
    assert not result.resources, "an invalid policy must not load"
    return [(p.path, p.message) for p in result.errors]


def warnings(spec: Any) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in load(spec).warnings]


# ---- Istio's documented examples (istio.io reference/config/security/authorization-policy) ------

HTTPBIN = """
selector:
  matchLabels:
    app: httpbin
    version: v1
action: ALLOW
rules:
- from:
  - source:
      principals: ["cluster.local/ns/default/sa/sleep"]
  - source:
      namespaces: ["test"]
  to:
  - operation:
      methods: ["GET"]
      paths: ["/info*"]
  - operation:
      methods: ["POST"]
      paths: ["/data"]
  when:
  - key: request.auth.claims[iss]
    values: ["https://accounts.google.com"]
"""


@pytest.mark.parametrize("version", VERSIONS)
def test_documented_allow_example_decodes_into_named_parts(version: str) -> None:
    spec = accepted(yaml.safe_load(HTTPBIN), version=version).spec
    assert spec.action == "ALLOW"
    assert spec.selector is not None and spec.selector.match_labels == {"app": "httpbin", "version": "v1"}
    (rule,) = spec.rules
    assert rule.from_ is not None and rule.to is not None
    assert [f.source.principals for f in rule.from_ if f.source] == [
        ("cluster.local/ns/default/sa/sleep",),
        (),
    ]
    assert rule.from_[1].source is not None and rule.from_[1].source.namespaces == ("test",)
    assert [(t.operation.methods, t.operation.paths) for t in rule.to if t.operation] == [
        (("GET",), ("/info*",)),
        (("POST",), ("/data",)),
    ]
    assert rule.when == (ap.Condition("request.auth.claims[iss]", ("https://accounts.google.com",)),)


def test_snake_case_spellings_are_accepted() -> None:
    spec = accepted(
        {
            "action": "DENY",
            "rules": [
                {
                    "from": [
                        {
                            "source": {
                                "not_namespaces": ["foo"],
                                "request_principals": ["iss/sub"],
                                "ip_blocks": ["10.0.0.0/8"],
                                "not_remote_ip_blocks": ["1.2.3.4"],
                            }
                        }
                    ],
                    "to": [{"operation": {"not_paths": ["/healthz"], "not_ports": ["8080"]}}],
                    "when": [{"key": "request.headers[x-token]", "not_values": ["guest"]}],
                }
            ],
        }
    ).spec
    rule = spec.rules[0]
    assert rule.from_ is not None and rule.from_[0].source == ap.Source(
        not_namespaces=("foo",),
        request_principals=("iss/sub",),
        ip_blocks=("10.0.0.0/8",),
        not_remote_ip_blocks=("1.2.3.4",),
    )
    assert rule.to is not None and rule.to[0].operation == ap.Operation(
        not_paths=("/healthz",), not_ports=("8080",)
    )
    assert rule.when[0].not_values == ("guest",)


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("allow-nothing", {}),
        ("allow-all", {"rules": [{}]}),
        ("deny-all", {"action": "DENY", "rules": [{}]}),
        ("audit", {"action": "AUDIT", "rules": [{"to": [{"operation": {"paths": ["/user/profile/*"]}}]}]}),
        (
            "custom",
            {
                "action": "CUSTOM",
                "provider": {"name": "my-ext-authz"},
                "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}],
            },
        ),
        (
            "path-templates",
            {"rules": [{"to": [{"operation": {"paths": ["/store/{*}/inventory", "/foo/{**}"]}}]}]},
        ),
        (
            "service-accounts",
            {"rules": [{"from": [{"source": {"serviceAccounts": ["default/sleep", "curl"]}}]}]},
        ),
        ("trust-domains", {"rules": [{"from": [{"source": {"trustDomains": ["*.example.com", "td*"]}}]}]}),
        ("ports", {"action": "DENY", "rules": [{"to": [{"operation": {"ports": ["0", "65535"]}}]}]}),
        (
            "nested-claims",
            {"rules": [{"when": [{"key": "request.auth.claims[nested][key1]", "values": ["a"]}]}]},
        ),
        (
            "experimental",
            {
                "rules": [
                    {
                        "when": [
                            {
                                "key": "experimental.envoy.filters.network.mysql_proxy[db.table]",
                                "values": ["[update]"],
                            }
                        ]
                    }
                ]
            },
        ),
        ("ip-keys", {"rules": [{"when": [{"key": "destination.ip", "values": ["10.0.0.1", "fd00::/8"]}]}]}),
        (
            "target-ref",
            {
                "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}],
                "rules": [{}],
            },
        ),
    ],
)
def test_documented_policy_shapes_are_accepted(name: str, spec: dict[str, Any]) -> None:
    for version in VERSIONS:
        accepted(spec, version=version)


def test_absent_from_and_to_are_none_and_empty_rule_is_kept() -> None:
    spec = accepted({"rules": [{}]}).spec
    assert spec.rules == (ap.Rule(),)
    assert spec.rules[0].from_ is None and spec.rules[0].to is None and spec.rules[0].when == ()


# ---- every rule, as a table: spec → (path, message fragment) ------------------------------------

CUSTOM = {"action": "CUSTOM", "provider": {"name": "ext"}}


def src(**fields: Any) -> dict[str, Any]:
    return {"rules": [{"from": [{"source": fields}]}]}


def op(**fields: Any) -> dict[str, Any]:
    return {"rules": [{"to": [{"operation": fields}]}]}


def when(key: str, values: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    cond: dict[str, Any] = {"key": key, **extra}
    if values is not None:
        cond["values"] = values
    return {"rules": [{"when": [cond]}]}


REJECTED = [
    ("deny-without-rules", {"action": "DENY"}, "spec.rules", "DENY action without `rules`"),
    ("deny-empty-rules", {"action": "DENY", "rules": []}, "spec.rules", "DENY action without `rules`"),
    ("custom-without-rules", {**CUSTOM}, "spec.rules", "CUSTOM action without `rules`"),
    (
        "custom-without-provider",
        {"action": "CUSTOM", "rules": [{}]},
        "spec.provider.name",
        "must not be empty",
    ),
    (
        "custom-empty-provider",
        {"action": "CUSTOM", "provider": {}, "rules": [{}]},
        "spec.provider.name",
        "must not be empty",
    ),
    (
        "provider-with-allow",
        {"provider": {"name": "ext"}, "rules": [{}]},
        "spec.provider",
        "non CUSTOM action, found ALLOW",
    ),
    (
        "provider-with-deny",
        {"action": "DENY", "provider": {"name": "x"}, "rules": [{}]},
        "spec.provider",
        "found DENY",
    ),
    ("bad-action", {"action": "REJECT"}, "spec.action", "must be one of ALLOW, DENY, AUDIT, CUSTOM"),
    ("from-empty", {"rules": [{"from": []}]}, "spec.rules[0].from", "`from` must not be empty"),
    ("from-without-source", {"rules": [{"from": [{}]}]}, "spec.rules[0].from[0].source", "must not be nil"),
    ("source-empty", src(), "spec.rules[0].from[0].source", "`from.source` must not be empty"),
    ("to-empty", {"rules": [{"to": []}]}, "spec.rules[0].to", "`to` must not be empty"),
    ("to-without-operation", {"rules": [{"to": [{}]}]}, "spec.rules[0].to[0].operation", "must not be nil"),
    ("operation-empty", op(), "spec.rules[0].to[0].operation", "`to.operation` must not be empty"),
    ("empty-principal", src(principals=[""]), "spec.rules[0].from[0].source.principals[0]", "empty value"),
    ("empty-method", op(methods=["GET", ""]), "spec.rules[0].to[0].operation.methods[1]", "empty value"),
    ("bad-ip-block", src(ipBlocks=["10.0.0.256"]), "spec.rules[0].from[0].source.ipBlocks[0]", "bad IP"),
    ("bad-cidr", src(notIpBlocks=["10.0.0.0/33"]), "spec.rules[0].from[0].source.notIpBlocks[0]", "bad IP"),
    (
        "bad-remote-ip",
        src(remoteIpBlocks=["foo"]),
        "spec.rules[0].from[0].source.remoteIpBlocks[0]",
        "bad IP",
    ),
    ("port-too-big", op(ports=["65536"]), "spec.rules[0].to[0].operation.ports[0]", "bad port (65536)"),
    ("port-not-number", op(notPorts=["http"]), "spec.rules[0].to[0].operation.notPorts[0]", "bad port"),
    ("port-negative", op(ports=["-1"]), "spec.rules[0].to[0].operation.ports[0]", "bad port"),
    (
        "path-brace",
        op(paths=["/a/{id}"]),
        "spec.rules[0].to[0].operation.paths[0]",
        "beyond a supported path template",
    ),
    (
        "path-any-not-last",
        op(paths=["/a/{**}/{*}"]),
        "spec.rules[0].to[0].operation.paths[0]",
        "{**} is not the last",
    ),
    (
        "path-template-literal",
        op(notPaths=["/a/{*}/b*"]),
        "spec.rules[0].to[0].operation.notPaths[0]",
        "not a valid literal",
    ),
    (
        "sa-with-principals",
        src(serviceAccounts=["a"], principals=["b"]),
        "spec.rules[0].from[0].source",
        "cannot set serviceAccounts",
    ),
    (
        "sa-with-namespaces",
        src(notServiceAccounts=["a"], namespaces=["b"]),
        "spec.rules[0].from[0].source",
        "cannot set serviceAccounts",
    ),
    (
        "sa-wildcard",
        src(serviceAccounts=["ns/*"]),
        "spec.rules[0].from[0].source.serviceAccounts[0]",
        "wildcard not allowed",
    ),
    (
        "sa-two-slashes",
        src(serviceAccounts=["a/b/c"]),
        "spec.rules[0].from[0].source.serviceAccounts[0]",
        "expected format",
    ),
    (
        "sa-empty-namespace",
        src(serviceAccounts=["/sa"]),
        "spec.rules[0].from[0].source.serviceAccounts[0]",
        "expected format",
    ),
    (
        "sa-too-many",
        src(serviceAccounts=[f"sa{i}" for i in range(17)]),
        "spec.rules[0].from[0].source.serviceAccounts",
        "more than 16",
    ),
    (
        "trust-domain-inner-wildcard",
        src(trustDomains=["a*b"]),
        "spec.rules[0].from[0].source.trustDomains[0]",
        "'*' is only allowed",
    ),
    (
        "custom-principals",
        {**CUSTOM, **src(principals=["a"])},
        "spec.rules[0].from[0].source.principals",
        "not supported with CUSTOM",
    ),
    (
        "custom-not-principals",
        {**CUSTOM, **src(notPrincipals=["a"])},
        "spec.rules[0].from[0].source.notPrincipals",
        "CUSTOM",
    ),
    (
        "custom-request-principals",
        {**CUSTOM, **src(requestPrincipals=["*"])},
        "spec.rules[0].from[0].source.requestPrincipals",
        "CUSTOM",
    ),
    (
        "custom-not-request-principals",
        {**CUSTOM, **src(notRequestPrincipals=["*"])},
        "spec.rules[0].from[0].source.notRequestPrincipals",
        "CUSTOM",
    ),
    (
        "custom-namespaces",
        {**CUSTOM, **src(namespaces=["a"])},
        "spec.rules[0].from[0].source.namespaces",
        "CUSTOM",
    ),
    (
        "custom-not-namespaces",
        {**CUSTOM, **src(notNamespaces=["a"])},
        "spec.rules[0].from[0].source.notNamespaces",
        "CUSTOM",
    ),
    (
        "custom-service-accounts",
        {**CUSTOM, **src(serviceAccounts=["a"])},
        "spec.rules[0].from[0].source.serviceAccounts",
        "CUSTOM",
    ),
    (
        "custom-when-principal",
        {**CUSTOM, **when("source.principal", ["a"])},
        "spec.rules[0].when[0].key",
        "CUSTOM",
    ),
    (
        "custom-when-namespace",
        {**CUSTOM, **when("source.namespace", ["a"])},
        "spec.rules[0].when[0].key",
        "CUSTOM",
    ),
    (
        "custom-when-sa",
        {**CUSTOM, **when("source.serviceAccount", ["a"])},
        "spec.rules[0].when[0].key",
        "CUSTOM",
    ),
    (
        "custom-when-claims",
        {**CUSTOM, **when("request.auth.claims[iss]", ["a"])},
        "spec.rules[0].when[0].key",
        "CUSTOM",
    ),
    (
        "custom-when-audiences",
        {**CUSTOM, **when("request.auth.audiences", ["a"])},
        "spec.rules[0].when[0].key",
        "CUSTOM",
    ),
    (
        "when-unknown-key",
        when("request.method", ["GET"]),
        "spec.rules[0].when[0].key",
        "unknown attribute: request.method",
    ),
    ("when-empty-key", when("", ["x"]), "spec.rules[0].when[0].key", "`key` must not be empty"),
    (
        "when-bracket-on-plain-key",
        when("source.ip[x]", ["1.2.3.4"]),
        "spec.rules[0].when[0].key",
        "unknown attribute",
    ),
    (
        "when-missing-bracket",
        when("request.headers", ["x"]),
        "spec.rules[0].when[0].key",
        "unknown attribute",
    ),
    (
        "when-empty-bracket",
        when("request.headers[]", ["x"]),
        "spec.rules[0].when[0].key",
        "should have format a[b]",
    ),
    (
        "when-unclosed-bracket",
        when("request.auth.claims[iss", ["x"]),
        "spec.rules[0].when[0].key",
        "should have format a[b]",
    ),
    (
        "when-dest-namespace",
        when("destination.namespace", ["x"]),
        "spec.rules[0].when[0].key",
        "replaced by the metadata.namespace",
    ),
    (
        "when-dest-labels",
        when("destination.labels[app]", ["x"]),
        "spec.rules[0].when[0].key",
        "replaced by the workload selector",
    ),
    (
        "when-dest-user",
        when("destination.user", ["x"]),
        "spec.rules[0].when[0].key",
        "only supported in v1alpha1",
    ),
    (
        "when-no-values",
        when("request.headers[x]"),
        "spec.rules[0].when[0]",
        "at least one of `values` or `notValues`",
    ),
    ("when-empty-value", when("connection.sni", [""]), "spec.rules[0].when[0].values[0]", "empty value"),
    ("when-bad-source-ip", when("source.ip", ["1.2.3"]), "spec.rules[0].when[0].values[0]", "bad IP"),
    ("when-bad-remote-ip", when("remote.ip", ["x"]), "spec.rules[0].when[0].values[0]", "bad IP"),
    (
        "when-bad-dest-port",
        when("destination.port", ["99999"]),
        "spec.rules[0].when[0].values[0]",
        "bad port",
    ),
    (
        "when-bad-not-port",
        when("destination.port", ["80"], notValues=["x"]),
        "spec.rules[0].when[0].notValues[0]",
        "bad port",
    ),
    (
        "when-bad-sa",
        when("source.serviceAccount", ["a/b/c"]),
        "spec.rules[0].when[0].values[0]",
        "expected format",
    ),
    (
        "when-without-key",
        {"rules": [{"when": [{"values": ["a"]}]}]},
        "spec.rules[0].when[0].key",
        "required field is missing",
    ),
    (
        "selector-and-target-refs",
        {"selector": {"matchLabels": {"a": "b"}}, "targetRefs": [{"kind": "Service", "name": "s"}]},
        "spec.targetRefs",
        "only one of",
    ),
    (
        "selector-and-target-ref",
        {"selector": {"matchLabels": {"a": "b"}}, "targetRef": {"kind": "Service", "name": "s"}},
        "spec.targetRef",
        "only one of",
    ),
    (
        "selector-wildcard",
        {"selector": {"matchLabels": {"app": "a*"}}},
        "spec.selector.matchLabels.app",
        "wildcard is not supported",
    ),
    (
        "selector-empty-key",
        {"selector": {"matchLabels": {"": "a"}}},
        "spec.selector.matchLabels",
        "empty key",
    ),
    (
        "selector-long-value",
        {"selector": {"matchLabels": {"a": "v" * 64}}},
        "spec.selector.matchLabels.a",
        "longer than 63",
    ),
    (
        "target-bad-kind",
        {"targetRef": {"kind": "Deployment", "name": "d"}},
        "spec.targetRef.kind",
        "targetRef must be to one of",
    ),
    (
        "target-namespace",
        {"targetRefs": [{"kind": "Service", "name": "s", "namespace": "other"}]},
        "spec.targetRefs[0].namespace",
        "cross namespace",
    ),
    (
        "target-no-name",
        {"targetRef": {"kind": "Service"}},
        "spec.targetRef.name",
        "required field is missing",
    ),
    (
        "target-empty-name",
        {"targetRef": {"kind": "Service", "name": ""}},
        "spec.targetRef.name",
        "must be set",
    ),
    (
        "target-bad-group",
        {"targetRef": {"kind": "Service", "name": "s", "group": "Bad_Group"}},
        "spec.targetRef.group",
        "invalid group",
    ),
    (
        "target-too-many",
        {"targetRefs": [{"kind": "Service", "name": f"s{i}"} for i in range(17)]},
        "spec.targetRefs",
        "at most 16",
    ),
    (
        "unknown-field",
        {"rules": [{"from": [{"source": {"principal": ["a"]}}]}]},
        "spec.rules[0].from[0].source.principal",
        "unknown field",
    ),
]


@pytest.mark.parametrize(("case", "spec", "path", "message"), REJECTED, ids=[c[0] for c in REJECTED])
def test_invalid_policy_is_rejected_at_its_path(
    case: str, spec: dict[str, Any], path: str, message: str
) -> None:
    found = errors(spec)
    assert any(p == path and message in m for p, m in found), found


def test_too_many_rules_is_rejected() -> None:
    assert ("spec.rules", "at most 512 rules are allowed; got 513") in errors({"rules": [{}] * 513})


def test_problems_carry_the_line_of_the_offending_value() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: p, namespace: foo}
        spec:
          rules:
          - from:
            - source:
                ipBlocks:
                - 10.0.0.1
                - not-an-ip
        """
    )
    (problem,) = load_text(text, "f.yaml").errors
    assert (problem.file, problem.line, problem.path) == (
        "f.yaml",
        10,
        "spec.rules[0].from[0].source.ipBlocks[1]",
    )


# ---- warnings: accepted, but flagged ---------------------------------------------------------------


def test_deny_rule_with_only_http_attributes_warns_that_it_denies_all_tcp() -> None:
    found = warnings({"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]})
    assert any(p == "spec.rules[0]" and "deny all traffic to TCP ports" in m for p, m in found), found


def test_deny_rule_with_ports_or_tcp_sources_does_not_warn() -> None:
    assert (
        warnings(
            {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"], "ports": ["80"]}}]}]}
        )
        == []
    )
    assert warnings({"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["1.2.3.4"]}}]}]}) == []
    assert warnings({"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]}) == []


def test_inner_wildcards_warn_because_istio_matches_them_literally() -> None:
    found = warnings(src(principals=["cluster.local/ns/*/sa/x"]))
    assert any(
        p == "spec.rules[0].from[0].source.principals[0]" and "matched literally" in m for p, m in found
    )
    assert warnings(src(principals=["*", "*/sa/x", "cluster.local/*"])) == []
    assert warnings(op(paths=["/a/{*}/b"])) == []


def test_selector_without_labels_is_a_warning() -> None:
    assert ("spec.selector", "workload selector specified without labels") in warnings({"selector": {}})


def test_selector_label_kubernetes_would_reject_is_a_warning() -> None:
    found = warnings({"selector": {"matchLabels": {"app": "has space"}}})
    assert any(p == "spec.selector.matchLabels.app" and "matches no workload" in m for p, m in found), found


# ---- the dry-run annotation --------------------------------------------------------------------------

DRY_RUN = "istio.io/dry-run"


@pytest.mark.parametrize(
    ("value", "dry"), [("true", True), ("True", True), ("1", True), ("false", False), ("F", False)]
)
def test_dry_run_takes_go_booleans(value: str, dry: bool) -> None:
    resource = accepted({"rules": [{}]}, annotations={DRY_RUN: value})
    assert is_dry_run(resource) is dry


def test_dry_run_rejects_a_value_go_cannot_parse() -> None:
    found = errors({"action": "DENY", "rules": [{}]}, annotations={DRY_RUN: "yes"})
    assert any(p == "spec" and "invalid value 'yes'" in m for p, m in found), found


def test_dry_run_is_only_for_allow_and_deny() -> None:
    found = errors({"action": "AUDIT", "rules": [{}]}, annotations={DRY_RUN: "true"})
    assert any("only supports action ALLOW/DENY, found action AUDIT" in m for _, m in found), found


def test_without_the_annotation_a_policy_is_enforced() -> None:
    assert is_dry_run(accepted({"rules": [{}]})) is False


# ---- the when-key table, as the evaluator will consume it -------------------------------------------


@pytest.mark.parametrize(
    ("key", "name", "argument"),
    [
        ("request.headers[X-Token]", "request.headers", ("X-Token",)),
        ("request.auth.claims[groups]", "request.auth.claims", ("groups",)),
        ("request.auth.claims[nested][key1]", "request.auth.claims", ("nested", "key1")),
        ("experimental.envoy.filters.http.foo[bar]", ap.EXPERIMENTAL_FILTERS, ("bar",)),
        ("source.ip", "source.ip", ()),
        ("destination.port", "destination.port", ()),
    ],
)
def test_when_attribute_names_the_table_row(key: str, name: str, argument: tuple[str, ...]) -> None:
    attribute = ap.when_attribute(key)
    assert attribute is not None and attribute.name == name
    assert ap.when_arguments(key) == argument


def test_when_attribute_is_none_for_unknown_or_malformed_keys() -> None:
    for key in ("request.method", "source.ip[x]", "request.headers", "destination.labels[app]"):
        assert ap.when_attribute(key) is None


def test_identity_attributes_are_marked_for_custom() -> None:
    identity = {name for name, a in ap.WHEN_ATTRIBUTES.items() if a.identity}
    assert identity == {
        "source.namespace",
        "source.serviceAccount",
        "source.principal",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "request.auth.claims",
    }


# ---- properties --------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=70000))
def test_ports_are_accepted_exactly_in_0_to_65535(port: int) -> None:
    assert (ap.port_value(str(port)) is None) == (port <= 65535)


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_any_address_or_prefix_is_a_valid_ip_block(address: Any, bits: int) -> None:
    prefix = min(bits, address.max_prefixlen)
    for value in (str(address), f"{address}/{prefix}"):
        ipaddress.ip_network(value, strict=False)
        assert ap.ip_block(value) is None
