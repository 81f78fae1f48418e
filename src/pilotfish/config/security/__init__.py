"""security.istio.io kinds."""

from __future__ import annotations

from pilotfish.config.resource import KindInfo
from pilotfish.config.security import authorization_policy, peer_authentication, request_authentication

SECURITY = "security.istio.io"
SECURITY_VERSIONS = ("v1beta1", "v1")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        "AuthorizationPolicy",
        SECURITY,
        SECURITY_VERSIONS,
        authorization_policy.AuthorizationPolicySpec,
        authorization_policy.validate,
        "authorizationpolicies",
    ),
    KindInfo(
        "RequestAuthentication",
        SECURITY,
        SECURITY_VERSIONS,
        request_authentication.RequestAuthenticationSpec,
        request_authentication.validate,
        "requestauthentications",
    ),
    KindInfo(
        "PeerAuthentication",
        SECURITY,
        SECURITY_VERSIONS,
        peer_authentication.PeerAuthenticationSpec,
        peer_authentication.validate,
        "peerauthentications",
    ),
)
