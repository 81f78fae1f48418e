"""Hand-built Envoy resources and an ADS bootstrap for the xDS integration tests.

Kept next to the tests on purpose (no dependency on ``tests/harness``): a minimal, working
configuration of EDS clusters, one listener whose HTTP connection manager uses RDS, and one
route configuration, all fetched over ADS.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import any_pb2, duration_pb2

NODE_ID = "sidecar~127.0.0.1~envoy-test.default~default.svc.cluster.local"
LISTENER_NAME = "http"
ROUTE_NAME = "local"

BOOTSTRAP = """\
node:
  id: "{node_id}"
  cluster: envoy-test.default
  metadata:
    NAMESPACE: default
    LABELS: {{app: envoy-test}}
    SERVICE_ACCOUNT: default
    WORKLOAD_NAME: envoy-test
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}
"""


def bootstrap(api_type: str, xds_port: int) -> str:
    """ADS bootstrap YAML; ``api_type`` is ``GRPC`` (SotW) or ``DELTA_GRPC``."""
    return BOOTSTRAP.format(node_id=NODE_ID, api_type=api_type, xds_port=xds_port)


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _socket(port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port))


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def eds_cluster(name: str, connect_timeout: float = 1.0) -> cluster_pb2.Cluster:
    seconds = int(connect_timeout)
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        connect_timeout=duration_pb2.Duration(seconds=seconds, nanos=int((connect_timeout - seconds) * 1e9)),
    )


def broken_cluster(name: str) -> cluster_pb2.Cluster:
    """A cluster Envoy rejects: ``connect_timeout`` must be greater than 0s."""
    return cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.STATIC, connect_timeout=duration_pb2.Duration(seconds=-1)
    )


def endpoints(cluster: str, *ports: int) -> endpoint_pb2.ClusterLoadAssignment:
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(address=_socket(p)))
        for p in ports
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)],
    )


def http_listener(name: str = LISTENER_NAME, route: str = ROUTE_NAME, port: int = 0) -> listener_pb2.Listener:
    manager = hcm.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm.Rds(route_config_name=route, config_source=_ads()),
        http_filters=[
            hcm.HttpFilter(name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router()))
        ],
    )
    chain = listener_components_pb2.FilterChain(
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager", typed_config=_pack(manager)
            )
        ]
    )
    return listener_pb2.Listener(name=name, address=_socket(port), filter_chains=[chain])


def route_to(cluster: str, name: str = ROUTE_NAME) -> route_pb2.RouteConfiguration:
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=cluster),
    )
    host = route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[route])
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[host])
