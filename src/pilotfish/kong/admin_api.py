"""Kong's Admin API (port 8001 in Kong; ``serve --kong-admin-port``) over pilotfish's store.

The entities are pilotfish resources, so the history, rollback and the Istio side see them:

==============================  ==========================================================
Kong                            pilotfish
==============================  ==========================================================
consumer                        ``Consumer`` (namespace ``default``), named after its username
key-auth / basic-auth / jwt /   entries of the consumer's ``keyAuth`` / ``basicAuth`` /
acls credential                 ``jwt`` / ``acls`` (stored hashed or sealed: ``credentials``)
plugin                          ``Plugin``; ``service`` = a mesh host, ``route`` = a
                                VirtualService http route name
upstream                        ``DestinationRule`` of the host the upstream is named after:
                                round-robin → ROUND_ROBIN, least-connections → LEAST_REQUEST,
                                consistent-hashing with hash_on header/cookie/ip → consistentHash
target                          a registration (lease) joining that host; weight 0 and
                                ``/unhealthy`` drain it, ``/healthy`` undrains it; leases are
                                renewed by ``renew_targets`` so a target lives until deleted
==============================  ==========================================================

JSON shapes follow Kong's Admin API reference (https://developer.konghq.com/api/gateway/admin-ee/):
``id`` (UUID), ``created_at`` (Unix seconds), ``tags``; lists are ``{"data": [...], "next":
...}`` paged by ``size`` and ``offset``; a unique violation is a 409 and a schema violation a
400 with ``{"message", "name", "code", "fields"}``. Secrets are shown once, in the answer to the
request that created them (Kong's generated ``key``), never again.

Authorization is the pilotfish admin API's (``admin.api.Guard``: bearer tokens, roles, audit
log): writes need ``apply`` on the kind they change, reads ``get``/``list``, targets ``register``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from aiohttp import web

from pilotfish.admin import rbac
from pilotfish.admin.api import POLICY, REGISTRY, ApiError, Guard, RegistryBackend, read_body
from pilotfish.config.kong.plugin import PLUGIN_CONFIGS, PluginSpec, plugin_config
from pilotfish.config.loader import parse_resource
from pilotfish.errors import ConfigError
from pilotfish.kong import credentials
from pilotfish.kong.model import consumer_id, plugin_id
from pilotfish.store import Registration, StoredResource

log = logging.getLogger(__name__)

NAMESPACE = "default"
API_VERSION = "pilotfish.io/v1alpha1"
CREATED = "pilotfish.io/kong-created-at"
UPSTREAM = "pilotfish.io/kong-upstream"
TARGET_PREFIX = "kong/"
TARGET_TTL = 86_400.0  # the longest lease; renew_targets renews them well before
RENEW_EVERY = 3_600.0
DEFAULT_PAGE = 100
CREDENTIALS = {"key-auth": "keyAuth", "basic-auth": "basicAuth", "jwt": "jwt", "acls": "acls"}
_NAME = re.compile(r"[^a-z0-9.-]+")

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def _kong_errors(handler: Handler) -> Handler:
    """Kong's error shape ``{"message": ...}`` for every failure."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ApiError as exc:
            body = dict(exc.body)
            if "message" not in body:
                body = {
                    "message": body.get("error", "error"),
                    **{k: v for k, v in body.items() if k != "error"},
                }
            return web.Response(
                text=json.dumps(body), status=exc.status, content_type="application/json", headers=exc.headers
            )

    return wrapped


def _schema_violation(fields: Mapping[str, Any]) -> ApiError:
    text = ", ".join(f"{k}: {v}" for k, v in fields.items())
    return ApiError(
        400,
        {
            "message": f"schema violation ({text})",
            "name": "schema violation",
            "code": 2,
            "fields": dict(fields),
        },
    )


def _unique_violation(field: str, value: Any) -> ApiError:
    return ApiError(
        409,
        {
            "message": f"UNIQUE violation detected on '{{{field}=\"{value}\"}}'",
            "name": "unique constraint violation",
            "code": 5,
            "fields": {field: value},
        },
    )


def _not_found() -> ApiError:
    return ApiError(404, {"message": "Not found"})


def resource_name(text: str) -> str:
    """A DNS-1123 resource name for a Kong name (a hash suffix keeps distinct names distinct)."""
    name = _NAME.sub("-", text.lower()).strip("-.")[:200] or "x"
    if name != text:
        name = f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}".strip("-")
    return name


async def _body(request: web.Request) -> dict[str, Any]:
    """A JSON or form body (Kong's docs use both ``--data`` and JSON)."""
    raw = await read_body(request)
    if not raw.strip():
        return {}
    if request.content_type == "application/json" or raw.lstrip().startswith(b"{"):
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(400, {"message": "Cannot parse JSON body"}) from None
        if not isinstance(data, dict):
            raise ApiError(400, {"message": "the body must be a JSON object"})
        return data
    from urllib.parse import parse_qsl

    out: dict[str, Any] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        if key.endswith("[]"):
            out.setdefault(key[:-2], []).append(value)
        elif "." in key:  # config.minute=5, service.id=...
            head, _, rest = key.partition(".")
            out.setdefault(head, {})[rest] = _form_value(value)
        else:
            out[key] = _form_value(value) if key in ("weight", "slots") else value
    return out


def _form_value(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def _page(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
    try:
        size = int(request.query.get("size", DEFAULT_PAGE))
        start = (
            int(base64.urlsafe_b64decode(request.query["offset"]).decode())
            if "offset" in request.query
            else 0
        )
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, {"message": "invalid size or offset"}) from None
    if not 1 <= size <= 1000:
        raise _schema_violation({"size": "must be between 1 and 1000"})
    tag = request.query.get("tags")
    if tag:
        items = [i for i in items if tag in (i.get("tags") or [])]
    page = items[start : start + size]
    more = start + size < len(items)
    offset = base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None
    nxt = f"{request.path}?offset={offset}&size={size}" if more else None
    return _json({"data": page, "next": nxt, "offset": offset})


class KongAdmin:
    """The handlers. ``backend`` is the pilotfish admin API's (store, clock, sealing)."""

    def __init__(self, backend: RegistryBackend) -> None:
        self.backend = backend

    # ---- store helpers ---------------------------------------------------------------------------

    async def _list(self, guard: Guard, kind: str) -> list[StoredResource]:
        store = self.backend.store
        return await guard.store(lambda: store.list(kind, NAMESPACE), kind)

    async def _apply(self, guard: Guard, doc: dict[str, Any]) -> None:
        kind, name = doc["kind"], doc["metadata"]["name"]
        target = f"{kind}/{NAMESPACE}/{name}"
        if self.backend.file_origin((kind, NAMESPACE, name)) is not None:
            raise ApiError(409, {"message": f"{target} is defined in --config (read-only here)"})
        try:
            parse_resource(doc, "<kong-admin>")  # the same validation as every write
        except ConfigError as exc:
            raise _schema_violation({p.path or "body": p.message for p in exc.problems}) from None
        store = self.backend.store
        sealed = self.backend.seal(doc)
        revision = await guard.store(lambda: store.apply(sealed, actor=guard.actor), target)
        await guard.done(target, f"200 kong admin revision {revision}")

    async def _delete(self, guard: Guard, kind: str, name: str) -> None:
        target = f"{kind}/{NAMESPACE}/{name}"
        store = self.backend.store
        await guard.store(lambda: store.delete(kind, NAMESPACE, name, actor=guard.actor), target)
        await guard.done(target, "204 kong admin delete")

    def _doc(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        created: int,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {CREATED: str(created)},
        }
        if labels:
            metadata["labels"] = dict(labels)
        return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}

    # ---- consumers -------------------------------------------------------------------------------

    def consumer_json(self, stored: StoredResource) -> dict[str, Any]:
        r, spec = stored.resource, stored.doc.get("spec", {})
        created = int(r.annotations.get(CREATED, "0") or 0)
        return {
            "id": consumer_id(r),
            "username": spec.get("username") or None,
            "custom_id": spec.get("customId") or spec.get("custom_id") or None,
            "tags": spec.get("tags") or None,
            "created_at": created,
            "updated_at": created,
            "type": 0,
        }

    async def _find_consumer(self, guard: Guard, ref: str) -> StoredResource:
        for stored in await self._list(guard, "Consumer"):
            item = self.consumer_json(stored)
            if ref in (item["id"], item["username"]):
                return stored
        raise _not_found()

    async def list_consumers(self, request: web.Request) -> web.Response:
        guard = Guard(request, "list")
        await guard.allow("Consumer", NAMESPACE, "Consumer")
        items = [self.consumer_json(s) for s in await self._list(guard, "Consumer")]
        custom = request.query.get("custom_id")
        if custom is not None:
            items = [i for i in items if i["custom_id"] == custom]
        return _page(request, sorted(items, key=lambda i: (i["created_at"], i["id"])))

    async def create_consumer(self, request: web.Request) -> web.Response:
        guard = Guard(request, "apply")
        await guard.allow("Consumer", NAMESPACE, "Consumer")
        body = await _body(request)
        username, custom_id = body.get("username"), body.get("custom_id")
        if not username and not custom_id:
            raise _schema_violation(
                {"@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]}
            )
        existing = [self.consumer_json(s) for s in await self._list(guard, "Consumer")]
        for field, value in (("username", username), ("custom_id", custom_id)):
            if value and any(i[field] == value for i in existing):
                raise _unique_violation(field, value)
        name = resource_name(str(username or custom_id))
        spec = {
            k: v
            for k, v in (("username", username), ("customId", custom_id), ("tags", body.get("tags")))
            if v
        }
        await self._apply(guard, self._doc("Consumer", name, spec, int(time.time())))
        return _json(self.consumer_json(await self._find_consumer(guard, str(username or custom_id))), 201)

    async def get_consumer(self, request: web.Request) -> web.Response:
        guard = Guard(request, "get")
        await guard.allow("Consumer", NAMESPACE, "Consumer")
        return _json(self.consumer_json(await self._find_consumer(guard, request.match_info["consumer"])))

    async def update_consumer(self, request: web.Request) -> web.Response:
        guard = Guard(request, "apply")
        await guard.allow("Consumer", NAMESPACE, "Consumer")
        stored = await self._find_consumer(guard, request.match_info["consumer"])
        body = await _body(request)
        doc = json.loads(json.dumps(stored.doc))
        for field, key in (("username", "username"), ("custom_id", "customId"), ("tags", "tags")):
            if field in body:
                doc["spec"][key] = body[field]
        doc["metadata"].pop("resourceVersion", None)
        await self._apply(guard, doc)
        return _json(self.consumer_json(await self._find_consumer(guard, self.consumer_json(stored)["id"])))

    async def delete_consumer(self, request: web.Request) -> web.Response:
        guard = Guard(request, "delete")
        await guard.allow("Consumer", NAMESPACE, "Consumer")
        try:
            stored = await self._find_consumer(guard, request.match_info["consumer"])
        except ApiError:
            return web.Response(status=204)  # Kong: deleting what is not there is a 204
        await self._delete(guard, "Consumer", stored.resource.name)
        return web.Response(status=204)

    # ---- credentials -----------------------------------------------------------------------------

    def credential_json(
        self, kind: str, item: Mapping[str, Any], consumer: str, created: int
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": item.get("id"),
            "consumer": {"id": consumer},
            "created_at": int(item.get("createdAt", created)),
            "tags": item.get("tags") or None,
        }
        if kind == "basic-auth":
            out["username"] = item.get("username")
        elif kind == "jwt":
            out.update(
                key=item.get("key"),
                algorithm=item.get("algorithm", "HS256"),
                rsa_public_key=item.get("rsaPublicKey") or item.get("rsa_public_key"),
            )
        elif kind == "acls":
            out["group"] = item.get("group")
        elif kind == "key-auth":
            out["ttl"] = None
        return out

    async def list_credentials(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        guard = Guard(request, "get")
        await guard.allow("Consumer", NAMESPACE, "Consumer")
        stored = await self._find_consumer(guard, request.match_info["consumer"])
        cid = self.consumer_json(stored)["id"]
        created = self.consumer_json(stored)["created_at"]
        items = [
            self.credential_json(kind, i, cid, created) for i in stored.doc["spec"].get(CREDENTIALS[kind], [])
        ]
        return _page(request, items)

    async def create_credential(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        guard = Guard(request, "apply")
        await guard.allow("Consumer", NAMESPACE, "Consumer")
        stored = await self._find_consumer(guard, request.match_info["consumer"])
        body = await _body(request)
        item, shown = await self._new_credential(guard, kind, body)
        item["id"] = str(uuid.uuid4())
        item["createdAt"] = int(time.time())  # kept beside the credential (Kong's created_at)
        if body.get("tags"):
            item["tags"] = body["tags"]
        doc = json.loads(json.dumps(stored.doc))
        doc["metadata"].pop("resourceVersion", None)
        doc["spec"].setdefault(CREDENTIALS[kind], []).append(item)
        await self._apply(guard, doc)
        cid = self.consumer_json(stored)["id"]
        return _json({**self.credential_json(kind, item, cid, item["createdAt"]), **shown}, 201)

    async def _new_credential(
        self, guard: Guard, kind: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The stored entry and the fields shown once (a generated key or secret)."""
        consumers = await self._list(guard, "Consumer")
        if kind == "key-auth":
            key = str(body.get("key") or secrets.token_hex(16))
            digest = credentials.hash_api_key(key, self._key())
            if any(k.get("keyHash") == digest for s in consumers for k in s.doc["spec"].get("keyAuth", [])):
                raise _unique_violation("key", key)
            return {"keyHash": digest}, {"key": key}
        if kind == "basic-auth":
            username, password = body.get("username"), body.get("password")
            if not username or not password:
                raise _schema_violation(
                    {k: "required field missing" for k in ("username", "password") if not body.get(k)}
                )
            if any(
                b.get("username") == username for s in consumers for b in s.doc["spec"].get("basicAuth", [])
            ):
                raise _unique_violation("username", username)
            return {"username": username, "password": password}, {}
        if kind == "jwt":
            key = str(body.get("key") or secrets.token_hex(16))
            algorithm = str(body.get("algorithm") or "HS256")
            if any(j.get("key") == key for s in consumers for j in s.doc["spec"].get("jwt", [])):
                raise _unique_violation("key", key)
            if algorithm == "HS256":
                secret = str(body.get("secret") or secrets.token_hex(16))
                return {"key": key, "algorithm": algorithm, "secret": secret}, {"secret": secret}
            return {"key": key, "algorithm": algorithm, "rsaPublicKey": body.get("rsa_public_key", "")}, {}
        group = body.get("group")
        if not group:
            raise _schema_violation({"group": "required field missing"})
        return {"group": group}, {}

    def _key(self) -> bytes:
        key: bytes = getattr(self.backend, "credential_key", b"")
        return key

    async def delete_credential(self, request: web.Request) -> web.Response:
        kind, ref = request.match_info["kind"], request.match_info["id"]
        guard = Guard(request, "apply")
        await guard.allow("Consumer", NAMESPACE, "Consumer")
        stored = await self._find_consumer(guard, request.match_info["consumer"])
        doc = json.loads(json.dumps(stored.doc))
        doc["metadata"].pop("resourceVersion", None)
        items = doc["spec"].get(CREDENTIALS[kind], [])
        kept = [i for i in items if ref not in (i.get("id"), i.get("group"), i.get("username"), i.get("key"))]
        if len(kept) == len(items):
            raise _not_found()
        doc["spec"][CREDENTIALS[kind]] = kept
        await self._apply(guard, doc)
        return web.Response(status=204)

    # ---- plugins ---------------------------------------------------------------------------------

    def plugin_json(self, stored: StoredResource, consumers: Mapping[str, str]) -> dict[str, Any]:
        r = stored.resource
        spec: PluginSpec = r.spec
        try:
            config = dataclasses.asdict(plugin_config(spec))
        except ConfigError:
            config = dict(spec.config) if isinstance(spec.config, dict) else {}
        return {
            "id": plugin_id(r),
            "name": spec.plugin,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
            "service": {"id": spec.service} if spec.service else None,
            "route": {"id": spec.route} if spec.route else None,
            "consumer": {"id": consumers.get(spec.consumer, spec.consumer)} if spec.consumer else None,
            "enabled": spec.enabled,
            "protocols": ["grpc", "grpcs", "http", "https"],
            "tags": list(spec.tags) or None,
            "created_at": int(r.annotations.get(CREATED, "0") or 0),
        }

    async def _consumer_ids(self, guard: Guard) -> dict[str, str]:
        return {s.resource.name: consumer_id(s.resource) for s in await self._list(guard, "Consumer")}

    async def list_plugins(self, request: web.Request) -> web.Response:
        guard = Guard(request, "list")
        await guard.allow("Plugin", NAMESPACE, "Plugin")
        ids = await self._consumer_ids(guard)
        items = [self.plugin_json(s, ids) for s in await self._list(guard, "Plugin")]
        scope = request.match_info.get("consumer")
        if scope is not None:
            found = await self._find_consumer(guard, scope)
            items = [i for i in items if i["consumer"] == {"id": consumer_id(found.resource)}]
        return _page(request, sorted(items, key=lambda i: (i["created_at"], i["id"])))

    async def create_plugin(self, request: web.Request) -> web.Response:
        guard = Guard(request, "apply")
        await guard.allow("Plugin", NAMESPACE, "Plugin")
        body = await _body(request)
        name = str(body.get("name"))
        if name not in PLUGIN_CONFIGS:
            raise _schema_violation({"name": f"plugin '{name}' not enabled; is it loaded?"})
        consumer_ref = _ref(body.get("consumer")) or request.match_info.get("consumer")
        consumer_name = ""
        if consumer_ref:
            consumer_name = (await self._find_consumer(guard, consumer_ref)).resource.name
        spec: dict[str, Any] = {"plugin": name, "config": _arrays(name, body.get("config") or {})}
        service = _ref(body.get("service")) or request.match_info.get("service")
        route = _ref(body.get("route")) or request.match_info.get("route")
        for key, value in (
            ("service", service),
            ("route", route),
            ("consumer", consumer_name),
            ("tags", body.get("tags")),
        ):
            if value:
                spec[key] = value
        if "enabled" in body:
            spec["enabled"] = bool(body["enabled"])
        ids = await self._consumer_ids(guard)
        for stored in await self._list(guard, "Plugin"):
            s = stored.resource.spec
            if (s.plugin, s.service, s.route, s.consumer) == (
                name,
                service or "",
                route or "",
                consumer_name,
            ):
                raise _unique_violation("name", name)
        resource = resource_name(f"{name}-{uuid.uuid4().hex[:8]}")
        await self._apply(guard, self._doc("Plugin", resource, spec, int(time.time())))
        stored_new = await guard.store(
            lambda: self.backend.store.get("Plugin", NAMESPACE, resource), "Plugin"
        )
        assert stored_new is not None
        return _json(self.plugin_json(stored_new, ids), 201)

    async def _find_plugin(self, guard: Guard, ref: str) -> StoredResource:
        for stored in await self._list(guard, "Plugin"):
            if plugin_id(stored.resource) == ref:
                return stored
        raise _not_found()

    async def get_plugin(self, request: web.Request) -> web.Response:
        guard = Guard(request, "get")
        await guard.allow("Plugin", NAMESPACE, "Plugin")
        stored = await self._find_plugin(guard, request.match_info["id"])
        return _json(self.plugin_json(stored, await self._consumer_ids(guard)))

    async def update_plugin(self, request: web.Request) -> web.Response:
        guard = Guard(request, "apply")
        await guard.allow("Plugin", NAMESPACE, "Plugin")
        stored = await self._find_plugin(guard, request.match_info["id"])
        body = await _body(request)
        doc = json.loads(json.dumps(stored.doc))
        doc["metadata"].pop("resourceVersion", None)
        if "config" in body:
            doc["spec"]["config"] = {**(doc["spec"].get("config") or {}), **body["config"]}
        if "enabled" in body:
            doc["spec"]["enabled"] = bool(body["enabled"])
        if "tags" in body:
            doc["spec"]["tags"] = body["tags"]
        await self._apply(guard, doc)
        fresh = await self._find_plugin(guard, request.match_info["id"])
        return _json(self.plugin_json(fresh, await self._consumer_ids(guard)))

    async def delete_plugin(self, request: web.Request) -> web.Response:
        guard = Guard(request, "delete")
        await guard.allow("Plugin", NAMESPACE, "Plugin")
        try:
            stored = await self._find_plugin(guard, request.match_info["id"])
        except ApiError:
            return web.Response(status=204)
        await self._delete(guard, "Plugin", stored.resource.name)
        return web.Response(status=204)

    # ---- upstreams and targets -------------------------------------------------------------------

    def upstream_json(self, stored: StoredResource) -> dict[str, Any]:
        r = stored.resource
        name = r.annotations.get(UPSTREAM, r.spec.host)
        lb = (stored.doc["spec"].get("trafficPolicy") or {}).get("loadBalancer") or {}
        algorithm, hash_on = "round-robin", "none"
        header = cookie = None
        cookie_path = "/"
        if lb.get("simple") == "LEAST_REQUEST":
            algorithm = "least-connections"
        consistent = lb.get("consistentHash")
        if consistent:
            algorithm = "consistent-hashing"
            if "httpHeaderName" in consistent:
                hash_on, header = "header", consistent["httpHeaderName"]
            elif "httpCookie" in consistent:
                hash_on, cookie = "cookie", consistent["httpCookie"]["name"]
                cookie_path = consistent["httpCookie"].get("path", "/")
            elif consistent.get("useSourceIp"):
                hash_on = "ip"
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"pilotfish:upstream:{name}")),
            "name": name,
            "algorithm": algorithm,
            "hash_on": hash_on,
            "hash_fallback": "none",
            "hash_on_header": header,
            "hash_on_cookie": cookie,
            "hash_on_cookie_path": cookie_path,
            "slots": 10000,
            "tags": json.loads(r.annotations.get("pilotfish.io/kong-tags", "null")),
            "created_at": int(r.annotations.get(CREATED, "0") or 0),
        }

    async def _upstreams(self, guard: Guard) -> list[StoredResource]:
        return [s for s in await self._list(guard, "DestinationRule") if UPSTREAM in s.resource.annotations]

    async def _find_upstream(self, guard: Guard, ref: str) -> StoredResource:
        for stored in await self._upstreams(guard):
            item = self.upstream_json(stored)
            if ref in (item["id"], item["name"]):
                return stored
        raise _not_found()

    def _upstream_doc(self, body: Mapping[str, Any], created: int) -> dict[str, Any]:
        name = str(body.get("name") or "")
        algorithm = body.get("algorithm") or (
            "consistent-hashing" if body.get("hash_on", "none") != "none" else "round-robin"
        )
        lb: dict[str, Any]
        if algorithm == "round-robin":
            lb = {"simple": "ROUND_ROBIN"}
        elif algorithm == "least-connections":
            lb = {"simple": "LEAST_REQUEST"}
        elif algorithm == "consistent-hashing":
            hash_on = body.get("hash_on", "none")
            if hash_on == "header" and body.get("hash_on_header"):
                lb = {"consistentHash": {"httpHeaderName": body["hash_on_header"]}}
            elif hash_on == "cookie" and body.get("hash_on_cookie"):
                cookie = {
                    "name": body["hash_on_cookie"],
                    "path": body.get("hash_on_cookie_path", "/"),
                    "ttl": "0s",
                }
                lb = {"consistentHash": {"httpCookie": cookie}}
            elif hash_on == "ip":
                lb = {"consistentHash": {"useSourceIp": True}}
            else:
                raise _schema_violation(
                    {
                        "hash_on": "consistent-hashing needs hash_on header (with hash_on_header), "
                        "cookie (with hash_on_cookie) or ip"
                    }
                )
        else:
            raise _schema_violation(
                {"algorithm": "expected one of: round-robin, least-connections, consistent-hashing"}
            )
        doc = self._doc(
            "DestinationRule",
            resource_name(f"kong-{name}"),
            {"host": upstream_host(name), "trafficPolicy": {"loadBalancer": lb}},
            created,
        )
        doc["apiVersion"] = "networking.istio.io/v1"
        doc["metadata"]["annotations"][UPSTREAM] = name
        if body.get("tags"):
            doc["metadata"]["annotations"]["pilotfish.io/kong-tags"] = json.dumps(body["tags"])
        return doc

    async def list_upstreams(self, request: web.Request) -> web.Response:
        guard = Guard(request, "list")
        await guard.allow("DestinationRule", NAMESPACE, "DestinationRule")
        items = [self.upstream_json(s) for s in await self._upstreams(guard)]
        return _page(request, sorted(items, key=lambda i: (i["created_at"], i["id"])))

    async def create_upstream(self, request: web.Request) -> web.Response:
        guard = Guard(request, "apply")
        await guard.allow("DestinationRule", NAMESPACE, "DestinationRule")
        body = await _body(request)
        if not body.get("name"):
            raise _schema_violation({"name": "required field missing"})
        if any(self.upstream_json(s)["name"] == body["name"] for s in await self._upstreams(guard)):
            raise _unique_violation("name", body["name"])
        await self._apply(guard, self._upstream_doc(body, int(time.time())))
        return _json(self.upstream_json(await self._find_upstream(guard, str(body["name"]))), 201)

    async def get_upstream(self, request: web.Request) -> web.Response:
        guard = Guard(request, "get")
        await guard.allow("DestinationRule", NAMESPACE, "DestinationRule")
        return _json(self.upstream_json(await self._find_upstream(guard, request.match_info["upstream"])))

    async def update_upstream(self, request: web.Request) -> web.Response:
        guard = Guard(request, "apply")
        await guard.allow("DestinationRule", NAMESPACE, "DestinationRule")
        stored = await self._find_upstream(guard, request.match_info["upstream"])
        current = self.upstream_json(stored)
        body = {**current, **(await _body(request)), "name": current["name"]}
        await self._apply(guard, self._upstream_doc(body, current["created_at"]))
        return _json(self.upstream_json(await self._find_upstream(guard, current["name"])))

    async def delete_upstream(self, request: web.Request) -> web.Response:
        guard = Guard(request, "delete")
        await guard.allow("DestinationRule", NAMESPACE, "DestinationRule")
        try:
            stored = await self._find_upstream(guard, request.match_info["upstream"])
        except ApiError:
            return web.Response(status=204)
        store = self.backend.store
        for reg in await self._targets(guard, upstream_host(self.upstream_json(stored)["name"])):
            await guard.store(partial(store.deregister, reg.id), f"Registration/{reg.id}")
        await self._delete(guard, "DestinationRule", stored.resource.name)
        return web.Response(status=204)

    async def _targets(self, guard: Guard, host: str) -> list[Registration]:
        regs = await guard.store(self.backend.store.registrations, "Registration")
        return [r for r in regs if r.id.startswith(TARGET_PREFIX) and r.service == host]

    def target_json(self, reg: Registration, upstream_id: str) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"pilotfish:{reg.id}")),
            "target": f"{reg.address}:{reg.port}",
            "weight": int(reg.labels.get("kong-weight", reg.weight)),
            "upstream": {"id": upstream_id},
            "tags": json.loads(reg.labels.get("kong-tags", "null")),
            "created_at": int(reg.labels.get("kong-created-at", "0")),
        }

    async def list_targets(self, request: web.Request) -> web.Response:
        guard = Guard(request, "list")
        await guard.allow(rbac.REGISTRATION_KIND, "", rbac.REGISTRATION_KIND)
        upstream = self.upstream_json(await self._find_upstream(guard, request.match_info["upstream"]))
        targets = await self._targets(guard, upstream_host(upstream["name"]))
        items = [self.target_json(r, upstream["id"]) for r in targets]
        return _page(request, sorted(items, key=lambda i: (i["created_at"], i["id"])))

    async def create_target(self, request: web.Request) -> web.Response:
        guard = Guard(request, "register")
        upstream = self.upstream_json(await self._find_upstream(guard, request.match_info["upstream"]))
        host = upstream_host(upstream["name"])
        await guard.allow(rbac.REGISTRATION_KIND, self.backend.registration_namespace(host), "Registration")
        body = await _body(request)
        target = str(body.get("target") or "")
        address, _, port_text = target.rpartition(":")
        if not address or not port_text.isdigit():
            address, port_text = target, "8000"  # Kong's default target port
        weight = body.get("weight", 100)
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 65535:
            raise _schema_violation({"weight": "value should be between 0 and 65535"})
        reg_id = f"{TARGET_PREFIX}{host}/{address}:{port_text}"
        labels = {"kong-weight": str(weight), "kong-created-at": str(int(time.time()))}
        if body.get("tags"):
            labels["kong-tags"] = json.dumps(body["tags"])
        try:
            reg = Registration(
                reg_id,
                host,
                address.strip("[]"),
                int(port_text),
                labels,
                max(weight, 1),
                ttl_seconds=TARGET_TTL,
                draining=weight == 0,  # weight 0: disabled (Kong)
            )
        except ConfigError as exc:
            raise _schema_violation({p.path: p.message for p in exc.problems}) from None
        now = self.backend.now()
        await guard.store(lambda: self.backend.store.register(reg, now), f"Registration/{reg_id}")
        await guard.done(f"Registration/{reg_id}", f"201 kong target {target}")
        return _json(self.target_json(reg, upstream["id"]), 201)

    async def _find_target(self, guard: Guard, request: web.Request) -> tuple[Registration, str]:
        upstream = self.upstream_json(await self._find_upstream(guard, request.match_info["upstream"]))
        ref = request.match_info["target"]
        for reg in await self._targets(guard, upstream_host(upstream["name"])):
            if ref in (self.target_json(reg, upstream["id"])["id"], f"{reg.address}:{reg.port}"):
                await guard.allow(
                    rbac.REGISTRATION_KIND, self.backend.registration_namespace(reg.service), "Registration"
                )
                return reg, upstream["id"]
        raise _not_found()

    async def delete_target(self, request: web.Request) -> web.Response:
        guard = Guard(request, "register")
        reg, _ = await self._find_target(guard, request)
        await guard.store(lambda: self.backend.store.deregister(reg.id), f"Registration/{reg.id}")
        await guard.done(f"Registration/{reg.id}", "204 kong target deleted")
        return web.Response(status=204)

    async def set_target_health(self, request: web.Request) -> web.Response:
        guard = Guard(request, "register")
        reg, _ = await self._find_target(guard, request)
        healthy = request.match_info["health"] == "healthy"
        weight = int(reg.labels.get("kong-weight", "1"))
        labels = {**reg.labels, "kong-health": "healthy" if healthy else "unhealthy"}
        updated = dataclasses.replace(reg, labels=labels, draining=not healthy or weight == 0, expires_at=0.0)
        now = self.backend.now()
        await guard.store(lambda: self.backend.store.register(updated, now), f"Registration/{reg.id}")
        await guard.done(f"Registration/{reg.id}", f"204 kong target {request.match_info['health']}")
        return web.Response(status=204)

    async def root(self, request: web.Request) -> web.Response:
        return _json(
            {
                "tagline": "Welcome to kong",
                "version": "3.9.0-pilotfish",
                "hostname": "pilotfish",
                "plugins": {"available_on_server": {n: True for n in PLUGIN_CONFIGS}},
            }
        )


def _arrays(plugin: str, config: Any) -> Any:
    """Form bodies give one value where the schema wants an array (``config.allow=gold``)."""
    if not isinstance(config, dict):
        return config
    fields = {f.name: f.default for f in dataclasses.fields(PLUGIN_CONFIGS[plugin])}
    return {
        k: [v] if isinstance(fields.get(k), tuple) and not isinstance(v, list) else v
        for k, v in config.items()
    }


def upstream_host(name: str) -> str:
    """The mesh host of a Kong upstream: its name, with ``_`` (common in Kong's examples, not
    allowed in a DNS name) as ``-``."""
    return name.replace("_", "-").lower()


def _ref(value: Any) -> str | None:
    """``{"id": x}`` / ``{"name": x}`` / ``{"username": x}`` / ``"x"`` → ``x``."""
    if isinstance(value, Mapping):
        found = value.get("id") or value.get("name") or value.get("username")
        return str(found) if found else None
    return str(value) if value else None


def build_app(backend: RegistryBackend, policy: rbac.Policy) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    app[REGISTRY] = backend
    app[POLICY] = policy
    k = KongAdmin(backend)
    credential = r"{kind:key-auth|basic-auth|jwt|acls}"
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/", k.root),
        ("GET", "/consumers", k.list_consumers),
        ("POST", "/consumers", k.create_consumer),
        ("GET", "/consumers/{consumer}", k.get_consumer),
        ("PATCH", "/consumers/{consumer}", k.update_consumer),
        ("DELETE", "/consumers/{consumer}", k.delete_consumer),
        ("GET", f"/consumers/{{consumer}}/{credential}", k.list_credentials),
        ("POST", f"/consumers/{{consumer}}/{credential}", k.create_credential),
        ("DELETE", f"/consumers/{{consumer}}/{credential}/{{id}}", k.delete_credential),
        ("GET", "/consumers/{consumer}/plugins", k.list_plugins),
        ("POST", "/consumers/{consumer}/plugins", k.create_plugin),
        ("POST", "/services/{service}/plugins", k.create_plugin),
        ("POST", "/routes/{route}/plugins", k.create_plugin),
        ("GET", "/plugins", k.list_plugins),
        ("POST", "/plugins", k.create_plugin),
        ("GET", "/plugins/{id}", k.get_plugin),
        ("PATCH", "/plugins/{id}", k.update_plugin),
        ("DELETE", "/plugins/{id}", k.delete_plugin),
        ("GET", "/upstreams", k.list_upstreams),
        ("POST", "/upstreams", k.create_upstream),
        ("GET", "/upstreams/{upstream}", k.get_upstream),
        ("PATCH", "/upstreams/{upstream}", k.update_upstream),
        ("DELETE", "/upstreams/{upstream}", k.delete_upstream),
        ("GET", "/upstreams/{upstream}/targets", k.list_targets),
        ("POST", "/upstreams/{upstream}/targets", k.create_target),
        ("DELETE", "/upstreams/{upstream}/targets/{target}", k.delete_target),
        ("PUT", "/upstreams/{upstream}/targets/{target}/{health:healthy|unhealthy}", k.set_target_health),
        ("POST", "/upstreams/{upstream}/targets/{target}/{health:healthy|unhealthy}", k.set_target_health),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _kong_errors(handler))
    return app


async def start(
    backend: RegistryBackend, policy: rbac.Policy, host: str, port: int
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(build_app(backend, policy), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, int(bound)


async def renew_targets(backend: RegistryBackend, every: float = RENEW_EVERY) -> None:
    """Keep Kong targets' leases alive: a target lives until deleted, as in Kong. The first pass
    runs at start: a target whose lease lapsed while pilotfish was down is registered again
    within the lease recovery grace, before the reaper may take it."""
    while True:
        regs = await backend.run(backend.store.registrations)
        now = backend.now()
        for reg in regs:
            if reg.id.startswith(TARGET_PREFIX):
                renewed = await backend.run(partial(backend.store.heartbeat, reg.id, now))
                if renewed is None:
                    await backend.run(partial(backend.store.register, reg, now))
        await asyncio.sleep(every)
