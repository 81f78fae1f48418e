"""Plugin (pilotfish.io/v1alpha1): a Kong plugin and where it applies.

``plugin`` is Kong's plugin name and ``config`` its configuration, checked against the plugin's
schema below (Kong's field names and defaults: https://developer.konghq.com/plugins/ key-auth,
basic-auth, jwt, acl, rate-limiting). Scope, as in Kong: ``service`` (a mesh host, e.g.
``reviews.default.svc.cluster.local``), ``route`` (the ``name`` of a VirtualService http route),
``consumer`` (a Consumer in the plugin's namespace), any combination, or none (global). When
several instances of one plugin match a request, the most specific wins (Kong's precedence:
consumer+route+service, consumer+route, consumer+service, route+service, consumer, route,
service, global).

Plugins are enforced by the Check server at every gateway, and at the sidecars of the workloads
behind a ``service`` plugin's host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config.decode import Decoder, JsonValue, Message
from pilotfish.config.decode import field as jfield
from pilotfish.config.resource import Finding, Resource
from pilotfish.errors import ConfigError


@dataclass(frozen=True, slots=True)
class KeyAuthConfig(Message):
    key_names: tuple[str, ...] = ("apikey",)
    key_in_header: bool = True
    key_in_query: bool = True
    key_in_body: bool = False
    hide_credentials: bool = False
    anonymous: str = ""
    run_on_preflight: bool = True


@dataclass(frozen=True, slots=True)
class BasicAuthConfig(Message):
    hide_credentials: bool = False
    anonymous: str = ""
    realm: str = "service"


@dataclass(frozen=True, slots=True)
class JwtConfig(Message):
    uri_param_names: tuple[str, ...] = ("jwt",)
    cookie_names: tuple[str, ...] = ()
    header_names: tuple[str, ...] = ("authorization",)
    claims_to_verify: tuple[Literal["exp", "nbf"], ...] = ()
    key_claim_name: str = "iss"
    secret_is_base64: bool = False
    anonymous: str = ""
    run_on_preflight: bool = True
    maximum_expiration: float = 0


@dataclass(frozen=True, slots=True)
class AclConfig(Message):
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    hide_groups_header: bool = False


WINDOWS = ("second", "minute", "hour", "day", "month", "year")


@dataclass(frozen=True, slots=True)
class RateLimitingConfig(Message):
    second: int | None = None
    minute: int | None = None
    hour: int | None = None
    day: int | None = None
    month: int | None = None
    year: int | None = None
    limit_by: Literal["consumer", "credential", "ip", "service", "header", "path"] = "consumer"
    header_name: str = ""
    path: str = ""
    policy: Literal["local", "cluster", "redis"] = "local"
    fault_tolerant: bool = True
    hide_client_headers: bool = False
    error_code: int = 429
    error_message: str = "API rate limit exceeded"
    redis_host: str = ""
    redis_port: int = 6379
    redis_timeout: int = 2000  # milliseconds
    redis_database: int = 0
    redis_password: str = ""

    def limits(self) -> tuple[tuple[str, int], ...]:
        return tuple((w, getattr(self, w)) for w in WINDOWS if getattr(self, w) is not None)


PLUGIN_CONFIGS: Mapping[str, type] = {
    "key-auth": KeyAuthConfig,
    "basic-auth": BasicAuthConfig,
    "jwt": JwtConfig,
    "acl": AclConfig,
    "rate-limiting": RateLimitingConfig,
}
AUTH_PLUGINS = ("key-auth", "basic-auth", "jwt")


@dataclass(frozen=True, slots=True)
class PluginSpec(Message):
    plugin: str = jfield(required=True, aliases=("name",))
    config: JsonValue | None = None
    enabled: bool = True
    service: str = ""
    route: str = ""
    consumer: str = ""
    tags: tuple[str, ...] = ()


def plugin_config(spec: PluginSpec) -> Any:
    """The typed config of a validated plugin (raises ``ConfigError`` on an invalid one)."""
    decoder = Decoder()
    out = decoder.decode(PLUGIN_CONFIGS[spec.plugin], spec.config or {}, ("config",), 0)
    if decoder.problems:
        raise ConfigError(decoder.problems)
    return out


_SEGMENT = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def _path(text: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for bracket, plain in _SEGMENT.findall(text):
        out.append(int(bracket) if bracket.isdigit() else bracket or plain)
    return tuple(out)


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: PluginSpec = resource.spec
    if spec.plugin not in PLUGIN_CONFIGS:
        yield Finding(
            ("plugin",), f"unsupported plugin {spec.plugin!r} (supported: {', '.join(PLUGIN_CONFIGS)})"
        )
        return
    if spec.config is not None and not isinstance(spec.config, dict):
        yield Finding(("config",), "must be an object")
        return
    try:
        config = plugin_config(spec)
    except ConfigError as exc:
        for problem in exc.problems:
            yield Finding(_path(problem.path), problem.message)
        return
    yield from _config_findings(spec.plugin, config)


def _config_findings(name: str, config: Any) -> Iterator[Finding]:
    if isinstance(config, KeyAuthConfig):
        if config.key_in_body:
            # Reading the body would make Envoy buffer every request for the Check; not offered.
            yield Finding(
                ("config", "key_in_body"), "not supported: keys are read from headers and the query"
            )
        if not config.key_names:
            yield Finding(("config", "key_names"), "needs at least one name")
        for i, key in enumerate(config.key_names):
            if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
                yield Finding(("config", "key_names", i), "a header/query parameter name")
        if not (config.key_in_header or config.key_in_query):
            yield Finding(("config",), "key_in_header and key_in_query are both false: no key can be read")
    elif isinstance(config, RateLimitingConfig):
        if not config.limits():
            yield Finding(("config",), "at least one of second, minute, hour, day, month, year")
        for window, limit in config.limits():
            if limit < 0:
                yield Finding(("config", window), "must be >= 0")
        ordered = [limit for _, limit in config.limits()]
        if ordered != sorted(ordered):
            # Kong: "the limit for <window> must be greater than ..." (smaller windows, smaller limits)
            yield Finding(("config",), "a longer window needs a limit at least as large as a shorter one")
        if config.limit_by == "header" and not config.header_name:
            yield Finding(("config", "header_name"), "required with limit_by: header")
        if config.limit_by == "path" and not config.path.startswith("/"):
            yield Finding(("config", "path"), "required with limit_by: path (an absolute path)")
        if config.policy == "redis" and not config.redis_host:
            yield Finding(("config", "redis_host"), "required with policy: redis")
        if not 400 <= config.error_code <= 599:
            yield Finding(("config", "error_code"), "an HTTP error status (400-599)")
    elif isinstance(config, AclConfig):
        if bool(config.allow) == bool(config.deny):
            yield Finding(("config",), "exactly one of allow and deny (Kong's acl schema)")
    elif isinstance(config, JwtConfig):
        if config.maximum_expiration < 0:
            yield Finding(("config", "maximum_expiration"), "must be >= 0")
        if config.maximum_expiration and "exp" not in config.claims_to_verify:
            yield Finding(("config", "maximum_expiration"), "needs exp in claims_to_verify (as in Kong)")
        if not (config.uri_param_names or config.cookie_names or config.header_names):
            yield Finding(("config",), "no place to read the token from")
    del name
