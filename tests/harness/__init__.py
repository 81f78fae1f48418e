"""Test harness shared by every tier: real echo upstreams, real Envoy processes, an HTTP client.

Import the pieces directly (``from harness.envoy import EnvoyProcess``); the pytest fixtures
``echo_factory`` and ``envoy_factory`` live in ``harness.plugin`` and are loaded by ``tests/conftest.py``.
"""
