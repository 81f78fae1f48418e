"""The CA's TLS gRPC endpoint: Istio's port 15012 (secure xDS + certificate signing).

Theory of operation. istiod serves 15012 with a certificate its own CA issues for
``istiod.<namespace>.svc`` (istio/istio ``pilot/pkg/bootstrap/istio_ca.go``, ``certcontroller.go``);
ours names ``pilotfish.<rootNamespace>.svc``, ``localhost`` and ``127.0.0.1`` plus whatever the
operator adds. The certificate is reissued at half-life without a restart: grpc's
``dynamic_ssl_server_credentials`` calls a fetcher at every TLS handshake, and ours answers with
a new configuration only when the kept certificate needs rotation.

Client certificates. Istio's 15012 requests a client certificate but does not require one
(Go's ``VerifyClientCertIfGiven``), so agents without a certificate can authenticate with a
token. grpcio cannot express that: ``ssl_server_credentials(require_client_auth=False)`` maps to
``GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE`` (verified with grpcio 1.85: the server's
``auth_context`` then never carries ``x509_pem_cert``). So each listening address chooses:
``Listen(address, client_certificates=True)`` requires and verifies a certificate chaining to our
root (the mTLS port, 15012), ``False`` is server-authenticated TLS where callers use bootstrap
tokens. One ``grpc.aio.Server`` serves both, with the same services.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc

from pilotfish._gen import ca_pb2 as _ca_pb2
from pilotfish.certs import ca as ca_mod
from pilotfish.certs.ca import DEFAULT_WORKLOAD_TTL, CertificateAuthority, CertifiedKey
from pilotfish.certs.csr_service import CertificateServicer
from pilotfish.certs.hooks import NO_HOOKS, CertHooks
from pilotfish.certs.rotation import needs_rotation
from pilotfish.certs.store import Inventory

log = logging.getLogger(__name__)

SECURE_XDS_PORT = 15012  # Istio: secure xDS and the CA, on one port
SERVER_SECRET = "server"


def server_names(root_namespace: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The serving certificate's SANs: ``pilotfish.<rootNamespace>.svc``, ``localhost``, ``127.0.0.1``."""
    names = (f"pilotfish.{root_namespace}.svc", "localhost", "127.0.0.1", *extra)
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Listen:
    """One address of the CA server; ``client_certificates`` requires and verifies them (mTLS)."""

    address: str
    client_certificates: bool


class ServingCertificate:
    """The server's certificate from our CA, reissued at half-life. Thread-safe: grpc calls the
    fetchers from its own threads."""

    def __init__(
        self,
        ca: CertificateAuthority,
        names: Sequence[str],
        clock: Callable[[], datetime],
        *,
        ttl: timedelta = DEFAULT_WORKLOAD_TTL,
        hooks: CertHooks = NO_HOOKS,
        inventory: Inventory | None = None,
    ) -> None:
        self.ca = ca
        self.names = tuple(names)
        self.clock = clock
        self.ttl = ttl
        self.hooks = hooks
        self.inventory = inventory if inventory is not None else Inventory()
        self._lock = threading.Lock()
        self._current = self._issue(replacing=False)

    def current(self) -> CertifiedKey:
        """The certificate to serve now, reissued first if it reached half-life."""
        with self._lock:
            now = self.clock()
            if needs_rotation(self._current.certificate, now) or not ca_mod.signed_by(
                self._current.certificate, self.ca
            ):
                self._current = self._issue(replacing=True)
            return self._current

    def _issue(self, *, replacing: bool) -> CertifiedKey:
        certified = ca_mod.new_dns_key(self.ca, self.names, self.clock(), self.ttl)
        cert = certified.certificate
        self.hooks.on_cert_issued("server")
        if replacing:
            self.hooks.on_cert_rotated("server")
        self.hooks.on_cert_expiry(
            SERVER_SECRET, cert.not_valid_after_utc.timestamp(), cert.not_valid_before_utc.timestamp()
        )
        self.inventory.record("server", SERVER_SECRET, cert)
        log.info("CA server certificate for %s, serial %x", ", ".join(self.names), cert.serial_number)
        return certified

    def credentials(self, *, client_certificates: bool) -> grpc.ServerCredentials:
        """Credentials that always present the current certificate (each has its own fetcher)."""
        first = self.current()
        served = [first.certificate.serial_number]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            try:
                certified = self.current()
            except Exception:  # a failing fetcher must not break handshakes: keep the old config
                log.exception("could not renew the CA server certificate")
                return None
            if certified.certificate.serial_number == served[0]:
                return None
            served[0] = certified.certificate.serial_number
            return self._configuration(certified)

        return grpc.dynamic_ssl_server_credentials(
            self._configuration(first), fetch, require_client_authentication=client_certificates
        )

    def _configuration(self, certified: CertifiedKey) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(certified.key_pem(), certified.chain_pem())],
            root_certificates=ca_mod.certificates_pem([self.ca.root]),
        )


ca_pb2: Any = _ca_pb2  # generated code is untyped

# Istio's CA service, from the descriptor of our ca.proto: the one RPC is registered with a generic
# handler (as the ADS server is), so no generated servicer/stub module is needed.
CA_SERVICE = ca_pb2.DESCRIPTOR.services_by_name["IstioCertificateService"].full_name
CREATE_CERTIFICATE = f"/{CA_SERVICE}/CreateCertificate"


def register_certificate_service(server: grpc.aio.Server, servicer: CertificateServicer) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.CreateCertificate,
        request_deserializer=ca_pb2.IstioCertificateRequest.FromString,
        response_serializer=ca_pb2.IstioCertificateResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(CA_SERVICE, {"CreateCertificate": handler}),)
    )


def certificate_client(channel: Any) -> Any:
    """``CreateCertificate`` as a callable on a grpc channel (sync or aio), for agents and tests."""
    return channel.unary_unary(
        CREATE_CERTIFICATE,
        request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
        response_deserializer=ca_pb2.IstioCertificateResponse.FromString,
    )


def add_ports(server: grpc.aio.Server, serving: ServingCertificate, listens: Sequence[Listen]) -> list[int]:
    """Bind every address with its TLS mode; returns the bound ports (for ``:0``), in order."""
    ports = []
    for listen in listens:
        credentials = serving.credentials(client_certificates=listen.client_certificates)
        port = server.add_secure_port(listen.address, credentials)
        if port == 0:
            raise OSError(f"cannot listen on {listen.address}")
        ports.append(port)
    return ports


async def start_ca_server(
    servicer: CertificateServicer,
    serving: ServingCertificate,
    listens: Sequence[Listen],
    options: Sequence[tuple[str, int]] = (),
) -> tuple[grpc.aio.Server, list[int]]:
    """A started server hosting the CSR service on ``listens``; returns it and the bound ports."""
    server = grpc.aio.server(options=list(options))
    register_certificate_service(server, servicer)
    ports = add_ports(server, serving, listens)
    await server.start()
    return server, ports
