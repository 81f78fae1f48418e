"""pilotfish.io/v1alpha1 kinds that carry Kong's model: Consumer (with its credentials) and Plugin."""

from __future__ import annotations

from pilotfish.config.kong import consumer, plugin
from pilotfish.config.resource import KindInfo

PILOTFISH = "pilotfish.io"
PILOTFISH_VERSIONS = ("v1alpha1",)

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        "Consumer", PILOTFISH, PILOTFISH_VERSIONS, consumer.ConsumerSpec, consumer.validate, "consumers"
    ),
    KindInfo("Plugin", PILOTFISH, PILOTFISH_VERSIONS, plugin.PluginSpec, plugin.validate, "plugins"),
)
