"""The table of kinds pilotfish reads: kind → (group, served versions, spec type, validator)."""

from __future__ import annotations

from pilotfish.config import kong, kubernetes, networking, security
from pilotfish.config.resource import KindInfo

KINDS: dict[str, KindInfo] = {
    info.kind: info for info in (*networking.KINDS, *security.KINDS, *kubernetes.KINDS, *kong.KINDS)
}
