"""Documents → validated resources. A document with any error is left out whole, so a bad
document never reaches the running mesh; the others still load (``LoadResult``)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pilotfish.config.coverage import untranslated
from pilotfish.config.decode import Decoder, format_path
from pilotfish.config.kinds import KINDS
from pilotfish.config.resource import ObjectMeta, Origin, Resource
from pilotfish.config.source import (
    Node,
    RawDocument,
    iter_yaml_files,
    line_at,
    parse_documents,
    read_documents,
)
from pilotfish.errors import ConfigError, Problem

DEFAULT_NAMESPACE = "default"
_TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status"}
# Kubernetes object names: DNS-1123 subdomain; namespaces: DNS-1123 label.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class LoadResult:
    resources: tuple[Resource[Any], ...]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity != "error")


def namespace_of(kind: str, given: object) -> str:
    """The namespace a document of ``kind`` is keyed under: its ``metadata.namespace`` or
    ``default``; a cluster-scoped kind (Namespace) ignores the given one, as the API server does,
    and is keyed under ``default`` so every kind/namespace/name path stays well-formed."""
    info = KINDS.get(kind)
    if info is not None and not info.namespaced:
        return DEFAULT_NAMESPACE
    return str(given or DEFAULT_NAMESPACE)


def parse_resource(data: Any, file: str = "<input>", line: int = 0) -> tuple[Resource[Any], list[Problem]]:
    """Decode and validate one document. Raises ``ConfigError`` on any error; returns the
    resource and its warnings otherwise."""
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem("a document must be an object with apiVersion, kind, metadata", "", file, line)]
        )
    line = data.line if isinstance(data, Node) else line
    kind, api_version = data.get("kind"), data.get("apiVersion")
    meta_raw = data.get("metadata")
    meta_raw = meta_raw if isinstance(meta_raw, dict) else {}
    ref = f"{kind}/{meta_raw.get('namespace') or DEFAULT_NAMESPACE}/{meta_raw.get('name')}"

    def problem(path: Sequence[str | int], message: str, severity: str = "error") -> Problem:
        return Problem(message, format_path(path), file, line_at(data, path, line), ref, severity)

    info = KINDS.get(kind) if isinstance(kind, str) else None
    if info is None or not isinstance(kind, str):
        known = ", ".join(sorted(KINDS))
        raise ConfigError([problem(("kind",), f"unknown kind {kind!r} (known: {known})")])
    if api_version not in info.api_versions():
        allowed = ", ".join(info.api_versions())
        raise ConfigError([problem(("apiVersion",), f"{kind} is served as {allowed}; got {api_version!r}")])

    problems = [problem((k,), "unknown field") for k in data if k not in _TOP_LEVEL]
    decoder = Decoder(file, ref)
    meta = decoder.decode(ObjectMeta, data.get("metadata"), ("metadata",), line)
    spec = decoder.decode(info.spec, data.get("spec") or {}, ("spec",), line)
    problems += decoder.problems
    if problems:
        raise ConfigError(problems)
    namespace = namespace_of(kind, meta.namespace)
    if not _NAME.match(meta.name) or len(meta.name) > 253:
        problems.append(
            problem(("metadata", "name"), "must be a DNS-1123 subdomain (lower case, digits, '-', '.')")
        )
    if info.namespaced and (not _NAMESPACE.match(namespace) or len(namespace) > 63):
        problems.append(
            problem(("metadata", "namespace"), "must be a DNS-1123 label (lower case, digits, '-')")
        )
    resource: Resource[Any] = Resource(
        api_version=api_version,
        kind=kind,
        name=meta.name,
        namespace=namespace,
        spec=spec,
        labels=meta.labels,
        annotations=meta.annotations,
        origin=Origin(file, line),
    )
    for finding in (*info.validate(resource), *untranslated(spec)):  # untranslated: coverage.py
        problems.append(problem((finding.root, *finding.path), finding.message, finding.severity))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigError(problems)
    return resource, problems


def load_documents(docs: Iterable[RawDocument]) -> LoadResult:
    resources: dict[tuple[str, str, str], Resource[Any]] = {}
    problems: list[Problem] = []
    for doc in docs:
        try:
            resource, warnings = parse_resource(doc.data, doc.file, doc.line)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(warnings)
        previous = resources.get(resource.key)
        if previous is not None:
            where = f"{previous.origin.file}:{previous.origin.line}"
            problems.append(
                Problem(
                    f"defined twice (first at {where})", "metadata.name", doc.file, doc.line, resource.ref
                )
            )
            continue
        resources[resource.key] = resource
    return LoadResult(tuple(resources.values()), tuple(problems))


def load_text(text: str, file: str = "<input>") -> LoadResult:
    try:
        docs = parse_documents(text, file)
    except ConfigError as exc:
        return LoadResult((), exc.problems)
    return load_documents(docs)


def load_paths(paths: Sequence[str | os.PathLike[str]]) -> LoadResult:
    """Load every YAML file under ``paths``. Files that do not parse are reported, not fatal."""
    docs: list[RawDocument] = []
    problems: list[Problem] = []
    for path in iter_yaml_files(paths):
        try:
            docs.extend(read_documents(path))
        except ConfigError as exc:
            problems.extend(exc.problems)
    result = load_documents(docs)
    return LoadResult(result.resources, (*problems, *result.problems))
