"""``validate``'s NetworkPolicy warnings: a policy whose ``podSelector`` selects no workload in
its namespace isolates nothing (a typo in a label, or the workloads are not declared yet)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pilotfish.config.resource import Resource
from pilotfish.errors import Problem
from pilotfish.netpol.model import World
from pilotfish.netpol.pods import world_of_resources
from pilotfish.netpol.rules import selects


def analyze(resources: Iterable[Resource[Any]], world: World | None = None) -> Iterator[Problem]:
    world = world or world_of_resources(resources)
    for policy in world.policies:
        if not any(selects(policy, pod) for pod in world.pods):
            yield Problem(
                f"podSelector selects no workload in namespace {policy.namespace!r}: "
                "the policy isolates nothing",
                "spec.podSelector",
                policy.origin.file,
                policy.origin.line,
                policy.ref,
                "warning",
            )
