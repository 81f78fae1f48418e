"""The Istio resource model: frozen dataclasses, YAML loading, validation with field paths."""
