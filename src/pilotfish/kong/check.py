"""Kong's plugins in the Check server: where a request stands and how the outcome is answered.

A Check is about a gateway request when the ext_authz filter's metadata says so
(``x-pilotfish-proxy-type: router``, sent by ``xds/translate/authz.py``); Kong's plugins run at
gateways only, so a request crossing a gateway and then a sidecar is counted and authenticated
once. The route and its destination come from the route's metadata (namespace ``KONG_METADATA``,
``route`` and ``service`` keys, set on gateway routes by ``xds/translate/http_routes.py`` and
forwarded by ``route_metadata_context_namespaces``); without them the Host header stands for the
service.

Composition with Istio: the Istio decision is taken first; a deny is the answer. An allow runs
the plugins, and the request passes only if they allow too; the upstream header mutations of
both are merged. An answer that counted a rate limit is never cached (``stateful``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from envoy.service.auth.v3 import external_auth_pb2

from pilotfish.extauthz.attributes import Attributes
from pilotfish.extauthz.evaluate import Decision
from pilotfish.extauthz.response import check_response, header_options
from pilotfish.kong.engine import KongOutcome, KongRequest

KONG_METADATA = "pilotfish.kong"
PROXY_TYPE_KEY = "x-pilotfish-proxy-type"


def at_gateway(metadata: Iterable[tuple[str, str]]) -> bool:
    return any(k == PROXY_TYPE_KEY and v == "router" for k, v in metadata)


def kong_request(request: external_auth_pb2.CheckRequest, attributes: Attributes) -> KongRequest:
    fields = request.attributes.route_metadata_context.filter_metadata.get(KONG_METADATA)
    route = service = ""
    if fields is not None:
        route = fields.fields["route"].string_value if "route" in fields.fields else ""
        service = fields.fields["service"].string_value if "service" in fields.fields else ""
    peer = attributes.source
    return KongRequest(
        attributes.request,
        peer.remote_ip or peer.ip or "",
        service or attributes.request.host,
        route,
        attributes.now,
    )


def combined(decision: Decision, outcome: KongOutcome) -> Decision:
    """The Istio allow ``decision`` and the plugins' outcome as one decision."""
    if not outcome.allow:
        return Decision(
            False,
            outcome.status,
            outcome.reason,
            policy=f"kong:{outcome.plugin}",
            body=outcome.body,
            response_headers=(*outcome.response_headers, ("content-type", "application/json; charset=utf-8")),
        )
    return dataclasses.replace(
        decision,
        headers_to_set=(*decision.headers_to_set, *outcome.headers_to_set),
        headers_to_remove=(*decision.headers_to_remove, *outcome.headers_to_remove),
    )


def kong_response(decision: Decision, outcome: KongOutcome) -> external_auth_pb2.CheckResponse:
    response = check_response(decision)
    if decision.allow:
        ok = response.ok_response
        ok.response_headers_to_add.extend(header_options(outcome.response_headers))
        ok.query_parameters_to_remove.extend(outcome.query_to_remove)
    return response


__all__ = ["at_gateway", "combined", "kong_request", "kong_response"]
