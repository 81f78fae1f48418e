"""Properties of evaluate(): fail-closed DENY, ALLOW can never undo a DENY, AUDIT and dry-run
never change the outcome."""

from __future__ import annotations

import dataclasses
from typing import Any

from authz_support import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

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
from pilotfish.extauthz.evaluate import evaluate
from pilotfish.extauthz.jwt import AuthnResult
from pilotfish.extauthz.policy import CompiledPolicy, compile_policy

PATHS = ["/", "/a", "/a/b", "/admin", "/A"]
PATH_VALUES = ["/a", "/a*", "*b", "*", "/admin", "/{*}/b"]
HOSTS = ["h.foo", "H.FOO:80", "other"]
PRINCIPALS = [None, "spiffe://cluster.local/ns/foo/sa/a", "spiffe://cluster.local/ns/bar/sa/b"]
CLAIMS = [None, {"iss": "i", "sub": "s", "groups": ["g1"]}, {"iss": "i"}]

values = st.lists(st.sampled_from(PATH_VALUES), min_size=1, max_size=2).map(tuple)
operations = st.builds(
    Operation,
    paths=st.one_of(st.just(()), values),
    not_paths=st.one_of(st.just(()), values),
    methods=st.sampled_from([(), ("GET",), ("POST", "*")]),
    hosts=st.sampled_from([(), ("h.foo",), ("*.foo", "other")]),
).filter(lambda o: any((o.paths, o.not_paths, o.methods, o.hosts)))
sources = st.builds(
    Source,
    principals=st.sampled_from([(), ("cluster.local/ns/foo/sa/a",), ("*",)]),
    not_namespaces=st.sampled_from([(), ("bar",)]),
    request_principals=st.sampled_from([(), ("i/s",), ("*",)]),
    ip_blocks=st.sampled_from([(), ("10.0.0.0/8",), ("192.168.0.1",)]),
).filter(lambda s: any((s.principals, s.not_namespaces, s.request_principals, s.ip_blocks)))
conditions = st.builds(
    Condition,
    key=st.sampled_from(["request.headers[x]", "request.auth.claims[groups]", "source.namespace"]),
    values=st.sampled_from([("g1",), ("1",), ("foo",)]),
    not_values=st.sampled_from([(), ("bar",)]),
)
rules = st.builds(
    Rule,
    from_=st.one_of(
        st.none(), st.lists(st.builds(RuleFrom, source=sources), min_size=1, max_size=2).map(tuple)
    ),
    to=st.one_of(
        st.none(), st.lists(st.builds(RuleTo, operation=operations), min_size=1, max_size=2).map(tuple)
    ),
    when=st.lists(conditions, max_size=2).map(tuple),
)
counter = iter(range(10**9))


def policy(action: str, rule_list: tuple[Rule, ...], **annotations: str) -> CompiledPolicy:
    spec = AuthorizationPolicySpec(action=action, rules=rule_list)  # type: ignore[arg-type]
    name = f"p{next(counter)}"
    return compile_policy(
        Resource("security.istio.io/v1", "AuthorizationPolicy", name, "foo", spec, annotations=annotations)
    )


def policies_of(action: str) -> st.SearchStrategy[CompiledPolicy]:
    return st.lists(rules, min_size=0 if action == "ALLOW" else 1, max_size=3).map(
        lambda rs: policy(action, tuple(rs))
    )


requests = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "get"]),
        "path": st.sampled_from(PATHS),
        "host": st.sampled_from(HOSTS),
        "principal": st.sampled_from(PRINCIPALS),
        "ip": st.sampled_from(["10.1.2.3", "192.168.0.1", None]),
        "headers": st.sampled_from([{}, {"x": "1"}, {"x": ["1", "2"]}]),
    }
)
claim_sets = st.sampled_from(CLAIMS)

UNREADABLE = [
    Rule(when=(Condition(key="no.such.key", values=("x",)),)),
    Rule(from_=(RuleFrom(source=Source(ip_blocks=("999.1.1.1",))),)),
    Rule(to=(RuleTo(operation=Operation(ports=("70000",))),)),
]


def decide(ps: list[CompiledPolicy], request: dict[str, Any], claims: Any) -> Any:
    return evaluate(ps, attrs(**request), AuthnResult(claims=claims))


@settings(max_examples=200, deadline=None)
@given(
    bad=st.sampled_from(UNREADABLE),
    good=st.lists(rules, max_size=2),
    allows=st.lists(policies_of("ALLOW"), max_size=2),
    request=requests,
    claims=claim_sets,
)
def test_deny_policy_with_an_unreadable_rule_denies_every_request(bad, good, allows, request, claims):
    deny = policy("DENY", (*good, bad))
    d = decide([*allows, deny], request, claims)
    assert not d.allow and d.status == 403 and d.policy == deny.ref


@settings(max_examples=300, deadline=None)
@given(
    denies=st.lists(policies_of("DENY"), max_size=2),
    allows=st.lists(policies_of("ALLOW"), max_size=2),
    extra=policies_of("ALLOW"),
    request=requests,
    claims=claim_sets,
)
def test_adding_an_allow_policy_never_undoes_a_deny(denies, allows, extra, request, claims):
    before = decide([*denies, *allows], request, claims)
    after = decide([*denies, *allows, extra], request, claims)
    if before.policy in {p.ref for p in denies}:
        assert not after.allow and after.policy == before.policy
    if not before.allow and any(p.rules for p in allows):
        # deny for lack of a matching ALLOW: only the extra policy's own match can allow
        assert not after.allow or after.policy == extra.ref


@settings(max_examples=200, deadline=None)
@given(
    denies=st.lists(policies_of("DENY"), max_size=2),
    allows=st.lists(policies_of("ALLOW"), max_size=2),
    shadow=st.lists(rules, min_size=1, max_size=2),
    action=st.sampled_from(["AUDIT", "DENY", "ALLOW"]),
    request=requests,
    claims=claim_sets,
)
def test_audit_and_dry_run_never_change_the_outcome(denies, allows, shadow, action, request, claims):
    extra = policy(action, tuple(shadow), **({} if action == "AUDIT" else {"istio.io/dry-run": "true"}))
    before = decide([*denies, *allows], request, claims)
    after = decide([*denies, *allows, extra], request, claims)
    strip = {"audit": (), "dry_run": ()}
    assert dataclasses.replace(before, **strip) == dataclasses.replace(after, **strip)
