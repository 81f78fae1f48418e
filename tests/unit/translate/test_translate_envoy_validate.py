"""The real Envoy accepts what we translate: every golden input's clusters (EDS ones turned
STATIC with their translated load assignment) in a static bootstrap, plus one route per cluster
carrying ``hash_policy_for``'s hash policy, through ``envoy --mode validate``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format
from harness.envoy import envoy_binary
from test_translate_golden import CASES, GOLDEN, proxy_of
from translate_builders import snapshot

from pilotfish.xds.translate import hash_policy_for, translate_clusters, translate_endpoints
from pilotfish.xds.translate.destination_rules import destination_rule_for, index_destination_rules
from pilotfish.xds.translate.names import parse_cluster_name
from pilotfish.xds.translate.traffic_policy import cluster_policy

pytestmark = pytest.mark.e2e


def static_clusters(clusters, assignments):
    """EDS clusters become STATIC clusters holding their translated assignment."""
    by_name = {a.cluster_name: a for a in assignments}
    out = []
    for cluster in clusters:
        cluster = cluster_pb2.Cluster.FromString(cluster.SerializeToString())
        if cluster.type == cluster_pb2.Cluster.EDS:
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster_pb2.Cluster.STATIC
            cluster.load_assignment.CopyFrom(by_name[cluster.name])
        out.append(cluster)
    return out


def hash_routes(snap, client, clusters):
    """One route per cluster, with the hash policy the routing code would attach."""
    index = index_destination_rules(snap.of_kind("DestinationRule"), snap.mesh.root_namespace)
    routes = []
    for i, cluster in enumerate(clusters):
        key = parse_cluster_name(cluster.name)
        service = next(s for s in snap.services if s.hostname == key.hostname)
        rule = destination_rule_for(index, client.namespace, client.labels, key.hostname, service.namespace)
        subset = rule.spec.subset(key.subset) if rule is not None and key.subset else None
        policy = cluster_policy(rule.spec.traffic_policy if rule else None, key.port, subset)
        action = route_components_pb2.RouteAction(cluster=cluster.name, hash_policy=hash_policy_for(policy))
        match = route_components_pb2.RouteMatch(prefix=f"/{i}/")
        routes.append(route_components_pb2.Route(match=match, route=action))
    return routes


def listener(routes):
    manager = hcm.HttpConnectionManager(
        stat_prefix="validate",
        route_config=route_pb2.RouteConfiguration(
            name="validate",
            virtual_hosts=[route_components_pb2.VirtualHost(name="all", domains=["*"], routes=routes)],
        ),
        http_filters=[hcm.HttpFilter(name="envoy.filters.http.router")],
    )
    manager.http_filters[0].typed_config.Pack(router_pb2.Router())
    chain = listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager")]
    )
    chain.filters[0].typed_config.Pack(manager)
    address = address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=0))
    return listener_pb2.Listener(name="validate", address=address, filter_chains=[chain])


SDS_CLUSTER = "sds"


def sds_over_grpc(boot: bootstrap_pb2.Bootstrap) -> None:
    """``envoy --mode validate`` crashes (SIGSEGV, Envoy 1.40) on SDS ``ads: {}`` sources, which it
    has no ADS stream for; a running Envoy takes them over ADS. Validate the same TLS contexts with
    the secrets fetched over gRPC from a static cluster instead."""
    for cluster in boot.static_resources.clusters:
        for match in cluster.transport_socket_matches:
            if match.transport_socket.typed_config.Is(tls_pb2.UpstreamTlsContext.DESCRIPTOR):
                context = tls_pb2.UpstreamTlsContext()
                match.transport_socket.typed_config.Unpack(context)
                common = context.common_tls_context
                for sds in [
                    *common.tls_certificate_sds_secret_configs,
                    common.combined_validation_context.validation_context_sds_secret_config,
                ]:
                    source = sds.sds_config.api_config_source
                    source.api_type = config_source_pb2.ApiConfigSource.GRPC
                    source.transport_api_version = config_source_pb2.V3
                    source.grpc_services.add().envoy_grpc.cluster_name = SDS_CLUSTER
                match.transport_socket.typed_config.Pack(context)
    sds = boot.static_resources.clusters.add(name=SDS_CLUSTER, type=cluster_pb2.Cluster.STATIC)
    sds.load_assignment.cluster_name = SDS_CLUSTER
    sds.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Pack(
        http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
    )


def bootstrap_for(case: str) -> bootstrap_pb2.Bootstrap:
    text = (GOLDEN / f"{case}.in.yaml").read_text()
    snap, client = snapshot(text), proxy_of(text)
    clusters = translate_clusters(snap, client)
    assignments = translate_endpoints(snap, client, clusters)
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id = client.id
    boot.node.cluster = "validate"
    boot.static_resources.clusters.extend(static_clusters(clusters, assignments))
    boot.static_resources.listeners.append(listener(hash_routes(snap, client, clusters)))
    sds_over_grpc(boot)
    return boot


@pytest.mark.parametrize("case", CASES)
def test_envoy_accepts_the_translated_clusters(case, tmp_path: Path):
    boot = bootstrap_for(case)
    assert boot.static_resources.clusters, "nothing to validate"
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(json_format.MessageToDict(boot)))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "OK" in result.stdout + result.stderr


def test_envoy_rejects_a_broken_cluster(tmp_path: Path):
    """The check above can fail: Envoy rejects an ORIGINAL_DST cluster that balances itself."""
    boot = bootstrap_for(CASES[0])
    broken = boot.static_resources.clusters[0]
    broken.type = cluster_pb2.Cluster.ORIGINAL_DST
    broken.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
    broken.ClearField("load_assignment")
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(json_format.MessageToDict(boot)))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
