"""Delegate VirtualServices merged into the root VirtualServices that name them, as istiod does.

Istio ``pilot/pkg/model/virtualservice.go``: ``mergeVirtualServicesIfNeeded`` (a VirtualService
without hosts is a delegate; a root's ``http[].delegate`` is replaced by the delegate's routes,
each merged with the root route; a missing delegate, or one not exported to the root's
namespace, drops that root route only), ``mergeHTTPRoute`` (the delegate's settings win, the
root's fill the gaps; names join with ``-``), ``mergeHTTPMatchRequests`` (every delegate match
must fit inside a root match, else the delegate route is dropped), ``mergeHTTPMatchRequest``,
``hasConflict`` and ``stringMatchConflict``.

Delegates are merged after short names are resolved, each in its own namespace, so a delegate's
``reviews`` means the service in the delegate's namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from pilotfish.config.networking.virtual_service import HTTPMatchRequest, HTTPRoute, StringMatch

PUBLIC = "*"
PRIVATE = "."

# Fields a merged delegate route takes from the root route when it does not set them.
INHERITED_ROUTE_FIELDS = (
    "rewrite",
    "direct_response",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirror_percent",
    "mirrorPercent",
    "mirror_percentage",
    "cors_policy",
    "mirrors",
    "headers",
)
# Match fields the delegate's match takes from the root's when unset, and maps merged key by key.
INHERITED_MATCH_FIELDS = ("uri", "scheme", "method", "authority", "source_namespace", "stat_prefix")
MERGED_MATCH_MAPS = ("headers", "without_headers", "query_params", "source_labels")
# Matches compared for conflicts: the root's and the delegate's must be compatible.
STRING_MATCH_FIELDS = ("uri", "scheme", "method", "authority")
KEYED_MATCH_FIELDS = ("headers", "without_headers", "query_params")


def joined_name(root: str, leaf: str) -> str:
    """``root-leaf``; either alone when the other is empty."""
    if not leaf:
        return root
    return f"{root}-{leaf}" if root else leaf


def delegate_visible(export_to: Sequence[str], delegate_namespace: str, root_namespace: str) -> bool:
    """Whether a delegate is exported to the root's namespace (no exportTo means public)."""
    if not export_to:
        return True
    resolved = {delegate_namespace if entry == PRIVATE else entry for entry in export_to}
    return PUBLIC in resolved or root_namespace in resolved


# ---- string match conflicts ---------------------------------------------------------------------


def _value(match: StringMatch, kind: str) -> str:
    return getattr(match, kind) or ""


def string_match_conflict(root: StringMatch | None, leaf: StringMatch | None) -> bool:
    """Istio ``stringMatchConflict``: a delegate's match must narrow the root's."""
    if root is None or leaf is None:
        return False
    root_regex, leaf_regex = _value(root, "regex"), _value(leaf, "regex")
    if root_regex and (leaf_regex or _value(leaf, "prefix") or _value(leaf, "exact")):
        return True
    if leaf_regex and (root_regex or _value(root, "prefix") or _value(root, "exact")):
        return True
    exact = _value(root, "exact")
    if exact:
        return bool(_value(leaf, "prefix")) or _value(leaf, "exact") != exact
    prefix = _value(root, "prefix")
    if prefix and _value(leaf, "prefix"):
        return not _value(leaf, "prefix").startswith(prefix)
    if prefix and _value(leaf, "exact"):
        return not _value(leaf, "exact").startswith(prefix)
    return True


def has_conflict(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> bool:
    """Istio ``hasConflict``."""
    if any(string_match_conflict(getattr(root, f), getattr(leaf, f)) for f in STRING_MATCH_FIELDS):
        return True
    for field in KEYED_MATCH_FIELDS:
        root_map: Mapping[str, StringMatch] = getattr(root, field)
        if any(string_match_conflict(root_map.get(k), v) for k, v in getattr(leaf, field).items()):
            return True
    if root.ignore_uri_case != leaf.ignore_uri_case:
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    if any(k in root.source_labels and root.source_labels[k] != v for k, v in leaf.source_labels.items()):
        return True
    return _gateways_conflict(root.gateways, leaf.gateways)


def _gateways_conflict(root: Sequence[str], leaf: Sequence[str]) -> bool:
    """The root's gateways must include every gateway the delegate names."""
    if not root or not leaf:
        return False
    return len(root) < len(leaf) or not set(leaf) <= set(root)


# ---- merging --------------------------------------------------------------------------------------


def merge_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    """Istio ``mergeHTTPMatchRequest``: the delegate's match, its gaps filled from the root's."""
    changes: dict[str, object] = {"name": joined_name(root.name, leaf.name)}
    for field in INHERITED_MATCH_FIELDS:
        if not getattr(leaf, field):
            changes[field] = getattr(root, field)
    for field in MERGED_MATCH_MAPS:
        changes[field] = {**getattr(root, field), **getattr(leaf, field)}
    changes["port"] = leaf.port or root.port
    changes["gateways"] = leaf.gateways or root.gateways
    return replace(leaf, **changes)  # type: ignore[arg-type]


def merge_matches(
    root: Sequence[HTTPMatchRequest], leaf: Sequence[HTTPMatchRequest]
) -> tuple[HTTPMatchRequest, ...] | None:
    """Istio ``mergeHTTPMatchRequests``; ``None`` when a delegate match fits in no root match."""
    if not root:
        return tuple(leaf)
    if not leaf:
        return tuple(root)
    out: list[HTTPMatchRequest] = []
    for sub in leaf:
        merged = [merge_match(r, sub) for r in root if not has_conflict(r, sub)]
        if not merged:
            return None
        out.extend(merged)
    return tuple(out)


def merge_route(root: HTTPRoute, leaf: HTTPRoute) -> HTTPRoute | None:
    """Istio ``mergeHTTPRoute``; ``None`` when the matches conflict."""
    matches = merge_matches(root.match, leaf.match)
    if matches is None:
        return None
    changes: dict[str, object] = {"match": matches, "name": joined_name(root.name, leaf.name)}
    for field in INHERITED_ROUTE_FIELDS:
        if getattr(leaf, field) in (None, ()):
            changes[field] = getattr(root, field)
    return replace(leaf, **changes)  # type: ignore[arg-type]


def merge_routes(root: HTTPRoute, delegate_routes: Iterable[HTTPRoute]) -> list[HTTPRoute]:
    """Istio ``mergeHTTPRoutes``: one merged route per delegate route that fits the root's."""
    merged = (merge_route(root, leaf) for leaf in delegate_routes)
    return [route for route in merged if route is not None]
