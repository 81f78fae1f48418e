"""``Decision`` → Envoy ``CheckResponse`` (envoy ``service/auth/v3/external_auth.proto``).

* Allow: ``status`` OK and an ``ok_response`` carrying the upstream header mutations the JWT
  step asks for: ``outputPayloadToHeader`` / ``outputClaimToHeaders`` values are *set*
  (``OVERWRITE_IF_EXISTS_OR_ADD``: a client-sent header of that name must never survive, Envoy
  ``jwt_authn`` sanitizes them first) and the token header (unless ``forwardOriginalToken``) is
  in ``headers_to_remove``.
* Deny: ``status`` PERMISSION_DENIED for 403, UNAUTHENTICATED for 401 (google.rpc codes), and a
  ``denied_response`` with the HTTP status, the body Envoy's own filters send (``RBAC: access
  denied`` for RBAC, the jwt_verify_lib message such as ``Jwt verification fails`` for
  jwt_authn) and the client headers (``www-authenticate`` on a 401).

Envoy sends ``denied_response.status`` to the client (403 when unset), so it is always set.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from pilotfish.extauthz.evaluate import Decision

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# HTTP status of a deny → google.rpc code of CheckResponse.status (any non-OK code denies).
RPC_CODES = {401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED}


# Built options by (name, value): the same few headers (a consumer's, a token's claims) recur on
# every request, and building a HeaderValueOption costs more than copying one (``extend`` and the
# message constructors copy, so sharing the cached ones is safe). Cleared when full.
_OPTIONS: dict[tuple[str, str], base_pb2.HeaderValueOption] = {}
_OPTIONS_LIMIT = 4096


def header_options(headers: Iterable[tuple[str, str]]) -> list[base_pb2.HeaderValueOption]:
    out = []
    for pair in headers:
        option = _OPTIONS.get(pair)
        if option is None:
            if len(_OPTIONS) >= _OPTIONS_LIMIT:
                _OPTIONS.clear()
            option = _OPTIONS[pair] = base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=pair[0], value=pair[1]), append_action=OVERWRITE
            )
        out.append(option)
    return out


def check_response(decision: Decision) -> external_auth_pb2.CheckResponse:
    return _allowed(decision) if decision.allow else _denied(decision)


def _allowed(decision: Decision) -> external_auth_pb2.CheckResponse:
    ok = external_auth_pb2.OkHttpResponse(
        headers=header_options(decision.headers_to_set), headers_to_remove=decision.headers_to_remove
    )
    return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)


def _denied(decision: Decision) -> external_auth_pb2.CheckResponse:
    status = decision.status if decision.status >= 400 else 403  # a deny is never a 2xx to the client
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=status),
        headers=header_options(decision.response_headers),
        body=decision.body,
    )
    code = RPC_CODES.get(status, code_pb2.PERMISSION_DENIED)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=decision.reason), denied_response=denied
    )
