"""Discovery responses encoded straight from pre-serialized resources.

A ``DiscoveryResponse`` is ``version_info``, repeated ``Any`` resources, ``type_url`` and ``nonce``;
a ``DeltaDiscoveryResponse`` adds ``Resource`` wrappers and ``removed_resources``. Because every
resource's ``Any`` bytes are built once by the cache, a response is only the concatenation of
length-delimited fields around those shared bytes: nothing is parsed or re-serialized per proxy.
Field numbers are read from the message descriptors, not written down by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from envoy.service.discovery.v3 import discovery_pb2

if TYPE_CHECKING:  # the cache encodes its parts' entries with ``sotw_entries``: no import cycle
    from pilotfish.xds.cache import Resource

_LENGTH_DELIMITED = 2


def _numbers(message: Any) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


_SOTW = _numbers(discovery_pb2.DiscoveryResponse)
_DELTA = _numbers(discovery_pb2.DeltaDiscoveryResponse)
_RESOURCE = _numbers(discovery_pb2.Resource)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _text(number: int, value: str) -> bytes:
    """A string field; proto3 leaves empty strings off the wire."""
    return _field(number, value.encode()) if value else b""


@functools.lru_cache(maxsize=8192)
def _sotw_resource_header(length: int) -> bytes:
    """Tag and length of one ``resources`` entry: it depends only on the length, and a full
    CDS response has a thousand entries of a few distinct lengths, so it is computed once."""
    return _varint(_SOTW["resources"] << 3 | _LENGTH_DELIMITED) + _varint(length)


def sotw_entries(resources: Iterable[Resource]) -> bytes:
    """The ``resources`` entries of a ``DiscoveryResponse``, joined: what a full-state response
    of these resources carries between its version and its type URL. The cache keeps this per
    shared part, so proxies of one scope share it instead of each joining a thousand entries."""
    parts: list[bytes] = []
    header = _sotw_resource_header
    for resource in resources:
        body = resource.any_bytes
        parts.append(header(len(body)))
        parts.append(body)
    return b"".join(parts)


def encode_sotw(version: str, type_url: str, nonce: str, resources: Iterable[Resource]) -> bytes:
    """Serialized ``DiscoveryResponse`` (fields in number order, like protobuf's own encoder).
    The shared resource bytes are joined in place, never copied into a per-entry field first."""
    return encode_sotw_entries(version, type_url, nonce, (sotw_entries(resources),))


def encode_sotw_entries(version: str, type_url: str, nonce: str, entries: Iterable[bytes]) -> bytes:
    """Serialized ``DiscoveryResponse`` around already joined ``sotw_entries`` blobs: repeated
    fields may be split anywhere and concatenated (protobuf encoding, "Last One Wins" and
    repeated fields), so two parts' blobs make one response."""
    return b"".join(
        (
            _text(_SOTW["version_info"], version),
            *entries,
            _text(_SOTW["type_url"], type_url),
            _text(_SOTW["nonce"], nonce),
        )
    )


def _delta_entry(resource: Resource) -> bytes:
    return (
        _text(_RESOURCE["version"], resource.version)
        + _field(_RESOURCE["resource"], resource.any_bytes)
        + _text(_RESOURCE["name"], resource.name)
    )


def _keep_delta_entry(resource: Resource) -> bytes:
    """The ``resources`` field of a delta response for ``resource``, kept on the (immutable,
    shared) resource: a delta initial sync sends the same 2,000 entries to every proxy."""
    entry = _field(_DELTA["resources"], _delta_entry(resource))
    object.__setattr__(resource, "delta_entry", entry)
    return entry


def encode_delta(
    system_version: str, type_url: str, nonce: str, resources: Iterable[Resource], removed: Iterable[str]
) -> bytes:
    """Serialized ``DeltaDiscoveryResponse`` carrying ``resources`` and ``removed_resources``."""
    parts = [_text(_DELTA["system_version_info"], system_version)]
    parts.extend(r.delta_entry or _keep_delta_entry(r) for r in resources)
    parts.append(_text(_DELTA["type_url"], type_url))
    parts.append(_text(_DELTA["nonce"], nonce))
    parts.extend(_field(_DELTA["removed_resources"], name.encode()) for name in removed)
    return b"".join(parts)
