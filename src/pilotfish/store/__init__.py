"""The datastore: resources with history, registration leases, audit log (see ``base``).

``open_store(url)`` picks the implementation from the URL's scheme:

* ``sqlite:///var/lib/pilotfish/store.db`` (absolute path) or ``sqlite:store.db`` (relative) —
  the embedded default;
* ``postgresql://user@host:5432/db`` (or ``postgres://``) — shared by several replicas.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pilotfish.errors import ConfigError, Problem
from pilotfish.store.base import (
    AuditEntry,
    Changes,
    HistoryEntry,
    Registration,
    ResourceKey,
    Revision,
    Store,
    StoredResource,
    Subscription,
)

__all__ = [
    "AuditEntry",
    "Changes",
    "HistoryEntry",
    "Registration",
    "ResourceKey",
    "Revision",
    "Store",
    "StoredResource",
    "Subscription",
    "open_store",
    "sqlite_path",
]

_USAGE = "use sqlite:///absolute/path.db, sqlite:relative/path.db or postgresql://user@host/db"


def open_store(url: str) -> Store:
    """The store named by ``url``; ``ConfigError`` for a URL that names none. Nothing is
    connected or created until the store is first used."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from pilotfish.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from pilotfish.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError([Problem(f"unknown store URL scheme {scheme!r} in {url!r}: {_USAGE}", "store")])


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:`` URL names. ``sqlite://host/...`` is refused: SQLite has no host."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path or parts.query or parts.fragment:
        raise ConfigError([Problem(f"bad SQLite store URL {url!r}: {_USAGE}", "store")])
    return parts.path
