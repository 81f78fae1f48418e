"""Consumer (pilotfish.io/v1alpha1): a Kong consumer and its credentials, in one document.

Kong keeps credentials as separate entities under ``/consumers/{c}/key-auth`` and so on, but
each belongs to exactly one consumer and is deleted with it (Kong's ``on_delete: cascade``).
Here they are fields of the Consumer: one document is one consumer's whole state, applied,
versioned and rolled back atomically, and a credential can never outlive or lose its consumer.
Kong's Admin API routes for credentials edit these lists.

Secrets may be written in the clear (``key``, ``password``, ``secret``); the admin API stores
them hashed or sealed (``keyHash``, ``passwordHash``, ``secretSealed``; see
``pilotfish.kong.credentials``), so ``get`` never shows them. A file under ``--config`` is the
operator's own and is read as written.

Field names follow Kong's Admin API (snake_case is accepted as well as camelCase):
https://developer.konghq.com/api/gateway/admin-ee/ (Consumers, Key-auth, Basic-auth, JWT, ACLs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config.decode import Message
from pilotfish.config.decode import field as jfield
from pilotfish.config.resource import Finding, Resource

JwtAlgorithm = Literal["HS256", "RS256", "ES256"]


@dataclass(frozen=True, slots=True)
class KeyAuthCredential(Message):
    key: str = ""  # clear text: accepted on input, replaced by keyHash when stored
    key_hash: str = ""
    id: str = ""
    tags: tuple[str, ...] = ()
    created_at: int = 0  # Unix seconds (Kong's created_at), set by the Kong Admin API


@dataclass(frozen=True, slots=True)
class BasicAuthCredential(Message):
    username: str = jfield(required=True)
    password: str = ""
    password_hash: str = ""
    id: str = ""
    tags: tuple[str, ...] = ()
    created_at: int = 0  # Unix seconds (Kong's created_at), set by the Kong Admin API


@dataclass(frozen=True, slots=True)
class JwtCredential(Message):
    key: str = jfield(required=True)  # matched against the token's iss (or key_claim_name)
    algorithm: JwtAlgorithm = "HS256"
    secret: str = ""  # HS256: clear text on input, replaced by secretSealed when stored
    secret_sealed: str = ""
    rsa_public_key: str = ""  # RS256/ES256: the PEM public key (Kong's field name for both)
    id: str = ""
    tags: tuple[str, ...] = ()
    created_at: int = 0  # Unix seconds (Kong's created_at), set by the Kong Admin API


@dataclass(frozen=True, slots=True)
class AclGroup(Message):
    group: str = jfield(required=True)
    id: str = ""
    tags: tuple[str, ...] = ()
    created_at: int = 0  # Unix seconds (Kong's created_at), set by the Kong Admin API


@dataclass(frozen=True, slots=True)
class ConsumerSpec(Message):
    username: str = ""
    custom_id: str = ""
    tags: tuple[str, ...] = ()
    key_auth: tuple[KeyAuthCredential, ...] = ()
    basic_auth: tuple[BasicAuthCredential, ...] = ()
    jwt: tuple[JwtCredential, ...] = ()
    acls: tuple[AclGroup, ...] = ()


def _unique(values: list[tuple[int, str]], field: str, what: str) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, value in values:
        if value in seen:
            yield Finding((field, i), f"{what} {value!r} already used at {field}[{seen[value]}]")
        seen.setdefault(value, i)


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: ConsumerSpec = resource.spec
    if not spec.username and not spec.custom_id:
        yield Finding((), "a consumer needs a username or a custom_id (Kong requires one of them)")
    for i, cred in enumerate(spec.key_auth):
        if bool(cred.key) == bool(cred.key_hash):
            yield Finding(("keyAuth", i), "exactly one of key and keyHash")
        elif cred.key_hash and not cred.key_hash.startswith("hmac-sha256:"):
            yield Finding(("keyAuth", i, "keyHash"), "must be an hmac-sha256: value written by pilotfish")
    for i, basic in enumerate(spec.basic_auth):
        if bool(basic.password) == bool(basic.password_hash):
            yield Finding(("basicAuth", i), "exactly one of password and passwordHash")
        elif basic.password_hash and not basic.password_hash.startswith("scrypt$"):
            yield Finding(("basicAuth", i, "passwordHash"), "must be a scrypt$ value written by pilotfish")
    yield from _unique([(i, b.username) for i, b in enumerate(spec.basic_auth)], "basicAuth", "username")
    for i, jwt in enumerate(spec.jwt):
        if jwt.algorithm == "HS256":
            if bool(jwt.secret) == bool(jwt.secret_sealed):
                yield Finding(("jwt", i), "HS256 needs exactly one of secret and secretSealed")
            if jwt.rsa_public_key:
                yield Finding(("jwt", i, "rsaPublicKey"), "only for RS256/ES256")
        else:
            if not jwt.rsa_public_key:
                yield Finding(("jwt", i, "rsaPublicKey"), f"{jwt.algorithm} needs the PEM public key")
            elif not _public_key_ok(jwt.rsa_public_key, jwt.algorithm):
                yield Finding(("jwt", i, "rsaPublicKey"), f"not a PEM {jwt.algorithm} public key")
            if jwt.secret or jwt.secret_sealed:
                yield Finding(("jwt", i, "secret"), "only for HS256")
    yield from _unique([(i, j.key) for i, j in enumerate(spec.jwt)], "jwt", "key")
    yield from _unique([(i, a.group) for i, a in enumerate(spec.acls)], "acls", "group")
    for i, acl in enumerate(spec.acls):
        if not acl.group.strip():
            yield Finding(("acls", i, "group"), "must not be empty")


def _public_key_ok(pem: str, algorithm: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        return False
    return isinstance(key, rsa.RSAPublicKey if algorithm == "RS256" else ec.EllipticCurvePublicKey)
