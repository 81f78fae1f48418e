"""Proxy identity: an Envoy ``Node`` parsed the way Istio parses it.

The node id is ``TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local`` where TYPE is ``sidecar``
or ``router`` (a gateway). The node metadata (a ``google.protobuf.Struct``) carries NAMESPACE,
LABELS (a struct of strings), SERVICE_ACCOUNT, WORKLOAD_NAME, CLUSTER_ID and ISTIO_VERSION.
pilotfish's explicit-capture listeners read three more keys (written by ``pilotfish bootstrap``):
OUTBOUND_BIND and GATEWAY_BIND (IP addresses, kept in ``Proxy.metadata``) and APP_PORTS (a struct
``"<port>": "<app port>"``, kept as ``Proxy.app_ports``). The node's ``locality`` (region, zone,
sub_zone; ``pilotfish bootstrap --locality``) is ``Proxy.locality``.
Any node either parses into a ``Proxy`` or raises ``PeerError``; nothing else escapes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from pilotfish.errors import PeerError

_ID_PARTS = ("type", "IP", "NAME.NAMESPACE", "DNS domain")
_STRING_KEYS = ("NAMESPACE", "SERVICE_ACCOUNT", "WORKLOAD_NAME", "CLUSTER_ID", "ISTIO_VERSION")
# Metadata keys kept verbatim in ``Proxy.metadata``; each must be an IP address.
ADDRESS_KEYS = ("OUTBOUND_BIND", "GATEWAY_BIND")
APP_PORTS = "APP_PORTS"
# Node metadata ANNOTATIONS (a struct of strings, as Istio's) pilotfish reads, kept in ``Proxy.metadata``.
ANNOTATIONS = "ANNOTATIONS"
KNOWN_ANNOTATIONS = ("pilotfish.io/authz-mode",)


class ProxyType(StrEnum):
    SIDECAR = "sidecar"
    ROUTER = "router"


@dataclass(frozen=True, slots=True)
class Proxy:
    """Who is on the other end of an ADS stream. Built only by ``parse_node``."""

    id: str
    type: ProxyType
    ip: str
    name: str
    namespace: str
    dns_domain: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    service_account: str = ""
    workload_name: str = ""
    cluster_id: str = ""
    istio_version: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    app_ports: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    locality: str = ""  # region/zone/subzone (node.locality, else the istio-locality label)


def parse_node(node: Any) -> Proxy:
    """Parse an ``envoy.config.core.v3.Node``; raises ``PeerError`` naming what is wrong."""
    if node is None or not node.id:
        raise PeerError("node.id is empty: the first request of a stream must identify the proxy")
    kind, ip, qualified, dns_domain = _split_id(node.id)
    metadata = _metadata(node)
    name, namespace = _name_and_namespace(qualified, metadata.get("NAMESPACE", ""), node.id)
    return Proxy(
        id=node.id,
        type=kind,
        ip=ip,
        name=name,
        namespace=namespace,
        dns_domain=dns_domain,
        labels=MappingProxyType(_labels(node)),
        service_account=metadata.get("SERVICE_ACCOUNT", ""),
        workload_name=metadata.get("WORKLOAD_NAME", ""),
        cluster_id=metadata.get("CLUSTER_ID", ""),
        istio_version=metadata.get("ISTIO_VERSION", ""),
        metadata=MappingProxyType({**_addresses(node), **_annotations(node)}),
        app_ports=MappingProxyType(_app_ports(node)),
        locality=_locality(node),
    )


def _locality(node: Any) -> str:
    """``node.locality`` as ``region/zone/subzone`` (trailing empty levels dropped); without one,
    the ``istio-locality`` label (``region.zone.subzone``), as Istio reads a pod's."""
    if node.HasField("locality"):
        parts = (node.locality.region, node.locality.zone, node.locality.sub_zone)
        if any(parts):
            return "/".join(parts).rstrip("/")
    labels = _labels(node)
    return labels.get("istio-locality", "").replace(".", "/")


def _split_id(node_id: str) -> tuple[ProxyType, str, str, str]:
    parts = node_id.split("~")
    if len(parts) != len(_ID_PARTS):
        raise PeerError(f"node.id {node_id!r} must have the form {'~'.join(_ID_PARTS)}")
    kind, ip, qualified, dns_domain = parts
    try:
        proxy_type = ProxyType(kind)
    except ValueError:
        raise PeerError(f"node.id {node_id!r}: type {kind!r} is neither 'sidecar' nor 'router'") from None
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise PeerError(f"node.id {node_id!r}: {ip!r} is not an IP address") from None
    if not qualified or not dns_domain:
        raise PeerError(f"node.id {node_id!r}: NAME.NAMESPACE and the DNS domain must not be empty")
    return proxy_type, ip, qualified, dns_domain


def _name_and_namespace(qualified: str, declared: str, node_id: str) -> tuple[str, str]:
    """Split ``NAME.NAMESPACE``; the metadata NAMESPACE, when set, must match the id."""
    name, dot, namespace = qualified.rpartition(".")
    if not dot:
        name, namespace = qualified, ""
    if declared and namespace and declared != namespace:
        raise PeerError(f"node.id {node_id!r} names namespace {namespace!r} but metadata says {declared!r}")
    namespace = namespace or declared
    if not name or not namespace:
        raise PeerError(f"node.id {node_id!r}: no namespace (neither NAME.NAMESPACE nor metadata NAMESPACE)")
    return name, namespace


def _metadata(node: Any) -> dict[str, str]:
    fields = node.metadata.fields
    found: dict[str, str] = {}
    for key in _STRING_KEYS:
        if key in fields:
            found[key] = _string(fields[key], f"node.metadata.{key}")
    return found


def _labels(node: Any) -> dict[str, str]:
    fields = node.metadata.fields
    if "LABELS" not in fields:
        return {}
    value = fields["LABELS"]
    if value.WhichOneof("kind") != "struct_value":
        raise PeerError("node.metadata.LABELS must be a struct of strings")
    return {k: _string(v, f"node.metadata.LABELS.{k}") for k, v in value.struct_value.fields.items()}


def _annotations(node: Any) -> dict[str, str]:
    """The annotations pilotfish understands; others are ignored (Istio ignores unknown ones too)."""
    fields = node.metadata.fields
    if ANNOTATIONS not in fields:
        return {}
    value = fields[ANNOTATIONS]
    if value.WhichOneof("kind") != "struct_value":
        raise PeerError("node.metadata.ANNOTATIONS must be a struct of strings")
    found = value.struct_value.fields
    return {k: _string(found[k], f"node.metadata.ANNOTATIONS.{k}") for k in KNOWN_ANNOTATIONS if k in found}


def _addresses(node: Any) -> dict[str, str]:
    fields = node.metadata.fields
    found: dict[str, str] = {}
    for key in ADDRESS_KEYS:
        if key in fields:
            found[key] = _ip(_string(fields[key], f"node.metadata.{key}"), f"node.metadata.{key}")
    return found


def _app_ports(node: Any) -> dict[int, int]:
    """APP_PORTS: ``{"9080": "19080"}`` — the port the workload is reached on → where the app
    listens on 127.0.0.1. Values may be strings of digits or whole numbers."""
    fields = node.metadata.fields
    if APP_PORTS not in fields:
        return {}
    value = fields[APP_PORTS]
    if value.WhichOneof("kind") != "struct_value":
        raise PeerError("node.metadata.APP_PORTS must be a struct of port numbers")
    where = "node.metadata.APP_PORTS"
    return {
        _port(key, f"{where} key {key!r}"): _port(_port_text(v, f"{where}.{key}"), f"{where}.{key}")
        for key, v in value.struct_value.fields.items()
    }


def _port_text(value: Any, where: str) -> str:
    kind = value.WhichOneof("kind")
    if kind == "number_value" and float(value.number_value).is_integer():
        return str(int(value.number_value))
    if kind == "string_value":
        return str(value.string_value)
    raise PeerError(f"{where} must be a port number")


def _port(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise PeerError(f"{where}: {text!r} is not a port number (1-65535)")
    return int(text)


def _ip(text: str, where: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise PeerError(f"{where}: {text!r} is not an IP address") from None
    return text


def _string(value: Any, where: str) -> str:
    if value.WhichOneof("kind") != "string_value":
        raise PeerError(f"{where} must be a string")
    return str(value.string_value)
