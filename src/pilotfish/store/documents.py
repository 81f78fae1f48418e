"""Documents in and out of storage: validate before writing, re-parse after reading.

Stored form is canonical JSON text (sorted keys, no whitespace), so "is this the document
already stored?" is a string comparison, and no backend ever looks inside a document.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from pilotfish.config.loader import DEFAULT_NAMESPACE, parse_resource
from pilotfish.config.source import to_plain
from pilotfish.errors import ConfigError, Problem
from pilotfish.store.base import ResourceKey, Revision, StoredResource

STORE_ORIGIN = "<store>"


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A validated document ready to write: its key and its canonical JSON text."""

    key: ResourceKey
    text: str


def prepare(doc: Any) -> PreparedDocument:
    """Validate ``doc`` (raises ``ConfigError``) and give its storable form. The namespace is
    written out, so a stored document says where it lives even if the operator left it implicit."""
    resource, _warnings = parse_resource(doc)
    plain = to_plain(doc)
    plain["metadata"]["namespace"] = resource.namespace
    return PreparedDocument(resource.key, canonical_json(plain, resource.ref))


def canonical_json(value: Any, ref: str = "") -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_value)
    except (TypeError, ValueError) as exc:
        raise ConfigError([Problem(f"cannot be stored as JSON: {exc}", ref=ref)]) from None


def _json_value(value: object) -> str:
    """YAML turns an unquoted ``2024-01-02`` into a date; store it as the text it was written as."""
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def load(text: str, revision: Revision) -> StoredResource:
    """Re-parse a stored document; ``ConfigError`` if it no longer validates (e.g. after an upgrade
    that tightened a rule)."""
    doc = json.loads(text)
    resource, _warnings = parse_resource(doc, STORE_ORIGIN)
    return StoredResource(resource=resource, doc=doc, revision=revision)


def load_doc(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def normalize_key(kind: str, namespace: str, name: str) -> ResourceKey:
    """The key ``apply`` would give: an empty namespace means ``default``, as in the loader."""
    return (kind, namespace or DEFAULT_NAMESPACE, name)
