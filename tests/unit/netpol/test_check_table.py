# ruff: noqa: E501  (one-line YAML policies read better unbroken)
"""``pilotfish netpol check`` against hand-derived expectations: the upstream NetworkPolicy
recipes and the combination rules that trip people up (one peer with two selectors is an AND,
two peers are an OR; absent and empty lists; ``namespaceSelector: {}`` versus none).

The world (every scenario shares it):

    namespace prod (team=a, env=prod)   web 10.1.0.1 {app: web, role: frontend} http=8080
                                         api 10.1.0.2 {app: api} http=9080 grpc=9090
                                         db  10.1.0.3 {app: db, tier: data} pg=5432
    namespace dev  (team=b, env=dev)     web 10.2.0.1 {app: web} http=8080
                                         tool 10.2.0.2 {app: tool}
    namespace ops  (no Namespace resource: only kubernetes.io/metadata.name=ops)
                                         mon 10.3.0.1 {app: mon}
    outside the mesh: 192.168.1.5, 192.168.1.77, 172.16.0.9
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.cli import main
from pilotfish.netpol.check import run_check

WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {team: a, env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {team: b, env: dev}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: prod}
spec: {address: 10.1.0.1, labels: {app: web, role: frontend}, ports: {http: 8080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api, namespace: prod}
spec: {address: 10.1.0.2, labels: {app: api}, ports: {http: 9080, grpc: 9090}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db, namespace: prod}
spec: {address: 10.1.0.3, labels: {app: db, tier: data}, ports: {pg: 5432}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: dev}
spec: {address: 10.2.0.1, labels: {app: web}, ports: {http: 8080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: tool, namespace: dev}
spec: {address: 10.2.0.2, labels: {app: tool}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: mon, namespace: ops}
spec: {address: 10.3.0.1, labels: {app: mon}}
"""


def policy(name: str, namespace: str, spec: str) -> str:
    return f"""---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


SCENARIOS: dict[str, str] = {
    "none": "",
    # recipe: deny all ingress traffic (policyTypes given, no ingress rules)
    "deny-all-ingress": policy("deny", "prod", "{podSelector: {}, policyTypes: [Ingress]}"),
    # absent policyTypes and no rules: Ingress by default, so the same as the above
    "deny-all-ingress-defaulted": policy("deny", "prod", "{podSelector: {}}"),
    # recipe: allow all ingress (one empty rule)
    "allow-all-ingress": policy("deny", "prod", "{podSelector: {}}")
    + policy("allow", "prod", "{podSelector: {}, ingress: [{}]}"),
    # recipe: allow from the same namespace
    "same-namespace": policy("same", "prod", "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}"),
    # recipe: allow from a namespace by label
    "from-namespace-label": policy(
        "ns",
        "prod",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]}",
    ),
    # one peer with both selectors: pods labelled app=tool IN namespaces with team=b
    "and-peer": policy(
        "and",
        "prod",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: tool}}}]}]}",
    ),
    # two peers: any pod of team=b namespaces OR app=tool pods of prod
    "or-peers": policy(
        "or",
        "prod",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}, {podSelector: {matchLabels: {app: tool}}}]}]}",
    ),
    # recipe: allow by pod label and port
    "label-and-port": policy(
        "api",
        "prod",
        "{podSelector: {matchLabels: {app: api}}, ingress: [{from: [{podSelector: {matchLabels: {role: frontend}}}], ports: [{port: 9080, protocol: TCP}]}]}",
    ),
    "named-port": policy(
        "named",
        "prod",
        "{podSelector: {matchLabels: {app: api}}, ingress: [{ports: [{port: grpc}]}, {ports: [{port: nope}]}]}",
    ),
    # recipe: ipBlock with except
    "ip-block": policy(
        "ipb",
        "prod",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{ipBlock: {cidr: 192.168.1.0/24, except: [192.168.1.64/26]}}]}]}",
    ),
    "ip-block-pods": policy(
        "ipb",
        "prod",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{ipBlock: {cidr: 10.2.0.0/16}}]}]}",
    ),
    # recipe: default-deny egress with a DNS-like exception (port 53 anywhere) and ops allowed
    "deny-egress-dns": policy(
        "egress",
        "prod",
        "{podSelector: {}, policyTypes: [Egress], egress: [{ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}, {to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ops}}}]}]}",
    ),
    # egress rules without policyTypes: both directions isolated (Ingress with no rules)
    "egress-defaulted": policy(
        "egress",
        "prod",
        "{podSelector: {matchLabels: {app: web}}, egress: [{to: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: http}]}]}",
    ),
    # empty egress list without policyTypes: Ingress only
    "egress-empty-list": policy(
        "e", "prod", "{podSelector: {matchLabels: {app: web}}, ingress: [{}], egress: []}"
    ),
    # policyTypes [Egress] only: the ingress rules are ignored, ingress stays open
    "types-egress-only": policy(
        "e",
        "prod",
        "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], ingress: [{from: [{podSelector: {matchLabels: {app: nobody}}}]}]}",
    ),
    # recipe: endPort ranges
    "end-port": policy(
        "range",
        "prod",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{ports: [{port: 32000, endPort: 32768}, {port: 5432}]}]}",
    ),
    # namespaceSelector {} = every namespace; podSelector {} alone = own namespace only
    "all-namespaces": policy(
        "all", "prod", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}"
    ),
    "match-expressions": policy(
        "expr",
        "prod",
        "{podSelector: {matchExpressions: [{key: tier, operator: Exists}]}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}, podSelector: {matchExpressions: [{key: app, operator: In, values: [web, mon]}]}}]}]}",
    ),
    "does-not-exist": policy(
        "dne", "prod", "{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}, ingress: []}"
    ),
    # two policies add up; order never matters
    "union": policy(
        "a",
        "prod",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]}",
    )
    + policy(
        "b",
        "prod",
        "{podSelector: {matchLabels: {tier: data}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}], ports: [{port: 5432}]}]}",
    ),
    "udp-only": policy(
        "udp",
        "prod",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{ports: [{port: 5432, protocol: UDP}]}]}",
    ),
    "sctp": policy(
        "sctp", "prod", "{podSelector: {matchLabels: {app: db}}, ingress: [{ports: [{protocol: SCTP}]}]}"
    ),
    # egress to a named port resolves against the destination pod
    "egress-named": policy(
        "en",
        "dev",
        "{podSelector: {matchLabels: {app: tool}}, policyTypes: [Egress], egress: [{ports: [{port: pg}]}]}",
    ),
    # a policy in another namespace selects nothing here
    "other-namespace": policy("deny", "dev", "{podSelector: {}, policyTypes: [Ingress, Egress]}"),
}

# (scenario, from, to, port, protocol, allowed, deciding rule or None)
CASES: list[tuple[str, str, str, int, str, bool, str | None]] = [
    ("none", "prod/web", "prod/db", 5432, "TCP", True, None),
    ("none", "dev/tool", "prod/api", 1, "UDP", True, None),
    ("none", "192.168.1.5", "prod/db", 5432, "TCP", True, None),
    ("deny-all-ingress", "prod/web", "prod/db", 5432, "TCP", False, None),
    ("deny-all-ingress", "dev/web", "prod/api", 9080, "TCP", False, None),
    ("deny-all-ingress", "192.168.1.5", "prod/web", 8080, "TCP", False, None),
    ("deny-all-ingress", "prod/web", "dev/web", 8080, "TCP", True, None),  # egress is not isolated
    ("deny-all-ingress", "prod/web", "192.168.1.5", 443, "TCP", True, None),
    ("deny-all-ingress-defaulted", "prod/api", "prod/db", 5432, "TCP", False, None),
    ("deny-all-ingress-defaulted", "prod/api", "dev/tool", 80, "TCP", True, None),
    ("allow-all-ingress", "192.168.1.5", "prod/db", 5432, "TCP", True, "prod/allow:ingress[0]"),
    ("allow-all-ingress", "dev/tool", "prod/api", 9090, "UDP", True, "prod/allow:ingress[0]"),
    ("same-namespace", "prod/web", "prod/db", 5432, "TCP", True, "prod/same:ingress[0]"),
    ("same-namespace", "prod/db", "prod/web", 8080, "TCP", True, "prod/same:ingress[0]"),
    ("same-namespace", "dev/web", "prod/web", 8080, "TCP", False, None),
    ("same-namespace", "ops/mon", "prod/api", 9080, "TCP", False, None),
    ("same-namespace", "10.1.0.9", "prod/api", 9080, "TCP", False, None),  # an IP no pod has
    ("from-namespace-label", "dev/web", "prod/db", 5432, "TCP", True, "prod/ns:ingress[0]"),
    ("from-namespace-label", "dev/tool", "prod/db", 1234, "TCP", True, "prod/ns:ingress[0]"),
    ("from-namespace-label", "prod/api", "prod/db", 5432, "TCP", False, None),
    ("from-namespace-label", "ops/mon", "prod/db", 5432, "TCP", False, None),
    ("from-namespace-label", "prod/api", "prod/web", 8080, "TCP", True, None),  # web not selected
    ("and-peer", "dev/tool", "prod/db", 5432, "TCP", True, "prod/and:ingress[0]"),
    ("and-peer", "dev/web", "prod/db", 5432, "TCP", False, None),
    ("and-peer", "prod/web", "prod/db", 5432, "TCP", False, None),
    ("or-peers", "dev/web", "prod/db", 5432, "TCP", True, "prod/or:ingress[0]"),
    ("or-peers", "dev/tool", "prod/db", 5432, "TCP", True, "prod/or:ingress[0]"),
    ("or-peers", "prod/web", "prod/db", 5432, "TCP", False, None),  # app=tool means prod's tools only
    ("label-and-port", "prod/web", "prod/api", 9080, "TCP", True, "prod/api:ingress[0]"),
    ("label-and-port", "prod/web", "prod/api", 9090, "TCP", False, None),
    ("label-and-port", "prod/web", "prod/api", 9080, "UDP", False, None),
    ("label-and-port", "dev/web", "prod/api", 9080, "TCP", False, None),  # role=frontend is prod's web only
    ("label-and-port", "prod/db", "prod/api", 9080, "TCP", False, None),
    ("named-port", "dev/tool", "prod/api", 9090, "TCP", True, "prod/named:ingress[0]"),
    ("named-port", "dev/tool", "prod/api", 9080, "TCP", False, None),
    ("named-port", "192.168.1.5", "prod/api", 9090, "TCP", True, "prod/named:ingress[0]"),
    ("ip-block", "192.168.1.5", "prod/db", 5432, "TCP", True, "prod/ipb:ingress[0]"),
    ("ip-block", "192.168.1.77", "prod/db", 5432, "TCP", False, None),  # in the except
    ("ip-block", "172.16.0.9", "prod/db", 5432, "TCP", False, None),
    ("ip-block", "prod/web", "prod/db", 5432, "TCP", False, None),
    ("ip-block-pods", "dev/tool", "prod/db", 5432, "TCP", True, "prod/ipb:ingress[0]"),
    ("ip-block-pods", "ops/mon", "prod/db", 5432, "TCP", False, None),
    ("deny-egress-dns", "prod/web", "192.168.1.5", 53, "UDP", True, None),
    ("deny-egress-dns", "prod/web", "192.168.1.5", 53, "TCP", True, None),
    ("deny-egress-dns", "prod/web", "192.168.1.5", 443, "TCP", False, None),
    ("deny-egress-dns", "prod/web", "dev/web", 8080, "TCP", False, None),
    ("deny-egress-dns", "prod/web", "ops/mon", 9100, "TCP", True, None),
    ("deny-egress-dns", "prod/web", "prod/db", 5432, "TCP", False, None),  # own namespace too
    ("deny-egress-dns", "dev/web", "prod/web", 8080, "TCP", True, None),  # ingress open
    ("egress-defaulted", "prod/web", "prod/api", 9080, "TCP", True, None),
    ("egress-defaulted", "prod/web", "prod/api", 9090, "TCP", False, None),
    ("egress-defaulted", "prod/web", "prod/db", 5432, "TCP", False, None),
    ("egress-defaulted", "prod/api", "prod/web", 8080, "TCP", False, None),  # Ingress defaulted, no rules
    ("egress-empty-list", "prod/web", "prod/db", 5432, "TCP", True, None),
    ("egress-empty-list", "dev/web", "prod/web", 8080, "TCP", True, "prod/e:ingress[0]"),
    ("types-egress-only", "dev/web", "prod/web", 8080, "TCP", True, None),
    ("types-egress-only", "prod/web", "prod/api", 9080, "TCP", False, None),  # egress: no rules
    ("end-port", "prod/web", "prod/db", 32000, "TCP", True, "prod/range:ingress[0]"),
    ("end-port", "prod/web", "prod/db", 32500, "TCP", True, "prod/range:ingress[0]"),
    ("end-port", "prod/web", "prod/db", 32768, "TCP", True, "prod/range:ingress[0]"),
    ("end-port", "prod/web", "prod/db", 32769, "TCP", False, None),
    ("end-port", "prod/web", "prod/db", 31999, "TCP", False, None),
    ("end-port", "prod/web", "prod/db", 5432, "TCP", True, "prod/range:ingress[0]"),
    ("all-namespaces", "ops/mon", "prod/db", 5432, "TCP", True, "prod/all:ingress[0]"),
    ("all-namespaces", "dev/web", "prod/db", 5432, "TCP", True, "prod/all:ingress[0]"),
    ("all-namespaces", "192.168.1.5", "prod/db", 5432, "TCP", False, None),  # pods only, not IPs
    ("match-expressions", "dev/web", "prod/db", 5432, "TCP", True, "prod/expr:ingress[0]"),
    ("match-expressions", "ops/mon", "prod/db", 5432, "TCP", True, "prod/expr:ingress[0]"),
    ("match-expressions", "prod/web", "prod/db", 5432, "TCP", False, None),  # env NotIn [prod]
    ("match-expressions", "dev/tool", "prod/db", 5432, "TCP", False, None),
    ("match-expressions", "dev/tool", "prod/api", 9080, "TCP", True, None),  # api has no tier
    ("does-not-exist", "prod/db", "prod/api", 9080, "TCP", False, None),
    ("does-not-exist", "prod/api", "prod/db", 5432, "TCP", True, None),
    ("union", "prod/api", "prod/db", 1, "TCP", True, "prod/a:ingress[0]"),
    ("union", "dev/web", "prod/db", 5432, "TCP", True, "prod/b:ingress[0]"),
    ("union", "dev/web", "prod/db", 5433, "TCP", False, None),
    ("union", "prod/web", "prod/db", 5432, "TCP", False, None),
    ("udp-only", "prod/web", "prod/db", 5432, "UDP", True, "prod/udp:ingress[0]"),
    ("udp-only", "prod/web", "prod/db", 5432, "TCP", False, None),
    ("sctp", "prod/web", "prod/db", 7777, "SCTP", True, "prod/sctp:ingress[0]"),
    ("sctp", "prod/web", "prod/db", 7777, "TCP", False, None),
    ("egress-named", "dev/tool", "prod/db", 5432, "TCP", True, None),
    ("egress-named", "dev/tool", "prod/api", 5432, "TCP", False, None),  # api has no port "pg"
    ("egress-named", "dev/tool", "192.168.1.5", 5432, "TCP", False, None),
    ("other-namespace", "prod/web", "prod/db", 5432, "TCP", True, None),
    ("other-namespace", "prod/web", "dev/web", 8080, "TCP", False, None),
    ("other-namespace", "dev/web", "prod/web", 8080, "TCP", False, None),  # dev's egress isolated
]


@pytest.fixture(scope="module")
def config_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = {}
    for name, policies in SCENARIOS.items():
        root = tmp_path_factory.mktemp(name)
        (root / "world.yaml").write_text(WORLD + policies)
        dirs[name] = root
    return dirs


def test_there_are_at_least_sixty_cases_and_every_scenario_is_used() -> None:
    assert len(CASES) >= 60
    assert {c[0] for c in CASES} == set(SCENARIOS)


@pytest.mark.parametrize(("scenario", "source", "destination", "port", "protocol", "allowed", "rule"), CASES)
def test_check(
    config_dirs: dict[str, Path],
    scenario: str,
    source: str,
    destination: str,
    port: int,
    protocol: str,
    allowed: bool,
    rule: str | None,
) -> None:
    out = run_check([config_dirs[scenario]], source, destination, port, protocol)
    assert out["decision"] == ("allow" if allowed else "deny"), out
    if rule is not None:
        assert rule in (out["ingress"]["rule"], out["egress"]["rule"]), out
    if not allowed:
        denied = out["ingress"] if not out["ingress"]["allowed"] else out["egress"]
        assert denied["isolated"] and denied["policies"], out


def test_the_command_line_exits_0_on_allow_1_on_deny_2_on_bad_input(
    config_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["netpol", "check", "--config", str(config_dirs["label-and-port"]), "--from", "prod/web"]
    assert main([*base, "--to", "prod/api", "--port", "9080"]) == 0
    assert '"rule": "prod/api:ingress[0]"' in capsys.readouterr().out
    assert main([*base, "--to", "prod/api", "--port", "9090"]) == 1
    assert "isolated for Ingress by prod/api" in capsys.readouterr().out
    assert main([*base, "--to", "prod/nobody", "--port", "1"]) == 2
    assert "prod/nobody" in capsys.readouterr().err


def test_validate_warns_about_policies_that_select_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "world.yaml").write_text(
        WORLD
        + policy("typo", "prod", "{podSelector: {matchLabels: {app: dbb}}}")
        + policy("empty-ns", "staging", "{podSelector: {}}")
        + policy("fine", "prod", "{podSelector: {matchLabels: {app: db}}}")
    )
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "NetworkPolicy/prod/typo: spec.podSelector: warning: podSelector selects no workload" in out
    assert "NetworkPolicy/staging/empty-ns" in out
    assert "NetworkPolicy/prod/fine" not in out


def test_the_world_fingerprint_changes_with_what_decisions_depend_on() -> None:
    from pilotfish.config.loader import load_text
    from pilotfish.netpol.pods import world_of_resources

    def fingerprint(text: str) -> str:
        return world_of_resources(load_text(text).resources).fingerprint

    base = fingerprint(WORLD)
    assert fingerprint(WORLD) == base
    assert fingerprint(WORLD.replace("team: b", "team: c")) != base  # a namespace label
    assert fingerprint(WORLD.replace("10.2.0.2", "10.2.0.3")) != base  # a pod IP
    assert fingerprint(WORLD + policy("p", "prod", "{podSelector: {}}")) != base
