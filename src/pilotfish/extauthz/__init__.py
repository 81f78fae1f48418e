"""ext_authz: JWT authentication (``jwt``, ``jwks``), policy compilation (``policy``), the pure
evaluator (``evaluate``) and the offline ``authz check`` (``check``).

Only ``jwks_fetch`` and ``check`` do I/O; everything else is pure (time is an argument).
"""
