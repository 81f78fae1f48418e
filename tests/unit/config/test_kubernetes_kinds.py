# ruff: noqa: E501  (one-line YAML policies read better unbroken)
"""NetworkPolicy and Namespace validated as the API server validates them, with field paths."""

from __future__ import annotations

import pytest

from pilotfish.config.loader import load_text


def netpol(spec: str) -> str:
    return f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: prod}}
spec: {spec}
"""


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ("{ingress: [{ports: [{port: 0}]}]}", "spec.ingress[0].ports[0].port", "between 1 and 65535"),
        ("{ingress: [{ports: [{port: 70000}]}]}", "spec.ingress[0].ports[0].port", "between 1 and 65535"),
        (
            "{ingress: [{ports: [{port: 80, endPort: 79}]}]}",
            "spec.ingress[0].ports[0].endPort",
            "greater than or equal",
        ),
        (
            "{ingress: [{ports: [{port: http, endPort: 90}]}]}",
            "spec.ingress[0].ports[0].endPort",
            "non-numeric",
        ),
        ("{egress: [{ports: [{endPort: 90}]}]}", "spec.egress[0].ports[0].endPort", "not specified"),
        ("{ingress: [{ports: [{port: Http_1}]}]}", "spec.ingress[0].ports[0].port", "invalid port name"),
        ("{ingress: [{ports: [{port: '1234'}]}]}", "spec.ingress[0].ports[0].port", "at least one letter"),
        (
            "{ingress: [{ports: [{port: 80, protocol: ICMP}]}]}",
            "spec.ingress[0].ports[0].protocol",
            "TCP, UDP, SCTP",
        ),
        ("{ingress: [{from: [{}]}]}", "spec.ingress[0].from[0]", "must specify a peer"),
        (
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "spec.ingress[0].from[0]",
            "both ipBlock and another peer",
        ),
        (
            "{egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}]}]}",
            "spec.egress[0].to[0].ipBlock.cidr",
            "not a valid CIDR",
        ),
        (
            "{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]}",
            "spec.egress[0].to[0].ipBlock.except[0]",
            "strict subset",
        ),
        (
            "{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]}",
            "spec.egress[0].to[0].ipBlock.except[0]",
            "strict subset",
        ),
        (
            "{egress: [{to: [{ipBlock: {except: [10.0.0.0/24]}}]}]}",
            "spec.egress[0].to[0].ipBlock.cidr",
            "required",
        ),
        ("{policyTypes: [Ingress, Both]}", "spec.policyTypes[1]", "Ingress, Egress"),
        ("{policyTypes: [Ingress, Ingress]}", "spec.policyTypes", "duplicate"),
        (
            "{podSelector: {matchExpressions: [{key: app, operator: In}]}}",
            "spec.podSelector.matchExpressions[0].values",
            "must be specified",
        ),
        (
            "{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}}",
            "spec.podSelector.matchExpressions[0].values",
            "may not be specified",
        ),
        ("{podSelector: {matchLabels: {'a b': x}}}", "spec.podSelector.matchLabels.a b", "invalid label key"),
        ("{ingress: [{form: []}]}", "spec.ingress[0].form", "unknown field"),
    ],
)
def test_invalid_network_policies_name_the_field(spec: str, path: str, message: str) -> None:
    result = load_text(netpol(spec), "np.yaml")
    assert not result.resources
    found = [p for p in result.errors if p.path == path]
    assert found and message in found[0].message, result.errors


def test_defaults_and_empty_versus_absent() -> None:
    result = load_text(
        netpol(
            "{ingress: [{}], egress: [{to: [{podSelector: {}}, {namespaceSelector: {}, podSelector: null}]}]}"
        )
    )
    assert not result.problems, result.problems
    spec = result.resources[0].spec
    assert spec.pod_selector.is_empty
    assert spec.types == {"Ingress", "Egress"}
    first, second = spec.egress[0].to
    assert first.pod_selector is not None and first.namespace_selector is None
    assert second.namespace_selector is not None and second.pod_selector is None
    assert spec.ingress[0].ports == () and spec.ingress[0].from_ == ()
    assert load_text(netpol("{egress: []}")).resources[0].spec.types == {"Ingress"}
    assert load_text(netpol("{policyTypes: [Egress], ingress: [{}]}")).resources[0].spec.types == {"Egress"}
    port = load_text(netpol("{ingress: [{ports: [{port: 80}]}]}")).resources[0].spec.ingress[0].ports[0]
    assert port.protocol == "TCP" and port.end_port is None


def test_namespace_is_cluster_scoped_and_keeps_its_name_label() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, namespace: x, labels: {team: a}}\n"
    (ns,) = load_text(text).resources
    assert (ns.namespace, ns.name, dict(ns.labels)) == ("default", "prod", {"team": "a"})
    bad = load_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {kubernetes.io/metadata.name: dev}}\n"
    )
    assert [p.path for p in bad.errors] == ["metadata.labels[kubernetes.io/metadata.name]"]
    wrong_version = load_text("apiVersion: core/v1\nkind: Namespace\nmetadata: {name: prod}\n")
    assert "served as v1" in wrong_version.errors[0].message


def test_cluster_scoped_kinds_are_keyed_under_default_whatever_metadata_says() -> None:
    from pilotfish.config.loader import namespace_of

    assert namespace_of("Namespace", "x") == "default"
    assert namespace_of("NetworkPolicy", "x") == "x"
    assert namespace_of("NetworkPolicy", None) == "default"
    assert namespace_of("Unknown", "") == "default"
