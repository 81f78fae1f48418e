"""Property: any NetworkPolicy-shaped document either loads or raises ``ConfigError``; one that
loads is decided and translated without any other exception (no policy crashes a server)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilotfish.config.loader import load_text
from pilotfish.netpol.decide import Endpoint, decide
from pilotfish.netpol.pods import world_of
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.netpol import egress_admission, ingress_rbac

from .test_check_table import WORLD

labels = st.dictionaries(
    st.sampled_from(["app", "team", "tier", "a/b", "-x"]), st.sampled_from(["web", "b", ""]), max_size=2
)
requirement = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["app", "tier", "env"]),
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Bad"]),
    },
    optional={"values": st.lists(st.sampled_from(["web", "db", "prod"]), max_size=2)},
)
selector = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {}, optional={"matchLabels": labels, "matchExpressions": st.lists(requirement, max_size=2)}
    ),
)
cidr = st.sampled_from(
    ["10.0.0.0/8", "10.1.0.0/16", "10.1.0.3/32", "192.168.1.0/24", "::/0", "10.0.0.1", "bad", "10.2.0.0/33"]
)
peer = st.fixed_dictionaries(
    {},
    optional={
        "podSelector": selector,
        "namespaceSelector": selector,
        "ipBlock": st.fixed_dictionaries({"cidr": cidr}, optional={"except": st.lists(cidr, max_size=2)}),
    },
)
port = st.fixed_dictionaries(
    {},
    optional={
        "protocol": st.sampled_from(["TCP", "UDP", "SCTP", "ICMP"]),
        "port": st.one_of(st.integers(-1, 70000), st.sampled_from(["http", "pg", "grpc", "Bad_Name", "80"])),
        "endPort": st.integers(0, 70000),
    },
)
rule = st.fixed_dictionaries(
    {}, optional={"ports": st.lists(port, max_size=2), "from": st.lists(peer, max_size=2)}
)
egress_rule = st.fixed_dictionaries(
    {}, optional={"ports": st.lists(port, max_size=2), "to": st.lists(peer, max_size=2)}
)
spec = st.fixed_dictionaries(
    {},
    optional={
        "podSelector": selector,
        "ingress": st.lists(rule, max_size=2),
        "egress": st.lists(egress_rule, max_size=2),
        "policyTypes": st.lists(st.sampled_from(["Ingress", "Egress", "Both"]), max_size=2),
    },
)


def proxy_for(pod: Any) -> Proxy:
    return Proxy(
        id=f"sidecar~{pod.ip}~{pod.name}.{pod.namespace}~{pod.namespace}.svc.cluster.local",
        type=ProxyType.SIDECAR,
        ip=pod.ip,
        name=pod.name,
        namespace=pod.namespace,
        dns_domain="svc.cluster.local",
        labels=MappingProxyType(dict(pod.labels)),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec, st.sampled_from(["prod", "dev"]))
def test_any_network_policy_loads_or_is_rejected_and_never_crashes_enforcement(
    spec: Any, namespace: str
) -> None:
    doc = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": spec,
    }
    result = load_text(WORLD + "---\n" + yaml.safe_dump(doc))
    snapshot = MeshSnapshot.build(result.resources)
    world = world_of(snapshot)
    for pod in world.pods:
        ingress_rbac(snapshot, proxy_for(pod))
        egress_admission(snapshot, proxy_for(pod))
        for other in world.pods:
            decide(world, Endpoint(other.ip, other), Endpoint(pod.ip, pod), 8080)
