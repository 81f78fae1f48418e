"""Envoy resource types served over ADS: type URLs, push order and per-type rules as data.

Everything here is a table; the cache and the server look rules up instead of branching on
type names (xds_protocol.rst, "Variants of the xDS Transport Protocol" and "Eventual consistency
considerations").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_PREFIX = "type.googleapis.com/"

CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# The order of this tuple MATTERS: make-before-break sequencing is CDS, EDS, LDS, RDS, then the
# secrets (xds_protocol.rst "Eventual consistency considerations"; Istio's PushOrder).
ADS_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

# In SotW, Listener and Cluster responses carry the complete state of the world; every other type
# is per resource (xds_protocol.rst "Grouping Resources into Responses").
FULL_STATE_TYPES: frozenset[str] = frozenset({CLUSTER, LISTENER})

# A parent change must be followed by a resend of the children it names: Envoy finishes warming
# an updated Cluster only on a *new* ClusterLoadAssignment response (xds_protocol.rst "Resource
# warming", Envoy implementation note); RDS after LDS is resent for the same reason.
CHILD_TYPE: Mapping[str, str] = MappingProxyType({CLUSTER: ENDPOINT, LISTENER: ROUTE})

SHORT_NAMES: Mapping[str, str] = MappingProxyType(
    {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS", SECRET: "SDS"}
)

# The field that carries a resource's name, per type.
_NAME_FIELD: Mapping[str, str] = MappingProxyType(
    {CLUSTER: "name", ENDPOINT: "cluster_name", LISTENER: "name", ROUTE: "name", SECRET: "name"}
)

WILDCARD = "*"


def type_url_of(message: Any) -> str:
    """The type URL of a resource message; ValueError for a type ADS does not serve here."""
    type_url = _PREFIX + str(message.DESCRIPTOR.full_name)
    if type_url not in _NAME_FIELD:
        raise ValueError(f"not an ADS resource type: {message.DESCRIPTOR.full_name}")
    return type_url


def name_of(type_url: str, message: Any) -> str:
    """The resource name Envoy subscribes to for ``message`` of ``type_url``."""
    return str(getattr(message, _NAME_FIELD[type_url]))


def short_name(type_url: str) -> str:
    """``CDS``, ``EDS``... for a known type URL, the bare message name otherwise."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])
