"""Sidecar (networking.istio.io): the listeners and reachable hosts of the workloads it selects.

Fields: istio/api ``networking/v1alpha3/sidecar.proto`` (identical in v1alpha3, v1beta1 and v1).
Rules: istio/istio ``pkg/config/validation/validation.go`` (``ValidateSidecar``,
``validateSidecarIngressPortAndBind``, ``validateSidecarEgressPortBindAndCaptureMode``,
``validateSidecarOutboundTrafficPolicy``). That only one Sidecar without a selector may exist per
namespace is a rule across resources, checked where the mesh is assembled, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config import checks
from pilotfish.config.decode import Message, Path, UInt32, field
from pilotfish.config.networking.common import (
    Destination,
    is_http,
    protocol_name,
    validate_destination,
    validate_label_selector,
)
from pilotfish.config.networking.destination_rule import ConnectionPoolSettings, validate_connection_pool
from pilotfish.config.networking.gateway import UNIX_PREFIX, ServerTLSSettings, validate_server_tls
from pilotfish.config.resource import Finding, Resource
from pilotfish.config.selector import LabelSelector

CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]
# What a defaultEndpoint may forward to: the workload on loopback or any local address.
DEFAULT_ENDPOINT_HOSTS = frozenset({"", "127.0.0.1", "0.0.0.0", "::1", "::"})


@dataclass(frozen=True, slots=True)
class SidecarPort(Message):
    number: UInt32 = 0
    protocol: str = ""
    name: str = ""
    target_port: UInt32 = 0  # deprecated; no effect on sidecars


@dataclass(frozen=True, slots=True)
class IstioIngressListener(Message):
    port: SidecarPort = field(required=True)
    bind: str = ""
    capture_mode: CaptureMode = "DEFAULT"
    default_endpoint: str = ""
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None


@dataclass(frozen=True, slots=True)
class IstioEgressListener(Message):
    hosts: tuple[str, ...] = field(required=True)
    port: SidecarPort | None = None
    bind: str = ""
    capture_mode: CaptureMode = "DEFAULT"


@dataclass(frozen=True, slots=True)
class OutboundTrafficPolicy(Message):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] = "REGISTRY_ONLY"
    egress_proxy: Destination | None = None


@dataclass(frozen=True, slots=True)
class SidecarSpec(Message):
    workload_selector: LabelSelector | None = None
    ingress: tuple[IstioIngressListener, ...] = ()
    egress: tuple[IstioEgressListener, ...] = ()
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None


# ---- helpers -------------------------------------------------------------------------------------


def split_host_port(value: str) -> tuple[str, str] | None:
    """Go ``net.SplitHostPort``: ``host:port``, ``[v6]:port`` or ``:port``; None when malformed."""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            return None
        return host, rest[1:]
    host, colon, port = value.rpartition(":")
    if not colon or ":" in host:
        return None
    return host, port


def default_endpoint(value: str) -> str | None:
    """``127.0.0.1:PORT``, ``0.0.0.0:PORT``, ``[::1]:PORT``, ``[::]:PORT``, ``:PORT`` or ``unix://PATH``."""
    if value.startswith(UNIX_PREFIX):
        return checks.unix_address(value[len(UNIX_PREFIX) :])
    parts = split_host_port(value)
    if parts is None or parts[0] not in DEFAULT_ENDPOINT_HOSTS:
        return (
            "defaultEndpoint must be of form 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, "
            "[::]:<port> or unix://<path>"
        )
    if not (parts[1].isascii() and parts[1].isdigit()):
        return f"defaultEndpoint port {parts[1]!r} is not a number"
    return checks.port_number(int(parts[1]))


def _port(port: SidecarPort, path: Path) -> Iterator[Finding]:
    if port.name:
        yield from checks.findings(((*path, "name"), checks.port_name(port.name)))
    yield from checks.findings(((*path, "protocol"), protocol_name(port.protocol)))
    if port.target_port:
        yield Finding((*path, "targetPort"), "targetPort has no impact on Sidecars")


# ---- ingress -------------------------------------------------------------------------------------

# Fields of ServerTLSSettings a sidecar ingress listener cannot use.
INGRESS_TLS_UNSUPPORTED = (
    ("subjectAltNames", "subject_alt_names"),
    ("httpsRedirect", "https_redirect"),
    ("credentialName", "credential_name"),
)


def _ingress_tls(tls: ServerTLSSettings | None, path: Path) -> Iterator[Finding]:
    if tls is None:
        return
    for json_name, attr in INGRESS_TLS_UNSUPPORTED:
        if getattr(tls, attr):
            yield Finding((*path, json_name), f"{json_name} is not supported in sidecar ingress tls")
    if tls.mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
        yield Finding((*path, "mode"), f"cannot set mode to {tls.mode} in sidecar ingress tls")
    yield from validate_server_tls(tls, path)


def _ingress(listener: IstioIngressListener, path: Path) -> Iterator[Finding]:
    port = listener.port
    yield from _port(port, (*path, "port"))
    yield from checks.findings(((*path, "port", "number"), checks.port_number(port.number)))
    if listener.bind:
        yield from checks.findings(((*path, "bind"), checks.ip_address(listener.bind)))
    if listener.default_endpoint:
        yield from checks.findings(((*path, "defaultEndpoint"), default_endpoint(listener.default_endpoint)))
    yield from _ingress_tls(listener.tls, (*path, "tls"))
    yield from validate_connection_pool(listener.connection_pool, (*path, "connectionPool"))
    pool = listener.connection_pool
    if pool is not None and pool.http is not None and not is_http(port.protocol):
        yield Finding(
            (*path, "connectionPool", "http"),
            f"port {port.number} is not HTTP; only TCP settings apply",
            "warning",
        )


def _ingress_listeners(spec: SidecarSpec) -> Iterator[Finding]:
    seen: set[int] = set()
    for i, listener in enumerate(spec.ingress):
        yield from _ingress(listener, ("ingress", i))
        if listener.port.number in seen:
            yield Finding(("ingress", i, "port", "number"), "ports on IP bound listeners must be unique")
        seen.add(listener.port.number)


# ---- egress --------------------------------------------------------------------------------------


def _egress_port(listener: IstioEgressListener, path: Path) -> Iterator[Finding]:
    """Istio ``validateSidecarEgressPortBindAndCaptureMode``: port 0 means a unix socket bind."""
    port = listener.port
    if port is None:
        return
    yield from _port(port, (*path, "port"))
    if port.number == 0:
        if not listener.bind.startswith(UNIX_PREFIX):
            yield Finding((*path, "bind"), "ports with 0 value must have a unix domain socket bind address")
        else:
            yield from checks.findings(
                ((*path, "bind"), checks.unix_address(listener.bind[len(UNIX_PREFIX) :]))
            )
        if listener.capture_mode not in ("DEFAULT", "NONE"):
            yield Finding(
                (*path, "captureMode"), "captureMode must be DEFAULT/NONE for unix domain socket listeners"
            )
        return
    yield from checks.findings(((*path, "port", "number"), checks.port_number(port.number)))
    if listener.bind:
        yield from checks.findings(((*path, "bind"), checks.ip_address(listener.bind)))


def _egress_hosts(listener: IstioEgressListener, path: Path) -> Iterator[Finding]:
    if not listener.hosts:
        yield Finding((*path, "hosts"), "egress listener must contain at least one host")
    for i, host in enumerate(listener.hosts):
        for problem in checks.namespace_slash_host(host, gateway=False):
            yield Finding((*path, "hosts", i), problem)
        if host in listener.hosts[:i]:
            yield Finding((*path, "hosts", i), f"duplicated egress host: {host}", "warning")


def _egress_listeners(spec: SidecarSpec) -> Iterator[Finding]:
    ports: set[int] = set()
    sockets: set[str] = set()
    last = len(spec.egress) - 1
    for i, listener in enumerate(spec.egress):
        path = ("egress", i)
        yield from _egress_hosts(listener, path)
        yield from _egress_port(listener, path)
        if listener.port is None:
            if i != last:
                yield Finding(
                    (*path, "port"), "the egress listener with empty port must be the last listener"
                )
        elif listener.port.number == 0:
            if listener.bind in sockets:
                yield Finding((*path, "bind"), "unix domain socket values for listeners must be unique")
            sockets.add(listener.bind)
        else:
            if listener.port.number in ports:
                yield Finding((*path, "port", "number"), "ports on IP bound listeners must be unique")
            ports.add(listener.port.number)


def _outbound(policy: OutboundTrafficPolicy | None, path: Path) -> Iterator[Finding]:
    """Istio ``validateSidecarOutboundTrafficPolicy``."""
    if policy is None or policy.egress_proxy is None:
        return
    proxy = policy.egress_proxy
    where = (*path, "egressProxy")
    if policy.mode != "ALLOW_ANY":
        yield Finding(where, "egressProxy must be set only with the ALLOW_ANY mode")
        return
    yield from checks.findings(((*where, "host"), checks.fqdn(proxy.host)))
    if proxy.port is None:
        yield Finding((*where, "port"), "egressProxy needs a port")
    yield from validate_destination(proxy, where)


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: SidecarSpec = resource.spec
    yield from validate_label_selector(spec.workload_selector, ("workloadSelector",))
    if not (spec.egress or spec.ingress or spec.outbound_traffic_policy or spec.inbound_connection_pool):
        yield Finding((), "sidecar: empty configuration provided")
    yield from _ingress_listeners(spec)
    yield from validate_connection_pool(spec.inbound_connection_pool, ("inboundConnectionPool",))
    yield from _egress_listeners(spec)
    yield from _outbound(spec.outbound_traffic_policy, ("outboundTrafficPolicy",))
