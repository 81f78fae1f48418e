"""Golden files: config in (``routes_golden/*.in.yaml``), RouteConfigurations out (``*.out.json``).

Each input names the proxy with ``# proxy: TYPE NAMESPACE [k=v,...]`` and the route names to build
with ``# routes: NAME,NAME``. ``PILOTFISH_UPDATE_GOLDEN=1`` rewrites the outputs; review the diff
before committing. Between them the cases cover every VirtualService field the routes translate.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from google.protobuf import json_format
from translate_builders import proxy, snapshot

from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate.routes import translate_routes
from pilotfish.xds.translate.virtual_hosts import RouteConfiguration

GOLDEN = Path(__file__).parent / "routes_golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))
PROXY_LINE = re.compile(r"^# proxy: (sidecar|router) ([a-z0-9-]+)(?: (\S+))?$", re.MULTILINE)
ROUTES_LINE = re.compile(r"^# routes: (\S+)$", re.MULTILINE)
UPDATE = os.environ.get("PILOTFISH_UPDATE_GOLDEN") == "1"


def case_input(case: str) -> tuple[MeshSnapshot, Proxy, list[str]]:
    text = (GOLDEN / f"{case}.in.yaml").read_text()
    proxy_match, routes_match = PROXY_LINE.search(text), ROUTES_LINE.search(text)
    assert proxy_match and routes_match, "a golden input needs '# proxy: ...' and '# routes: ...' lines"
    kind, namespace, labels = proxy_match.groups()
    pairs = dict(pair.split("=", 1) for pair in labels.split(",")) if labels else {}
    return snapshot(text), proxy(namespace, pairs, ProxyType(kind)), routes_match.group(1).split(",")


def case_routes(case: str) -> list[RouteConfiguration]:
    snap, client, names = case_input(case)
    return translate_routes(snap, client, names)


def render(case: str) -> str:
    configs = [json.loads(json_format.MessageToJson(c, sort_keys=True)) for c in case_routes(case)]
    return json.dumps(configs, indent=2, sort_keys=True) + "\n"


def test_there_are_golden_cases():
    assert len(CASES) >= 8


@pytest.mark.parametrize("case", CASES)
def test_golden(case):
    rendered = render(case)
    expected_path = GOLDEN / f"{case}.out.json"
    if UPDATE:
        expected_path.write_text(rendered)
    assert expected_path.exists(), f"no {expected_path.name}; run with PILOTFISH_UPDATE_GOLDEN=1"
    assert rendered == expected_path.read_text()


@pytest.mark.parametrize("case", CASES)
def test_translation_is_deterministic(case):
    """Same snapshot, same bytes: the xDS cache relies on it to push nothing when nothing changed."""
    first = [c.SerializeToString(deterministic=True) for c in case_routes(case)]
    again = [c.SerializeToString(deterministic=True) for c in case_routes(case)]
    assert first == again
