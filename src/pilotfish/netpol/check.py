"""``pilotfish netpol check``: one connection decided offline, with the code enforcement uses.

``--from``/``--to`` name a workload (``namespace/name``, a unique ``name``, or an IP; an IP no
workload has is an address outside the mesh). Config errors are a ``ConfigError``: an answer
about partly loaded config would mislead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pilotfish.config.loader import load_paths
from pilotfish.errors import ConfigError, Problem
from pilotfish.netpol.decide import Endpoint, decide
from pilotfish.netpol.model import World, is_ip
from pilotfish.netpol.pods import world_of_resources


def endpoint(world: World, text: str, flag: str) -> Endpoint:
    pod = world.find_pod(text)
    if pod is not None:
        return Endpoint(pod.ip, pod)
    if is_ip(text):
        return Endpoint(text)
    known = ", ".join(p.ref for p in world.pods) or "none"
    raise ConfigError([Problem(f"{flag} {text!r} is no workload (known: {known}) and no IP address")])


def run_check(
    paths: Sequence[str | os.PathLike[str]], source: str, destination: str, port: int, protocol: str = "TCP"
) -> dict[str, Any]:
    result = load_paths(paths)
    if result.errors:
        raise ConfigError(result.errors)
    world = world_of_resources(result.resources)
    src, dst = endpoint(world, source, "--from"), endpoint(world, destination, "--to")
    out = decide(world, src, dst, port, protocol).to_json()
    return {"from": src.name, "to": dst.name, "port": port, "protocol": protocol, **out}
