"""Cross-site request forgery: a web page must not be able to reconfigure the mesh.

Without ``--admin-tokens`` a loopback client may write (``rbac.anonymous_policy_decision``), and
a browser on the operator's machine is a loopback client: any page it shows could POST a form to
``http://127.0.0.1:15014/apis``. Browsers send such cross-site writes without a preflight only as
"simple" requests (Fetch standard, CORS-safelisted request headers): a form or ``fetch`` body is
``text/plain``, ``application/x-www-form-urlencoded`` or ``multipart/form-data`` — or has no
type at all — and every cross-origin write carries an ``Origin`` header. So every write
(``WRITE_METHODS``):

* with a body must say it is JSON or YAML (``BODY_TYPES``), else 415 — no simple request can;
* with an ``Origin`` must come from the admin server's own origin, else 403. The own origin is
  the one the request addresses (its ``Host``). Without a tokens file, only when that host is an
  IP address or ``localhost``: a DNS name could be rebound by the page's author to 127.0.0.1 and
  so look same-origin (DNS rebinding) while writing as a loopback client. With ``--admin-tokens``
  a rebound page still has no token (a browser never attaches a bearer token on its own, and the
  real origin's storage is not the page's), so any name the server is reached by is its own.
  The CLI, curl and Prometheus send no ``Origin`` and are unaffected.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from pilotfish.admin.api import POLICY

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_TYPES = frozenset({"application/json", "application/yaml", "application/x-yaml"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def origin_problem(origin: str | None, scheme: str, host: str | None, *, tokens: bool = False) -> str | None:
    """Why a write from ``origin`` to ``scheme://host`` is refused, or None (pure)."""
    if origin is None:
        return None
    own = f"{scheme}://{host}" if host else None
    if own is None or origin.lower() != own.lower():
        return f"cross-origin write refused: Origin {origin} is not this server ({own or 'unknown'})"
    hostname = urlsplit(own).hostname or ""
    if not tokens and not (_is_ip(hostname) or hostname == "localhost"):
        return f"cross-origin write refused: {hostname} is a DNS name (address the server by IP)"
    return None


def content_type_problem(content_type: str, has_body: bool) -> str | None:
    """Why a write's body type is refused, or None (pure)."""
    if not has_body or content_type.lower() in BODY_TYPES:
        return None
    shown = content_type or "none"
    return f"a request body must be application/json or application/yaml (Content-Type: {shown})"


def _has_body(request: web.Request) -> bool:
    return bool(request.content_length) or request.headers.get("Transfer-Encoding", "") != ""


@web.middleware
async def refuse_forgery(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in WRITE_METHODS:
        tokens = request.app[POLICY].uses_tokens
        problem = origin_problem(request.headers.get("Origin"), request.scheme, request.host, tokens=tokens)
        if problem is not None:
            return web.json_response({"error": problem}, status=403)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        problem = content_type_problem(content_type, _has_body(request))
        if problem is not None:
            return web.json_response({"error": problem}, status=415)
    return await handler(request)
