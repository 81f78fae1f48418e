"""The resource and registration REST API of the admin port (OpenAPI: ``GET /openapi.yaml``).

Resources (kubectl's verbs over the store)::

    POST|PUT /apis[/{kind}]                       apply one or more YAML/JSON documents (?file=NAME
                                                  names them in problems); all validate or none is written
    GET      /apis/{kind}[?namespace=NS]          list          GET /apis/{kind}/{ns}/{name}  get
    DELETE   /apis/{kind}/{ns}/{name}             delete
    GET      /apis/{kind}/{ns}/{name}/history     every revision that wrote it
    POST     /apis/{kind}/{ns}/{name}/rollback    {"revision": N}: write revision N's document again

Registrations (leases, Kong's targets)::

    POST   /registrations                 {service, address, port, labels?, weight?, ttlSeconds?, ...} → 201
    PUT    /registrations/{id}/heartbeat  renew; 404 once the lease is gone (register again)
    DELETE /registrations/{id}            leave now     GET /registrations[?service=HOST]  list

Every request names a subject (``rbac``): a bearer token with ``--admin-tokens``, else where it
comes from. 401 without a valid token, 403 when the subject's roles do not allow it — decided
before the body is read: a caller whose roles allow no write of the kind gets 403 for a body
never parsed (a read-only token cannot make the server parse a YAML bomb). Bodies are bounded
(``limits``: size, documents, alias expansion, nesting), must be UTF-8 (else 400) and arrive
within ``BODY_TIMEOUT_SECONDS`` (else 408); an upload the client abandons is one log line. Every
mutating request — allowed, denied or failed — is written to the store's audit log, except
heartbeats that renewed a lease: they change nothing anyone can see, and at one every few seconds
per workload they would drown the log.

Store calls are blocking, so they run in a thread (``RegistryBackend.run``); an outage
(``StoreUnavailable``) answers 503 with ``Retry-After``, for reads and writes alike, and nothing
is written. Resources from ``--config DIR`` are read-only here: applying or deleting one answers
409 naming its file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from importlib import resources as package_files
from typing import Any, Protocol, TypeVar

from aiohttp import web

from pilotfish.admin import rbac
from pilotfish.config.kinds import KINDS
from pilotfish.config.loader import load_documents, namespace_of
from pilotfish.config.source import RawDocument, parse_documents, to_plain
from pilotfish.errors import ConfigError, Problem, StoreUnavailable
from pilotfish.limits import MAX_TEXT_BYTES, loads_json
from pilotfish.lograte import RateLimitedLog
from pilotfish.registry.from_config import LOCALITY_LABEL, label_locality
from pilotfish.store.base import Registration, ResourceKey, Store, StoredResource

log = logging.getLogger(__name__)
_late_renewals = RateLimitedLog(log, burst=20, window=60.0)
_LATE_RENEWAL = "lease %s had lapsed, not yet reaped: renewed by its heartbeat"

T = TypeVar("T")

RETRY_AFTER_SECONDS = "1"
# A body trickled in slower than this holds a handler (and a store connection's turn) hostage.
BODY_TIMEOUT_SECONDS = 30.0
# Set by the server on the way out; stripped on the way in so `get -o yaml | apply` is a no-op.
SERVER_FIELDS = ("resourceVersion",)
# Registration body field (camelCase, as in every other API document) → (Registration attribute,
# the JSON types it takes). bool is an int in Python, so it is refused where it is not listed.
REGISTRATION_FIELDS: Mapping[str, tuple[str, tuple[type, ...]]] = {
    "id": ("id", (str,)),
    "service": ("service", (str,)),
    "address": ("address", (str,)),
    "port": ("port", (int,)),
    "labels": ("labels", (dict,)),
    "weight": ("weight", (int,)),
    "serviceAccount": ("service_account", (str,)),
    "ttlSeconds": ("ttl_seconds", (int, float)),
    "draining": ("draining", (bool,)),
}
REQUIRED_REGISTRATION_FIELDS = ("service", "address", "port")
# ``locality`` (region/zone/subzone) travels as Istio's ``istio-locality`` label (region.zone.subzone).
LOCALITY_FIELD = "locality"


class RegistryBackend(Protocol):
    """What the API needs of the running server (``app.py`` implements it)."""

    store: Store

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` in a thread; records the store's health; raises ``StoreUnavailable``."""
        ...

    def file_origin(self, key: ResourceKey) -> str | None:
        """``file:line`` when ``--config DIR`` defines the resource (read-only here)."""
        ...

    def registration_namespace(self, service: str) -> str:
        """The namespace RBAC uses for a registration joining ``service``."""
        ...

    def now(self) -> float: ...

    def seal(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The document as stored: a Consumer's clear-text secrets hashed or sealed
        (``kong.credentials.seal_consumer``); other documents unchanged."""
        ...


REGISTRY: web.AppKey[RegistryBackend] = web.AppKey("registry")
POLICY: web.AppKey[rbac.Policy] = web.AppKey("rbac_policy")


class ApiError(Exception):
    """An answer other than success, raised from deep in a handler."""

    def __init__(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(body.get("error", status))
        self.status, self.body, self.headers = status, dict(body), dict(headers or {})


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=2, sort_keys=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def problem_json(problem: Problem) -> dict[str, Any]:
    return {**asdict(problem), "text": str(problem)}


# ---- who is asking ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str | None  # None: no tokens file, decided by where the request comes from
    loopback: bool

    @property
    def name(self) -> str:
        """For the audit log."""
        if self.subject is not None:
            return self.subject
        return rbac.LOOPBACK_SUBJECT if self.loopback else rbac.ANONYMOUS_SUBJECT


def _is_loopback(remote: str | None) -> bool:
    return remote in ("127.0.0.1", "::1") or (remote or "").startswith("127.")


def authenticate(request: web.Request) -> Caller:
    """The caller, or 401 when tokens are in use and the request has no valid one."""
    policy = request.app[POLICY]
    loopback = _is_loopback(request.remote)
    if not policy.uses_tokens:
        return Caller(None, loopback)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    subject = policy.subject_of(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if subject is None:
        raise ApiError(
            401,
            {"error": "a valid bearer token is required"},
            {"WWW-Authenticate": 'Bearer realm="pilotfish"'},
        )
    return Caller(subject, loopback)


def decide(request: web.Request, caller: Caller, verb: str, kind: str, namespace: str) -> rbac.Decision:
    policy = request.app[POLICY]
    if caller.subject is None:
        return rbac.anonymous_policy_decision(caller.loopback, verb, kind)
    return rbac.authorize(policy, caller.subject, verb, kind, namespace)


async def audit(request: web.Request, caller: Caller, verb: str, target: str, result: str) -> None:
    backend = request.app[REGISTRY]
    entry = (caller.name, verb, target, result, backend.now())
    try:
        await backend.run(lambda: backend.store.audit(*entry))
    except StoreUnavailable as exc:  # the request itself already failed or succeeded; say so
        log.warning("audit entry not written (%s): %s", exc, entry)


Handler = Callable[[web.Request], Awaitable[web.Response]]


def endpoint(handler: Handler) -> Handler:
    """Turn ``ApiError`` / ``StoreUnavailable`` / ``ConfigError`` into their HTTP answers."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.body, exc.status, exc.headers)
        except (ConnectionError, web.RequestPayloadError) as exc:
            # The client went away mid-upload: nothing to answer and nothing was written.
            log.info("%s %s: the client abandoned the request (%s)", request.method, request.path, exc)
            return web.Response(status=400)

    return wrapped


async def read_body(request: web.Request) -> bytes:
    """The whole body, within ``MAX_TEXT_BYTES`` (413) and ``BODY_TIMEOUT_SECONDS`` (408)."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, {"error": f"the body did not arrive within {BODY_TIMEOUT_SECONDS:g}s"}) from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, {"error": f"the body is larger than {MAX_TEXT_BYTES} bytes"}) from None


async def read_text(request: web.Request) -> str:
    """The body as text: UTF-8, as YAML 1.2 and JSON require; anything else is 400."""
    raw = await read_body(request)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, {"error": f"the body is not UTF-8 (invalid byte at offset {exc.start})"}
        ) from None


class Guard:
    """One request's authorization and audit: ``allow`` raises 401/403 (audited for writes),
    ``done`` audits the outcome of a write."""

    def __init__(self, request: web.Request, verb: str) -> None:
        self.request, self.verb = request, verb
        self.mutating = verb not in rbac.READ_VERBS
        self.caller: Caller | None = None

    @property
    def actor(self) -> str:
        return self.caller.name if self.caller is not None else rbac.ANONYMOUS_SUBJECT

    async def authenticate(self, target: str) -> Caller:
        if self.caller is None:
            try:
                self.caller = authenticate(self.request)
            except ApiError:
                if self.mutating:
                    await audit(self.request, Caller(rbac.ANONYMOUS_SUBJECT, False), self.verb, target, "401")
                raise
        return self.caller

    async def allow_any(self, kind: str | None, target: str) -> None:
        """403 unless the caller may do the verb on ``kind`` (None: any kind) in some namespace:
        asked before the body is read, which then names the exact resources for ``allow``."""
        caller = await self.authenticate(target)
        if caller.subject is None:
            decision = rbac.anonymous_policy_decision(caller.loopback, self.verb, kind or rbac.ANY)
        else:
            decision = rbac.authorize_any(self.request.app[POLICY], caller.subject, self.verb, kind)
        if not decision.allowed:
            if self.mutating:
                await audit(self.request, caller, self.verb, target, f"403 {decision.reason}")
            raise ApiError(403, {"error": f"RBAC: access denied: {decision.reason}"})

    async def allow(self, kind: str, namespace: str, target: str) -> None:
        caller = await self.authenticate(target)
        decision = decide(self.request, caller, self.verb, kind, namespace)
        if not decision.allowed:
            if self.mutating:
                await audit(self.request, caller, self.verb, target, f"403 {decision.reason}")
            raise ApiError(403, {"error": f"RBAC: access denied: {decision.reason}"})

    async def store(self, call: Callable[[], T], target: str) -> T:
        """A store call; failures are audited (when mutating) and answered."""
        try:
            return await self.request.app[REGISTRY].run(call)
        except StoreUnavailable as exc:
            if self.mutating:
                await self.done(target, "503 store unavailable")
            raise ApiError(
                503, {"error": f"store unavailable: {exc}"}, {"Retry-After": RETRY_AFTER_SECONDS}
            ) from None
        except ConfigError as exc:
            if self.mutating:
                await self.done(target, "400 invalid")
            raise ApiError(
                400, {"error": "invalid", "problems": [problem_json(p) for p in exc.problems]}
            ) from None

    async def done(self, target: str, result: str) -> None:
        if self.mutating and self.caller is not None:
            await audit(self.request, self.caller, self.verb, target, result)


# ---- resources --------------------------------------------------------------------------------


def _known_kind(kind: str) -> str:
    if kind not in KINDS and kind not in rbac.UNREADABLE_KINDS:
        raise ApiError(404, {"error": f"unknown kind {kind!r} (known: {', '.join(sorted(KINDS))})"})
    return kind


def _with_revision(stored: StoredResource) -> dict[str, Any]:
    doc = json.loads(json.dumps(stored.doc))
    doc.setdefault("metadata", {})["resourceVersion"] = str(stored.revision)
    return dict(doc)


def _strip_server_fields(data: Any) -> dict[str, Any]:
    plain: dict[str, Any] = to_plain(data)
    metadata = plain.get("metadata")
    if isinstance(metadata, dict):
        for name in SERVER_FIELDS:
            metadata.pop(name, None)
    return plain


def _validated(text: str, file: str, path_kind: str | None) -> tuple[list[RawDocument], list[Problem]]:
    """Parse and validate as ``pilotfish validate`` does; 400 with every problem on any error."""
    try:
        docs = parse_documents(text, file)
    except ConfigError as exc:
        raise ApiError(
            400, {"error": "invalid", "problems": [problem_json(p) for p in exc.problems]}
        ) from None
    result = load_documents(docs)
    problems = list(result.problems)
    for resource in result.resources:
        if path_kind is not None and resource.kind != path_kind:
            problems.append(
                Problem(
                    f"this endpoint takes {path_kind}",
                    "kind",
                    resource.origin.file,
                    resource.origin.line,
                    resource.ref,
                )
            )
    errors = [p for p in problems if p.severity == "error"]
    if not docs:
        errors.append(Problem("no documents", file=file))
    if errors:
        raise ApiError(400, {"error": "invalid", "problems": [problem_json(p) for p in problems]})
    return docs, [p for p in problems if p.severity != "error"]


def _key_of(doc: Mapping[str, Any]) -> ResourceKey:
    metadata = doc.get("metadata") or {}
    kind = str(doc["kind"])
    return (kind, namespace_of(kind, metadata.get("namespace")), str(metadata["name"]))


def _apply_one(store: Store, doc: Mapping[str, Any], actor: str) -> tuple[int, str]:
    """Apply and tell kubectl's words: created, configured or unchanged."""
    before = store.get(*_key_of(doc))
    revision = store.apply(doc, actor=actor)
    if before is None:
        return revision, "created"
    return revision, "unchanged" if revision == before.revision else "configured"


@endpoint
async def apply(request: web.Request) -> web.Response:
    path_kind = request.match_info.get("kind")
    if path_kind is not None:
        _known_kind(path_kind)
    guard = Guard(request, "apply")
    await guard.allow_any(path_kind, "apis")
    docs, warnings = _validated(await read_text(request), request.query.get("file", "<request>"), path_kind)
    backend = request.app[REGISTRY]
    plain = [backend.seal(_strip_server_fields(d.data)) for d in docs]  # secrets never stored in the clear
    keys = [_key_of(d) for d in plain]
    for key in keys:
        await guard.allow(key[0], key[1], "/".join(key))
    for key in keys:
        await _refuse_file_owned(guard, key)
    store = request.app[REGISTRY].store
    applied = []
    for key, doc in zip(keys, plain, strict=True):
        target = "/".join(key)
        revision, result = await guard.store(partial(_apply_one, store, doc, guard.actor), target)
        await guard.done(target, f"200 {result} revision {revision}")
        applied.append(
            {"kind": key[0], "namespace": key[1], "name": key[2], "revision": revision, "result": result}
        )
    return _json({"applied": applied, "warnings": [problem_json(p) for p in warnings]})


async def _refuse_file_owned(guard: Guard, key: ResourceKey) -> None:
    origin = guard.request.app[REGISTRY].file_origin(key)
    if origin is not None:
        target = "/".join(key)
        await guard.done(target, f"409 defined in {origin}")
        raise ApiError(409, {"error": f"{target} is defined in {origin} (--config is read-only here)"})


@endpoint
async def list_resources(request: web.Request) -> web.Response:
    kind = _known_kind(request.match_info["kind"])
    namespace = request.query.get("namespace") or None
    guard = Guard(request, "list")
    await guard.allow(kind, namespace or "", kind)
    store = request.app[REGISTRY].store
    items = await guard.store(lambda: store.list(kind, namespace), kind)
    return _json({"apiVersion": "v1", "kind": "List", "items": [_with_revision(s) for s in items]})


@endpoint
async def get_resource(request: web.Request) -> web.Response:
    kind, namespace, name = _path_key(request)
    guard = Guard(request, "get")
    await guard.allow(kind, namespace, f"{kind}/{namespace}/{name}")
    store = request.app[REGISTRY].store
    stored = await guard.store(lambda: store.get(kind, namespace, name), kind)
    if stored is None:
        raise ApiError(404, {"error": f"{kind}/{namespace}/{name} not found"})
    return _json(_with_revision(stored))


def _path_key(request: web.Request) -> ResourceKey:
    info = request.match_info
    return (_known_kind(info["kind"]), info["namespace"], info["name"])


@endpoint
async def delete_resource(request: web.Request) -> web.Response:
    key = _path_key(request)
    target = "/".join(key)
    guard = Guard(request, "delete")
    await guard.allow(key[0], key[1], target)
    await _refuse_file_owned(guard, key)
    store = request.app[REGISTRY].store
    revision = await guard.store(partial(store.delete, *key, actor=guard.actor), target)
    if revision is None:
        await guard.done(target, "404")
        raise ApiError(404, {"error": f"{target} not found"})
    await guard.done(target, f"200 deleted revision {revision}")
    return _json({"deleted": {"kind": key[0], "namespace": key[1], "name": key[2], "revision": revision}})


@endpoint
async def history(request: web.Request) -> web.Response:
    key = _path_key(request)
    guard = Guard(request, "get")
    await guard.allow(key[0], key[1], "/".join(key))
    store = request.app[REGISTRY].store
    entries = await guard.store(lambda: store.history(*key), "/".join(key))
    if not entries:
        raise ApiError(404, {"error": f"{'/'.join(key)} has no history"})
    return _json({"history": [asdict(e) for e in entries]})


@endpoint
async def rollback(request: web.Request) -> web.Response:
    key = _path_key(request)
    target = "/".join(key)
    guard = Guard(request, "apply")
    await guard.allow(key[0], key[1], target)
    body = await _json_body(request)
    revision = body.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool):
        raise ApiError(400, {"error": 'body must be {"revision": N}'})
    await _refuse_file_owned(guard, key)
    store = request.app[REGISTRY].store
    written = await guard.store(partial(store.rollback, *key, revision, actor=guard.actor), target)
    await guard.done(target, f"200 rolled back to {revision} as revision {written}")
    return _json(
        {
            "rolledBack": {
                "kind": key[0],
                "namespace": key[1],
                "name": key[2],
                "to": revision,
                "revision": written,
            }
        }
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = loads_json(await read_text(request), "the body")
    except ValueError as exc:  # also the nesting limit
        raise ApiError(400, {"error": f"the body must be a JSON object: {exc}"}) from None
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "the body must be a JSON object"})
    return body


# ---- registrations ----------------------------------------------------------------------------


def registration_json(reg: Registration) -> dict[str, Any]:
    out = {name: getattr(reg, attr) for name, (attr, _types) in REGISTRATION_FIELDS.items()}
    locality = {LOCALITY_FIELD: label_locality(reg.labels)} if label_locality(reg.labels) else {}
    return {**out, "labels": dict(reg.labels), **locality, "expiresAt": reg.expires_at}


def parse_registration(body: Mapping[str, Any]) -> Registration:
    """A registration from a request body; ``ConfigError`` naming each bad field. Without an
    ``id``, the target's address names it, so registering the same target again renews it."""
    known = (*REGISTRATION_FIELDS, LOCALITY_FIELD)
    unknown = f"unknown field (known: {', '.join(known)})"
    problems = [Problem(unknown, name) for name in body if name not in known]
    locality = body.get(LOCALITY_FIELD, "")
    if not isinstance(locality, str) or (locality and not _locality_ok(locality)):
        problems.append(Problem("must be REGION[/ZONE[/SUBZONE]] with no empty level", LOCALITY_FIELD))
    problems += [Problem("required", name) for name in REQUIRED_REGISTRATION_FIELDS if name not in body]
    problems += [
        Problem(f"must be {' or '.join(t.__name__ for t in types)}", name)
        for name, (_attr, types) in REGISTRATION_FIELDS.items()
        if name in body and not _of_type(body[name], types)
    ]
    if problems:
        raise ConfigError(problems)
    fields = {attr: body[name] for name, (attr, _types) in REGISTRATION_FIELDS.items() if name in body}
    fields.setdefault("id", f"{body['address']}:{body['port']}@{body['service']}")
    if locality:
        fields["labels"] = {**fields.get("labels", {}), LOCALITY_LABEL: locality.replace("/", ".")}
    return Registration(**fields)


def _locality_ok(text: str) -> bool:
    parts = text.split("/")
    return len(parts) <= 3 and all(part and "." not in part for part in parts)


def _of_type(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


@endpoint
async def register(request: web.Request) -> web.Response:
    guard = Guard(request, "register")
    await guard.allow_any(rbac.REGISTRATION_KIND, "Registration")
    body = await _json_body(request)
    try:
        reg = parse_registration(body)
    except ConfigError as exc:
        raise ApiError(
            400, {"error": "invalid", "problems": [problem_json(p) for p in exc.problems]}
        ) from None
    backend = request.app[REGISTRY]
    target = f"Registration/{reg.id}"
    await guard.allow(rbac.REGISTRATION_KIND, backend.registration_namespace(reg.service), target)
    now = backend.now()
    lease = await guard.store(lambda: backend.store.register(reg, now), target)
    await guard.done(target, f"201 registered {reg.address}:{reg.port} in {reg.service}")
    return _json(
        {
            **registration_json(lease),
            "lease": {"ttlSeconds": lease.ttl_seconds, "expiresAt": lease.expires_at},
        },
        201,
    )


async def _find_registration(guard: Guard, id: str) -> Registration | None:
    store = guard.request.app[REGISTRY].store
    regs = await guard.store(store.registrations, f"Registration/{id}")
    return next((r for r in regs if r.id == id), None)


async def _allow_registration(guard: Guard, id: str) -> Registration:
    """404 for an unknown id (after authenticating: an anonymous caller learns nothing)."""
    backend = guard.request.app[REGISTRY]
    await guard.authenticate(f"Registration/{id}")
    reg = await _find_registration(guard, id)
    if reg is None:
        await guard.allow(rbac.REGISTRATION_KIND, "", f"Registration/{id}")
        await guard.done(f"Registration/{id}", "404")
        raise ApiError(404, {"error": f"no registration {id!r}: register again"})
    await guard.allow(
        rbac.REGISTRATION_KIND, backend.registration_namespace(reg.service), f"Registration/{id}"
    )
    return reg


@endpoint
async def heartbeat(request: web.Request) -> web.Response:
    id = request.match_info["id"]
    guard = Guard(request, "register")
    reg = await _allow_registration(guard, id)
    backend = request.app[REGISTRY]
    now = backend.now()
    renewed = await guard.store(lambda: backend.store.heartbeat(id, now), f"Registration/{id}")
    if renewed is None:
        # Past its expiry but not yet reaped — the reaper waits after a store outage or a restart,
        # when no heartbeat could land: renewing it then keeps a live workload in the mesh.
        renewed = await guard.store(lambda: backend.store.register(reg, now), f"Registration/{id}")
        # After a restart every live workload says this once: a burst, then a summary line.
        _late_renewals.log(logging.INFO, "late renewals", _LATE_RENEWAL, id)
    return _json(registration_json(renewed))


@endpoint
async def deregister(request: web.Request) -> web.Response:
    id = request.match_info["id"]
    target = f"Registration/{id}"
    guard = Guard(request, "register")
    await _allow_registration(guard, id)
    store = request.app[REGISTRY].store
    revision = await guard.store(lambda: store.deregister(id), target)
    if revision is None:
        await guard.done(target, "404")
        raise ApiError(404, {"error": f"no registration {id!r}"})
    await guard.done(target, f"200 deregistered revision {revision}")
    return _json({"deregistered": id, "revision": revision})


@endpoint
async def list_registrations(request: web.Request) -> web.Response:
    guard = Guard(request, "list")
    await guard.allow(rbac.REGISTRATION_KIND, "", rbac.REGISTRATION_KIND)
    store = request.app[REGISTRY].store
    regs = await guard.store(store.registrations, rbac.REGISTRATION_KIND)
    service = request.query.get("service")
    return _json({"items": [registration_json(r) for r in regs if service in (None, r.service)]})


async def openapi(request: web.Request) -> web.Response:
    await Guard(request, "get").allow(rbac.ENDPOINT_KINDS["/openapi.yaml"], "", "openapi")
    text = package_files.files("pilotfish.admin").joinpath("openapi.yaml").read_text()
    return web.Response(text=text, content_type="application/yaml")


def add_routes(app: web.Application, backend: RegistryBackend, policy: rbac.Policy) -> None:
    app[REGISTRY] = backend
    app[POLICY] = policy  # also set by admin.http for its own routes
    routes: Sequence[tuple[str, str, Handler]] = (
        ("POST", "/apis", apply),
        ("PUT", "/apis", apply),
        ("POST", "/apis/{kind}", apply),
        ("PUT", "/apis/{kind}", apply),
        ("GET", "/apis/{kind}", list_resources),
        ("GET", "/apis/{kind}/{namespace}/{name}", get_resource),
        ("DELETE", "/apis/{kind}/{namespace}/{name}", delete_resource),
        ("GET", "/apis/{kind}/{namespace}/{name}/history", history),
        ("POST", "/apis/{kind}/{namespace}/{name}/rollback", rollback),
        ("POST", "/registrations", register),
        ("GET", "/registrations", list_registrations),
        ("PUT", "/registrations/{id:.+}/heartbeat", heartbeat),
        ("DELETE", "/registrations/{id:.+}", deregister),
    )
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    app.router.add_get("/openapi.yaml", endpoint(openapi))
