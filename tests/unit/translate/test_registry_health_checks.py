"""The health-check annotation → Envoy ``HealthCheck`` (pure), validated by Envoy itself."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import json_format

from pilotfish.config.loader import load_text, parse_resource
from pilotfish.config.networking.health_check import (
    ANNOTATION,
    HttpCheck,
    health_check_problems,
    parse_health_check,
)
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.translate.health import health_checks_for


def service_entry(annotation: str | None) -> str:
    annotations = f"annotations: {{{ANNOTATION}: '{annotation}'}}" if annotation is not None else ""
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
  namespace: prod
  {annotations}
spec:
  hosts: [ratings.example]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
"""


def snapshot(annotation: str | None) -> MeshSnapshot:
    result = load_text(service_entry(annotation))
    assert not result.errors, result.errors
    return MeshSnapshot.build(result.resources)


def test_defaults_follow_kong_and_envoy() -> None:
    assert parse_health_check({ANNOTATION: '{"path": "/healthz"}'}) == HttpCheck("/healthz")
    assert parse_health_check({}) is None


def test_the_annotation_becomes_an_envoy_http_health_check() -> None:
    mesh = snapshot('{"path": "/ready", "interval": "500ms", "timeout": "2s", "unhealthyThreshold": 3}')
    (check,) = health_checks_for(mesh, mesh.services[0])
    as_json = json_format.MessageToDict(check)
    assert as_json == {
        "timeout": "2s",
        "interval": "0.500s",
        "noTrafficInterval": "0.500s",
        "unhealthyThreshold": 3,
        "healthyThreshold": 1,
        "httpHealthCheck": {"path": "/ready", "expectedStatuses": [{"start": "200", "end": "400"}]},
    }
    cluster = cluster_pb2.Cluster(name="c")
    cluster.health_checks.extend(health_checks_for(mesh, mesh.services[0]))
    assert cluster.health_checks[0].http_health_check.path == "/ready"


def test_no_annotation_no_health_check() -> None:
    mesh = snapshot(None)
    assert health_checks_for(mesh, mesh.services[0]) == []


BAD = [
    ("not json", ""),
    ('["/healthz"]', ""),
    ('{"interval": "5s"}', "path"),
    ('{"path": "healthz"}', "path"),
    ('{"path": "/h", "interval": "soon"}', "interval"),
    ('{"path": "/h", "timeout": "0s"}', "timeout"),
    ('{"path": "/h", "unhealthyThreshold": 0}', "unhealthyThreshold"),
    ('{"path": "/h", "healthyThreshold": true}', "healthyThreshold"),
    ('{"path": "/h", "expectedStatuses": [[200, 100]]}', "expectedStatuses"),
    ('{"path": "/h", "probe": "tcp"}', "probe"),
]


@pytest.mark.parametrize(("annotation", "field"), BAD)
def test_an_invalid_annotation_rejects_the_service_entry_at_its_path(annotation: str, field: str) -> None:
    result = load_text(service_entry(annotation))
    assert not result.resources, "a ServiceEntry with a bad health check must not reach the mesh"
    want = f"metadata.annotations[{ANNOTATION}]" + (f".{field}" if field else "")
    assert [p.path for p in result.errors] == [want], result.errors


def test_an_unparsable_annotation_adds_no_check_even_if_it_reached_a_snapshot() -> None:
    """Defence in depth: translation never ejects healthy hosts over a check it cannot read."""
    entry, _ = parse_resource(yaml.safe_load(service_entry(None)), "<t>", 1)
    bad = dataclasses.replace(entry, annotations={ANNOTATION: "{not json"})
    mesh = MeshSnapshot.build([bad])
    assert health_checks_for(mesh, mesh.services[0]) == []
    assert health_check_problems(bad)


def test_valid_annotations_have_no_problems() -> None:
    mesh = snapshot(json.dumps({"path": "/h", "expectedStatuses": [[200, 201], [204, 205]]}))
    assert health_check_problems(mesh.resources[0]) == []
    (check,) = health_checks_for(mesh, mesh.services[0])
    assert [(r.start, r.end) for r in check.http_health_check.expected_statuses] == [(200, 201), (204, 205)]
    assert parse_health_check(mesh.resources[0].annotations).interval == timedelta(seconds=5)  # type: ignore[union-attr]
