"""The CA as the running control plane uses it: opened once, serving SDS secrets to proxies,
the CSR API and the mTLS xDS port, and telling the server when certificates need rotating.

Part of the composition root (``app.py`` holds one ``MeshCa``): the decisions live in
``pilotfish.certs`` (issuing, half-life rotation, CSR authorization) and ``pilotfish.xds.secrets``
(the SDS resources); this module only wires them to proxies and ports.

- Every sidecar and gateway gets SDS ``default`` (its workload certificate, for the SPIFFE id of its
  namespace and SERVICE_ACCOUNT) and ``ROOTCA``; a gateway also gets the DNS certificates its HTTPS
  servers name by ``credentialName`` and ``<credentialName>-cacert`` (the mesh root) for MUTUAL.
- Rotation: ``seconds_to_next_rotation`` says how long the server may sleep (1 s to 60 s); when
  ``due()``, publishing every proxy again mints the new certificates, whose new content makes new
  SDS versions that Envoy applies to new handshakes without closing connections.
- The CA server (Istio's 15012) shares the xDS gRPC server: mutual TLS with a client certificate
  from this CA, serving ADS and ``IstioCertificateService``; optionally a server-TLS port where
  callers authenticate CSRs with bootstrap tokens.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from pilotfish.certs.ca import certificates_pem
from pilotfish.certs.cache import DnsCertCache, WorkloadCertCache
from pilotfish.certs.config import DEFAULT_CERTS, load_certs_config, load_token_file
from pilotfish.certs.csr_service import (
    BootstrapTokens,
    CertificateServicer,
    CsrPolicy,
    certificate_identity,
    utc_now,
)
from pilotfish.certs.hooks import CertHooks, CertKind
from pilotfish.certs.identity import SpiffeId, SpiffeIdError
from pilotfish.certs.server import (
    SECURE_XDS_PORT,
    Listen,
    ServingCertificate,
    add_ports,
    register_certificate_service,
    server_names,
)
from pilotfish.certs.store import (
    CaStorage,
    DirectoryStorage,
    Inventory,
    MemoryStorage,
    OperatorCa,
    open_ca,
    report_ca,
)
from pilotfish.config.mesh import MeshConfig
from pilotfish.errors import PeerUnauthorized
from pilotfish.registry.snapshot import MeshSnapshot
from pilotfish.xds.proxy import Proxy, ProxyType
from pilotfish.xds.secrets import dns_secrets, identity_of_proxy, root_secret, workload_secrets
from pilotfish.xds.server import StreamPeer
from pilotfish.xds.translate.gateway_tls import credential_names
from pilotfish.xds.translate.mtls import CACERT_SUFFIX

log = logging.getLogger(__name__)

MIN_SLEEP = 1.0  # seconds between rotation checks, at least ...
MAX_SLEEP = 60.0  # ... and at most (a clock jump is noticed within a minute)
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class CaOptions:
    """``pilotfish serve``'s CA flags."""

    ca_dir: Path | None = None  # None: a CA in memory, gone with the process
    operator: OperatorCa | None = None  # --ca-cert/--ca-key
    tokens_file: Path | None = None  # --ca-tokens
    certs_file: Path | None = None  # --certs
    secure_xds_port: int | None = SECURE_XDS_PORT  # None: not served
    token_port: int | None = None  # server-TLS port for token-authenticated CSRs


class CountingHooks:
    """``CertHooks`` that count issuance and rotation per kind for ``/debug/certs`` and pass
    every event on to the metrics."""

    def __init__(self, inner: CertHooks) -> None:
        self.inner = inner
        self.issued: Counter[str] = Counter()
        self.rotated: Counter[str] = Counter()

    def on_cert_issued(self, kind: CertKind) -> None:
        self.issued[kind] += 1
        self.inner.on_cert_issued(kind)

    def on_cert_rotated(self, kind: CertKind) -> None:
        self.rotated[kind] += 1
        self.inner.on_cert_rotated(kind)

    def on_cert_expiry(self, secret: str, not_after_unix: float, not_before_unix: float) -> None:
        self.inner.on_cert_expiry(secret, not_after_unix, not_before_unix)

    def on_cert_forgotten(self, secret: str) -> None:
        self.inner.on_cert_forgotten(secret)

    def on_csr_denied(self, reason: str) -> None:
        self.inner.on_csr_denied(reason)


def storage_for(options: CaOptions) -> CaStorage:
    return DirectoryStorage(options.ca_dir) if options.ca_dir is not None else MemoryStorage()


class MeshCa:
    """The CA of one server, its certificate caches and its gRPC services."""

    def __init__(
        self,
        options: CaOptions,
        mesh: MeshConfig,
        hooks: CertHooks,
        clock: Callable[[], datetime] = utc_now,
        host: str = "127.0.0.1",
    ) -> None:
        self.options = options
        self.clock = clock
        self.hooks = CountingHooks(hooks)
        self.inventory = Inventory()
        self.config = load_certs_config(options.certs_file) if options.certs_file else DEFAULT_CERTS
        storage = storage_for(options)
        self.ca = open_ca(storage, mesh.trust_domain, clock(), options.operator)
        report_ca(self.ca, self.hooks, self.inventory)
        self.workload_certs = WorkloadCertCache(self.hooks, self.inventory, self.config.workload_cert_ttl)
        self.dns_certs = DnsCertCache(storage, self.hooks, self.inventory)
        policy = CsrPolicy(self.config.workload_cert_ttl, self.config.max_workload_cert_ttl)
        self.csr = CertificateServicer(
            self.ca, self._tokens(mesh), policy, clock=clock, hooks=self.hooks, inventory=self.inventory
        )
        extra = () if host in WILDCARD_HOSTS else (host,)
        self.serving = ServingCertificate(
            self.ca,
            server_names(mesh.root_namespace, extra),
            clock,
            hooks=self.hooks,
            inventory=self.inventory,
        )

    def _tokens(self, mesh: MeshConfig) -> BootstrapTokens:
        if self.options.tokens_file is None:
            return BootstrapTokens()
        return BootstrapTokens.from_file(load_token_file(self.options.tokens_file, mesh.trust_domain))

    # ---- the CA server ---------------------------------------------------------------------------

    def serve(self, server: grpc.aio.Server, host: str) -> tuple[int, int]:
        """Add the CSR service and the TLS ports to ``server`` (which also serves ADS); returns
        the bound mTLS port and token port (0 for one not served). Call before ``start()``."""
        listens = [
            Listen(f"{host}:{port}", client_certificates=mtls)
            for port, mtls in ((self.options.secure_xds_port, True), (self.options.token_port, False))
            if port is not None
        ]
        if not listens:
            return 0, 0
        register_certificate_service(server, self.csr)
        bound = iter(add_ports(server, self.serving, listens))
        secure = next(bound) if self.options.secure_xds_port is not None else 0
        token = next(bound) if self.options.token_port is not None else 0
        return secure, token

    # ---- who may be served ---------------------------------------------------------------------

    def authorize_stream(self, proxy: Proxy, peer: StreamPeer) -> None:
        """An ADS stream receives the node's private key over SDS, so the node's claimed identity
        must be proven: on the mTLS port by the client certificate's SPIFFE id (Istio's xDS
        server authenticates proxies the same way); on the plaintext port only a proxy on this
        host (a loopback peer) is served — remote proxies use the mTLS port (bootstrap --mtls).
        Raises ``PeerUnauthorized``; never serves a key on a claim alone."""
        if peer.cert_pem is not None:
            proven, why = certificate_identity(self.ca, peer.cert_pem, self.clock())
            claimed = self.identity(proxy)
            if proven is None or proven != claimed:
                raise PeerUnauthorized(
                    f"node {proxy.id} claims {claimed}, its certificate proves {proven or why}"
                )
            return
        if not is_local_peer(peer.address):
            raise PeerUnauthorized(
                f"plaintext xDS from {peer.address or 'an unknown peer'}: workload keys go over plaintext"
                " only to proxies on this host; connect to the mTLS xDS port (pilotfish bootstrap --mtls)"
            )

    # ---- SDS ---------------------------------------------------------------------------------

    def identity(self, proxy: Proxy) -> SpiffeId | None:
        try:
            return identity_of_proxy(proxy, self.ca.trust_domain)
        except SpiffeIdError as exc:
            log.warning("no certificate for %s: %s", proxy.id, exc)
            return None

    def secrets(self, mesh: MeshSnapshot, proxy: Proxy) -> list[secret_pb2.Secret]:
        """The proxy's SDS secrets at the current time (certificates reused until half-life)."""
        identity = self.identity(proxy)
        if identity is None:
            return []
        now = self.clock()
        out = workload_secrets(self.ca, identity, now, self.workload_certs)
        if proxy.type == ProxyType.ROUTER:
            out.extend(self._gateway_secrets(set(credential_names(mesh, proxy)), now))
        return out

    def _gateway_secrets(self, names: set[str], now: datetime) -> list[secret_pb2.Secret]:
        """The DNS certificates named, and ``<name>-cacert`` (the mesh root) for each of them."""
        certificates = dns_secrets(self.ca, self.config, now, self.dns_certs, names)
        roots = [
            root_secret(self.ca, spec.secret_name + CACERT_SUFFIX)
            for spec in self.config.dns_certificates
            if spec.secret_name + CACERT_SUFFIX in names
        ]
        return [*certificates, *roots]

    # ---- rotation ----------------------------------------------------------------------------

    def retain(self, mesh: MeshSnapshot, proxies: Iterable[Proxy]) -> None:
        """Forget certificates no connected proxy uses (they would never be rotated)."""
        identities: list[SpiffeId] = []
        names: set[str] = set()
        for proxy in proxies:
            identity = self.identity(proxy)
            if identity is not None:
                identities.append(identity)
            if proxy.type == ProxyType.ROUTER:
                names.update(credential_names(mesh, proxy))
        self.workload_certs.retain(identities)
        self.dns_certs.retain(names)

    def due(self) -> bool:
        now = self.clock()
        return bool(self.workload_certs.due(now) or self.dns_certs.due(now))

    def seconds_to_next_rotation(self) -> float:
        """How long until the earliest kept certificate reaches half-life, within 1 s .. 60 s."""
        times = [t for t in (self.workload_certs.next_rotation(), self.dns_certs.next_rotation()) if t]
        wait = (min(times) - self.clock()).total_seconds() if times else MAX_SLEEP
        return min(max(wait, MIN_SLEEP), MAX_SLEEP)

    # ---- /debug/certs ------------------------------------------------------------------------

    def root_pem(self) -> str:
        return certificates_pem([self.ca.root]).decode()

    def debug(self) -> dict[str, Any]:
        """Public facts only: the root, every current certificate (serial, SANs, validity), and
        how many were issued and rotated per kind. Never a key."""
        return {
            "trustDomain": self.ca.trust_domain,
            "root": self.root_pem(),
            "certificates": self.inventory.to_json(),
            "issued": dict(sorted(self.hooks.issued.items())),
            "rotated": dict(sorted(self.hooks.rotated.items())),
        }


def is_local_peer(address: str) -> bool:
    """grpc's peer string (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``, ``unix:/path``) names a
    process on this host."""
    scheme, _, rest = address.partition(":")
    if scheme == "unix":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
