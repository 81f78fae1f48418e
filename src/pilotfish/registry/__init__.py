"""Services and endpoints: from ServiceEntry, WorkloadEntry and (later) registrations; MeshSnapshot assembly."""
