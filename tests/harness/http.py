"""A tiny HTTP/1.1 client for tests, on ``http.client`` so it never honours ``*_proxy`` variables.

``request`` returns ``Response(status, headers, body)``, a named tuple: unpack it as
``status, headers, body = get(url)``. Header names are lower-case; ``body`` is the decoded JSON
when the response is JSON, else text.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import urlsplit


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: Any

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; fails loudly when Envoy answered with text instead."""
        if not isinstance(self.body, dict):
            raise AssertionError(f"expected a JSON object, got status {self.status}: {self.body!r}")
        return self.body


def request(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    timeout: float = 5.0,
) -> Response:
    """Send one request on a fresh connection and read the whole response."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=dict(headers or {}))
        raw = conn.getresponse()
        payload = raw.read()
        return Response(raw.status, _lower(raw.getheaders()), _decode(raw.getheader("content-type"), payload))
    finally:
        conn.close()


def get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> Response:
    return request("GET", url, headers=headers, timeout=timeout)


def post_json(
    url: str, document: Any, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> Response:
    all_headers = {"content-type": "application/json", **(headers or {})}
    return request("POST", url, headers=all_headers, body=json.dumps(document), timeout=timeout)


def echo_name(response: Response) -> str:
    """Which echo server answered, or ``<STATUS>`` when the answer is not from an echo server
    (e.g. Envoy's own ``503 no healthy upstream``), so failures show up in counts instead of crashing."""
    body = response.body
    name = body.get("name") if isinstance(body, dict) else None
    if isinstance(name, str):
        return name
    return f"<{response.status}>"


def count_by_name(
    url: str,
    n: int,
    headers: Mapping[str, str] | None = None,
    concurrency: int = 1,
    timeout: float = 5.0,
) -> Counter[str]:
    """Send ``n`` GETs and count which echo ``name`` answered each (see ``echo_name``).

    ``concurrency=1`` sends them one after another, which makes round robin exactly even.
    """
    if concurrency <= 1:
        return Counter(echo_name(get(url, headers, timeout)) for _ in range(n))
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        responses = pool.map(lambda _: get(url, headers, timeout), range(n))
        return Counter(echo_name(response) for response in responses)


def _lower(pairs: list[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, list[str]] = {}
    for name, value in pairs:
        merged.setdefault(name.lower(), []).append(value)
    return {name: ", ".join(values) for name, values in merged.items()}


def _decode(content_type: str | None, payload: bytes) -> Any:
    text = payload.decode("utf-8", errors="replace")
    if content_type and "json" in content_type:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text
