"""security.istio.io kinds."""

from __future__ import annotations

from pilotfish.config.resource import KindInfo

SECURITY = "security.istio.io"
SECURITY_VERSIONS = ("v1beta1", "v1")

KINDS: tuple[KindInfo, ...] = ()
