"""The registry's value objects: what a service is and where its instances are.

These are the translation layer's view of the mesh, independent of where a workload came from
(a ServiceEntry's inline endpoint, a WorkloadEntry, a registration with a lease, a connected
proxy). Istio's equivalents are ``model.Service`` and ``model.IstioEndpoint``
(``pilot/pkg/model/service.go``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"]
Location = Literal["MESH_EXTERNAL", "MESH_INTERNAL"]
HealthStatus = Literal["HEALTHY", "DRAINING", "UNHEALTHY"]

# Istio marks endpoints that carry a sidecar with this label; auto mTLS keys off it
# (pilot/pkg/model/service.go, label.SecurityTlsMode).
TLS_MODE_LABEL = "security.istio.io/tlsMode"


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    number: int
    protocol: str  # HTTP, HTTP2, GRPC, HTTPS, TLS, TCP, ... (upper case, as Istio normalises)
    target_port: int = 0


@dataclass(frozen=True, slots=True)
class Service:
    """One host of a ServiceEntry (a ServiceEntry with three hosts makes three services)."""

    hostname: str
    namespace: str
    ports: tuple[ServicePort, ...]
    resolution: Resolution = "STATIC"
    location: Location = "MESH_EXTERNAL"
    addresses: tuple[str, ...] = ()
    export_to: frozenset[str] = frozenset({"*"})
    subject_alt_names: tuple[str, ...] = ()
    source: str = ""  # Kind/ns/name that declared it

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.number == number), None)

    def visible_from(self, namespace: str) -> bool:
        """exportTo: ``*`` everyone, ``.`` own namespace, ``~`` nobody, else listed namespaces."""
        if "*" in self.export_to:
            return True
        if "~" in self.export_to:
            return False
        return namespace in self.export_to or ("." in self.export_to and namespace == self.namespace)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a service on one service port."""

    hostname: str
    service_port: int  # the service's port number this endpoint serves
    address: str
    port: int  # where the instance listens (the target port)
    labels: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    locality: str = ""
    service_account: str = ""
    network: str = ""
    namespace: str = ""
    workload: str = ""  # Kind/ns/name or registration id, for debugging
    health: HealthStatus = "HEALTHY"

    @property
    def key(self) -> tuple[str, int]:
        return (self.hostname, self.service_port)


@dataclass(frozen=True, slots=True)
class RegisteredWorkload:
    """A workload a registration or an auto-registered proxy brings, whether or not a service
    selects it: NetworkPolicy sees it as a pod (``pilotfish.netpol.pods``). ``ports``: named
    ports (service port name → workload port)."""

    id: str
    namespace: str
    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    service_account: str = ""
