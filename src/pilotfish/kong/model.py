"""Consumers and Plugins compiled for the Check server (pure): lookup tables and plugin scopes.

``KongConfig.build(resources, credential_key)`` indexes every credential so a request finds its
consumer in one dict lookup: API keys by their HMAC (``credentials.hash_api_key``), basic-auth
credentials by username, JWT credentials by their ``key``. A key, username or JWT key claimed by
two consumers is ambiguous; the consumer first in (namespace, name) order keeps it and the clash
is reported in ``conflicts`` (Kong refuses the second with a 409; the Kong Admin API does too).

Plugin precedence (Kong "Plugin precedence", https://developer.konghq.com/gateway/entities/plugin/):
of the instances of one plugin that match a request, the one with the most specific scope runs —
consumer+route+service, consumer+route, consumer+service, route+service, consumer, route,
service, global — ``precedence`` ranks a scope on that list.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotfish.config.kong.consumer import ConsumerSpec
from pilotfish.config.kong.plugin import PluginSpec, plugin_config
from pilotfish.config.resource import Resource
from pilotfish.kong import credentials

KONG_KINDS = frozenset({"Consumer", "Plugin"})


@dataclass(frozen=True, slots=True)
class Consumer:
    id: str
    ref: str  # namespace/name
    username: str
    custom_id: str
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyCredential:
    consumer: Consumer
    id: str


@dataclass(frozen=True, slots=True)
class BasicCredential:
    consumer: Consumer
    id: str
    password_hash: str = ""  # scrypt; empty when the file gives the password in the clear
    password: str = ""


@dataclass(frozen=True, slots=True)
class JwtKey:
    consumer: Consumer
    id: str
    algorithm: str
    secret: str  # HS256: the HMAC secret (opened); RS256/ES256: the PEM public key


@dataclass(frozen=True, slots=True)
class PluginInstance:
    ref: str
    id: str
    name: str
    config: Any
    service: str = ""
    route: str = ""
    consumer: str = ""  # a consumer id

    def precedence(self) -> int:
        """Lower runs first: Kong's order of scopes (see the module docstring)."""
        c, r, s = bool(self.consumer), bool(self.route), bool(self.service)
        order = [(1, 1, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)]
        return order.index((c, r, s))

    def matches(self, service: str, route: str, consumer_id: str | None) -> bool:
        if self.service and not _same_host(self.service, service):
            return False
        if self.route and self.route != route:
            return False
        return not self.consumer or self.consumer == consumer_id


def _same_host(configured: str, seen: str) -> bool:
    if not seen:
        return False
    seen = seen.rsplit(":", 1)[0] if seen.count(":") == 1 else seen
    return seen == configured or configured.startswith(seen + ".")


def consumer_id(resource: Resource[Any]) -> str:
    """Kong's consumer UUID: stable for the document's namespace/name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pilotfish:consumer:{resource.namespace}/{resource.name}"))


def plugin_id(resource: Resource[Any]) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pilotfish:plugin:{resource.namespace}/{resource.name}"))


@dataclass(slots=True)
class KongConfig:
    consumers: dict[str, Consumer] = field(default_factory=dict)  # by ref
    by_id: dict[str, Consumer] = field(default_factory=dict)
    by_username: dict[str, Consumer] = field(default_factory=dict)
    keys: dict[str, KeyCredential] = field(default_factory=dict)  # by hash_api_key
    basic: dict[str, BasicCredential] = field(default_factory=dict)  # by username
    jwt: dict[str, JwtKey] = field(default_factory=dict)  # by key (iss or key_claim_name)
    plugins: tuple[PluginInstance, ...] = ()
    conflicts: list[str] = field(default_factory=list)
    credential_key: bytes = b""
    store_url: str = ""  # policy cluster's counters (the store's database)

    @classmethod
    def build(
        cls, resources: Iterable[Resource[Any]], credential_key: bytes, store_url: str = ""
    ) -> KongConfig:
        out = cls(credential_key=credential_key, store_url=store_url)
        ordered = sorted(resources, key=lambda r: (r.namespace, r.name))
        for r in ordered:
            if r.kind == "Consumer":
                out._add_consumer(r)
        plugins = []
        for r in ordered:
            if r.kind != "Plugin" or not r.spec.enabled:
                continue
            spec: PluginSpec = r.spec
            target = ""
            if spec.consumer:
                found = out.consumers.get(f"{r.namespace}/{spec.consumer}")
                if found is None:
                    out.conflicts.append(
                        f"Plugin {r.namespace}/{r.name}: consumer {spec.consumer!r} not found"
                    )
                    continue  # scoped to nobody: applies to nobody
                target = found.id
            plugins.append(
                PluginInstance(
                    f"{r.namespace}/{r.name}",
                    plugin_id(r),
                    spec.plugin,
                    plugin_config(spec),
                    spec.service,
                    spec.route,
                    target,
                )
            )
        out.plugins = tuple(plugins)
        return out

    def _claim(self, table: dict[str, Any], key: str, value: Any, what: str) -> None:
        if key in table:
            self.conflicts.append(f"{what} of {value.consumer.ref} is already {table[key].consumer.ref}'s")
            return
        table[key] = value

    def _add_consumer(self, r: Resource[Any]) -> None:
        spec: ConsumerSpec = r.spec
        ref = f"{r.namespace}/{r.name}"
        consumer = Consumer(
            consumer_id(r), ref, spec.username, spec.custom_id, tuple(a.group for a in spec.acls)
        )
        self.consumers[ref] = self.by_id[consumer.id] = consumer
        if spec.username:
            self.by_username.setdefault(spec.username, consumer)
        for i, k in enumerate(spec.key_auth):
            digest = k.key_hash or credentials.hash_api_key(k.key, self.credential_key)
            cred_id = k.id or credentials.credential_id(ref, "keyAuth", digest)
            self._claim(self.keys, digest, KeyCredential(consumer, cred_id), f"key-auth #{i}")
        for b in spec.basic_auth:
            cred_id = b.id or credentials.credential_id(ref, "basicAuth", b.username)
            basic = BasicCredential(consumer, cred_id, b.password_hash, b.password)
            self._claim(self.basic, b.username, basic, f"basic-auth username {b.username!r}")
        for j in spec.jwt:
            cred_id = j.id or credentials.credential_id(ref, "jwt", j.key)
            if j.algorithm == "HS256":
                secret = j.secret or credentials.open_secret(j.secret_sealed, self.credential_key)
                if secret is None:
                    self.conflicts.append(f"jwt {j.key!r} of {ref}: sealed under another credential key")
                    continue
            else:
                secret = j.rsa_public_key
            self._claim(self.jwt, j.key, JwtKey(consumer, cred_id, j.algorithm, secret), f"jwt key {j.key!r}")

    def find_consumer(self, ref: str) -> Consumer | None:
        """An ``anonymous`` setting: a consumer id (Kong) or username."""
        return self.by_id.get(ref) or self.by_username.get(ref)

    def resolve(self, service: str, route: str, consumer_id: str | None) -> Mapping[str, PluginInstance]:
        """The instance of each plugin that applies: the most specific matching scope."""
        chosen: dict[str, PluginInstance] = {}
        for plugin in self.plugins:
            if not plugin.matches(service, route, consumer_id):
                continue
            held = chosen.get(plugin.name)
            if held is None or plugin.precedence() < held.precedence():
                chosen[plugin.name] = plugin
        return chosen

    def headers_read(self) -> frozenset[str]:
        """Every request header a Kong decision can read (for the Check decision cache)."""
        from pilotfish.config.kong.plugin import JwtConfig, KeyAuthConfig, RateLimitingConfig

        names: set[str] = set()
        for p in self.plugins:
            cfg = p.config
            if isinstance(cfg, KeyAuthConfig) and cfg.key_in_header:
                names.update(n.lower() for n in cfg.key_names)
            elif isinstance(cfg, JwtConfig):
                names.update(n.lower() for n in cfg.header_names)
                if cfg.cookie_names:
                    names.add("cookie")
            elif isinstance(cfg, RateLimitingConfig) and cfg.header_name:
                names.add(cfg.header_name.lower())
            elif p.name == "basic-auth":
                names.update(("authorization", "proxy-authorization"))
        return frozenset(names)
