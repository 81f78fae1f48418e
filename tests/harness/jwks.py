"""A JWKS endpoint for tests: a real HTTP server on 127.0.0.1 serving RSA keys, which a test
can stop, restart on the same port and rotate, and which signs tokens with those keys."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "testing@secure.istio.io"


@dataclass
class Jwks:
    """A JWKS endpoint on 127.0.0.1 that a test can stop, restart on the same port, and rotate."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    port: int = 0
    fetches: int = 0
    _server: ThreadingHTTPServer | None = None

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def document(self) -> bytes:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return json.dumps({"keys": keys}).encode()

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                owner.fetches += 1
                body = owner.document()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def token(
        self,
        kid: str,
        *,
        issuer: str = ISSUER,
        lifetime: float = 3600,
        sub: str = "alice",
        claims: dict[str, Any] | None = None,
    ) -> str:
        """An RS256 token signed with key ``kid``; ``claims`` are added (or override) last."""
        now = time.time()
        payload = {"iss": issuer, "sub": sub, "iat": int(now), "exp": int(now + lifetime), **(claims or {})}
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})
