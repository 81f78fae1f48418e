"""CUSTOM authorization: asking the ext_authz extension provider that a CUSTOM policy names.

Theory of operation. Istio enforces CUSTOM with an Envoy ext_authz filter of its own, placed
before jwt_authn and RBAC and run only when a CUSTOM rule matched (reference §1; istio
``pilot/pkg/security/authz/builder/extauthz.go``). pilotfish has one ext_authz filter, pointed at
its Check server, so the Check server plays that filter: when step 1 of ``evaluate`` matches
(``AuthzBundle.custom_step``), ``ProviderClients.ask`` calls the provider of
``meshConfig.extensionProviders`` the way Envoy would (``filters/common/ext_authz/
ext_authz_{grpc,http}_impl.cc``) and returns a ``ProviderAnswer``: a ``CheckResponse`` that is
either the deny for Envoy, or an OK carrying the provider's header mutations.

* ``envoyExtAuthzGrpc``: the CheckRequest Envoy sent us is forwarded to ``Authorization/Check``
  (its body only with ``includeRequestBodyInCheck``, pilotfish's workload keys removed). Status OK
  allows with the provider's ``ok_response``; any other status denies with the provider's response
  as written (Envoy sends 403 when it has no ``denied_response``); an ``error_response``, a gRPC
  error or the timeout is a failure.
* ``envoyExtAuthzHttp``: a request with the original method, ``pathPrefix + path`` (query
  included), the original Host, ``Content-Length`` of the forwarded body (0 without one), the
  ``Authorization`` header and the headers ``includeRequestHeadersInCheck`` names (``x-*`` a
  prefix, ``*-id`` a suffix, else exact; case-insensitive: istio ``generateHeaders``, Envoy
  ``toRequestMatchers``), then ``includeAdditionalHeadersInCheck`` (sent literally: Envoy's
  ``%...%`` formatters are not expanded). Only **200** allows (Envoy ``toResponse``; a 204 is a
  deny): the ``headersToUpstreamOnAllow`` response headers are set on the upstream request, the
  ``headersToDownstreamOnAllow`` ones added to the client response, and the names listed in
  ``x-envoy-auth-headers-to-remove`` removed upstream. 5xx is a failure. Any other status denies
  with the provider's status, body and headers: the ``headersToDownstreamOnDeny`` ones plus
  ``WWW-Authenticate`` and ``Location``, or every header but Host when that list is empty (Envoy
  ``toClientMatchers``); framing headers (``Content-Length``...) are left to Envoy's local reply.
* A failure (refused, reset, timeout, 5xx, gRPC error) allows with ``failOpen`` and otherwise
  denies with ``statusOnError`` (403 when unset). Nothing else allows.
* The timeout is the provider's ``timeout`` (Istio's default 600 s). Envoy bounds the whole Check
  by its own ``grpc_service.timeout`` (``xds/translate/authz.py``) and answers 403 when that ends
  first, ``failOpen`` or not.
* ``service`` is ``[namespace/]host`` and the host (a name or an IP address) is dialled as
  written: a Kubernetes name such as ``ext-authz.foo.svc.cluster.local`` must resolve through the
  host's DNS (``/etc/hosts`` will do); pilotfish does not look it up in its service registry.
* One grpc.aio channel per target and one aiohttp ``ClientSession`` per process, made on first
  use on the Check server's event loop and released by ``close``. The session keeps no cookies:
  a provider's ``Set-Cookie`` belongs to one client, never to the next request.

``request_view`` applies an allowing provider's mutations to the request the later steps (JWT,
DENY, ALLOW) see, as Envoy's later filters see the mutated headers; ``allowed_with`` and
``denied_with`` merge the provider's answer into the response of the rest of the decision.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import aiohttp
import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2
from multidict import CIMultiDict
from yarl import URL

from pilotfish.config.mesh import EnvoyExtAuthzGrpcProvider, EnvoyExtAuthzHttpProvider
from pilotfish.extauthz.attributes import Attributes, HttpRequest
from pilotfish.extauthz.evaluate import Decision, PolicyMatch
from pilotfish.extauthz.request import METADATA_KEYS
from pilotfish.extauthz.response import RPC_CODES

log = logging.getLogger(__name__)

ExtAuthzProvider = EnvoyExtAuthzHttpProvider | EnvoyExtAuthzGrpcProvider
Result = Literal["allow", "deny", "failed_open", "failed_closed"]
RESULTS: tuple[Result, ...] = ("allow", "deny", "failed_open", "failed_closed")

DEFAULT_TIMEOUT = 600.0  # seconds: istio ``timeoutOrDefault``
FORBIDDEN = 403
ALWAYS_FORWARDED = ("authorization",)  # Envoy toRequestMatchers, besides :method/:path/:authority
DENY_HEADERS_ALWAYS = ("www-authenticate", "location")  # Envoy toClientMatchers, with a list
FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "host"})
HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding")  # aiohttp's, not Envoy's
MAX_CONNECTIONS = 1024  # Envoy's default circuit-breaker max_connections per cluster
ADD = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
SET = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
ADD_IF_ABSENT = base_pb2.HeaderValueOption.ADD_IF_ABSENT
OVERWRITE_IF_EXISTS = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS
WORKLOAD_KEYS = frozenset(METADATA_KEYS.values())  # pilotfish's own context_extensions keys


class ProviderError(Exception):
    """The provider gave no decision: unreachable, too slow, 5xx, a gRPC error, or an
    ``error_response`` (kept in ``response``: its status, headers and body shape the deny)."""

    def __init__(self, message: str, response: external_auth_pb2.DeniedHttpResponse | None = None) -> None:
        super().__init__(message)
        self.response = response


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    """``result`` one of ``RESULTS``; ``response`` the deny for Envoy, or an OK whose
    ``ok_response`` holds the provider's mutations (empty when it failed open)."""

    result: Result
    response: external_auth_pb2.CheckResponse
    detail: str = ""

    @property
    def allow(self) -> bool:
        return self.result in ("allow", "failed_open")

    def denial(self, provider: str, match: PolicyMatch) -> Decision:
        """The ``Decision`` a provider deny (or closed failure) stands for, for logs and metrics."""
        status = self.response.denied_response.status.code or FORBIDDEN
        what = "denied" if self.result == "deny" else f"failed ({self.detail})"
        reason = f"CUSTOM: provider {provider} {what}"
        return Decision(
            False, status, reason, match.policy, match.rule, custom_provider=provider, custom_match=match
        )


# ---- pure mapping ------------------------------------------------------------------------------


def target(service: str, port: int) -> str:
    """``host:port`` to dial for ``[namespace/]host`` (an IPv6 address in brackets)."""
    host = service.rpartition("/")[2]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{port}"
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def header_matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """istio ``generateHeaders``: ``*x`` matches a suffix, ``x*`` a prefix, anything else the
    whole name; case-insensitive."""
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    for pattern in (p.lower() for p in patterns):
        if pattern.startswith("*"):
            suffixes.append(pattern[1:])
        elif pattern.endswith("*"):
            prefixes.append(pattern[:-1])
        else:
            exact.add(pattern)
    starts, ends = tuple(prefixes), tuple(suffixes)

    def matches(name: str) -> bool:
        lower = name.lower()
        return lower in exact or lower.startswith(starts) or lower.endswith(ends)

    return matches


def options(
    headers: Iterable[tuple[str, str]], action: base_pb2.HeaderValueOption.HeaderAppendAction.ValueType
) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=action)
        for k, v in headers
    ]


def denied_response(
    status: int, headers: Iterable[base_pb2.HeaderValueOption], body: str, message: str
) -> external_auth_pb2.CheckResponse:
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=status), headers=list(headers), body=body
    )
    code = RPC_CODES.get(status, code_pb2.PERMISSION_DENIED)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=message), denied_response=denied
    )


def request_body(request: external_auth_pb2.CheckRequest) -> bytes:
    http = request.attributes.request.http
    return bytes(http.raw_body) or str(http.body).encode()


def failure(config: ExtAuthzProvider, error: ProviderError) -> ProviderAnswer:
    """``failOpen``: allow with no mutations; else ``statusOnError`` (403), or the provider's
    ``error_response`` status, headers and body when it sent one."""
    if config.fail_open:
        ok = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))
        return ProviderAnswer("failed_open", ok, str(error))
    status = int(config.status_on_error or FORBIDDEN) or FORBIDDEN
    custom = error.response or external_auth_pb2.DeniedHttpResponse()
    message = f"ext_authz provider failed: {error}"
    response = denied_response(custom.status.code or status, custom.headers, custom.body, message)
    return ProviderAnswer("failed_closed", response, str(error))


def grpc_answer(response: external_auth_pb2.CheckResponse) -> external_auth_pb2.CheckResponse:
    """Envoy ``GrpcClientImpl::onSuccess``: OK allows, an ``error_response`` is a failure, any
    other status denies with the provider's response unchanged."""
    if response.status.code != code_pb2.OK and response.HasField("error_response"):
        raise ProviderError(f"error_response (gRPC code {response.status.code})", response.error_response)
    return response


def forwarded(
    request: external_auth_pb2.CheckRequest, config: EnvoyExtAuthzGrpcProvider
) -> external_auth_pb2.CheckRequest:
    """The CheckRequest Istio's own filter would send: no pilotfish workload keys, and the body
    only with ``includeRequestBodyInCheck``."""
    out = external_auth_pb2.CheckRequest()
    out.CopyFrom(request)
    extensions = out.attributes.context_extensions
    for key in WORKLOAD_KEYS & set(extensions):
        del extensions[key]
    if config.include_request_body_in_check is None:
        out.attributes.request.http.ClearField("body")
        out.attributes.request.http.ClearField("raw_body")
    return out


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """The HTTP authorization request for one Check."""

    method: str
    url: URL
    headers: tuple[tuple[str, str], ...]
    body: bytes


class HttpMapping:
    """An ``envoyExtAuthzHttp`` provider's request and response rules (compiled once)."""

    def __init__(self, config: EnvoyExtAuthzHttpProvider) -> None:
        self.config = config
        self.address = target(config.service, config.port)
        included = config.include_request_headers_in_check or config.include_headers_in_check
        self.to_provider = header_matcher((*ALWAYS_FORWARDED, *included))
        self.additional = tuple(
            (k.lower(), v) for k, v in sorted(config.include_additional_headers_in_check.items())
        )
        self.upstream = header_matcher(config.headers_to_upstream_on_allow)
        self.downstream_on_allow = header_matcher(config.headers_to_downstream_on_allow)
        on_deny = config.headers_to_downstream_on_deny
        self.downstream_on_deny = header_matcher((*on_deny, *DENY_HEADERS_ALWAYS)) if on_deny else _every

    def check(self, request: external_auth_pb2.CheckRequest, http: HttpRequest) -> HttpCheck:
        body = request_body(request) if self.config.include_request_body_in_check else b""
        replaced = {name for name, _ in self.additional} | {"host", "content-length"}
        headers = [
            (name, value)
            for name, values in http.headers.items()
            if not name.startswith(":") and name not in replaced and self.to_provider(name)
            for value in values
        ]
        headers += [*self.additional, ("content-length", str(len(body)))]
        if http.host:
            headers.append(("host", http.host))
        url = URL(f"http://{self.address}{self.config.path_prefix}{http.path}", encoded=True)
        return HttpCheck(http.method, url, tuple(headers), body)

    def answer(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes
    ) -> external_auth_pb2.CheckResponse:
        """Envoy ``RawHttpClientImpl::toResponse`` for the provider's reply."""
        if 500 <= status <= 599:
            raise ProviderError(f"HTTP {status}")
        lower = [(k.lower(), v) for k, v in headers]
        if status == 200:
            return self._allowed(lower)
        chosen = [
            (k, v)
            for k, v in lower
            if k not in FRAMING and k != HEADERS_TO_REMOVE and self.downstream_on_deny(k)
        ]
        return denied_response(status, options(chosen, ADD), body.decode(errors="replace"), f"HTTP {status}")

    def _allowed(self, headers: list[tuple[str, str]]) -> external_auth_pb2.CheckResponse:
        removals = [
            n.strip().lower() for k, v in headers if k == HEADERS_TO_REMOVE for n in v.split(",") if n.strip()
        ]
        kept = [(k, v) for k, v in headers if k != HEADERS_TO_REMOVE]
        ok = external_auth_pb2.OkHttpResponse(
            headers=options(((k, v) for k, v in kept if self.upstream(k)), SET),
            response_headers_to_add=options(((k, v) for k, v in kept if self.downstream_on_allow(k)), ADD),
            headers_to_remove=removals,
        )
        return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)


def request_view(http: HttpRequest, ok: external_auth_pb2.OkHttpResponse) -> HttpRequest:
    """The request as the filters after the provider's see it: its header mutations applied
    (Envoy ``toHeaderMutationAction``; pseudo-headers are not the provider's to change)."""
    if not (len(ok.headers) or len(ok.headers_to_remove)):
        return http
    headers = dict(http.headers)
    for option in ok.headers:
        name, value = option.header.key.lower(), option.header.value
        if name.startswith(":") or name == "host":
            continue
        present = name in headers
        if _appends(option):
            headers[name] = (*headers.get(name, ()), value)
        elif option.append_action == ADD_IF_ABSENT:
            headers.setdefault(name, (value,))
        elif option.append_action != OVERWRITE_IF_EXISTS or present:
            headers[name] = (value,)
    for name in ok.headers_to_remove:
        headers.pop(name.lower(), None)
    return dataclasses.replace(http, headers=MappingProxyType(headers))


def _appends(option: base_pb2.HeaderValueOption) -> bool:
    if option.HasField("append"):
        return bool(option.append.value)
    return bool(option.append_action == ADD)


def allowed_with(
    provider: external_auth_pb2.CheckResponse, ours: external_auth_pb2.CheckResponse
) -> external_auth_pb2.CheckResponse:
    """Our allow with the provider's mutations first. Envoy runs jwt_authn after the CUSTOM
    ext_authz filter, so where both touch a header ours (the later step) wins."""
    theirs, mine = provider.ok_response, ours.ok_response
    later_set = {h.header.key.lower() for h in mine.headers}
    later = later_set | {name.lower() for name in mine.headers_to_remove}
    ok = external_auth_pb2.OkHttpResponse(
        headers=[h for h in theirs.headers if h.header.key.lower() not in later] + list(mine.headers),
        headers_to_remove=[n for n in theirs.headers_to_remove if n.lower() not in later_set]
        + list(mine.headers_to_remove),
        response_headers_to_add=theirs.response_headers_to_add,
        query_parameters_to_set=theirs.query_parameters_to_set,
        query_parameters_to_remove=theirs.query_parameters_to_remove,
    )
    out = external_auth_pb2.CheckResponse(status=ours.status, ok_response=ok)
    metadata = theirs.dynamic_metadata if theirs.HasField("dynamic_metadata") else provider.dynamic_metadata
    out.dynamic_metadata.CopyFrom(metadata)
    return out


def denied_with(
    provider: external_auth_pb2.CheckResponse, ours: external_auth_pb2.CheckResponse
) -> external_auth_pb2.CheckResponse:
    """Our deny (a later step's local reply) still passes the CUSTOM filter's encoder, which adds
    the provider's ``response_headers_to_add``."""
    extra = provider.ok_response.response_headers_to_add
    if not len(extra):
        return ours
    out = external_auth_pb2.CheckResponse()
    out.CopyFrom(ours)
    out.denied_response.headers.extend(extra)
    return out


# ---- the clients ---------------------------------------------------------------------------------


class ProviderClients:
    """The provider connections of one Check server process: ``ask`` one, ``close`` them all."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._session: aiohttp.ClientSession | None = None
        self._http: dict[str, HttpMapping] = {}
        self._failing: set[str] = set()

    async def ask(
        self,
        name: str,
        config: ExtAuthzProvider | None,
        request: external_auth_pb2.CheckRequest,
        attributes: Attributes,
    ) -> ProviderAnswer:
        """The provider's answer for one Check; a failure is mapped, never raised."""
        if config is None:  # the bundle names only mesh providers; if not, never a silent allow
            return failure(EnvoyExtAuthzGrpcProvider(), ProviderError(f"no ext_authz provider {name!r}"))
        try:
            if isinstance(config, EnvoyExtAuthzGrpcProvider):
                response = await self._ask_grpc(config, request)
            else:
                response = await self._ask_http(name, config, request, attributes.request)
        except ProviderError as exc:
            self._failed(name, exc)
            return failure(config, exc)
        self._failing.discard(name)
        return ProviderAnswer("allow" if response.status.code == code_pb2.OK else "deny", response)

    async def _ask_grpc(
        self, config: EnvoyExtAuthzGrpcProvider, request: external_auth_pb2.CheckRequest
    ) -> external_auth_pb2.CheckResponse:
        address = target(config.service, config.port)
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        try:
            response = await stub.Check(forwarded(request, config), timeout=_seconds(config))
        except grpc.aio.AioRpcError as exc:
            raise ProviderError(f"gRPC {exc.code().name}: {exc.details()}") from None
        return grpc_answer(response)

    async def _ask_http(
        self,
        name: str,
        config: EnvoyExtAuthzHttpProvider,
        request: external_auth_pb2.CheckRequest,
        http: HttpRequest,
    ) -> external_auth_pb2.CheckResponse:
        mapping = self._http.get(name)
        if mapping is None or mapping.config != config:
            mapping = self._http[name] = HttpMapping(config)
        call = mapping.check(request, http)
        try:
            async with self._client_session().request(
                call.method,
                call.url,
                headers=CIMultiDict(call.headers),
                data=call.body or None,
                allow_redirects=False,
                skip_auto_headers=SKIP_AUTO_HEADERS,
                timeout=aiohttp.ClientTimeout(total=_seconds(config)),
            ) as reply:
                body = await reply.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ProviderError(f"HTTP call failed: {exc!r}") from None
        return mapping.answer(reply.status, reply.headers.items(), body)

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # the body goes to the client with the provider's headers
            )
        return self._session

    def _failed(self, name: str, error: ProviderError) -> None:
        """Log a provider's failures once per outage (warning), then at debug level."""
        if name in self._failing:
            log.debug("ext_authz provider %s failed: %s", name, error)
            return
        self._failing.add(name)
        log.warning("ext_authz provider %s failed: %s", name, error)

    async def close(self) -> None:
        session, self._session = self._session, None
        channels, self._channels = list(self._channels.values()), {}
        if session is not None:
            await session.close()
        for channel in channels:
            await channel.close()


def _seconds(config: ExtAuthzProvider) -> float:
    return config.timeout.total_seconds() if config.timeout is not None else DEFAULT_TIMEOUT


def _every(name: str) -> bool:
    """Envoy's deny headers with an empty list: all of them (Host is among ``FRAMING``)."""
    return True
