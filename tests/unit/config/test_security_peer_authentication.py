"""PeerAuthentication: Istio's documented examples decode; each validation rule rejects at its path
(istio/istio pkg/config/validation ValidatePeerAuthentication and the CRD's CEL rules)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotfish.config.loader import LoadResult, load_text
from pilotfish.config.security import peer_authentication as pa

VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")


def doc(spec: Any, *, version: str = VERSIONS[0], annotations: dict[str, str] | None = None) -> str:
    meta: dict[str, Any] = {
        "name": "pa",
        "namespace": "foo",
        **({"annotations": annotations} if annotations else {}),
    }
    return yaml.safe_dump(
        {"apiVersion": version, "kind": "PeerAuthentication", "metadata": meta, "spec": spec}
    )


def load(spec: Any, **kw: Any) -> LoadResult:
    return load_text(doc(spec, **kw), "pa.yaml")


def accepted(spec: Any, **kw: Any) -> pa.PeerAuthenticationSpec:
    result = load(spec, **kw)
    assert not result.errors, [str(p) for p in result.errors]
    spec_: pa.PeerAuthenticationSpec = result.resources[0].spec
    return spec_


def errors(spec: Any, **kw: Any) -> list[tuple[str, str]]:
    result = load(spec, **kw)
    assert not result.resources
    return [(p.path, p.message) for p in result.errors]


WORKLOAD = """
selector:
  matchLabels:
    app: finance
mtls:
  mode: STRICT
portLevelMtls:
  "8080":
    mode: DISABLE
  "9090":
    mode: PERMISSIVE
"""


@pytest.mark.parametrize("version", VERSIONS)
def test_documented_workload_policy_with_port_level_mtls(version: str) -> None:
    spec = accepted(yaml.safe_load(WORKLOAD), version=version)
    assert spec.mtls == pa.MutualTLS("STRICT")
    assert spec.port_level_mtls == {"8080": pa.MutualTLS("DISABLE"), "9090": pa.MutualTLS("PERMISSIVE")}
    assert spec.port_modes() == {8080: "DISABLE", 9090: "PERMISSIVE"}


@pytest.mark.parametrize("mode", ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"])
def test_namespace_wide_modes(mode: str) -> None:
    assert accepted({"mtls": {"mode": mode}}).mtls == pa.MutualTLS(mode)  # type: ignore[arg-type]


def test_empty_spec_and_snake_spelling() -> None:
    assert accepted({}) == pa.PeerAuthenticationSpec()
    spec = accepted(
        {"selector": {"match_labels": {"app": "a"}}, "port_level_mtls": {"80": {"mode": "DISABLE"}}}
    )
    assert spec.port_modes() == {80: "DISABLE"}
    assert pa.PortMutualTLS is pa.MutualTLS


SEL = {"selector": {"matchLabels": {"app": "a"}}}
REJECTED = [
    (
        "bad-mode",
        {"mtls": {"mode": "MUTUAL"}},
        "spec.mtls.mode",
        "must be one of UNSET, DISABLE, PERMISSIVE, STRICT",
    ),
    (
        "port-level-without-selector",
        {"portLevelMtls": {"80": {"mode": "DISABLE"}}},
        "spec.portLevelMtls",
        "cannot have port level mTLS",
    ),
    (
        "port-level-empty-selector",
        {"selector": {}, "portLevelMtls": {"80": {"mode": "DISABLE"}}},
        "spec.portLevelMtls",
        "cannot have port level mTLS",
    ),
    (
        "port-level-empty",
        {**SEL, "portLevelMtls": {}},
        "spec.portLevelMtls",
        "must have at least one element",
    ),
    (
        "port-zero",
        {**SEL, "portLevelMtls": {"0": {"mode": "DISABLE"}}},
        "spec.portLevelMtls.0",
        "must be in range 1..65535",
    ),
    (
        "port-too-big",
        {**SEL, "portLevelMtls": {"65536": {"mode": "DISABLE"}}},
        "spec.portLevelMtls.65536",
        "1..65535",
    ),
    (
        "port-not-number",
        {**SEL, "portLevelMtls": {"http": {"mode": "DISABLE"}}},
        "spec.portLevelMtls.http",
        "1..65535",
    ),
    (
        "port-bad-mode",
        {**SEL, "portLevelMtls": {"80": {"mode": "ON"}}},
        "spec.portLevelMtls.80.mode",
        "must be one of",
    ),
    (
        "selector-wildcard-value",
        {"selector": {"matchLabels": {"app": "*"}}},
        "spec.selector.matchLabels.app",
        "wildcard",
    ),
    ("unknown-field", {"mtls": {"mode": "STRICT", "strict": True}}, "spec.mtls.strict", "unknown field"),
]


@pytest.mark.parametrize(("case", "spec", "path", "message"), REJECTED, ids=[c[0] for c in REJECTED])
def test_invalid_policy_is_rejected_at_its_path(
    case: str, spec: dict[str, Any], path: str, message: str
) -> None:
    found = errors(spec)
    assert any(p == path and message in m for p, m in found), found


def test_dry_run_annotation_is_not_supported_on_peer_authentication() -> None:
    found = errors({}, annotations={"istio.io/dry-run": "false"})
    assert any("does not support this annotation" in m for _, m in found), found
