"""MeshConfig: defaults, a file round trip, known-but-ignored Istio fields, and every rule, each
reported with ``file:line`` (istio/api mesh/v1alpha1/config.proto; istio/istio
pkg/config/validation/agent extensionprovider.go and ValidateTrustDomain)."""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish.config.decode import JsonValue, format_duration, message_fields
from pilotfish.config.mesh import (
    DEFAULT_MESH,
    IGNORED_FIELDS,
    EnvoyExtAuthzGrpcProvider,
    EnvoyExtAuthzHttpProvider,
    ExtensionProvider,
    MeshConfig,
    OutboundTrafficPolicy,
    PathNormalization,
    RequestBody,
    load_mesh_config,
)
from pilotfish.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[tuple[int, str, str]]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_mesh_config(path)
    assert all(p.file == str(path) for p in exc.value.problems)
    return [(p.line, p.path, p.message) for p in exc.value.problems]


def test_defaults_are_istios() -> None:
    assert DEFAULT_MESH.root_namespace == "istio-system"
    assert DEFAULT_MESH.trust_domain == "cluster.local"
    assert DEFAULT_MESH.enable_auto_mtls is True
    assert DEFAULT_MESH.outbound_traffic_policy.mode == "ALLOW_ANY"
    assert DEFAULT_MESH.extension_providers == () and DEFAULT_MESH.trust_domain_aliases == ()


def test_empty_file_is_the_default_mesh(tmp_path: Path) -> None:
    assert load_mesh_config(write(tmp_path, "# nothing here\n")) == DEFAULT_MESH


ISTIO_EXAMPLE = """\
# The mesh key of Istio's ConfigMap, as istio.io's ext-authz task sets it.
accessLogFile: /dev/stdout
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  proxyMetadata: {}
  tracing:
    zipkin:
      address: zipkin.istio-system:9411
enablePrometheusMerge: true
rootNamespace: istio-system
trustDomain: cluster.local
extensionProviders:
- name: "sample-ext-authz-grpc"
  envoyExtAuthzGrpc:
    service: "ext-authz.foo.svc.cluster.local"
    port: "9000"
- name: "sample-ext-authz-http"
  envoyExtAuthzHttp:
    service: "ext-authz.foo.svc.cluster.local"
    port: 8000
    includeRequestHeadersInCheck: ["x-ext-authz"]
- name: otel
  opentelemetry:
    service: opentelemetry-collector.observability.svc.cluster.local
    port: 4317
"""


def test_an_istio_mesh_config_loads_and_unused_fields_are_ignored(tmp_path: Path) -> None:
    # port "9000" is a string in the doc; protobuf JSON takes quoted integers, our decoder does not.
    text = ISTIO_EXAMPLE.replace('port: "9000"', "port: 9000")
    mesh = load_mesh_config(write(tmp_path, text))
    assert mesh.root_namespace == "istio-system"
    assert mesh.default_config == JsonValue(
        {
            "discoveryAddress": "istiod.istio-system.svc:15012",
            "proxyMetadata": {},
            "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}},
        }
    )
    grpc = mesh.extension_provider("sample-ext-authz-grpc")
    http = mesh.extension_provider("sample-ext-authz-http")
    assert grpc is not None and grpc.ext_authz == EnvoyExtAuthzGrpcProvider(
        "ext-authz.foo.svc.cluster.local", 9000
    )
    assert http is not None and http.envoy_ext_authz_http is not None
    assert http.envoy_ext_authz_http.include_request_headers_in_check == ("x-ext-authz",)
    otel = mesh.extension_provider("otel")
    assert otel is not None and otel.ext_authz is None and otel.opentelemetry is not None
    assert mesh.extension_provider("missing") is None


def test_snake_case_field_names_are_accepted(tmp_path: Path) -> None:
    mesh = load_mesh_config(
        write(
            tmp_path,
            """\
            root_namespace: mesh-root
            trust_domain_aliases: [old.td]
            enable_auto_mtls: false
            access_log_file: /dev/stdout
            extension_providers:
            - name: a
              envoy_ext_authz_grpc: {service: authz.svc, port: 9191, fail_open: true}
            """,
        )
    )
    assert (mesh.root_namespace, mesh.trust_domain_aliases, mesh.enable_auto_mtls) == (
        "mesh-root",
        ("old.td",),
        False,
    )
    assert mesh.extension_providers[0].envoy_ext_authz_grpc == EnvoyExtAuthzGrpcProvider(
        "authz.svc", 9191, fail_open=True
    )


def test_every_ignored_field_is_accepted(tmp_path: Path) -> None:
    text = "".join(f"{name}: null\n" for name in sorted(IGNORED_FIELDS))
    assert load_mesh_config(write(tmp_path, text)) == DEFAULT_MESH


def test_ignored_fields_do_not_overlap_the_modelled_ones() -> None:
    assert not IGNORED_FIELDS & {f.json for f in message_fields(MeshConfig)}


# ---- round trip: a mesh → YAML (camelCase, as Istio writes it) → the same mesh -------------------


def to_data(value: Any) -> Any:
    """A model value as protobuf-style JSON data, written by walking the dataclass fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.json: to_data(getattr(value, f.attr)) for f in message_fields(type(value))}
    if isinstance(value, tuple):
        return [to_data(v) for v in value]
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    return value


FULL = MeshConfig(
    root_namespace="pilotfish-system",
    trust_domain="example.org",
    trust_domain_aliases=("old.example.org", "legacy.local"),
    default_config=JsonValue({"holdApplicationUntilProxyStarts": True}),
    extension_providers=(
        ExtensionProvider(
            "authz-http",
            envoy_ext_authz_http=EnvoyExtAuthzHttpProvider(
                service="foo/authz.example.org",
                port=8000,
                timeout=timedelta(milliseconds=1500),
                path_prefix="/check",
                fail_open=True,
                status_on_error="503",
                include_request_headers_in_check=("authorization", "x-*"),
                include_additional_headers_in_check={"x-from": "envoy"},
                include_request_body_in_check=RequestBody(4096, True, False),
                headers_to_upstream_on_allow=("x-user",),
                headers_to_downstream_on_deny=("set-cookie",),
                headers_to_downstream_on_allow=("x-trace",),
            ),
        ),
        ExtensionProvider(
            "authz-grpc",
            envoy_ext_authz_grpc=EnvoyExtAuthzGrpcProvider(
                "10.0.0.7", 9191, timeout=timedelta(seconds=2), status_on_error="403"
            ),
        ),
    ),
    enable_auto_mtls=False,
    outbound_traffic_policy=OutboundTrafficPolicy("REGISTRY_ONLY"),
    path_normalization=PathNormalization("MERGE_SLASHES"),
)


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    data = to_data(FULL)
    for provider in data["extensionProviders"]:  # unset oneof members are left out, as Istio writes them
        for kind in [k for k, v in provider.items() if v is None]:
            del provider[kind]
    path = write(tmp_path, yaml.safe_dump(data, sort_keys=False))
    assert load_mesh_config(path) == FULL


# ---- rejected, with file:line and field path -------------------------------------------------------

GRPC = "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc: "
REJECTED = [
    ("unknown-field", "rootNamespace: a\nnotAMeshField: 1\n", 2, "notAMeshField", "unknown field"),
    ("removed-field", "mixerCheckServer: x\n", 1, "mixerCheckServer", "unknown field"),
    ("bad-trust-domain", "trustDomain: Not_A_Domain\n", 1, "trustDomain", "trust domain name"),
    ("bad-alias", "trustDomainAliases:\n- ok.local\n- bad..td\n", 3, "trustDomainAliases[1]", "invalid"),
    ("bad-root-namespace", "rootNamespace: Istio_System\n", 1, "rootNamespace", "DNS-1123 label"),
    (
        "bad-outbound-mode",
        "outboundTrafficPolicy:\n  mode: VIRTUAL_SERVICE_ONLY\n",
        2,
        "outboundTrafficPolicy.mode",
        "must be one of",
    ),
    (
        "provider-without-name",
        "extensionProviders:\n- envoyExtAuthzGrpc: {service: a.svc, port: 1}\n",
        2,
        "extensionProviders[0].name",
        "required field is missing",
    ),
    (
        "provider-empty-name",
        "extensionProviders:\n- name: ''\n  prometheus: {}\n",
        2,
        "extensionProviders[0].name",
        "empty extension provider name",
    ),
    (
        "provider-duplicate",
        "extensionProviders:\n- name: a\n  prometheus: {}\n- name: a\n  prometheus: {}\n",
        4,
        "extensionProviders[1].name",
        "duplicate extension provider name a",
    ),
    (
        "provider-two-kinds",
        "extensionProviders:\n- name: a\n  prometheus: {}\n  envoyExtAuthzGrpc: {service: a.svc, port: 1}\n",
        2,
        "extensionProviders[0]",
        "only one of",
    ),
    ("provider-no-kind", "extensionProviders:\n- name: a\n", 2, "extensionProviders[0]", "must set one of"),
    (
        "provider-no-service",
        "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc:\n    port: 9000\n",
        3,
        "extensionProviders[0].envoyExtAuthzGrpc.service",
        "service must not be empty",
    ),
    (
        "provider-no-port",
        "extensionProviders:\n- name: a\n  envoyExtAuthzHttp:\n    service: a.svc\n",
        3,
        "extensionProviders[0].envoyExtAuthzHttp.port",
        "between 1 and 65535",
    ),
    (
        "provider-port-range",
        "extensionProviders:\n- name: a\n  envoyExtAuthzHttp:\n    service: a.svc\n    port: 70000\n",
        5,
        "extensionProviders[0].envoyExtAuthzHttp.port",
        "between 1 and 65535",
    ),
    (
        "provider-bad-service",
        "extensionProviders:\n- name: a\n  envoyExtAuthzHttp:\n    service: a/b/c\n    port: 80\n",
        4,
        "extensionProviders[0].envoyExtAuthzHttp.service",
        "invalid service",
    ),
    (
        "provider-bad-host",
        "extensionProviders:\n- name: a\n  envoyExtAuthzHttp:\n    service: bad_host!\n    port: 80\n",
        4,
        "extensionProviders[0].envoyExtAuthzHttp.service",
        "invalid service",
    ),
    (
        "status-not-number",
        GRPC + "{service: a.svc, port: 1, statusOnError: forbidden}\n",
        3,
        "extensionProviders[0].envoyExtAuthzGrpc.statusOnError",
        "invalid statusOnError",
    ),
    (
        "status-unknown",
        GRPC + "{service: a.svc, port: 1, statusOnError: '499'}\n",
        3,
        "extensionProviders[0].envoyExtAuthzGrpc.statusOnError",
        "unsupported statusOnError",
    ),
    (
        "path-prefix-slash",
        "extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {service: a.svc, port: 1, pathPrefix: check}\n",
        3,
        "extensionProviders[0].envoyExtAuthzHttp.pathPrefix",
        "should begin with `/`",
    ),
    (
        "unknown-provider-field",
        "extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {service: a.svc, port: 1, failClosed: true}\n",
        3,
        "extensionProviders[0].envoyExtAuthzHttp.failClosed",
        "unknown field",
    ),
    (
        "bad-duration",
        "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc: {service: a.svc, port: 1, timeout: soon}\n",
        3,
        "extensionProviders[0].envoyExtAuthzGrpc.timeout",
        "invalid duration",
    ),
]


@pytest.mark.parametrize(("case", "text", "line", "path", "message"), REJECTED, ids=[c[0] for c in REJECTED])
def test_invalid_mesh_config_is_rejected_with_file_line_and_path(
    tmp_path: Path, case: str, text: str, line: int, path: str, message: str
) -> None:
    found = problems(tmp_path, text)
    assert any(ln == line and p == path and message in m for ln, p, m in found), found


def test_a_mesh_file_is_one_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "- rootNamespace: a\n")[0][2].startswith("a mesh config must be a YAML mapping")
    assert problems(tmp_path, "rootNamespace: a\n---\ntrustDomain: b\n")[0][:1] == (3,)


def test_unreadable_or_malformed_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_mesh_config(tmp_path / "missing.yaml")
    assert "invalid YAML" in problems(tmp_path, "rootNamespace: [\n")[0][2]
