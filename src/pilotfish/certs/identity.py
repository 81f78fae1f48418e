"""SPIFFE identities of workloads: ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``.

The syntax rules are the SPIFFE ID standard (github.com/spiffe/spiffe, ``standards/SPIFFE-ID.md``
§2): scheme ``spiffe``, a trust domain of lower-case letters, digits, ``.``, ``-`` and ``_``, no
port, user info, query or fragment, and path segments of ``[A-Za-z0-9._-]`` that are neither empty
nor ``.``/``..``. Istio narrows the path to exactly ``ns/<ns>/sa/<sa>`` (istio/istio
``pkg/spiffe/spiffe.go`` ``ParseIdentity``), and so do we: any other SPIFFE id is not a workload.

Every input either parses into a ``SpiffeId`` or raises ``SpiffeIdError``; nothing else escapes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

SCHEME = "spiffe://"
DEFAULT_SERVICE_ACCOUNT = "default"  # Kubernetes gives every namespace a "default" service account
_MAX_LENGTH = 2048  # SPIFFE-ID.md §2.3: "URIs ... SHOULD NOT exceed 2048 bytes"
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")  # SPIFFE-ID.md §2.1
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")  # SPIFFE-ID.md §2.2


class SpiffeIdError(ValueError):
    """A string is not a workload SPIFFE id; the message says which rule it breaks."""


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A workload identity. Built by ``workload_id`` or ``parse_spiffe_id``, which validate."""

    trust_domain: str
    namespace: str
    service_account: str

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """The form AuthorizationPolicy ``principals`` use: the URI without ``spiffe://``."""
        return self.uri.removeprefix(SCHEME)

    def __str__(self) -> str:
        return self.uri


# Every push asks for each connected proxy's identity (its SDS secrets): parsing the same few
# strings per proxy per push cost ~40 µs. The answer for one triple never changes; an invalid one
# raises again (exceptions are not cached).
@functools.lru_cache(maxsize=16384)
def workload_id(trust_domain: str, namespace: str, service_account: str = "") -> SpiffeId:
    """The identity of a workload; an empty service account means ``default`` (as in Kubernetes)."""
    return parse_spiffe_id(SpiffeId(trust_domain, namespace, service_account or DEFAULT_SERVICE_ACCOUNT).uri)


def parse_spiffe_id(uri: str) -> SpiffeId:
    """Parse ``spiffe://td/ns/N/sa/S``; raises ``SpiffeIdError`` naming the broken rule."""
    if len(uri) > _MAX_LENGTH:
        raise SpiffeIdError(f"SPIFFE id longer than {_MAX_LENGTH} bytes")
    if not uri.startswith(SCHEME):
        raise SpiffeIdError(f"{uri!r} is not a SPIFFE id: it must start with {SCHEME!r}")
    trust_domain, _, path = uri.removeprefix(SCHEME).partition("/")
    _check_trust_domain(uri, trust_domain)
    segments = path.split("/")
    for segment in segments:
        _check_segment(uri, segment)
    if len(segments) != 4 or segments[0] != "ns" or segments[2] != "sa":
        raise SpiffeIdError(
            f"{uri!r} is not a workload identity: expected {SCHEME}<trust-domain>/ns/<ns>/sa/<sa>"
        )
    return SpiffeId(trust_domain, segments[1], segments[3])


def _check_trust_domain(uri: str, trust_domain: str) -> None:
    if not _TRUST_DOMAIN.match(trust_domain):
        raise SpiffeIdError(
            f"{uri!r}: trust domain {trust_domain!r} must be lower-case letters, digits, '.', '-', '_'"
        )


def _check_segment(uri: str, segment: str) -> None:
    if segment in ("", ".", "..") or not _SEGMENT.match(segment):
        raise SpiffeIdError(f"{uri!r}: path segment {segment!r} must be letters, digits, '.', '-', '_'")


def in_trust_domain(identity: SpiffeId, trust_domain: str, aliases: Iterable[str] = ()) -> bool:
    """Whether ``identity`` belongs to the mesh's trust domain or one of its aliases
    (MeshConfig ``trustDomain`` / ``trustDomainAliases``; Istio ``pkg/spiffe`` ``GetTrustDomain``)."""
    return identity.trust_domain == trust_domain or identity.trust_domain in set(aliases)
