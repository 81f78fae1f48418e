"""Recent Check answers, keyed by exactly what a decision can depend on.

Theory of operation. A decision is a pure function of the bundle version, the JWKS keys, the
workload (the Check's workload keys), the request's method, path, host, destination and peer
(address, certificate principal, SNI), the headers the bundle can read
(``AuthzBundle.headers_read``: token locations, ``request.headers[...]`` conditions, CORS and
realm headers) and the time. ``key`` reads those fields straight from the ``CheckRequest``
(no ``Attributes`` built, no JSON parsed), so a repeated request costs a dict lookup instead of
authentication and evaluation, and the cached ``CheckResponse`` is sent again as is.

Time: an entry lives at most ``ttl`` seconds and never past the earliest expiry of the tokens
its decision accepted (``AuthnResult.valid_until``). A deny that a later clock would turn into
an allow (a token not yet valid) may so last ``ttl`` longer: late, never early, never an allow.
Answers that involve a CUSTOM provider are never cached (the provider decides each request).
Envoy caches verified tokens the same way (``jwt_cache_config``); this goes one step further
because a pilotfish decision also covers the RBAC step.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2

from pilotfish.extauthz.evaluate import Decision
from pilotfish.extauthz.request import CheckInput

DEFAULT_TTL = 1.0
DEFAULT_ENTRIES = 8192


@dataclass(frozen=True, slots=True)
class Answer:
    decision: Decision
    response: external_auth_pb2.CheckResponse
    entry: CheckInput  # for the deny log and the console's latest denials
    valid_until: float


def _address(address: Any) -> tuple[str, int]:
    socket = address.socket_address
    return socket.address, socket.port_value


def _headers(http: Any, names: Iterable[str]) -> tuple[Any, ...]:
    if len(http.header_map.headers):  # encode_raw_headers: one entry per value
        wanted = frozenset(names)
        return tuple(sorted((h.key, h.raw_value) for h in http.header_map.headers if h.key in wanted))
    headers = http.headers
    return tuple(headers.get(name) for name in names)


def key(
    version: str,
    jwks_generation: int,
    header_names: tuple[str, ...],
    request: external_auth_pb2.CheckRequest,
    metadata: Iterable[tuple[str, str]],
) -> Hashable:
    """Everything the decision for ``request`` depends on, but the time."""
    attrs = request.attributes
    http = attrs.request.http
    return (
        version,
        jwks_generation,
        tuple(sorted((k, v) for k, v in metadata if k.startswith("x-pilotfish-"))),
        tuple(sorted(attrs.context_extensions.items())),
        http.method,
        http.path,
        http.host,
        _headers(http, header_names),
        attrs.source.address.socket_address.address,
        attrs.source.principal,
        _address(attrs.destination.address),
        attrs.tls_session.sni,
        attrs.route_metadata_context.SerializeToString(deterministic=True),  # Kong: route, service
    )


class DecisionCache:
    """A bounded map of recent answers (cleared whole when full: entries live a second anyway)."""

    def __init__(self, ttl: float = DEFAULT_TTL, max_entries: int = DEFAULT_ENTRIES) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._answers: dict[Hashable, Answer] = {}

    def get(self, cache_key: Hashable, now: float) -> Answer | None:
        found = self._answers.get(cache_key)
        if found is None or now >= found.valid_until:
            return None
        return found

    def put(self, cache_key: Hashable, answer: Answer) -> None:
        if len(self._answers) >= self.max_entries:
            self._answers.clear()
        self._answers[cache_key] = answer

    def expiry(self, now: float, token_expiry: float | None) -> float:
        return min(now + self.ttl, token_expiry) if token_expiry is not None else now + self.ttl

    def __len__(self) -> int:
        return len(self._answers)
