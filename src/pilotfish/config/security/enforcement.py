"""Which enforcement mode can express a workload's security policies (pure).

pilotfish enforces RequestAuthentication and AuthorizationPolicy either in Envoy itself
(``native``: jwt_authn + RBAC, as Istio does) or in its Check server (``ext_authz``). Some
policies have no upstream Envoy form: a CUSTOM action (its provider is asked by the Check
server) and a jwtRule without ``jwks``/``jwksUri`` (Envoy does not do OpenID discovery). A
workload with such a policy falls back to ext_authz, never to a weaker native config, and the
reason is reported (``/debug/syncz``, ``proxy-status``, ``authz check``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pilotfish.config.security.request_authentication import JWTRule

AuthzMode = Literal["ext_authz", "native"]
AUTHZ_MODES: tuple[AuthzMode, ...] = ("ext_authz", "native")
MODE_ANNOTATION = "pilotfish.io/authz-mode"  # node metadata ANNOTATIONS: a workload's own choice


def native_problem(rules: Iterable[JWTRule]) -> str | None:
    """Why these rules cannot be enforced by Envoy's jwt_authn, or ``None``."""
    for rule in rules:
        if not rule.jwks and not rule.jwks_uri:
            return (
                f"jwtRule for issuer {rule.issuer!r} has no jwks/jwksUri (Envoy does not do OpenID discovery)"
            )
    return None


def _native_problem(policies: list[Any], rules: list[Any]) -> str | None:
    if any(p.spec.action == "CUSTOM" for p in policies):
        return "a CUSTOM AuthorizationPolicy selects the workload (CUSTOM is decided by the ext_authz path)"
    return native_problem(rules)


def choose_mode(
    policies: list[Any], authns: list[Any], requested: str, check_server: bool = True
) -> tuple[str, str | None]:
    """The mode that enforces a workload's policies (``none``, ``ext_authz`` or ``native``)
    and why native was asked for but not used. Shared with ``authz check``."""
    if not policies and not authns:
        return "none", None
    problem = None
    if requested == "native":
        problem = _native_problem(policies, [rule for r in authns for rule in r.spec.jwt_rules])
        if problem is None:
            return "native", None
    return ("ext_authz" if check_server else "none"), problem
