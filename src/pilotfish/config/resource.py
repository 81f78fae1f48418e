"""The envelope every Istio resource shares: apiVersion, kind, metadata, spec — and where it came from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pilotfish.config.decode import JsonValue, Message, Path
from pilotfish.config.decode import field as jfield

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class ObjectMeta(Message):
    """Kubernetes ObjectMeta. Fields that only the API server sets are accepted and ignored,
    so the output of ``kubectl get -o yaml`` loads as is."""

    name: str = jfield(required=True)
    namespace: str = ""
    labels: Mapping[str, str] = jfield(default_factory=dict)
    annotations: Mapping[str, str] = jfield(default_factory=dict)
    generate_name: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: JsonValue | None = None
    deletion_timestamp: JsonValue | None = None
    deletion_grace_period_seconds: int = 0
    finalizers: tuple[str, ...] = ()
    owner_references: JsonValue | None = None
    managed_fields: JsonValue | None = None
    self_link: str = ""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a resource was read from: a file and line, or an API call (file ``"<api>"``)."""

    file: str = "<input>"
    line: int = 0


@dataclass(frozen=True, slots=True)
class Resource(Generic[S]):
    """One validated Istio resource. ``spec`` is the kind's frozen spec dataclass."""

    api_version: str
    kind: str
    name: str
    namespace: str
    spec: S
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    origin: Origin = Origin()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def group(self) -> str:
        group, slash, _ = self.api_version.partition("/")
        return group if slash else ""  # the core group: ``apiVersion: v1``


@dataclass(frozen=True, slots=True)
class Finding:
    """A semantic problem found by a kind's validator: a field path under the document and a message."""

    path: Path
    message: str
    severity: str = "error"  # "error" rejects the document; "warning" is printed but accepted
    root: str = "spec"  # the top-level key the path is under ("spec" or "metadata")


Validator = Callable[[Resource[Any]], Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class KindInfo:
    """How to read and check one kind. ``validate`` is pure: the resource in, findings out."""

    kind: str
    group: str
    versions: tuple[str, ...]
    spec: type
    validate: Validator
    plural: str = ""
    namespaced: bool = (
        True  # False: cluster-scoped (Namespace): keyed under "default", whatever metadata says
    )

    def api_versions(self) -> tuple[str, ...]:
        # The core group ("") is spelled by its version alone: ``apiVersion: v1``.
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.versions)
