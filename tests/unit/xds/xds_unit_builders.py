"""Small Envoy resources for the xDS unit tests, and a driver for one ADS stream without grpc.

``Driver`` is the declared seam: it feeds request messages to ``SotwStream.run`` /
``DeltaStream.run`` through an async iterator and collects the bytes the stream sends, decoded
into ``DiscoveryResponse`` / ``DeltaDiscoveryResponse``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.rpc import status_pb2

HCM_FILTER = "envoy.filters.network.http_connection_manager"
NODE_ID = "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local"


def node(node_id: str = NODE_ID, **metadata: Any) -> base_pb2.Node:
    struct = struct_pb2.Struct()
    struct.update(metadata)
    return base_pb2.Node(id=node_id, metadata=struct)


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource())


def cluster(name: str, *, eds: bool = True, timeout: int = 1, service_name: str = "") -> cluster_pb2.Cluster:
    built = cluster_pb2.Cluster(name=name, connect_timeout=duration_pb2.Duration(seconds=timeout))
    if eds:
        built.type = cluster_pb2.Cluster.EDS
        built.eds_cluster_config.eds_config.CopyFrom(_ads())
        built.eds_cluster_config.service_name = service_name
    return built


def cla(name: str, port: int = 8080) -> endpoint_pb2.ClusterLoadAssignment:
    address = address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address="10.1.1.1", port_value=port)
    )
    endpoint = endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(address=address))
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])]
    )


def listener(
    name: str, route: str, *, port: int = 15001, default_chain: bool = False
) -> listener_pb2.Listener:
    manager = any_pb2.Any()
    manager.Pack(hcm.HttpConnectionManager(stat_prefix=name, rds=hcm.Rds(route_config_name=route)))
    chain = listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=manager)]
    )
    address = address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=port)
    )
    built = listener_pb2.Listener(name=name, address=address)
    if default_chain:
        built.default_filter_chain.CopyFrom(chain)
    else:
        built.filter_chains.append(chain)
    return built


def route(name: str, cluster_name: str) -> route_pb2.RouteConfiguration:
    action = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=cluster_name),
    )
    host = route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[action])
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[host])


def mesh(port: int = 8080, timeout: int = 1) -> list[Any]:
    """Two EDS clusters, their endpoints, one listener using RDS, its route."""
    return [
        cluster("a", timeout=timeout),
        cluster("b"),
        cla("a", port),
        cla("b"),
        listener("http", "r"),
        route("r", "a"),
    ]


def sotw_request(
    type_url: str,
    names: Iterable[str] = (),
    *,
    nonce: str = "",
    version: str = "",
    error: str = "",
    with_node: bool = False,
) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=list(names), response_nonce=nonce, version_info=version
    )
    if error:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    if with_node:
        request.node.CopyFrom(node())
    return request


def delta_request(
    type_url: str,
    subscribe: Iterable[str] = (),
    unsubscribe: Iterable[str] = (),
    *,
    nonce: str = "",
    error: str = "",
    initial: dict[str, str] | None = None,
    with_node: bool = False,
) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
        initial_resource_versions=initial or {},
    )
    if error:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    if with_node:
        request.node.CopyFrom(node())
    return request


async def settle() -> None:
    """Let the stream's reader, mailbox and loop run until idle (no I/O is involved)."""
    await asyncio.sleep(0.02)


class Driver:
    """Runs one stream on an in-memory request iterator; decodes what it sends."""

    def __init__(self, stream: Any, response_type: Any) -> None:
        self.stream = stream
        self._response_type = response_type
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self._responses: asyncio.Queue[bytes] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _iterate(self) -> AsyncIterator[Any]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def _send(self, payload: bytes) -> None:
        await self._responses.put(payload)

    def start(self) -> Driver:
        self.task = asyncio.create_task(self.stream.run(self._iterate(), self._send))
        return self

    async def send(self, request: Any) -> None:
        await self._requests.put(request)
        await settle()

    async def response(self) -> Any:
        payload = await asyncio.wait_for(self._responses.get(), 2)
        return self._response_type.FromString(payload)

    async def responses(self) -> list[Any]:
        """Every response sent so far (after letting the stream settle)."""
        await settle()
        out = []
        while not self._responses.empty():
            out.append(self._response_type.FromString(self._responses.get_nowait()))
        return out

    async def quiet(self) -> None:
        await settle()
        if not self._responses.empty():
            unexpected = self._response_type.FromString(self._responses.get_nowait())
            raise AssertionError(f"unexpected response: {unexpected}")

    async def close(self) -> None:
        await self._requests.put(None)
        assert self.task is not None
        await asyncio.wait_for(self.task, 2)


def names(response: Any) -> list[str]:
    """Resource names in a SotW or delta response, in order."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return [r.name for r in response.resources]
    return [_any_name(r) for r in response.resources]


def _any_name(packed: any_pb2.Any) -> str:
    for message in (cluster_pb2.Cluster, listener_pb2.Listener, route_pb2.RouteConfiguration):
        if packed.type_url.endswith(message.DESCRIPTOR.full_name):
            return str(message.FromString(packed.value).name)
    return str(endpoint_pb2.ClusterLoadAssignment.FromString(packed.value).cluster_name)
