"""How Kong credentials are kept: never in the clear once applied (pure, but for ``load_key``).

* **API keys** (``key-auth``) are stored as ``hmac-sha256:<hex>``: HMAC-SHA256 of the key under
  the server's *credential key*. A Check hashes the key the client sent the same way, so finding
  its consumer stays one dict lookup, and a leaked database alone does not let anyone test
  guessed keys (the credential key lives in a file beside the CA key, never in the store).
* **Passwords** (``basic-auth``) are stored with scrypt (``cryptography``'s ``Scrypt``, RFC 7914;
  N=2^14, r=8, p=1, 16-byte random salt) as ``scrypt$N$r$p$<salt b64>$<hash b64>`` — a slow
  password hash, not Kong's salted SHA-1. A verified (username, password) pair is remembered
  for the process by its HMAC, so a client repeating its credentials costs one scrypt, not one
  per request.
* **JWT HMAC secrets** (HS256) must be read back to verify signatures, so they cannot be hashed:
  they are sealed with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from the credential
  key (HKDF-SHA256) and stored as ``fernet:<token>``. RS256/ES256 credentials hold only a public key.

``seal_consumer`` turns a Consumer document as a user wrote it (``key``, ``password``, ``secret``)
into the stored form (``keyHash``, ``passwordHash``, ``secretSealed``) and gives every credential
an ``id`` (Kong's credential UUID, sent upstream as ``X-Credential-Identifier``; derived from
what names the credential, ``credential_id``). The admin APIs call it before writing; ``get``
and the APIs then only ever show hashes and sealed values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidKey
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

KEY_PREFIX = "hmac-sha256:"
SCRYPT_PREFIX = "scrypt$"
SEALED_PREFIX = "fernet:"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
KEY_BYTES = 32


def load_key(path: Path) -> bytes:
    """The credential key in ``path``; created (32 random bytes, mode 0600) when missing.
    Replicas sharing a store must share this file, as they share the CA."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = secrets.token_bytes(KEY_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    if len(data) < 16:
        raise ValueError(f"{path}: a credential key has at least 16 bytes")
    return data


def hash_api_key(key: str, credential_key: bytes) -> str:
    return KEY_PREFIX + hmac.new(credential_key, key.encode(), hashlib.sha256).hexdigest()


def _scrypt(salt: bytes, n: int, r: int, p: int) -> Scrypt:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p)


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).derive(password.encode())
    b64 = base64.b64encode
    return f"{SCRYPT_PREFIX}{SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a ``hash_password`` value (constant time in the digest)."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        kdf = _scrypt(base64.b64decode(salt), int(n), int(r), int(p))
        kdf.verify(password.encode(), base64.b64decode(digest))
    except (ValueError, InvalidKey):
        return False
    return True


def _fernet(credential_key: bytes) -> Fernet:
    derived = HKDF(hashes.SHA256(), 32, salt=None, info=b"pilotfish jwt secrets").derive(credential_key)
    return Fernet(base64.urlsafe_b64encode(derived))


def seal_secret(secret: str, credential_key: bytes) -> str:
    return SEALED_PREFIX + _fernet(credential_key).encrypt(secret.encode()).decode()


def open_secret(sealed: str, credential_key: bytes) -> str | None:
    """The secret of a ``seal_secret`` value; ``None`` when sealed under another key."""
    try:
        return _fernet(credential_key).decrypt(sealed.removeprefix(SEALED_PREFIX).encode()).decode()
    except (InvalidToken, ValueError):
        return None


# What names a credential within its consumer (its id derives from it when none is given).
IDENTITY = {"keyAuth": "keyHash", "basicAuth": "username", "jwt": "key", "acls": "group"}


def credential_id(consumer: str, kind: str, identity: str) -> str:
    """The id of a credential written without one: stable for the consumer (namespace/name),
    the credential kind and what names it (key hash, username, JWT key, group), so applying
    the same document twice gives the same ids."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pilotfish:{consumer}:{kind}:{identity}"))


def seal_consumer(doc: Mapping[str, Any], credential_key: bytes) -> dict[str, Any]:
    """The stored form of a Consumer document: clear-text secrets replaced by their hashes or
    sealed values, every credential with an ``id``. Other documents are returned unchanged."""
    out = dict(doc)
    spec = out.get("spec")
    if out.get("kind") != "Consumer" or not isinstance(spec, Mapping):
        return out
    spec = dict(spec)
    metadata = out.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    consumer = f"{metadata.get('namespace') or 'default'}/{metadata.get('name')}"
    for field, secret, stored, seal in (
        ("keyAuth", "key", "keyHash", lambda v: hash_api_key(v, credential_key)),
        ("basicAuth", "password", "passwordHash", hash_password),
        ("jwt", "secret", "secretSealed", lambda v: seal_secret(v, credential_key)),
        ("acls", None, None, None),
    ):
        items = spec.get(field) or spec.get(_snake(field))
        if not isinstance(items, list):
            continue
        sealed = []
        for item in items:
            item = dict(item) if isinstance(item, Mapping) else item
            if isinstance(item, dict):
                if secret is not None and stored is not None and seal is not None and item.get(secret):
                    item[stored] = seal(str(item.pop(secret)))
                identity = str(item.get(IDENTITY[field], ""))
                item.setdefault("id", credential_id(consumer, field, identity))
            sealed.append(item)
        spec.pop(_snake(field), None)
        spec[field] = sealed
    out["spec"] = spec
    return out


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
