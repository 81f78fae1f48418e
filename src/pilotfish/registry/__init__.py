"""Services and endpoints from ServiceEntry, WorkloadEntry and registrations; MeshSnapshot assembly."""
