"""networking.istio.io kinds: the table of what pilotfish reads, its spec type and validator."""

from __future__ import annotations

from pilotfish.config.networking import (
    destination_rule,
    gateway,
    service_entry,
    sidecar,
    virtual_service,
    workload_entry,
    workload_group,
)
from pilotfish.config.resource import KindInfo

NETWORKING = "networking.istio.io"
# Every kind is served as all three versions, with identical schemas (checked against the CRDs).
NETWORKING_VERSIONS = ("v1alpha3", "v1beta1", "v1")

KINDS: tuple[KindInfo, ...] = tuple(
    KindInfo(kind, NETWORKING, NETWORKING_VERSIONS, spec, validate, plural)
    for kind, spec, validate, plural in (
        ("VirtualService", virtual_service.VirtualServiceSpec, virtual_service.validate, "virtualservices"),
        (
            "DestinationRule",
            destination_rule.DestinationRuleSpec,
            destination_rule.validate,
            "destinationrules",
        ),
        ("Gateway", gateway.GatewaySpec, gateway.validate, "gateways"),
        ("ServiceEntry", service_entry.ServiceEntrySpec, service_entry.validate, "serviceentries"),
        ("Sidecar", sidecar.SidecarSpec, sidecar.validate, "sidecars"),
        ("WorkloadEntry", workload_entry.WorkloadEntrySpec, workload_entry.validate, "workloadentries"),
        ("WorkloadGroup", workload_group.WorkloadGroupSpec, workload_group.validate, "workloadgroups"),
    )
)
