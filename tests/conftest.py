"""Shared pytest setup: the harness fixtures (``echo_factory``, ``envoy_factory``) for every tier."""

pytest_plugins = ["harness.plugin"]
