"""The admin backend seam (``admin.http.AdminBackend``) for tests about the admin server itself
(connections, the front door), not about what the control plane reports."""

from __future__ import annotations

from typing import Any


class StubAdminBackend:
    """Healthy unless ``reasons`` says otherwise; ``/metrics`` answers ``metrics_text``."""

    def __init__(self, metrics_text: bytes = b"") -> None:
        self.reasons: list[str] = []
        self.metrics_text = metrics_text

    def health(self) -> tuple[bool, list[str]]:
        return not self.reasons, list(self.reasons)

    def metrics(self) -> bytes:
        return self.metrics_text

    def syncz(self) -> list[dict[str, Any]]:
        return []

    def config_dump(self, proxy_id: str, type_name: str | None) -> dict[str, Any] | None:
        return None

    def configz(self) -> list[dict[str, Any]]:
        return []

    def certs(self) -> dict[str, Any]:
        return {}

    def problemz(self) -> dict[str, Any]:
        return {}
