"""Kubernetes NetworkPolicy semantics, pure: which connections between workloads the policies
admit, and which policy and rule decided. The same compiled rules drive ``pilotfish netpol
check`` (``decide``) and the sidecars' enforcement (``xds/translate/netpol_rbac.py``).

- ``model``: the world a decision is made in: policies, namespaces (labels), pods (workloads);
- ``rules``: a NetworkPolicy compiled against that world into rules of peers and port ranges;
- ``decide``: a connection (from, to, port, protocol) → allowed or denied, and why;
- ``pods``: workloads as pods, from config and from the registry's snapshot;
- ``analysis``: warnings for ``validate`` (a policy that selects no workload);
- ``check``: the offline ``pilotfish netpol check`` command's core.
"""
