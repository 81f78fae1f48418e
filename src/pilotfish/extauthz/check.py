"""``pilotfish authz check``: evaluate one request offline with the code the server uses.

``run_check(config_dir, mesh_file, request_file)`` loads the Istio resources under
``config_dir`` (an error in any document is a ``ConfigError``: an offline answer about partly
loaded config would mislead), the optional mesh config, and a request file::

    {"workload": {"namespace", "labels", "serviceAccount", "ip", "port", "annotations"},
     "source": {"principal", "ip", "remoteIp"},
     "request": {"method", "path", "host", "headers", "sni"},
     "now": 1700000000}

then authenticates JWTs (fetching JWKS through a ``JwksCache``; the fetch is injectable) and
returns the decision as a JSON-ready dict: ``decision``, ``status``, ``reason``, ``policy``,
``rule``, ``headersToSet``, ``headersToRemove``, ``normalizedPath`` (the path after the mesh's
``pathNormalization``, what the data path evaluates), ``enforcement`` (``mode``: native, ext_authz
or none, and ``fallback``: why native was asked for but not used), plus ``responseHeaders`` (e.g.
``WWW-Authenticate`` on a 401), ``customProvider`` (a CUSTOM provider the server would ask first;
offline it cannot be asked, so the rest of the answer is what applies if it allows), ``audit``
and ``dryRun`` findings. ``now`` may be Unix seconds or RFC 3339; absent, the current time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pilotfish.config.loader import load_paths
from pilotfish.config.mesh import DEFAULT_MESH, MeshConfig, load_mesh_config
from pilotfish.config.resource import Resource
from pilotfish.config.security.enforcement import AUTHZ_MODES, MODE_ANNOTATION, choose_mode
from pilotfish.config.security.targeting import resource_in_scope
from pilotfish.errors import ConfigError, Problem
from pilotfish.extauthz.attributes import Attributes, from_json
from pilotfish.extauthz.evaluate import Decision, evaluate
from pilotfish.extauthz.jwks import Fetch, JwksCache
from pilotfish.extauthz.jwks_fetch import fetch_jwks
from pilotfish.extauthz.jwt import Authenticator, compile_providers
from pilotfish.extauthz.path_normalization import normalize_path
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
    authz_mode: str = "ext_authz",
) -> dict[str, Any]:
    """The ``authz check`` answer as a JSON-ready dict. Raises ``ConfigError`` on bad input.

    The request's path is normalized first with the mesh's ``pathNormalization``, as Envoy's
    connection manager does before any filter sees it; a path Envoy would reject is a 400.
    ``enforcement`` says which mode the workload would use (``authz_mode`` is ``serve
    --authz-mode``; the request's ``workload.annotations`` may override it, as a proxy's can)."""
    loaded = load_paths([config_dir])
    if loaded.errors:
        raise ConfigError(loaded.errors)
    mesh = load_mesh_config(Path(mesh_file)) if mesh_file is not None else DEFAULT_MESH
    attributes = read_request(request_file, time.time())
    enforcement = _enforcement(loaded.resources, mesh, attributes, _requested(request_file, authz_mode))
    normalized = normalize_path(attributes.request.path, mesh.path_normalization.normalization)
    if normalized is None:
        return {
            "decision": "deny",
            "status": 400,
            "reason": "Envoy rejects the path",
            "enforcement": enforcement,
        }
    attributes = dataclasses.replace(
        attributes, request=dataclasses.replace(attributes.request, path=normalized)
    )
    decision = asyncio.run(check_request(loaded.resources, mesh, attributes, fetch, strict=strict))
    return {**decision_json(decision), "normalizedPath": normalized, "enforcement": enforcement}


def _requested(request_file: PathLike, default: str) -> str:
    data = loads_json(Path(request_file).read_text(), "the request file")  # read_request checked it
    annotations = (data.get("workload") or {}).get("annotations") or {}
    value = annotations.get(MODE_ANNOTATION) if isinstance(annotations, dict) else None
    return value if value in AUTHZ_MODES else default


def _enforcement(
    resources: Iterable[Resource[Any]], mesh: MeshConfig, attributes: Attributes, requested: str
) -> dict[str, Any]:
    workload = attributes.workload
    selected = [
        r
        for r in resources
        if r.kind in ("AuthorizationPolicy", "RequestAuthentication")
        and resource_in_scope(r, workload.namespace, workload.labels, mesh.root_namespace)
    ]
    mode, fallback = choose_mode(
        [r for r in selected if r.kind == "AuthorizationPolicy"],
        [r for r in selected if r.kind == "RequestAuthentication"],
        requested,
    )
    return {"mode": mode, "fallback": fallback}
