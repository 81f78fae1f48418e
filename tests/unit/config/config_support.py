"""Shared by the per-kind config tests: build a document of one kind, parse it, collect problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from pilotfish.config.coverage import UNTRANSLATED
from pilotfish.config.kinds import KINDS
from pilotfish.config.loader import parse_resource
from pilotfish.errors import ConfigError, Problem


@dataclass(frozen=True)
class KindDocs:
    kind: str
    name: str = "x"
    namespace: str = "default"

    def document(self, spec: Any, version: str = "v1", namespace: str | None = None) -> dict[str, Any]:
        return {
            "apiVersion": f"{KINDS[self.kind].group}/{version}",
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": namespace or self.namespace},
            "spec": yaml.safe_load(spec) if isinstance(spec, str) else spec,
        }

    def parse(self, spec: Any, version: str = "v1") -> Any:
        """The decoded spec; the document must be valid and free of validation warnings."""
        resource, warnings = parse_resource(self.document(spec, version), "<test>", 1)
        assert not validation_only(warnings), warnings
        return resource.spec

    def problems(self, spec: Any) -> list[Problem]:
        """Errors (the document is rejected) or validation warnings (it is accepted). The
        "accepted but not translated" warnings (``coverage.py``) are tested in test_coverage.py."""
        try:
            _, warnings = parse_resource(self.document(spec), "<test>", 1)
        except ConfigError as exc:
            return list(exc.problems)
        return validation_only(warnings)


def validation_only(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if not p.message.startswith(UNTRANSLATED)]
