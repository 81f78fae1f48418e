"""The CSR API over real TLS on 127.0.0.1:0: an mTLS address (client certificate required) and a
server-authenticated TLS address for bootstrap tokens, one grpc.aio server, Istio's proto.

Certificates here are issued at the real current time, because grpc's TLS stack checks validity
against the system clock; the servicer and the serving certificate still take an injected clock.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from pilotfish._gen import ca_pb2
from pilotfish.certs import ca as ca_mod
from pilotfish.certs.config import BootstrapToken, TokenFile
from pilotfish.certs.csr_service import BootstrapTokens, CertificateServicer
from pilotfish.certs.identity import workload_id
from pilotfish.certs.server import (
    Listen,
    ServingCertificate,
    certificate_client,
    server_names,
    start_ca_server,
)
from pilotfish.certs.store import Inventory

pytestmark = pytest.mark.integration

TRUST_DOMAIN = "cluster.local"
WEB = workload_id(TRUST_DOMAIN, "shop", "web")
DB = workload_id(TRUST_DOMAIN, "shop", "db")
TOKEN = "integration-token-0123456789"
TIMEOUT = 5


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Mesh:
    """A CA, its server on two addresses, and helpers to call it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.ca = ca_mod.self_signed_root(TRUST_DOMAIN, clock.now - timedelta(days=1))
        self.root_pem = ca_mod.certificates_pem([self.ca.root])
        self.inventory = Inventory()
        tokens = BootstrapTokens.from_file(TokenFile((BootstrapToken(TOKEN, (WEB.uri,)),)))
        self.servicer = CertificateServicer(self.ca, tokens, clock=clock, inventory=self.inventory)
        self.serving = ServingCertificate(
            self.ca, server_names("istio-system"), clock, inventory=self.inventory
        )
        self.server: grpc.aio.Server | None = None
        self.mtls_port = self.tls_port = 0

    async def __aenter__(self) -> Mesh:
        listens = [
            Listen("127.0.0.1:0", client_certificates=True),
            Listen("127.0.0.1:0", client_certificates=False),
        ]
        self.server, (self.mtls_port, self.tls_port) = await start_ca_server(
            self.servicer, self.serving, listens
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        await self.server.stop(None)

    def client_credentials(self, identity=WEB, authority=None) -> grpc.ChannelCredentials:
        certified = ca_mod.new_workload_key(authority or self.ca, identity, self.clock.now)
        return grpc.ssl_channel_credentials(self.root_pem, certified.key_pem(), certified.chain_pem())

    async def create(
        self,
        port: int,
        credentials: grpc.ChannelCredentials,
        *,
        san=WEB.uri,
        token: str | None = None,
        target: str = "localhost",
        options=(),
    ):
        key = ca_mod.new_private_key()
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=True)
            .sign(key, hashes.SHA256())
        )
        request = ca_pb2.IstioCertificateRequest(
            csr=csr.public_bytes(serialization.Encoding.PEM).decode(), validity_duration=3600
        )
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        async with grpc.aio.secure_channel(f"{target}:{port}", credentials, options=options) as channel:
            response = await certificate_client(channel)(request, metadata=metadata, timeout=TIMEOUT)
        return key, [x509.load_pem_x509_certificate(pem.encode()) for pem in response.cert_chain]


def run(scenario):
    async def main():
        async with Mesh(Clock(datetime.now(UTC))) as mesh:
            return await scenario(mesh)

    return asyncio.run(main())


async def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()


def test_a_workload_with_a_client_certificate_renews_its_identity():
    async def scenario(mesh: Mesh):
        key, chain = await mesh.create(mesh.mtls_port, mesh.client_credentials())
        leaf, root = chain
        assert ca_mod.uri_sans(leaf) == [WEB.uri]
        assert leaf.public_key() == key.public_key()
        assert root == mesh.ca.root
        leaf.verify_directly_issued_by(root)
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(hours=1)
        assert ("csr", WEB.uri) in {(r.kind, r.name) for r in mesh.inventory.records()}

    run(scenario)


def test_the_server_certificate_names_the_service_dns_name():
    async def scenario(mesh: Mesh):
        override = (("grpc.ssl_target_name_override", "pilotfish.istio-system.svc"),)
        _, chain = await mesh.create(
            mesh.mtls_port, mesh.client_credentials(), target="127.0.0.1", options=override
        )
        assert ca_mod.uri_sans(chain[0]) == [WEB.uri]

    run(scenario)


def test_a_san_mismatch_is_refused_over_mtls_and_with_a_token():
    async def scenario(mesh: Mesh):
        mtls = await status_of(mesh.create(mesh.mtls_port, mesh.client_credentials(WEB), san=DB.uri))
        tls = grpc.ssl_channel_credentials(mesh.root_pem)
        token = await status_of(mesh.create(mesh.tls_port, tls, san=DB.uri, token=TOKEN))
        return mtls, token

    assert run(scenario) == (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED)


def test_a_caller_without_a_certificate_uses_its_token():
    async def scenario(mesh: Mesh):
        tls = grpc.ssl_channel_credentials(mesh.root_pem)
        _, chain = await mesh.create(mesh.tls_port, tls, token=TOKEN)
        assert ca_mod.uri_sans(chain[0]) == [WEB.uri]
        bad = await status_of(mesh.create(mesh.tls_port, tls, token="wrong-token-wrong-token"))
        none = await status_of(mesh.create(mesh.tls_port, tls))
        return bad, none

    assert run(scenario) == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED)


def test_the_mtls_address_refuses_handshakes_without_our_certificate():
    async def scenario(mesh: Mesh):
        without = await status_of(mesh.create(mesh.mtls_port, grpc.ssl_channel_credentials(mesh.root_pem)))
        foreign_ca = ca_mod.self_signed_root(TRUST_DOMAIN, mesh.clock.now - timedelta(days=1))
        foreign = await status_of(mesh.create(mesh.mtls_port, mesh.client_credentials(authority=foreign_ca)))
        return without, foreign

    assert run(scenario) == (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)


def test_the_token_address_ignores_client_certificates():
    """grpcio cannot request a client certificate without requiring it (see certs/server.py), so
    the TLS address authenticates by token only."""

    async def scenario(mesh: Mesh):
        return await status_of(mesh.create(mesh.tls_port, mesh.client_credentials()))

    assert run(scenario) == grpc.StatusCode.UNAUTHENTICATED


def server_certificate(port: int, root_pem: bytes) -> x509.Certificate:
    """The server's certificate as a verifying Python TLS client sees it (hostname localhost)."""
    import socket

    context = ssl.create_default_context(cadata=root_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_the_server_certificate_rotates_at_half_life_without_a_restart():
    async def main():
        real_now = datetime.now(UTC).replace(microsecond=0)
        clock = Clock(real_now - timedelta(hours=12))  # the first certificate is half-way through at real_now
        async with Mesh(clock) as mesh:
            before = await asyncio.to_thread(server_certificate, mesh.tls_port, mesh.root_pem)
            assert before.not_valid_before_utc == real_now - timedelta(hours=12)
            assert await asyncio.to_thread(server_certificate, mesh.tls_port, mesh.root_pem) == before
            clock.now = real_now
            after = await asyncio.to_thread(server_certificate, mesh.tls_port, mesh.root_pem)
            assert after.serial_number != before.serial_number
            assert after.not_valid_before_utc == real_now
            assert ca_mod.all_sans(after) == ["pilotfish.istio-system.svc", "localhost", "127.0.0.1"]
            _, chain = await mesh.create(mesh.mtls_port, mesh.client_credentials())  # mTLS port too
            assert ca_mod.uri_sans(chain[0]) == [WEB.uri]
            [record] = [r for r in mesh.inventory.records() if r.kind == "server"]
            assert record.serial == f"{after.serial_number:x}"

    asyncio.run(main())
