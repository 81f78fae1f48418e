"""Envoy ``CheckRequest`` → ``Attributes``: the one place the evaluator's input meets protobuf.

Field sources (envoy ``service/auth/v3/attribute_context.proto``; reference a.3):

* ``request.http``: ``method``; ``path`` (normalized, **with** the query string, not decoded);
  ``host``; ``headers`` (lower-cased, repeated headers already joined with ``,`` by Envoy) or,
  with ``encode_raw_headers``, ``header_map`` (one entry per value, ``raw_value`` bytes), which
  keeps repeated headers apart. Header names are lower-cased either way.
* ``source.principal``: the peer certificate's URI SAN, filled by Envoy only when the downstream
  connection is TLS; empty means plaintext (``None``). ``source.address``: the downstream peer.
  Istio's ``remoteIpBlocks`` reads the XFF-derived client address; with Istio's default
  ``numTrustedProxies: 0`` that is the peer itself, so both ``Peer.ip`` and ``Peer.remote_ip``
  are the peer address.
* ``destination.address``: the listener address the request arrived on (``Workload.ip/port``).
* ``tls_session.sni`` (needs ``include_tls_session``).
* ``request.time`` when Envoy sent one, else the server's clock (``now``).
* The **workload**: keys ``namespace`` (required), ``labels`` (a JSON object of strings),
  ``service_account``, ``workload`` (the name, for logs). pilotfish's xDS side
  (``xds/translate/authz.py`` ``WORKLOAD_KEYS``) sends them as gRPC ``initial_metadata`` of the
  filter's ``grpc_service`` (``x-pilotfish-namespace``, ...: one filter per listener); per-route
  ``check_settings.context_extensions`` (merged vhost → route by Envoy; gRPC only) with the
  unprefixed keys win over it, being more specific. Without ``namespace`` the request cannot be
  placed, and ``BadCheckRequest`` makes the server answer a gRPC error, which Envoy turns into 403.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from envoy.config.core.v3 import address_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2

from pilotfish.extauthz.attributes import Attributes, Headers, HttpRequest, Peer, Workload
from pilotfish.limits import loads_json

NAMESPACE_KEY = "namespace"
LABELS_KEY = "labels"
SERVICE_ACCOUNT_KEY = "service_account"
WORKLOAD_KEY = "workload"
# gRPC initial-metadata name → workload key (keep in step with xds/translate/authz.py WORKLOAD_KEYS).
METADATA_KEYS = {
    "x-pilotfish-namespace": NAMESPACE_KEY,
    "x-pilotfish-labels": LABELS_KEY,
    "x-pilotfish-service-account": SERVICE_ACCOUNT_KEY,
    "x-pilotfish-workload": WORKLOAD_KEY,
}


class BadCheckRequest(ValueError):
    """The CheckRequest cannot be turned into attributes (no workload, bad labels or address)."""


@dataclass(frozen=True, slots=True)
class CheckInput:
    """What one Check is about: the attributes, and the workload name for logs (may be empty)."""

    attributes: Attributes
    workload_name: str = ""


def check_input(
    request: external_auth_pb2.CheckRequest, now: float, metadata: Iterable[tuple[str, str]] = ()
) -> CheckInput:
    """Map a CheckRequest and the call's gRPC ``metadata``; ``now`` is used when Envoy sent no
    ``request.time``. Raises ``BadCheckRequest`` when the request cannot be placed on a workload."""
    attrs = request.attributes
    context = workload_context(attrs.context_extensions, metadata)
    try:
        attributes = Attributes(
            workload=_workload(context, attrs.destination.address),
            source=_peer(attrs.source),
            request=_http(attrs.request.http, attrs.tls_session.sni),
            now=_time(attrs.request, now),
        )
    except ValueError as exc:
        raise BadCheckRequest(str(exc)) from None
    return CheckInput(attributes, context.get(WORKLOAD_KEY, ""))


def workload_context(extensions: Mapping[str, str], metadata: Iterable[tuple[str, str]]) -> Mapping[str, str]:
    """The workload keys: from the gRPC metadata, overridden by the route's context_extensions."""
    found = {METADATA_KEYS[k]: v for k, v in metadata if k in METADATA_KEYS}
    if not found:
        return extensions
    found.update(extensions)
    return found


def _workload(context: Mapping[str, str], destination: address_pb2.Address) -> Workload:
    namespace = context.get(NAMESPACE_KEY, "")
    if not namespace:
        raise BadCheckRequest(f"context_extensions has no {NAMESPACE_KEY!r}: the workload is unknown")
    ip, port = _socket(destination)
    return Workload(
        namespace=namespace,
        labels=parse_labels(context.get(LABELS_KEY, "")),
        service_account=context.get(SERVICE_ACCOUNT_KEY, ""),
        ip=ip,
        port=port,
    )


@functools.lru_cache(maxsize=1024)
def parse_labels(text: str) -> Mapping[str, str]:
    """``labels`` is a JSON object of string values; empty means no labels. Memoized: a route
    sends the same text on every request (a failure raises and is not cached)."""
    if not text:
        return MappingProxyType({})
    try:
        value = loads_json(text, f"context_extensions {LABELS_KEY!r}")
    except ValueError:
        raise BadCheckRequest(f"context_extensions {LABELS_KEY!r} is not JSON: {text[:80]!r}") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadCheckRequest(f"context_extensions {LABELS_KEY!r} must be a JSON object of strings")
    return MappingProxyType(value)


def _socket(address: address_pb2.Address) -> tuple[str | None, int | None]:
    """IP and port of a socket address; ``(None, None)`` for a pipe or an unset address."""
    if not address.HasField("socket_address"):
        return None, None
    socket = address.socket_address
    ip = _ip(socket.address)
    if ip is None:
        return None, None  # a name or an empty address: not an IP Istio could match
    return ip, socket.port_value if socket.WhichOneof("port_specifier") == "port_value" else None


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> str | None:
    """The canonical form of an IP address, ``None`` for anything else. Memoized: peers repeat."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _peer(source: attribute_context_pb2.AttributeContext.Peer) -> Peer:
    ip, _port = _socket(source.address)
    return Peer(principal=source.principal or None, ip=ip, remote_ip=ip)


def _http(http: attribute_context_pb2.AttributeContext.HttpRequest, sni: str) -> HttpRequest:
    return HttpRequest(
        method=http.method or "GET",
        path=http.path or "/",
        host=http.host,
        headers=_headers(http),
        sni=sni or None,
    )


def _headers(http: attribute_context_pb2.AttributeContext.HttpRequest) -> Headers:
    """``header_map`` (raw, one entry per value) when Envoy sent it, else the merged ``headers``
    (one value per name: Envoy has already joined repeated headers)."""
    if not len(http.header_map.headers):
        return MappingProxyType({name.lower(): (value,) for name, value in http.headers.items()})
    out: dict[str, tuple[str, ...]] = {}
    for h in http.header_map.headers:
        key = h.key.lower()
        out[key] = (*out.get(key, ()), h.value or h.raw_value.decode("utf-8", errors="replace"))
    return MappingProxyType(out)


def _time(request: attribute_context_pb2.AttributeContext.Request, now: float) -> float:
    if not request.HasField("time"):
        return now
    stamp = request.time
    return float(stamp.seconds + stamp.nanos / 1e9)
