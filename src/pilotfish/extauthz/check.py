"""``pilotfish authz check``: evaluate one request offline with the code the server uses.

``run_check(config_dir, mesh_file, request_file)`` loads the Istio resources under
``config_dir`` (an error in any document is a ``ConfigError``: an offline answer about partly
loaded config would mislead), the optional mesh config, and a request file::

    {"workload": {"namespace", "labels", "serviceAccount", "ip", "port"},
     "source": {"principal", "ip", "remoteIp"},
     "request": {"method", "path", "host", "headers", "sni"},
     "now": 1700000000}

then authenticates JWTs (fetching JWKS through a ``JwksCache``; the fetch is injectable) and
returns the decision as a JSON-ready dict: ``decision``, ``status``, ``reason``, ``policy``,
``rule``, ``headersToSet``, ``headersToRemove``, plus ``responseHeaders`` (e.g.
``WWW-Authenticate`` on a 401), ``customProvider`` (a CUSTOM provider the server would ask first;
offline it cannot be asked, so the rest of the answer is what applies if it allows), ``audit``
and ``dryRun`` findings. ``now`` may be Unix seconds or RFC 3339; absent, the current time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pilotfish.config.loader import load_paths
from pilotfish.config.mesh import DEFAULT_MESH, MeshConfig, load_mesh_config
from pilotfish.config.resource import Resource
from pilotfish.errors import ConfigError, Problem
from pilotfish.extauthz.attributes import Attributes, from_json
from pilotfish.extauthz.evaluate import Decision, evaluate
from pilotfish.extauthz.jwks import Fetch, JwksCache
from pilotfish.extauthz.jwks_fetch import fetch_jwks
from pilotfish.extauthz.jwt import Authenticator, compile_providers
from pilotfish.extauthz.policy import compile_policies, policies_for_workload
from pilotfish.limits import loads_json

PathLike = str | os.PathLike[str]


def read_request(request_file: PathLike, default_now: float) -> Attributes:
    """The request file as ``Attributes``; ``ConfigError`` with the file name when malformed."""
    file = str(request_file)
    try:
        data = loads_json(Path(request_file).read_text(), "the request file")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return from_json(data, default_now)
    except (OSError, ValueError) as exc:
        raise ConfigError([Problem(f"bad request file: {exc}", file=file)]) from None


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "decision": "allow" if decision.allow else "deny",
        "status": decision.status,
        "reason": decision.reason,
        "policy": decision.policy,
        "rule": decision.rule,
        "headersToSet": dict(decision.headers_to_set),
        "headersToRemove": list(decision.headers_to_remove),
        "responseHeaders": dict(decision.response_headers),
        "customProvider": decision.custom_provider,
        "audit": [{"policy": m.policy, "rule": m.rule} for m in decision.audit],
        "dryRun": [
            {"action": f.action, "would": f.would, "policy": f.policy, "rule": f.rule}
            for f in decision.dry_run
        ],
    }


async def check_request(
    resources: Iterable[Resource[Any]],
    mesh: MeshConfig,
    attributes: Attributes,
    fetch: Fetch,
    *,
    strict: bool = False,
) -> Decision:
    """Authenticate and evaluate one request against loaded resources."""
    resources = tuple(resources)
    workload = attributes.workload
    scope = (workload.namespace, workload.labels, mesh.root_namespace)
    providers = compile_providers(resources, *scope)
    authn = await Authenticator(JwksCache(fetch), strict=strict).authenticate(
        providers, attributes.request, attributes.now
    )
    policies = policies_for_workload(compile_policies(resources, mesh), *scope)
    return evaluate(policies, attributes, authn)


def run_check(
    config_dir: PathLike,
    mesh_file: PathLike | None,
    request_file: PathLike,
    *,
    fetch: Fetch = fetch_jwks,
    strict: bool = False,
) -> dict[str, Any]:
    """The ``authz check`` answer as a JSON-ready dict. Raises ``ConfigError`` on bad input."""
    loaded = load_paths([config_dir])
    if loaded.errors:
        raise ConfigError(loaded.errors)
    mesh = load_mesh_config(Path(mesh_file)) if mesh_file is not None else DEFAULT_MESH
    attributes = read_request(request_file, time.time())
    return decision_json(asyncio.run(check_request(loaded.resources, mesh, attributes, fetch, strict=strict)))
