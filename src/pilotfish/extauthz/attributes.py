"""The attributes of one request as the evaluator sees them: plain values, no protobuf.

The gRPC layer fills these from Envoy's ``CheckRequest.attributes`` (envoy
``service/auth/v3/attribute_context.proto``); ``authz check`` fills them from a JSON file
(``from_json``). Envoy lower-cases header names and joins repeated headers with ``,`` before
calling ext_authz; ``HttpRequest.header`` reproduces that join (Istio NORM "Duplicate headers").
``path`` is what Envoy sends: the normalized path **with** the query string; ``url_path`` drops
the query and fragment, as Istio's ``paths`` matcher (Envoy ``url_path``) does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.cookies import CookieError, SimpleCookie
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

Headers = Mapping[str, tuple[str, ...]]


def _check_ip(value: str | None, what: str) -> None:
    if value is not None:
        ipaddress.ip_address(value)  # raises ValueError with the bad value in the message


@dataclass(frozen=True, slots=True)
class Workload:
    """The destination workload: where the policy is enforced. ``port`` is the workload
    (container) port, which Istio's ``ports`` and ``destination.port`` match."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = ""
    ip: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        _check_ip(self.ip, "workload.ip")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"workload.port {self.port} is not in 0..65535")


@dataclass(frozen=True, slots=True)
class Peer:
    """The caller. ``principal`` is the peer certificate's URI SAN (``spiffe://td/ns/N/sa/S``),
    ``None`` for plaintext; ``ip`` the direct peer address (Istio ``ipBlocks``/``source.ip``),
    ``remote_ip`` the original client from XFF/PROXY (``remoteIpBlocks``/``remote.ip``)."""

    principal: str | None = None
    ip: str | None = None
    remote_ip: str | None = None

    def __post_init__(self) -> None:
        _check_ip(self.ip, "source.ip")
        _check_ip(self.remote_ip, "source.remoteIp")


def normalize_headers(raw: Mapping[str, str | Sequence[str]]) -> Headers:
    """Lower-case names; a value may be one string or a list of repeated values."""
    out: dict[str, tuple[str, ...]] = {}
    for name, value in raw.items():
        values = (value,) if isinstance(value, str) else tuple(value)
        out[name.lower()] = out.get(name.lower(), ()) + values
    return MappingProxyType(out)


def client_headers(raw: Mapping[str, str | Sequence[str]]) -> Headers:
    """Headers as a client sent them, as Envoy passes them on: names lower-cased and values
    without leading/trailing whitespace (RFC 9110 §5.5 OWS; Envoy's codecs trim it), so
    ``Authorization: "Bearer "`` arrives as ``Bearer``."""
    trimmed = {
        name: (v.strip(" \t") if isinstance(v, str) else [x.strip(" \t") for x in v])
        for name, v in raw.items()
    }
    return normalize_headers(trimmed)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str = "GET"
    path: str = "/"
    host: str = ""
    headers: Headers = field(default_factory=dict)
    sni: str | None = None

    def __post_init__(self) -> None:
        bad = [name for name in self.headers if name != name.lower()]
        if bad:
            raise ValueError(f"header names must be lower-case (use normalize_headers): {bad}")

    def header(self, name: str) -> str | None:
        """The header's value, repeated values joined with ``,`` as Envoy does; ``None`` if absent."""
        values = self.headers.get(name.lower())
        return None if values is None else ",".join(values)

    @property
    def url_path(self) -> str:
        """The path without query string and fragment (Envoy ``url_path``)."""
        return self.path.split("?", 1)[0].split("#", 1)[0]

    def query_param(self, name: str) -> str | None:
        """The first value of a query parameter, percent-decoded (Envoy jwt_authn ``extractor.cc``)."""
        query = self.path.partition("?")[2].partition("#")[0]
        return next((v for k, v in parse_qsl(query, keep_blank_values=True) if k == name), None)

    def cookie(self, name: str) -> str | None:
        for raw in self.headers.get("cookie", ()):
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(raw)
            except CookieError:
                continue
            if name in jar:
                return jar[name].value
        return None


@dataclass(frozen=True, slots=True)
class Attributes:
    """Everything a decision depends on; ``now`` is Unix seconds (the evaluator reads no clock)."""

    workload: Workload
    source: Peer
    request: HttpRequest
    now: float


# ---- the offline request file (``authz check``) ---------------------------------------------------


def from_json(data: Mapping[str, Any], default_now: float) -> Attributes:
    """Read the ``authz check`` request format; ``default_now`` when the file has no ``now``.
    Raises ``ValueError`` (with the field) on a malformed document."""
    workload, source, request = (_section(data, key) for key in ("workload", "source", "request"))
    return Attributes(
        workload=Workload(
            namespace=_str(workload, "namespace", "default"),
            labels=dict(_mapping(workload, "labels")),
            service_account=_str(workload, "serviceAccount", ""),
            ip=_opt_str(workload, "ip"),
            port=_opt_int(workload, "port"),
        ),
        source=Peer(
            principal=_opt_str(source, "principal") or None,
            ip=_opt_str(source, "ip"),
            remote_ip=_opt_str(source, "remoteIp"),
        ),
        request=HttpRequest(
            method=_str(request, "method", "GET"),
            path=_str(request, "path", "/"),
            host=_str(request, "host", ""),
            headers=client_headers(_mapping(request, "headers")),
            sni=_opt_str(request, "sni"),
        ),
        now=_now(data.get("now"), default_now),
    )


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected an object")
    return value


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return _section(data, key)


def _str(data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else _str(data, key, "")


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key}: expected an integer")
    return value


def _now(value: Any, default_now: float) -> float:
    """``now`` as Unix seconds, or an RFC 3339 timestamp string."""
    if value is None:
        return default_now
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise ValueError("now: expected Unix seconds or an RFC 3339 timestamp")
