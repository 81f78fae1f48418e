"""The ext_authz Check server: ``CheckService`` (plain logic) and a thin grpc.aio servicer.

Theory of operation. Envoy's ``envoy.filters.http.ext_authz`` filter sends one ``CheckRequest``
per HTTP request (envoy ``service/auth/v3/external_auth.proto``). ``CheckService.check`` maps it
to ``Attributes`` (``request``), asks the current ``AuthzBundle`` to decide (JWT authentication
through a per-process ``JwksCache`` and verified-token cache, then ``evaluate``: the code path of
``authz check``), and maps the ``Decision`` back (``response``).

* A deny is a normal ``CheckResponse`` (401/403 with body and headers), never an exception.
* A request that cannot be placed (no workload in ``context_extensions``) is a gRPC
  INVALID_ARGUMENT, and any unexpected failure a gRPC INTERNAL: Envoy with
  ``failure_mode_allow: false`` answers those with ``status_on_error`` (403), never a silent
  allow (reference a.1).
* The bundle is swapped by one attribute assignment; each Check reads ``self.bundle`` once, so a
  request is decided entirely by one version.
* CUSTOM policies (``custom``): when an enforced CUSTOM rule matches (``AuthzBundle.custom_step``,
  which sees no JWT claims), the extension provider is asked first, as Istio's CUSTOM ext_authz
  filter runs before jwt_authn and RBAC (reference §1). Its deny (or a failure without
  ``failOpen``: ``statusOnError``) is the answer; its allow lets the rest of the decision (JWT,
  DENY, ALLOW) apply to the request as the provider changed it, and merges its header mutations.
  ``close`` releases the provider connections when the server stops.
* Remote JWKS are prefetched and kept fresh by ``refresh_jwks`` (run periodically by the host),
  like Envoy's ``remote_jwks.async_fetch``, so Checks rarely wait for a fetch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from pilotfish.config.security.request_authentication import DEFAULT_JWKS_TIMEOUT
from pilotfish.extauthz import decision_cache
from pilotfish.extauthz.attributes import Attributes
from pilotfish.extauthz.bundle import AuthzBundle
from pilotfish.extauthz.custom import ProviderClients, allowed_with, denied_with, request_view
from pilotfish.extauthz.evaluate import Decision
from pilotfish.extauthz.jwks import Fetch, JwksCache, TokenCache
from pilotfish.extauthz.jwks_fetch import fetch_jwks
from pilotfish.extauthz.jwt import MESSAGES, Authenticator, Verified
from pilotfish.extauthz.request import BadCheckRequest, CheckInput, check_input
from pilotfish.extauthz.response import check_response
from pilotfish.extauthz.tally import CheckTally
from pilotfish.kong import check as kong_check
from pilotfish.kong.engine import Engine
from pilotfish.kong.ratelimit import RateLimiter
from pilotfish.lograte import RateLimitedLog

log = logging.getLogger(__name__)
# Denied requests arrive at the client's pace: a few lines per policy and workload a minute (lograte).
deny_log = RateLimitedLog(log)

JWKS_REFRESH_INTERVAL = 30.0  # seconds between background JWKS checks (a fetch only when due)
GRPC_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
)


RECENT_DENIALS = 50  # per worker


class CheckHooks(Protocol):
    """Where Check events go (``metrics.Metrics`` implements it)."""

    def on_authz_check(self, decision: str, reason: str, policy: str, seconds: float) -> None: ...

    def on_jwks_fetch(self, ok: bool) -> None: ...

    def on_token_cache(self, hit: bool) -> None: ...

    def on_decision_cache(self, hit: bool) -> None: ...

    def on_custom_provider(self, provider: str, result: str) -> None:
        """One CUSTOM provider call; ``result`` is one of ``custom.RESULTS``."""


class NoHooks:
    def on_authz_check(self, decision: str, reason: str, policy: str, seconds: float) -> None:
        pass

    def on_jwks_fetch(self, ok: bool) -> None:
        pass

    def on_token_cache(self, hit: bool) -> None:
        pass

    def on_decision_cache(self, hit: bool) -> None:
        pass

    def on_custom_provider(self, provider: str, result: str) -> None:
        pass


def reason_label(decision: Decision) -> str:
    """A metric label from a small fixed set (``Decision.reason`` names policies and rules)."""
    if decision.allow:
        return "allowed"
    if decision.reason.startswith("JWT:"):
        # Keys could not be fetched: the deny is the fail-closed answer (an alert, not a client error).
        return "jwks_unavailable" if MESSAGES["JwksFetchFail"] in decision.reason else "jwt"
    if decision.reason.startswith("CUSTOM:"):
        return "custom"  # the extension provider denied or failed closed
    if decision.policy is not None:
        return "deny_policy"  # a DENY rule, or a CUSTOM policy istiod would turn into a deny
    return "no_allow_match"


class CountingTokenCache(TokenCache[Verified]):
    """Envoy's ``jwt_cache_hit``/``jwt_cache_miss``: the token cache, reporting each lookup."""

    def __init__(self, hooks: CheckHooks, max_entries: int = 100) -> None:
        super().__init__(max_entries)
        self._hooks = hooks

    def get(self, scope: Hashable, token: str, now: float) -> Verified | None:
        found = super().get(scope, token, now)
        self._hooks.on_token_cache(found is not None)
        return found


def counted_fetch(fetch: Fetch, hooks: CheckHooks) -> Fetch:
    async def fetch_and_count(uri: str) -> str:
        try:
            text = await fetch(uri)
        except Exception:
            hooks.on_jwks_fetch(False)
            raise
        hooks.on_jwks_fetch(True)
        return text

    return fetch_and_count


class CheckService:
    """Decide Checks against the current bundle. One per process and event loop."""

    def __init__(
        self,
        bundle: AuthzBundle,
        *,
        fetch: Fetch = fetch_jwks,
        strict: bool = False,
        hooks: CheckHooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bundle = bundle
        self.hooks: CheckHooks = hooks or NoHooks()
        self.jwks = JwksCache(counted_fetch(self._timed(fetch), self.hooks))
        self.authenticator = Authenticator(
            self.jwks, strict=strict, token_cache=CountingTokenCache(self.hooks)
        )
        self.clock = clock
        self.providers = ProviderClients()
        self.counts = {"allow": 0, "deny": 0, "error": 0}
        # The latest denials, for the web console: what was asked and what decided — never a
        # header value or a token.
        self.denials: deque[dict[str, Any]] = deque(maxlen=RECENT_DENIALS)
        self.answers = decision_cache.DecisionCache()
        self.kong = Engine(RateLimiter())  # Kong's plugins at gateways (pilotfish.kong)
        self._headers_for: AuthzBundle | None = None
        self._headers: tuple[str, ...] = ()

    def _timed(self, fetch: Fetch) -> Fetch:
        """``fetch`` bounded by the jwtRule ``timeout`` of the URI (the bundle in force says it):
        a JWKS server that answers too slowly is a failed fetch, as in Envoy's remote_jwks."""

        async def timed(uri: str) -> str:
            limit = self.bundle.jwks_timeouts.get(uri, DEFAULT_JWKS_TIMEOUT.total_seconds())
            return await asyncio.wait_for(fetch(uri), limit)

        return timed

    def swap(self, bundle: AuthzBundle) -> bool:
        """Install ``bundle``; False (and nothing changes) when it is the version in force."""
        if bundle.version == self.bundle.version:
            return False
        self.bundle = bundle  # one assignment: a Check sees the old or the new bundle, never a mix
        log.info("authz bundle %s installed (%d resources)", bundle.version, len(bundle.resources))
        return True

    async def check(
        self, request: external_auth_pb2.CheckRequest, metadata: Iterable[tuple[str, str]] = ()
    ) -> external_auth_pb2.CheckResponse:
        """The response for one Check (``metadata``: the call's gRPC metadata, which may name the
        workload); raises ``BadCheckRequest`` when it cannot be placed."""
        started = time.perf_counter()
        bundle = self.bundle  # one version decides the whole Check, across the provider call too
        metadata = tuple(metadata)
        now = self.clock()
        cache_key = decision_cache.key(
            bundle.version, self.jwks.generation, self._header_names(bundle), request, metadata
        )
        cached = self.answers.get(cache_key, now)
        self.hooks.on_decision_cache(cached is not None)
        if cached is not None:
            self._record(cached.entry, cached.decision, time.perf_counter() - started)
            return cached.response
        try:
            entry = check_input(request, now, metadata)
            decision, response, valid_until = await self._decide(bundle, request, entry.attributes, metadata)
        except BaseException:
            self.counts["error"] += 1
            raise
        if valid_until is not None:
            self.answers.put(cache_key, decision_cache.Answer(decision, response, entry, valid_until))
        self._record(entry, decision, time.perf_counter() - started)
        return response

    def _header_names(self, bundle: AuthzBundle) -> tuple[str, ...]:
        if self._headers_for is not bundle:
            self._headers_for, self._headers = bundle, tuple(sorted(bundle.headers_read))
        return self._headers

    async def _decide(
        self,
        bundle: AuthzBundle,
        request: external_auth_pb2.CheckRequest,
        attributes: Attributes,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> tuple[Decision, external_auth_pb2.CheckResponse, float | None]:
        """CUSTOM (ask the provider) first, then the rest of the decision, then Kong's plugins at
        a gateway; and until when the answer may be reused (``None``: never, a provider was
        asked or a rate limit counted the request)."""
        custom = bundle.custom_step(attributes)
        if custom is None:
            decision, authn = await bundle.decide_detailed(attributes, self.authenticator)
            until = self.answers.expiry(attributes.now, authn.valid_until)
            if decision.allow and bundle.kong is not None and kong_check.at_gateway(metadata):
                outcome = await self.kong.run(bundle.kong, kong_check.kong_request(request, attributes))
                decision = kong_check.combined(decision, outcome)
                return (
                    decision,
                    kong_check.kong_response(decision, outcome),
                    None if outcome.stateful else until,
                )
            return decision, check_response(decision), until
        name, match = custom
        answer = await self.providers.ask(name, bundle.ext_authz_provider(name), request, attributes)
        self.hooks.on_custom_provider(name, answer.result)
        if not answer.allow:
            return answer.denial(name, match), answer.response, None
        seen = dataclasses.replace(
            attributes, request=request_view(attributes.request, answer.response.ok_response)
        )
        decision = dataclasses.replace(
            await bundle.decide(seen, self.authenticator), custom_provider=name, custom_match=match
        )
        merge = allowed_with if decision.allow else denied_with
        return decision, merge(answer.response, check_response(decision)), None

    async def close(self) -> None:
        """Release the CUSTOM provider connections (when the server stops)."""
        await self.providers.close()
        if self.kong.limiter is not None:
            await self.kong.limiter.close()

    def _record(self, entry: CheckInput, decision: Decision, seconds: float) -> None:
        verdict = "allow" if decision.allow else "deny"
        self.counts[verdict] += 1
        self.hooks.on_authz_check(verdict, reason_label(decision), decision.policy or "", seconds)
        if not decision.allow:
            workload = entry.attributes.workload
            request = entry.attributes.request
            self.denials.append(
                {
                    "at": self.clock(),
                    "status": decision.status,
                    "method": request.method,
                    "host": request.host,
                    "path": request.url_path,
                    "namespace": workload.namespace,
                    "workload": entry.workload_name,
                    "policy": decision.policy or "",
                    "rule": decision.rule,
                    "reason": decision.reason,
                }
            )
            deny_log.log(
                logging.INFO,
                (decision.policy or decision.reason, workload.namespace, entry.workload_name or "-"),
                "deny %d %s %s%s: %s (workload %s/%s)",
                decision.status,
                entry.attributes.request.method,
                entry.attributes.request.host,
                entry.attributes.request.url_path,
                decision.reason,
                workload.namespace,
                entry.workload_name or "-",
            )

    async def refresh_jwks(self, now: float) -> None:
        """Fetch every remote JWKS of the bundle that is missing or stale (failures are logged by
        the cache, which keeps the last good keys)."""
        for uri in self.bundle.jwks_uris:
            await self.jwks.keys(uri, now)

    def stats(self) -> dict[str, Any]:
        out = {
            "pid": os.getpid(),
            "version": self.bundle.version,
            **self.counts,
            "denials": list(self.denials),
        }
        if isinstance(self.hooks, CheckTally):
            out["metrics"] = self.hooks.snapshot()
        return out


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """The grpc.aio transport: a Check either returns a response or aborts with a gRPC status."""

    def __init__(self, service: CheckService) -> None:
        self.service = service

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method name
        try:
            return await self.service.check(request, context.invocation_metadata() or ())
        except BadCheckRequest as exc:
            log.warning("Check rejected: %s", exc)
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except Exception:
            log.exception("Check failed")
            code, message = grpc.StatusCode.INTERNAL, "pilotfish ext_authz internal error"
        await context.abort(code, message)


async def start_server(
    service: CheckService, host: str, port: int, *, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int]:
    """A started grpc.aio server with the Authorization service; returns it and the bound port.
    ``reuse_port`` lets several processes bind one port (``SO_REUSEPORT``; the kernel spreads
    connections across them)."""
    options = (*GRPC_OPTIONS, ("grpc.so_reuseport", 1 if reuse_port else 0))
    server = grpc.aio.server(options=options)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationServicer(service), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the ext_authz server to {host}:{port}")
    await server.start()
    return server, bound


async def refresh_loop(service: CheckService, interval: float = JWKS_REFRESH_INTERVAL) -> None:
    """Run ``refresh_jwks`` now and every ``interval`` seconds until cancelled."""
    while True:
        try:
            await service.refresh_jwks(service.clock())
        except Exception:  # fetch failures are handled by the cache; anything else is a bug to log
            log.exception("JWKS refresh failed")
        await asyncio.sleep(interval)
