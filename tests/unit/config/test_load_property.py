"""Property: any YAML text either loads or raises the one documented ``ConfigError`` — never
another exception (h11's fuzzed invariant, applied to our config edge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilotfish.config.kinds import KINDS
from pilotfish.config.loader import parse_resource
from pilotfish.config.source import parse_documents
from pilotfish.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        ["*", "1s", "10ms", "-1s", "LEAST_CONN", "ALLOW", "DENY", "CUSTOM", "STRICT", "0.0.0.0/0", "a/b"]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
field_names = st.sampled_from(
    [
        "hosts",
        "http",
        "route",
        "destination",
        "host",
        "subsets",
        "name",
        "labels",
        "trafficPolicy",
        "loadBalancer",
        "simple",
        "consistentHash",
        "rules",
        "from",
        "to",
        "when",
        "source",
        "operation",
        "key",
        "values",
        "selector",
        "matchLabels",
        "jwtRules",
        "issuer",
        "jwks",
        "jwksUri",
        "mtls",
        "mode",
        "portLevelMtls",
        "servers",
        "port",
        "number",
        "protocol",
        "endpoints",
        "address",
        "ports",
        "weight",
        "egress",
        "ingress",
        "match",
        "uri",
        "exact",
        "action",
        "provider",
        "timeout",
        "retries",
        "fault",
        "abort",
        "delay",
        "percentage",
        "value",
    ]
)
spec_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_names, inner, max_size=4),
    max_leaves=30,
)


def check(text: str) -> None:
    try:
        for doc in parse_documents(text, "fuzz.yaml"):
            parse_resource(doc.data, doc.file, doc.line)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            str(problem)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    check(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(KINDS)),
    st.sampled_from(["v1", "v1beta1", "v1alpha3", "v2"]),
    spec_like,
    json_values,
)
def test_istio_shaped_documents(kind: str, version: str, spec: Any, metadata: Any) -> None:
    group = KINDS[kind].group
    doc = {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": metadata, "spec": spec}
    check(yaml.safe_dump(doc))
    check(yaml.safe_dump({**doc, "metadata": {"name": "x", "namespace": "ns"}}))


def example_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        docs.extend(
            d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind") in KINDS
        )
    return docs or [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": "we"},
            "spec": {"address": "10.0.0.1"},
        }
    ]


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


def replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: replace(value[head], tuple(rest), new)}
    copy = list(value)
    copy[head] = replace(value[head], tuple(rest), new)
    return copy


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_documents(data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(example_documents()))
    path = data.draw(st.sampled_from(paths_of(doc)))
    mutated = replace(doc, path, data.draw(json_values))
    check(yaml.safe_dump(mutated))
