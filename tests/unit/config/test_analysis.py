"""Cross-resource warnings (istioctl analyze): subsets, hosts, gateways, duplicate Sidecars."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.cli import main
from pilotfish.config.analysis import analyze
from pilotfish.config.loader import load_text

MESH = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


def vs(body: str) -> str:
    return (
        MESH
        + f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: default}}
spec:
  hosts: [reviews]
{body}"""
    )


def warnings(text: str) -> list[tuple[str, str]]:
    result = load_text(text, "mesh.yaml")
    assert not result.errors, result.errors
    problems = analyze(result.resources)
    assert all(p.severity == "warning" and p.file == "mesh.yaml" and p.line > 0 for p in problems)
    return [(p.path, p.message) for p in problems]


def test_known_hosts_subsets_and_gateways_give_no_warning() -> None:
    body = """  gateways: [gw, mesh, default/gw]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: api.example.com}, weight: 50}
"""
    assert warnings(vs(body)) == []


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (
            "  http:\n  - route: [{destination: {host: reviews, subset: v9}}]\n",
            "spec.http[0].route[0].destination.subset",
            "defines subset 'v9'",
        ),
        (
            "  http:\n  - route: [{destination: {host: ratings}}]\n",
            "spec.http[0].route[0].destination.host",
            "ratings.default.svc.cluster.local",
        ),
        (
            "  http:\n  - route: [{destination: {host: reviews}}]\n    mirror: {host: reviews, subset: v2}\n",
            "spec.http[0].mirror.subset",
            "subset 'v2'",
        ),
        (
            "  tcp:\n  - route: [{destination: {host: nowhere.example.org}}]\n",
            "spec.tcp[0].route[0].destination.host",
            "nowhere.example.org",
        ),
        (
            "  gateways: [missing]\n  http:\n  - route: [{destination: {host: reviews}}]\n",
            "spec.gateways[0]",
            "default/missing",
        ),
    ],
)
def test_each_broken_reference_is_one_warning_at_its_path(body: str, path: str, words: str) -> None:
    (found,) = warnings(vs(body))
    assert found[0] == path and words in found[1], found


def test_two_sidecars_without_selector_in_one_namespace() -> None:
    sidecar = (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {n}, namespace: default}}\n"
    )
    sidecar += "spec: {{egress: [{{hosts: [./*]}}]}}\n"
    found = warnings(MESH + "---\n" + sidecar.format(n="a") + "---\n" + sidecar.format(n="b"))
    assert len(found) == 2 and all(p == "spec.workloadSelector" for p, _ in found)


def test_validate_prints_warnings_but_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mesh.yaml").write_text(
        vs("  http:\n  - route: [{destination: {host: reviews, subset: v9}}]\n")
    )
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        "VirtualService/default/vs: spec.http[0].route[0].destination.subset: warning: no DestinationRule"
        in out
    )
