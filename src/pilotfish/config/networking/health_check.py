"""The ``pilotfish.io/health-check`` ServiceEntry annotation: an active HTTP health check (pure).

pilotfish-specific (Istio has no active health checks): Envoy probes every endpoint of the
service's clusters itself, so a target that stops answering leaves the load balancer even while
its registration lease is alive (Kong's ``healthchecks.active``, Kuma's MeshHealthCheck)::

    metadata:
      annotations:
        pilotfish.io/health-check: '{"path": "/healthz", "interval": "5s"}'

Fields (JSON object; durations as Istio writes them, ``"500ms"``, ``"5s"``)::

    path                 required, the HTTP path probed (GET)
    host                 Host header; default: the cluster name, as Envoy does
    interval             default 5s
    timeout              default 1s (Kong's default)
    unhealthyThreshold   failures before a host is ejected, default 2
    healthyThreshold     successes before it returns, default 1
    expectedStatuses     list of [start, end) ranges, default [[200, 400)]: 2xx and 3xx, as Kong

The ServiceEntry validator rejects an annotation that does not parse (``health_check_problems``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pilotfish.config.decode import parse_duration
from pilotfish.config.resource import Finding, Resource
from pilotfish.limits import loads_json

ANNOTATION = "pilotfish.io/health-check"
_DURATIONS = {"interval": timedelta(seconds=5), "timeout": timedelta(seconds=1)}
_THRESHOLDS = {"unhealthyThreshold": 2, "healthyThreshold": 1}
_KNOWN = {"path", "host", "expectedStatuses", *_DURATIONS, *_THRESHOLDS}


@dataclass(frozen=True, slots=True)
class HttpCheck:
    path: str
    host: str = ""
    interval: timedelta = _DURATIONS["interval"]
    timeout: timedelta = _DURATIONS["timeout"]
    unhealthy_threshold: int = _THRESHOLDS["unhealthyThreshold"]
    healthy_threshold: int = _THRESHOLDS["healthyThreshold"]
    expected_statuses: tuple[tuple[int, int], ...] = ((200, 400),)


class InvalidHealthCheck(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def health_check_problems(resource: Resource[Any]) -> list[Finding]:
    """Why a ServiceEntry's health-check annotation is invalid (empty when absent or valid)."""
    try:
        parse_health_check(resource.annotations)
    except InvalidHealthCheck as exc:
        return [Finding(("annotations", ANNOTATION, *filter(None, [exc.path])), str(exc), root="metadata")]
    return []


def parse_health_check(annotations: Mapping[str, str]) -> HttpCheck | None:
    """The check an annotation asks for, ``None`` without one; raises ``_Invalid``."""
    text = annotations.get(ANNOTATION)
    if text is None:
        return None
    try:
        raw = loads_json(text, "the annotation")
    except ValueError as exc:
        raise InvalidHealthCheck("", f"must be a JSON object: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidHealthCheck("", "must be a JSON object")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise InvalidHealthCheck(unknown[0], f"unknown field (known: {', '.join(sorted(_KNOWN))})")
    return HttpCheck(
        path=_path(raw),
        host=_text(raw, "host"),
        interval=_duration(raw, "interval"),
        timeout=_duration(raw, "timeout"),
        unhealthy_threshold=_threshold(raw, "unhealthyThreshold"),
        healthy_threshold=_threshold(raw, "healthyThreshold"),
        expected_statuses=_statuses(raw),
    )


def _path(raw: Mapping[str, Any]) -> str:
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidHealthCheck("path", "required: an absolute HTTP path such as /healthz")
    return path


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise InvalidHealthCheck(key, "must be a string")
    return value


def _duration(raw: Mapping[str, Any], key: str) -> timedelta:
    value = raw.get(key)
    if value is None:
        return _DURATIONS[key]
    try:
        parsed = parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed <= timedelta(0):
        raise InvalidHealthCheck(key, f"must be a positive duration such as '5s' or '500ms', got {value!r}")
    return parsed


def _threshold(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key, _THRESHOLDS[key])
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 2**32 - 1:
        raise InvalidHealthCheck(key, "must be a positive integer")
    return value


def _statuses(raw: Mapping[str, Any]) -> tuple[tuple[int, int], ...]:
    value = raw.get("expectedStatuses", [[200, 400]])
    if not (isinstance(value, list) and value and all(_is_range(r) for r in value)):
        raise InvalidHealthCheck(
            "expectedStatuses", "must be a list of [start, end) status ranges within 100..600"
        )
    return tuple((int(start), int(end)) for start, end in value)


def _is_range(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 100 <= value[0] < value[1] <= 600
    )
