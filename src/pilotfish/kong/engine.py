"""One request through Kong's plugins: authentication, ACL, rate limiting (pure but for the
rate-limit counters, which ``RateLimiter`` reaches through its backends).

Order is Kong's plugin priority (https://developer.konghq.com/gateway/entities/plugin/ "Plugin
priority"): jwt (1450), key-auth (1250), basic-auth (1100), acl (950), rate-limiting (910).
Plugins are resolved twice, as Kong does: without a consumer for authentication, then with the
authenticated consumer for the rest, so a consumer-scoped ACL or limit applies.

Several authentication plugins: a plugin with ``anonymous`` set lets a failure fall through to
the anonymous consumer, and is skipped once another plugin authenticated the request (Kong's
"multiple authentication" recipe, logical OR); without ``anonymous`` a failure is the answer.

Messages and statuses are Kong's (key-auth ``handler.lua``: 401 "No API key found in request",
401 "Invalid authentication credentials"; basic-auth: 401 "Unauthorized" with
``WWW-Authenticate: Basic realm="service"``; jwt: 401 "Unauthorized", "No mandatory 'iss' in
claims", "No credentials found for given 'iss'", "Invalid signature", "token expired", 403
"Invalid algorithm", "The exp claim ... exceeds maximum"; acl: 401 "Unauthorized" without a
consumer, 403 "You cannot consume this service"). Bodies are Kong's JSON ``{"message": ...}``.

Upstream headers (Kong ``kong.client.authenticate`` / ``set_consumer``): X-Consumer-ID,
X-Consumer-Username, X-Consumer-Custom-ID, X-Credential-Identifier, X-Anonymous-Consumer,
X-Consumer-Groups (acl) — each set, or removed when not applicable, so a client can never
supply its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt as pyjwt

from pilotfish.config.kong.plugin import (
    AclConfig,
    BasicAuthConfig,
    JwtConfig,
    KeyAuthConfig,
    RateLimitingConfig,
)
from pilotfish.extauthz.attributes import HttpRequest
from pilotfish.kong import credentials
from pilotfish.kong.model import Consumer, KongConfig, PluginInstance

AUTH_ORDER = ("jwt", "key-auth", "basic-auth")
CONSUMER_HEADERS = (
    "x-consumer-id",
    "x-consumer-username",
    "x-consumer-custom-id",
    "x-credential-identifier",
    "x-anonymous-consumer",
)
VERIFIED_PASSWORDS = 1024  # (credential, password HMAC) pairs remembered: one scrypt per client


@dataclass(frozen=True, slots=True)
class KongRequest:
    request: HttpRequest
    client_ip: str
    service: str  # the destination mesh host
    route: str  # the VirtualService http route name ("" when unknown)
    now: float


@dataclass(slots=True)
class KongOutcome:
    allow: bool = True
    status: int = 200
    message: str = ""
    reason: str = ""
    plugin: str = ""
    headers_to_set: list[tuple[str, str]] = field(default_factory=list)
    headers_to_remove: list[str] = field(default_factory=list)
    query_to_remove: list[str] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)  # to the client, either way
    stateful: bool = False  # a rate limit counted this request: the answer may not be reused
    consumer: Consumer | None = None

    def deny(self, status: int, message: str, plugin: str, *headers: tuple[str, str]) -> KongOutcome:
        self.allow, self.status, self.message, self.plugin = False, status, message, plugin
        self.reason = f"Kong {plugin}: {message}"
        self.response_headers.extend(headers)
        return self

    @property
    def body(self) -> str:
        return json.dumps({"message": self.message})


class Limiter(Protocol):
    async def apply(
        self,
        plugin: PluginInstance,
        config: RateLimitingConfig,
        req: KongRequest,
        outcome: KongOutcome,
        store_url: str = "",
    ) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Authenticated:
    consumer: Consumer
    credential: str  # the credential id ("" for the anonymous consumer)
    anonymous: bool = False


class Engine:
    """Runs the plugins. One per Check server process (it remembers verified passwords)."""

    def __init__(self, limiter: Limiter | None = None) -> None:
        self.limiter = limiter
        self._verified: OrderedDict[tuple[str, bytes], str] = OrderedDict()

    def applies(self, config: KongConfig, req: KongRequest) -> bool:
        return bool(config.resolve(req.service, req.route, None)) or any(p.consumer for p in config.plugins)

    async def run(self, config: KongConfig, req: KongRequest) -> KongOutcome:
        outcome = KongOutcome()
        first = config.resolve(req.service, req.route, None)
        who: Authenticated | None = None
        for name in AUTH_ORDER:
            plugin = first.get(name)
            if plugin is None:
                continue
            anonymous = plugin.config.anonymous
            if who is not None and not who.anonymous and anonymous:
                continue  # already authenticated by a credential: an OR-ed plugin is skipped
            if req.request.method == "OPTIONS" and not getattr(plugin.config, "run_on_preflight", True):
                continue
            found = self._authenticate(config, plugin, req, outcome)
            if found is None:
                if not anonymous:
                    return outcome  # denied
                consumer = config.find_consumer(anonymous)
                if consumer is None:
                    return outcome.deny(500, "anonymous consumer not found", name)
                outcome.allow, outcome.status, outcome.message, outcome.reason = True, 200, "", ""
                outcome.response_headers = []
                found = Authenticated(consumer, "", anonymous=True)
                if who is not None:
                    continue
            who = found if who is None or who.anonymous else who
        if who is not None:
            _consumer_headers(outcome, who)
        plugins = config.resolve(req.service, req.route, who.consumer.id if who else None)
        acl = plugins.get("acl")
        if acl is not None and not _acl(acl.config, who, outcome):
            return outcome
        limit = plugins.get("rate-limiting")
        if limit is not None and self.limiter is not None:
            await self.limiter.apply(limit, limit.config, req, outcome, config.store_url)
        return outcome

    # ---- authentication ------------------------------------------------------------------------

    def _authenticate(
        self, config: KongConfig, plugin: PluginInstance, req: KongRequest, outcome: KongOutcome
    ) -> Authenticated | None:
        cfg = plugin.config
        if isinstance(cfg, KeyAuthConfig):
            return _key_auth(config, cfg, req, outcome)
        if isinstance(cfg, BasicAuthConfig):
            return self._basic_auth(config, cfg, req, outcome)
        if isinstance(cfg, JwtConfig):
            return _jwt(config, cfg, req, outcome)
        return None

    def _basic_auth(
        self, config: KongConfig, cfg: BasicAuthConfig, req: KongRequest, outcome: KongOutcome
    ) -> Authenticated | None:
        challenge = ("www-authenticate", f'Basic realm="{cfg.realm}"')
        for header in ("authorization", "proxy-authorization"):
            value = req.request.header(header)
            if value is None:
                continue
            user_pass = _basic_pair(value)
            if user_pass is None:
                outcome.deny(401, "Invalid authentication credentials", "basic-auth", challenge)
                return None
            username, password = user_pass
            cred = config.basic.get(username)
            if cred is None or not self._password_ok(
                config, cred.id, cred.password_hash, cred.password, password
            ):
                outcome.deny(401, "Invalid authentication credentials", "basic-auth", challenge)
                return None
            if cfg.hide_credentials:
                outcome.headers_to_remove.append(header)
            return Authenticated(cred.consumer, cred.id)
        outcome.deny(401, "Unauthorized", "basic-auth", challenge)
        return None

    def _password_ok(self, config: KongConfig, cred_id: str, stored: str, clear: str, given: str) -> bool:
        if not stored:
            return hmac.compare_digest(clear.encode(), given.encode())
        mark = (cred_id, hmac.new(config.credential_key, given.encode(), hashlib.sha256).digest())
        if self._verified.get(mark) == stored:
            self._verified.move_to_end(mark)
            return True
        if not credentials.verify_password(given, stored):
            return False
        self._verified[mark] = stored  # keyed by the stored hash too: a password change forgets it
        if len(self._verified) > VERIFIED_PASSWORDS:
            self._verified.popitem(last=False)
        return True


def _key_auth(
    config: KongConfig, cfg: KeyAuthConfig, req: KongRequest, outcome: KongOutcome
) -> Authenticated | None:
    for name in cfg.key_names:
        key, where = None, ""
        if cfg.key_in_header:
            key, where = req.request.header(name.lower()), "header"
        if key is None and cfg.key_in_query:
            key, where = req.request.query_param(name), "query"
        if key is None:
            continue
        cred = config.keys.get(credentials.hash_api_key(key, config.credential_key)) if key else None
        if cred is None:
            outcome.deny(
                401,
                "Invalid authentication credentials",
                "key-auth",
                ("www-authenticate", 'Key realm="kong"'),
            )
            return None
        if cfg.hide_credentials:
            (outcome.headers_to_remove if where == "header" else outcome.query_to_remove).append(
                name.lower() if where == "header" else name
            )
        return Authenticated(cred.consumer, cred.id)
    outcome.deny(401, "No API key found in request", "key-auth", ("www-authenticate", 'Key realm="kong"'))
    return None


def _basic_pair(value: str) -> tuple[str, str] | None:
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = text.partition(":")
    return (username, password) if colon else None


def _jwt_token(cfg: JwtConfig, request: HttpRequest) -> str | None:
    for name in cfg.uri_param_names:
        value = request.query_param(name)
        if value:
            return value
    for name in cfg.cookie_names:
        value = request.cookie(name)
        if value:
            return value
    for name in cfg.header_names:
        value = request.header(name.lower())
        if value:
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _jwt(config: KongConfig, cfg: JwtConfig, req: KongRequest, outcome: KongOutcome) -> Authenticated | None:
    token = _jwt_token(cfg, req.request)
    if token is None:
        outcome.deny(401, "Unauthorized", "jwt")
        return None
    try:
        header = pyjwt.get_unverified_header(token)
        claims = pyjwt.decode(token, options={"verify_signature": False})
    except pyjwt.PyJWTError:
        outcome.deny(401, "Bad token; invalid JSON", "jwt")
        return None
    key = claims.get(cfg.key_claim_name) or header.get(cfg.key_claim_name)
    if not isinstance(key, str) or not key:
        outcome.deny(401, f"No mandatory '{cfg.key_claim_name}' in claims", "jwt")
        return None
    cred = config.jwt.get(key)
    if cred is None:
        outcome.deny(401, f"No credentials found for given '{cfg.key_claim_name}'", "jwt")
        return None
    if header.get("alg") != cred.algorithm:
        outcome.deny(403, "Invalid algorithm", "jwt")
        return None
    secret: Any = cred.secret
    if cred.algorithm == "HS256" and cfg.secret_is_base64:
        try:
            secret = base64.b64decode(cred.secret)
        except binascii.Error:
            outcome.deny(401, "Invalid key/secret", "jwt")
            return None
    try:
        pyjwt.decode(
            token,
            secret,
            algorithms=[cred.algorithm],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
        )
    except pyjwt.PyJWTError:
        outcome.deny(401, "Invalid signature", "jwt")
        return None
    problem = _claims_problem(cfg, claims, req.now)
    if problem is not None:
        outcome.deny(*problem, "jwt")
        return None
    return Authenticated(cred.consumer, cred.id)


def _claims_problem(cfg: JwtConfig, claims: dict[str, Any], now: float) -> tuple[int, str] | None:
    """Kong jwt ``claims_to_verify`` and ``maximum_expiration`` (``jwt_parser.lua``)."""
    for claim in cfg.claims_to_verify:
        value = claims.get(claim)
        if value is None:
            return 401, f"{claim} must be a number"
        if not isinstance(value, int | float) or isinstance(value, bool):
            return 401, f"{claim} must be a number"
        if claim == "exp" and value <= now:
            return 401, "token expired"
        if claim == "nbf" and value > now:
            return 401, "token not valid yet"
    if cfg.maximum_expiration > 0:
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp - now > cfg.maximum_expiration:
            return 403, "The exp claim exceeds the maximum allowed expiration"
    return None


def _consumer_headers(outcome: KongOutcome, who: Authenticated) -> None:
    c = who.consumer
    values = {
        "x-consumer-id": c.id,
        "x-consumer-username": c.username,
        "x-consumer-custom-id": c.custom_id,
        "x-credential-identifier": who.credential,
        "x-anonymous-consumer": "true" if who.anonymous else "",
    }
    outcome.consumer = c
    for name in CONSUMER_HEADERS:
        if values[name]:
            outcome.headers_to_set.append((name, values[name]))
        else:
            outcome.headers_to_remove.append(name)


def _acl(cfg: AclConfig, who: Authenticated | None, outcome: KongOutcome) -> bool:
    if who is None:
        outcome.deny(401, "Unauthorized", "acl")
        return False
    groups = set(who.consumer.groups)
    allowed = bool(groups & set(cfg.allow)) if cfg.allow else not groups & set(cfg.deny)
    if not allowed:
        outcome.deny(403, "You cannot consume this service", "acl")
        return False
    if cfg.hide_groups_header or not groups:
        outcome.headers_to_remove.append("x-consumer-groups")
    else:
        outcome.headers_to_set.append(("x-consumer-groups", ", ".join(who.consumer.groups)))
    return True
