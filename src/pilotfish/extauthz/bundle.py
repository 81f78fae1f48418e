"""The authz bundle: everything a Check needs, compiled once per config version.

The control plane builds one ``AuthzBundle`` from its validated resources after each reload
(``AuthzBundle.build(resources, mesh)``): it keeps the security resources
(AuthorizationPolicy, RequestAuthentication) and the mesh config, a ``version`` that is a content
hash of both (file names and line numbers do not count, so an unchanged config has an unchanged
version and workers can skip it), and the compiled policies. Per workload (namespace + labels) it
memoizes the policies in scope and the compiled JWT providers (inline JWKS parsed once).

``decide`` is the evaluation path, shared by the Check server and ``authz check``: compile
providers for the workload → ``Authenticator.authenticate`` → ``policies_for_workload`` →
``evaluate`` (the same steps as ``check.check_request``, with the compilation hoisted out of the
request). ``custom_step`` is step 1 of ``evaluate`` alone (CUSTOM, before authentication): the
Check server asks the extension provider it names (``custom``) before it calls ``decide``.

Shipping to worker processes. Compiled matchers are closures and JWK key objects are
cryptography handles; neither pickles. So a bundle pickles as its *source* (resources + mesh,
plain frozen dataclasses, ~1 KB per policy) and unpickling recompiles it: compilation is a pure,
deterministic function, so every worker holds an equivalent bundle with the same version, at a
cost of milliseconds per publish. We use pickle over a ``multiprocessing`` Pipe rather than a
gRPC stream because the parent and the workers are the same program at the same version (no
schema to evolve) and the pipe also tells each side when the other dies (EOF).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.config.mesh import (
    DEFAULT_MESH,
    EnvoyExtAuthzGrpcProvider,
    EnvoyExtAuthzHttpProvider,
    MeshConfig,
)
from pilotfish.config.resource import Resource
from pilotfish.config.security.request_authentication import DEFAULT_JWKS_TIMEOUT
from pilotfish.extauthz.attributes import Attributes
from pilotfish.extauthz.evaluate import Decision, PolicyMatch, evaluate
from pilotfish.extauthz.jwt import (
    Authenticator,
    AuthnResult,
    JwtProvider,
    compile_providers,
    provider_from_rule,
)
from pilotfish.extauthz.policy import CompiledPolicy, compile_policies, policies_for_workload
from pilotfish.kong.model import KONG_KINDS, KongConfig

SECURITY_KINDS = frozenset({"AuthorizationPolicy", "RequestAuthentication"})
MEMO_LIMIT = 4096  # distinct workloads remembered; the memo is cleared when it grows past this
WorkloadKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class WorkloadAuthz:
    """What applies to one workload: its policies, its JWT providers (sorted by issuer) and the
    CUSTOM policies among ``policies`` (step 1 of ``evaluate`` on its own)."""

    policies: tuple[CompiledPolicy, ...]
    providers: tuple[JwtProvider, ...]
    custom: tuple[CompiledPolicy, ...] = ()


def _plain(value: Any) -> Any:
    """A JSON-ready form of a resource for hashing: dataclass fields by name (without ``origin``),
    mappings with sorted keys (by ``json.dumps``), sequences as lists, anything else as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "origin"
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, frozenset | set) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def bundle_version(resources: Iterable[Resource[Any]], mesh: MeshConfig) -> str:
    """Content hash of the security resources and the mesh config, independent of order and origin."""
    docs = sorted((_plain(r) for r in resources), key=lambda d: (d["kind"], d["namespace"], d["name"]))
    text = json.dumps({"mesh": _plain(mesh), "resources": docs}, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class AuthzBundle:
    """A compiled, versioned snapshot of the authorization config. Immutable once built (the
    per-workload memo only caches pure results), so a worker swaps bundles by assignment."""

    __slots__ = (
        "resources",
        "mesh",
        "version",
        "policies",
        "jwks_uris",
        "jwks_timeouts",
        "headers_read",
        "_memo",
        "kong",
        "credential_key",
        "store_url",
    )

    def __init__(
        self,
        resources: Iterable[Resource[Any]],
        mesh: MeshConfig = DEFAULT_MESH,
        credential_key: bytes = b"",
        store_url: str = "",
    ) -> None:
        self.resources = tuple(r for r in resources if r.kind in SECURITY_KINDS or r.kind in KONG_KINDS)
        self.mesh = mesh
        self.credential_key, self.store_url = credential_key, store_url
        self.version = bundle_version(self.resources, mesh)
        self.policies = compile_policies(self.resources, mesh)
        self.jwks_uris = _remote_key_uris(self.resources)
        self.jwks_timeouts = jwks_timeouts(self.resources)
        kong = [r for r in self.resources if r.kind in KONG_KINDS]
        # Kong's Consumers and Plugins (pilotfish.kong): run at gateways after the Istio decision.
        self.kong = KongConfig.build(kong, credential_key, store_url) if kong else None
        self.headers_read = headers_read(self.resources) | (
            self.kong.headers_read() if self.kong else frozenset()
        )
        self._memo: dict[WorkloadKey, WorkloadAuthz] = {}

    @classmethod
    def build(
        cls,
        resources: Iterable[Resource[Any]],
        mesh: MeshConfig = DEFAULT_MESH,
        credential_key: bytes = b"",
        store_url: str = "",
    ) -> AuthzBundle:
        """The bundle of ``resources`` (other kinds are ignored) under ``mesh``; Kong's
        Consumers and Plugins use ``credential_key`` and, for cluster rate limits, ``store_url``."""
        return cls(resources, mesh, credential_key, store_url)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickles as source, recompiles on load
        return (AuthzBundle, (self.resources, self.mesh, self.credential_key, self.store_url))

    def __repr__(self) -> str:
        return f"AuthzBundle(version={self.version}, resources={len(self.resources)})"

    def for_workload(self, namespace: str, labels: Mapping[str, str]) -> WorkloadAuthz:
        key = (namespace, frozenset(labels.items()))
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            root = self.mesh.root_namespace
            policies = policies_for_workload(self.policies, namespace, labels, root)
            found = WorkloadAuthz(
                policies,
                compile_providers(self.resources, namespace, labels, root),
                tuple(p for p in policies if p.action == "CUSTOM"),
            )
            self._memo[key] = found
        return found

    async def decide(self, attributes: Attributes, authenticator: Authenticator) -> Decision:
        """Authenticate, then evaluate, one request (the server's and ``authz check``'s path)."""
        return (await self.decide_detailed(attributes, authenticator))[0]

    async def decide_detailed(
        self, attributes: Attributes, authenticator: Authenticator
    ) -> tuple[Decision, AuthnResult]:
        """``decide``, and the authentication result it rests on (token expiry, for caches)."""
        scope = self.for_workload(attributes.workload.namespace, attributes.workload.labels)
        authn = await authenticator.authenticate(scope.providers, attributes.request, attributes.now)
        return evaluate(scope.policies, attributes, authn), authn

    def custom_step(self, attributes: Attributes) -> tuple[str, PolicyMatch] | None:
        """The extension provider to ask first and the CUSTOM rule that matched; ``None`` when no
        enforced CUSTOM rule matches or its provider is unusable (``decide`` then denies)."""
        scope = self.for_workload(attributes.workload.namespace, attributes.workload.labels)
        if not scope.custom:
            return None
        step = evaluate(scope.custom, attributes)  # only CUSTOM policies: nothing past step 1 applies
        if step.custom_provider is None or step.custom_match is None:
            return None
        return step.custom_provider, step.custom_match

    def ext_authz_provider(self, name: str) -> EnvoyExtAuthzHttpProvider | EnvoyExtAuthzGrpcProvider | None:
        """The ext_authz configuration of the mesh's extension provider ``name``."""
        found = self.mesh.extension_provider(name)
        return found.ext_authz if found is not None else None


def _remote_key_uris(resources: Iterable[Resource[Any]]) -> tuple[str, ...]:
    """Every JWKS location that must be fetched (rules without inline ``jwks``), for prefetching."""
    uris = (
        provider_from_rule(rule).key_uri
        for r in resources
        if r.kind == "RequestAuthentication"
        for rule in r.spec.jwt_rules
        if not rule.jwks
    )
    return tuple(sorted(set(uris)))


def jwks_timeouts(resources: Iterable[Resource[Any]]) -> Mapping[str, float]:
    """Seconds a fetch of each remote JWKS may take: the jwtRule ``timeout`` (Istio's default
    5 s; Envoy ``remote_jwks.http_uri.timeout``), the longest when several rules share a URI."""
    out: dict[str, float] = {}
    for r in resources:
        if r.kind != "RequestAuthentication":
            continue
        for rule in r.spec.jwt_rules:
            if not rule.jwks:
                uri = provider_from_rule(rule).key_uri
                seconds = (rule.timeout or DEFAULT_JWKS_TIMEOUT).total_seconds()
                out[uri] = max(out.get(uri, 0.0), seconds)
    return out


# Headers a decision can depend on whatever the policies say: CORS preflight detection (jwt_authn
# bypass) and the scheme of the WWW-Authenticate realm.
ALWAYS_READ = frozenset({"origin", "access-control-request-method", "x-forwarded-proto"})
HEADER_KEYS = ("request.headers", "request.experimental.inline.headers")


def headers_read(resources: Iterable[Resource[Any]]) -> frozenset[str]:
    """Every request header a decision under these resources can read: token locations (and
    ``cookie`` when a rule reads cookies), ``request.headers[...]`` conditions, ``ALWAYS_READ``.
    A decision is a function of these, the method, path, host, peer and workload, and time."""
    names = set(ALWAYS_READ)
    for r in resources:
        if r.kind == "RequestAuthentication":
            for rule in r.spec.jwt_rules:
                provider = provider_from_rule(rule)
                names.update(h.name for h in provider.locations.headers)
                names.update(provider.output_headers)
                if provider.locations.cookies:
                    names.add("cookie")
        elif r.kind == "AuthorizationPolicy":
            for rule in r.spec.rules:
                for condition in rule.when:
                    name, _, rest = condition.key.partition("[")
                    if name in HEADER_KEYS:
                        names.add(rest.rstrip("]").lower())
    return frozenset(names)
