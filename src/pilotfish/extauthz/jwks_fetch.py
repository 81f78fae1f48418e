"""The real JWKS fetcher for ``JwksCache``: one HTTP GET with aiohttp (the I/O edge).

``jwks_fetcher(timeout)`` makes the fetch; ``fetch_jwks`` is one with Istio's 5 s default. It
returns the response text. A URI ending in
``/.well-known/openid-configuration`` is OpenID discovery (API-RA: a jwtRule with neither
``jwks`` nor ``jwksUri``): the document's ``jwks_uri`` is fetched next. Every failure (network,
timeout, non-200, oversized body, bad discovery document, a link-local or metadata address, which
Istio also blocks: ``releasenotes/notes/jwks-ssrf-default-block.yaml``) raises ``PeerError``;
the cache then keeps serving the last good keys.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import aiohttp

from pilotfish.errors import PeerError
from pilotfish.extauthz.jwks import Fetch
from pilotfish.limits import loads_json

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
DEFAULT_TIMEOUT = 5.0  # RequestAuthentication ``timeout`` default (policy_applier.go:193)
MAX_BODY = 1 << 20  # a JWKS is a few KB; refuse to buffer more than 1 MiB


def _check_target(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PeerError(f"JWKS URI {uri!r} is not an http(s) URL")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name; resolved by aiohttp
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        raise PeerError(f"JWKS URI {uri!r} points at a link-local or reserved address")


async def _get(session: aiohttp.ClientSession, uri: str) -> str:
    _check_target(uri)
    try:
        async with session.get(uri, allow_redirects=False) as response:
            if response.status != 200:
                raise PeerError(f"GET {uri}: HTTP {response.status}")
            body = await _read_bounded(response, uri)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise PeerError(f"GET {uri}: {type(exc).__name__}: {exc}") from exc
    return body.decode("utf-8", errors="replace")


async def _read_bounded(response: aiohttp.ClientResponse, uri: str) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_BODY:
            raise PeerError(f"GET {uri}: response larger than {MAX_BODY} bytes")
    return bytes(body)


def _jwks_uri(document: str, uri: str) -> str:
    try:
        found = loads_json(document, "the OpenID configuration").get("jwks_uri")
    except (ValueError, AttributeError):
        found = None
    if not isinstance(found, str) or not found:
        raise PeerError(f"{uri}: OpenID configuration has no jwks_uri")
    return found


def jwks_fetcher(timeout: float = DEFAULT_TIMEOUT) -> Fetch:
    """A ``Fetch`` for ``JwksCache`` with a total timeout per fetch."""

    async def fetch(uri: str) -> str:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            if uri.endswith(DISCOVERY_SUFFIX):
                uri = _jwks_uri(await _get(session, uri), uri)
            return await _get(session, uri)

    return fetch


fetch_jwks: Fetch = jwks_fetcher()  # fetch one JWKS (or discover it first); PeerError on any failure
