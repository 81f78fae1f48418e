"""When a certificate must be replaced: at half of its lifetime.

Istio's agent rotates a workload certificate once less than ``SECRET_GRACE_PERIOD_RATIO`` (0.5)
of its lifetime remains (istio/istio ``security/pkg/nodeagent/cache/secretcache.go``
``rotateTime``), and Chiron uses the same ratio for DNS certificates
(``security/pkg/k8s/chiron/utils.go``). Renewing at half-life leaves the other half as slack for
a control plane that is down or a proxy that is disconnected. Pure: the clock is an argument.
"""

from __future__ import annotations

import functools
from datetime import datetime

from cryptography import x509

GRACE_PERIOD_RATIO = 0.5


def next_rotation(cert: x509.Certificate) -> datetime:
    """The instant at which ``cert`` has used up half of its lifetime."""
    return _validity(cert)[1]


def needs_rotation(cert: x509.Certificate, now: datetime) -> bool:
    """Whether ``cert`` should be replaced at ``now`` (half-life reached, or not yet valid)."""
    start, rotate_at = _validity(cert)
    return now >= rotate_at or now < start


# Every push asks each connected proxy's kept certificate whether it is due; reading the validity
# dates decodes them from the certificate each time. One certificate's dates never change.
@functools.lru_cache(maxsize=16384)
def _validity(cert: x509.Certificate) -> tuple[datetime, datetime]:
    """``(not_valid_before, half-life instant)``."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start, start + (end - start) * GRACE_PERIOD_RATIO
