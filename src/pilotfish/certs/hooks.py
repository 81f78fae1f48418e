"""What the CA reports to metrics. ``pilotfish.metrics.Metrics`` implements ``CertHooks``; the
CA code calls these methods and never imports prometheus (STYLE: metrics through hooks)."""

from __future__ import annotations

from typing import Literal, Protocol

# What a certificate is: the CA's own (root, intermediate), a workload identity (SDS ``default``),
# a DNS certificate from the certs config, the CA server's serving certificate, or one signed for
# a remote caller's CSR.
CertKind = Literal["ca", "workload", "dns", "server", "csr"]


class CertHooks(Protocol):
    def on_cert_issued(self, kind: CertKind) -> None: ...

    def on_cert_rotated(self, kind: CertKind) -> None: ...

    def on_cert_expiry(self, secret: str, not_after_unix: float, not_before_unix: float) -> None: ...

    def on_cert_forgotten(self, secret: str) -> None: ...

    def on_csr_denied(self, reason: str) -> None: ...


class NoHooks:
    """The hooks of a CA nobody observes (tests, offline tools)."""

    def on_cert_issued(self, kind: CertKind) -> None:
        pass

    def on_cert_rotated(self, kind: CertKind) -> None:
        pass

    def on_cert_expiry(self, secret: str, not_after_unix: float, not_before_unix: float) -> None:
        pass

    def on_cert_forgotten(self, secret: str) -> None:
        pass

    def on_csr_denied(self, reason: str) -> None:
        pass


NO_HOOKS: CertHooks = NoHooks()
