"""PeerAuthentication (security.istio.io v1beta1 and v1): the mutual TLS mode of a workload's inbound traffic.

Fields: istio/api ``security/v1beta1/peer_authentication.proto`` and the CRD schema. Rules:
istio/istio ``pkg/config/validation/validation.go`` ``ValidatePeerAuthentication`` and the CRD's
CEL rules (``portLevelMtls requires selector``, ``port must be between 1-65535``).

Semantics a consumer needs (API docs and ``pilot/pkg/security/authn/policy_applier.go``): a policy
in the root namespace without a selector is mesh-wide, one elsewhere without a selector covers its
namespace, one with a selector covers matching workloads; the narrowest non-``UNSET`` mode wins and
``UNSET`` inherits from the next wider level (PERMISSIVE at the top). ``portLevelMtls`` is keyed by
the workload (container) port, written as a string in JSON; ``port_modes`` gives it by number.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.config import checks
from pilotfish.config.decode import Message
from pilotfish.config.resource import Finding, Resource
from pilotfish.config.security.annotations import dry_run_findings
from pilotfish.config.selector import WorkloadSelector

MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


@dataclass(frozen=True, slots=True)
class MutualTLS(Message):
    """``PeerAuthentication.MutualTLS``: used for the workload and for each port."""

    mode: MtlsMode = "UNSET"


PortMutualTLS = MutualTLS  # the same message, as ``portLevelMtls`` values


@dataclass(frozen=True, slots=True)
class PeerAuthenticationSpec(Message):
    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    port_level_mtls: Mapping[str, MutualTLS] | None = None

    def port_modes(self) -> dict[int, MtlsMode]:
        """``portLevelMtls`` by port number (keys are validated decimal ports)."""
        return {int(port): tls.mode for port, tls in (self.port_level_mtls or {}).items()}


def validate(resource: Resource[Any]) -> Iterator[Finding]:
    spec: PeerAuthenticationSpec = resource.spec
    yield from dry_run_findings(resource)
    if spec.selector is not None:
        yield from checks.workload_selector(spec.selector.match_labels, ("selector",))
    if spec.port_level_mtls is None:
        return
    if not (spec.selector and spec.selector.match_labels):
        yield Finding(("portLevelMtls",), "mesh/namespace peer authentication cannot have port level mTLS")
    if not spec.port_level_mtls:
        yield Finding(("portLevelMtls",), "port level mTLS, if defined, must have at least one element")
    for port in spec.port_level_mtls:
        if not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
            yield Finding(("portLevelMtls", port), f"port {port!r} must be in range 1..65535")
