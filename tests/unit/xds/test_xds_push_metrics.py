"""The push pipeline's metrics reach /metrics: translation time per type, pushes skipped because
nothing changed, the push queue and full passes, fed by a real ``Publisher`` and ``PushGate``."""

from __future__ import annotations

import asyncio

from translate_like import mesh_and_proxies

from pilotfish.metrics import Metrics
from pilotfish.xds.cache import SnapshotCache
from pilotfish.xds.publisher import Publisher, PublishHooks
from pilotfish.xds.server import PushGate


def test_translation_skips_and_the_queue_are_exported() -> None:
    metrics = Metrics()
    cache = SnapshotCache()
    hooks = PublishHooks(metrics.on_translate, metrics.on_pushes_skipped, metrics.on_push_pass)
    publisher = Publisher(cache, hooks=hooks)
    mesh, proxies = mesh_and_proxies()
    try:
        publisher.use(mesh)
        assert publisher.publish_all(proxies, lambda _: True) == len(proxies)
        assert publisher.publish_all(proxies, lambda _: True) == 0  # nothing changed: all skipped
    finally:
        publisher.close()

    async def queue() -> None:
        gate = PushGate(limit=1, on_length=metrics.on_push_queue)
        async with gate.slot():
            text = metrics.exposition().decode()
            assert "pilotfish_xds_push_queue 1.0" in text

    asyncio.run(queue())
    text = metrics.exposition().decode()
    for type_name in ("CDS+EDS", "LDS", "RDS"):
        assert f'pilotfish_xds_translate_seconds_count{{type="{type_name}"}}' in text
    assert f"pilotfish_xds_pushes_skipped_total {float(len(proxies))}" in text
    assert "pilotfish_xds_push_pass_seconds_count 2.0" in text
    assert "pilotfish_xds_push_queue 0.0" in text


def test_a_proxy_gone_after_shutdown_is_forgotten_quietly() -> None:
    cache = SnapshotCache()
    publisher = Publisher(cache)
    mesh, proxies = mesh_and_proxies()
    publisher.use(mesh)
    publisher.publish_all(proxies, lambda _: True)
    publisher.close()
    publisher.forget(proxies[0].id)  # a stream that ends during shutdown
    assert cache.get(proxies[0].id) is None and cache.get(proxies[1].id) is not None
