"""networking.istio.io kinds."""

from __future__ import annotations

from pilotfish.config.networking import workload_entry
from pilotfish.config.resource import KindInfo

NETWORKING = "networking.istio.io"
NETWORKING_VERSIONS = ("v1alpha3", "v1beta1", "v1")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        "WorkloadEntry",
        NETWORKING,
        NETWORKING_VERSIONS,
        workload_entry.WorkloadEntrySpec,
        workload_entry.validate,
        "workloadentries",
    ),
)
