"""The exception tree of pilotfish.

::

    PilotfishError                 base of everything we raise on purpose
    ├── ConfigError                the operator's input is invalid (YAML, Istio resources, mesh config,
    │                              API bodies); carries one ``Problem`` per finding
    ├── PeerError                  a peer broke a protocol rule (malformed Envoy node, bad CSR, bad request)
    │   └── PeerUnauthorized       the peer is not allowed what it asks for (identity mismatch)
    └── StoreUnavailable           the datastore cannot be reached; callers keep serving the last good state

Lower-layer exceptions (yaml, grpc, psycopg, cryptography) are translated at the module edge
that calls the library, so callers see only these.
"""

from __future__ import annotations

from dataclasses import dataclass


class PilotfishError(Exception):
    """Base class of every error pilotfish raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about the operator's input, printed as ``FILE:LINE: REF: FIELD.PATH: MESSAGE``."""

    message: str
    path: str = ""  # dotted field path, e.g. "spec.subsets[1].name"
    file: str = "<input>"
    line: int = 0
    ref: str = ""  # Kind/namespace/name when known
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}"]
        if self.ref:
            parts.append(self.ref)
        if self.path:
            parts.append(self.path)
        if self.severity != "error":
            parts.append(self.severity)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigError(PilotfishError):
    """The operator's input is invalid. ``problems`` lists every finding, never empty."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        if not self.problems:
            raise ValueError("ConfigError needs at least one problem")
        super().__init__("\n".join(str(p) for p in self.problems))


class PeerError(PilotfishError):
    """A peer (Envoy, an agent, an API client) broke a protocol rule."""


class PeerUnauthorized(PeerError):
    """The peer is well-formed but not allowed what it asks for (e.g. a node claiming an
    identity its connection does not prove). Servers answer PERMISSION_DENIED."""


class StoreUnavailable(PilotfishError):
    """The datastore cannot be reached right now; the last good state keeps serving."""
