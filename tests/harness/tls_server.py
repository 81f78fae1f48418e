"""Certificates made on the spot, and a TLS backend that answers with its name and the SNI the
client sent: what stands behind a TLS passthrough gateway in the tests."""

from __future__ import annotations

import datetime
import json
import ssl
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def issue(
    common_name: str, *, issuer: Issued | None = None, ca: bool = False, dns: list[str] | None = None
) -> Issued:
    """A certificate for ``common_name``: self-signed when there is no ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def write_pem(path: Path, item: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            item.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


class TlsServer:
    """HTTPS on ``address:port`` with ``issued``'s certificate; every GET answers
    ``{"server": name, "sni": <the client's SNI>}``. Runs in a thread; ``stop`` ends it."""

    def __init__(self, address: str, port: int, issued: Issued, *, name: str) -> None:
        self.address, self.port, self.name = address, port, name
        self._dir = tempfile.TemporaryDirectory(prefix="tls-server-")
        cert = write_pem(Path(self._dir.name) / "cert.pem", issued.cert)
        key = write_pem(Path(self._dir.name) / "key.pem", issued.key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.sni_callback = _remember_sni
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TlsServer:
        name = self.name

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.dumps({"server": name, "sni": getattr(self.request, "sni", None)}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((self.address, self.port), Handler)
        server.daemon_threads = True
        context = self.context

        def get_request() -> tuple[Any, Any]:
            sock, address = server.socket.accept()
            sock.settimeout(10)  # a client that never finishes its handshake cannot hold the loop
            return context.wrap_socket(sock, server_side=True), address

        server.get_request = get_request  # type: ignore[method-assign]  # TLS per connection
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._dir.cleanup()


def _remember_sni(sock: Any, server_name: str | None, context: ssl.SSLContext) -> None:
    sock.sni = server_name
