"""The admin HTTP API: health, metrics, debug views (and, later, the resource and registration API)."""
