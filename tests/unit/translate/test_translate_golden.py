"""Golden files: config in (``golden/*.in.yaml``), clusters and endpoints out (``*.out.json``).

Each input names the proxy it is translated for in a ``# proxy: TYPE NAMESPACE [k=v,...]``
line. ``PILOTFISH_UPDATE_GOLDEN=1`` rewrites the outputs; review the diff before committing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
from google.protobuf import json_format
from translate_builders import proxy, snapshot

from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.translate import translate_clusters, translate_endpoints

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))
PROXY_LINE = re.compile(r"^# proxy: (sidecar|router) ([a-z0-9-]+)(?: (\S+))?$", re.MULTILINE)
UPDATE = os.environ.get("PILOTFISH_UPDATE_GOLDEN") == "1"


def proxy_of(text: str) -> Proxy:
    match = PROXY_LINE.search(text)
    assert match, "a golden input needs a '# proxy: TYPE NAMESPACE [k=v,...]' line"
    kind, namespace, labels = match.groups()
    pairs = dict(pair.split("=", 1) for pair in labels.split(",")) if labels else {}
    made = proxy(namespace, pairs, ProxyType(kind))
    # the proxy's own locality, as parse_node reads it from the istio-locality label
    return dataclasses.replace(made, locality=pairs.get("istio-locality", "").replace(".", "/"))


def render(text: str) -> str:
    snap, client = snapshot(text), proxy_of(text)
    clusters = translate_clusters(snap, client)
    endpoints = translate_endpoints(snap, client, clusters)
    document = {
        "clusters": [json.loads(json_format.MessageToJson(c, sort_keys=True)) for c in clusters],
        "endpoints": [json.loads(json_format.MessageToJson(e, sort_keys=True)) for e in endpoints],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def test_there_are_golden_cases():
    assert len(CASES) >= 5


@pytest.mark.parametrize("case", CASES)
def test_golden(case):
    rendered = render((GOLDEN / f"{case}.in.yaml").read_text())
    expected_path = GOLDEN / f"{case}.out.json"
    if UPDATE:
        expected_path.write_text(rendered)
    assert expected_path.exists(), f"no {expected_path.name}; run with PILOTFISH_UPDATE_GOLDEN=1"
    assert rendered == expected_path.read_text()
