"""The workload CA: SPIFFE identities, issuing (workload and DNS certificates), rotation
decisions, on-disk storage and the certificate signing service.

Pure where possible: every decision takes the clock as an argument (``now``); key files, the
storage directory and gRPC live at the edges (``store.py``, ``csr_service.py``, ``server.py``).
"""
