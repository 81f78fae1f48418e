"""The demo's JWT issuer, ``issuer-foo``: an RSA key made at start, its JWKS served over HTTP for
pilotfish's Check workers (the RequestAuthentication's ``jwksUri``), and demo tokens minted on
request — so `make demo` can show 200/401/403 without a real identity provider.

    GET /.well-known/jwks.json   the public key (RFC 7517)
    GET /token[?sub=NAME]        a token from issuer-foo, valid one hour (text/plain)
    GET /token?forged=1          the same claims signed by a key that is not in the JWKS: a bad token

It binds loopback only; the tokens carry no privilege outside the demo's mesh.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "issuer-foo"
KID = "demo-1"
JWKS_PATH = "/.well-known/jwks.json"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Issuer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.key, self.forger = _new_key(), _new_key()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self.host, self.port = host, int(self._server.server_address[1])

    def jwks(self) -> bytes:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return json.dumps({"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}).encode()

    def token(self, sub: str = "demo-user", *, forged: bool = False) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": sub, "iat": now, "exp": now + 3600}
        return jwt.encode(claims, self.forger if forged else self.key, algorithm="RS256", headers={"kid": KID})

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> Issuer:
        threading.Thread(target=self._server.serve_forever, name="jwt-issuer", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(issuer: Issuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path == JWKS_PATH:
                self._send(200, "application/json", issuer.jwks())
            elif url.path == "/token":
                sub = query.get("sub", ["demo-user"])[0]
                forged = query.get("forged", ["0"])[0] not in ("", "0")
                self._send(200, "text/plain", issuer.token(sub, forged=forged).encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
