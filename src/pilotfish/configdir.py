"""``--config DIR``: the Istio YAML in a directory, watched, with last-good semantics per file.

A file that has any error keeps serving the resources it last loaded cleanly (so a typo in a
DestinationRule never deletes the rule in force); its errors are logged and counted. A file
that is removed takes its resources with it.

A file whose bytes did not change since the last load is not parsed again: its resources are the
very objects loaded before. A change to one small file then costs reading the directory, not
parsing every ServiceEntry of the mesh (~0.4 s for 2,000 documents), and the translation caches
downstream see unchanged resources as identical objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotfish.config.analysis import analyze
from pilotfish.config.loader import LoadResult, load_paths
from pilotfish.config.resource import Resource
from pilotfish.config.source import iter_yaml_files
from pilotfish.errors import Problem

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ConfigDirectory:
    root: Path
    on_problems: Callable[[tuple[Problem, ...]], None] = lambda problems: None
    last_good: dict[str, tuple[Resource[Any], ...]] = field(default_factory=dict)
    parsed: dict[str, tuple[bytes, LoadResult]] = field(default_factory=dict)

    def load(self) -> tuple[Resource[Any], ...]:
        """(Re)read every file; returns the resources now in force."""
        current: dict[str, tuple[Resource[Any], ...]] = {}
        problems: list[Problem] = []
        parsed: dict[str, tuple[bytes, LoadResult]] = {}
        for path in iter_yaml_files([self.root]):
            key = str(path)
            result = self._parse(path, key, parsed)
            problems.extend(result.problems)
            if result.errors:
                current[key] = self.last_good.get(key, ())
                log.warning(
                    "%s has errors; keeping its last good config:\n%s",
                    key,
                    "\n".join(str(p) for p in result.errors),
                )
            else:
                current[key] = result.resources
        self.last_good, self.parsed = current, parsed
        resources, duplicates = self._merged()
        warnings = analyze(resources)
        for warning in warnings:
            log.warning("%s", warning)
        self.on_problems((*problems, *duplicates, *warnings))
        return resources

    def _parse(self, path: Path, key: str, parsed: dict[str, tuple[bytes, LoadResult]]) -> LoadResult:
        """``load_paths([path])``, or the last result for these very bytes."""
        try:
            content = path.read_bytes()
        except OSError:
            return load_paths([path])  # vanished or unreadable: let the loader report it
        before = self.parsed.get(key)
        if before is not None and before[0] == content:
            parsed[key] = before
            return before[1]
        result: LoadResult = load_paths([path])
        parsed[key] = (content, result)
        return result

    def resources(self) -> tuple[Resource[Any], ...]:
        return self._merged()[0]

    def _merged(self) -> tuple[tuple[Resource[Any], ...], list[Problem]]:
        """Resources in force. A kind/namespace/name defined in two files is an error: the file
        that sorts first wins, and the other definition is reported (never silently dropped)."""
        seen: dict[tuple[str, str, str], Resource[Any]] = {}
        duplicates: list[Problem] = []
        for key in sorted(self.last_good):
            for resource in self.last_good[key]:
                first = seen.setdefault(resource.key, resource)
                if first is not resource:
                    where = f"{first.origin.file}:{first.origin.line}"
                    duplicates.append(
                        Problem(
                            f"defined twice (in force: {where})",
                            "metadata.name",
                            resource.origin.file,
                            resource.origin.line,
                            resource.ref,
                        )
                    )
        for problem in duplicates:
            log.warning("%s", problem)
        return tuple(seen.values()), duplicates
