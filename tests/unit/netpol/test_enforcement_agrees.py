"""The sidecars enforce what ``netpol check`` says: for every scenario of the table test, every
destination workload's network RBAC (``xds/translate/netpol.py``), evaluated here over the
connection's source address and destination port, agrees with ``decide``'s ingress verdict for
every source (workloads and outside addresses) and TCP port; and the endpoints an egress-
isolated workload's sidecar keeps are exactly those ``decide`` admits."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from pilotfish.config.loader import load_text
from pilotfish.netpol.decide import Endpoint, decide
from pilotfish.netpol.pods import world_of
from pilotfish.registry.model import Endpoint as RegistryEndpoint
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.netpol import egress_admission, ingress_rbac

from .test_check_table import SCENARIOS, WORLD

OUTSIDE = ("192.168.1.5", "192.168.1.77", "172.16.0.9", "10.1.0.9")
PORTS = (1, 53, 5432, 8080, 9080, 9090, 32000, 32768, 32769)


def proxy_for(pod) -> Proxy:
    return Proxy(
        id=f"sidecar~{pod.ip}~{pod.name}.{pod.namespace}~{pod.namespace}.svc.cluster.local",
        type=ProxyType.SIDECAR,
        ip=pod.ip,
        name=pod.name,
        namespace=pod.namespace,
        dns_domain=f"{pod.namespace}.svc.cluster.local",
        labels=MappingProxyType(dict(pod.labels)),
    )


def principal_matches(p: rbac_pb2.Principal, ip: str) -> bool:
    kind = p.WhichOneof("identifier")
    if kind == "any":
        return True
    if kind == "direct_remote_ip":
        network = ipaddress.ip_network(
            f"{p.direct_remote_ip.address_prefix}/{p.direct_remote_ip.prefix_len.value}"
        )
        return ipaddress.ip_address(ip) in network
    if kind == "or_ids":
        return any(principal_matches(i, ip) for i in p.or_ids.ids)
    if kind == "and_ids":
        return all(principal_matches(i, ip) for i in p.and_ids.ids)
    if kind == "not_id":
        return not principal_matches(p.not_id, ip)
    if kind == "authenticated":
        return False  # plaintext: no certificate
    raise AssertionError(f"unexpected principal {kind}")


def permission_matches(p: rbac_pb2.Permission, port: int) -> bool:
    kind = p.WhichOneof("rule")
    if kind == "any":
        return True
    if kind == "destination_port":
        return p.destination_port == port
    if kind == "destination_port_range":
        return p.destination_port_range.start <= port < p.destination_port_range.end
    if kind == "or_rules":
        return any(permission_matches(r, port) for r in p.or_rules.rules)
    raise AssertionError(f"unexpected permission {kind}")


def rbac_allows(config: network_rbac_pb2.RBAC | None, ip: str, port: int) -> bool:
    if config is None:
        return True
    assert config.rules.action == rbac_pb2.RBAC.ALLOW
    return any(
        any(permission_matches(p, port) for p in policy.permissions)
        and any(principal_matches(p, ip) for p in policy.principals)
        for policy in config.rules.policies.values()
    )


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_ingress_rbac_agrees_with_decide(scenario: str) -> None:
    snapshot = MeshSnapshot.build(load_text(WORLD + SCENARIOS[scenario]).resources)
    world = world_of(snapshot)
    sources = [Endpoint(p.ip, p) for p in world.pods] + [Endpoint(ip) for ip in OUTSIDE]
    for destination in world.pods:
        found = ingress_rbac(snapshot, proxy_for(destination))
        config = None
        if found is not None:
            config = network_rbac_pb2.RBAC()
            found.typed_config.Unpack(config)
        for source in sources:
            for port in PORTS:
                expected = decide(world, source, Endpoint(destination.ip, destination), port).ingress.allowed
                assert rbac_allows(config, source.ip, port) == expected, (scenario, source, destination, port)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_egress_endpoint_filtering_agrees_with_decide(scenario: str) -> None:
    snapshot = MeshSnapshot.build(load_text(WORLD + SCENARIOS[scenario]).resources)
    world = world_of(snapshot)
    targets = [(p.ip, p) for p in world.pods] + [(ip, None) for ip in OUTSIDE]
    for source in world.pods:
        admit = egress_admission(snapshot, proxy_for(source))
        for ip, pod in targets:
            for port in PORTS:
                kept = admit is None or admit(RegistryEndpoint("h", port, ip, port))
                expected = decide(world, Endpoint(source.ip, source), Endpoint(ip, pod), port).egress.allowed
                assert kept == expected, (scenario, source, ip, port)
